//! A reviewer's attacks on the rings that carry a pool's calls and answers
//! (`mp-runtime/src/wire/ring/README.md`): tasks that publish records the protocol allows in
//! form but not in meaning, workers stopped in the middle, workers replaced by the hundred,
//! idle parents on a full machine, and the fork server. Each test fails if the promise it
//! names is broken; every wait is bounded.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mp_runtime::{CallOptions, Pool, StartMethod, process_fn};

use crate::adversarial::bounded::must;
use crate::alone::chaos::children;

use super::ring::{ANSWERS_TAIL, CAPACITY, word, write_answer_bytes};

#[process_fn]
fn double(x: u64) -> u64 {
    x * 2
}

/// How a task publishes records that are well formed but are no answer.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
enum Forge {
    /// One empty inline record (a header of zero), then the task returns normally.
    OneEmptyRecord,
    /// A whole ring of zeroes published (`tail` moved one ring ahead, which the parent
    /// accepts): 32768 empty records, then the task returns normally.
    ARingOfEmptyRecords,
}

/// Wakes this worker's parent with a doorbell on every socket of the worker, so that it looks
/// at the ring now (a parent asleep would not see what was forged before the real answer
/// overwrote it), and gives it a moment to.
fn ring_parent() {
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|to| to.to_string_lossy().starts_with("socket:"));
        if let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
            && is_socket
        {
            let doorbell = [0u8; 8];
            // SAFETY: plain system call on a descriptor of this process, from a live buffer.
            unsafe {
                libc::send(
                    fd,
                    doorbell.as_ptr().cast(),
                    8,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
        }
    }
    std::thread::sleep(Duration::from_millis(100));
}

#[process_fn]
fn forge(how: Forge) -> u64 {
    let tail = word(ANSWERS_TAIL).load(Ordering::SeqCst);
    match how {
        Forge::OneEmptyRecord => {
            write_answer_bytes(tail, &0u64.to_le_bytes());
            word(ANSWERS_TAIL).store(tail + 8, Ordering::SeqCst);
        }
        Forge::ARingOfEmptyRecords => {
            write_answer_bytes(tail, &vec![0; CAPACITY]);
            word(ANSWERS_TAIL).store(tail + CAPACITY as u64, Ordering::SeqCst);
        }
    }
    ring_parent();
    5
}

// A task that publishes empty records in its worker's answers ring (kind INLINE, length 0,
// which no message is) may fail itself, but must never make another task's answer wrong: the
// calls after it, to the same (or a fresh) worker, get their own values.
#[test]
fn forged_empty_records_never_shift_answers_onto_later_tasks() {
    // How many later calls fail depends on when the parent looks (1 to over 1000 were seen):
    // the ring's forgery is tried a few times.
    let mut forgeries = vec![Forge::OneEmptyRecord];
    forgeries.extend([Forge::ARingOfEmptyRecords; 6]);
    for how in forgeries {
        let pool = Arc::new(Pool::new(1).unwrap());
        assert_eq!(pool.apply(double, (1,)).unwrap(), 2);
        let outcome = must("a forging task", {
            let pool = pool.clone();
            move || pool.apply(forge, (how,))
        });
        eprintln!("{how:?}: the forging task ended with {outcome:?}");
        // The calls after it: each must get its own answer; the worker the forgery broke may
        // fail the first one (then it is replaced). Count the failures and the wrong answers.
        let (failed, wrong, first_ok) = must("the calls after the forgery", {
            let pool = pool.clone();
            move || {
                let (mut failed, mut wrong, mut first_ok) = (0, Vec::new(), None);
                for x in 10..40_000u64 {
                    match pool.apply(double, (x,)) {
                        Ok(value) if value == 2 * x => {
                            first_ok.get_or_insert(x);
                            if x > first_ok.unwrap() + 20 {
                                break;
                            }
                        }
                        Ok(value) => wrong.push((x, value)),
                        Err(_) => failed += 1,
                    }
                }
                (failed, wrong, first_ok)
            }
        });
        eprintln!(
            "{how:?}: {failed} later calls failed, wrong answers {wrong:?}, first right at {first_ok:?}"
        );
        assert!(
            wrong.is_empty(),
            "{how:?}: later calls got other answers: {wrong:?}"
        );
        assert!(
            failed <= 1,
            "{how:?}: {failed} later calls to the broken worker failed"
        );
    }
}

/// Stops its own worker with SIGSTOP (as a debugger or a job-control signal would).
#[process_fn]
fn stop_myself() -> u64 {
    // SAFETY: plain system call on this process.
    unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
    1
}

// A worker stopped in the middle of its task is held to the task's time limit (the parent
// cannot rely on a doorbell that will never come), and the pool goes on.
#[test]
fn a_stopped_worker_is_held_to_the_time_limit() {
    let pool = Arc::new(Pool::new(1).unwrap());
    assert_eq!(pool.apply(double, (1,)).unwrap(), 2);
    let limited = CallOptions::new().timeout(Duration::from_millis(300));
    let outcome = must("a task that stops its worker", {
        let pool = pool.clone();
        move || pool.with(&limited).apply(stop_myself, ())
    });
    assert!(
        outcome.as_ref().is_err_and(|e| e.is_timeout()),
        "{outcome:?}"
    );
    let after = must("the pool after a stopped worker", {
        let pool = pool.clone();
        move || pool.apply(double, (4,))
    });
    assert_eq!(after.unwrap(), 8);
}

// Terminate while a worker is stopped and its calls ring is full of calls: it returns, and
// the pending results end with an error.
#[test]
fn terminate_with_a_stopped_worker_and_a_full_ring_returns() {
    let pool = Arc::new(Pool::new(1).unwrap());
    assert_eq!(pool.apply(double, (1,)).unwrap(), 2);
    let stopped = pool.apply_async(stop_myself, ());
    let many = pool
        .with(&CallOptions::new().chunksize(1))
        .map_async(double, 0..5000u64);
    std::thread::sleep(Duration::from_millis(200));
    must("terminate", {
        let pool = pool.clone();
        move || pool.terminate()
    });
    let s = must("the stopped task's result", move || stopped.get());
    assert!(s.is_err(), "{s:?}");
    let m = must("the map's result", move || many.get());
    assert!(m.is_err(), "{m:?}");
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn ring_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|line| line.contains("mp-rings"))
        .count()
}

#[process_fn]
fn replaced_workers_leak_nothing_alone() {
    // Warm up whatever is made once (the fork server, a logger, thread pools).
    drop(Pool::new(2).unwrap());
    let (fd0, maps0) = (fds(), ring_mappings());
    for _ in 0..3 {
        let pool = Pool::builder()
            .processes(4)
            .max_tasks_per_child(1)
            .build()
            .unwrap();
        let got = pool
            .with(&CallOptions::new().chunksize(1))
            .map(double, 0..300u64)
            .unwrap();
        assert_eq!(got, (0..300).map(|x| 2 * x).collect::<Vec<_>>());
        // While the pool lives: one mapping per live worker, not one per worker ever started.
        assert!(
            ring_mappings() <= maps0 + 8,
            "{} ring mappings for 4 workers",
            ring_mappings()
        );
        assert!(fds() <= fd0 + 64, "{} descriptors for 4 workers", fds());
        drop(pool);
    }
    assert_eq!(ring_mappings(), maps0, "ring mappings left behind");
    assert!(
        fds() <= fd0 + 2,
        "descriptors left behind: {} before, {} after",
        fd0,
        fds()
    );
    assert!(children().is_empty(), "workers left: {:?}", children());
}

// 900 workers started and replaced (max_tasks_per_child 1): no ring mapping or descriptor is
// left behind in the parent.
#[test]
fn replaced_workers_leak_no_ring_mapping_or_descriptor() {
    crate::in_child(replaced_workers_leak_nothing_alone);
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[process_fn]
fn own_pid(_: u64) -> u32 {
    std::process::id()
}

#[process_fn]
fn idle_parent_uses_no_cpu_alone() {
    // Pools of 8 workers on a machine with fewer cores; three of them, and a caller waiting.
    let pools: Vec<Pool> = (0..3).map(|_| Pool::new(8).unwrap()).collect();
    let mut pids = std::collections::BTreeSet::new();
    for pool in &pools {
        pids.extend(
            pool.with(&CallOptions::new().chunksize(1))
                .map(own_pid, 0..3000)
                .unwrap(),
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let me = std::process::id();
    let parent = cpu_ticks(me);
    let workers: u64 = pids.iter().map(|&pid| cpu_ticks(pid)).sum();
    std::thread::sleep(Duration::from_secs(2));
    let parent = cpu_ticks(me) - parent;
    let workers = pids.iter().map(|&pid| cpu_ticks(pid)).sum::<u64>() - workers;
    eprintln!(
        "idle 2 s: parent {parent} ticks, {} workers {workers} ticks",
        pids.len()
    );
    assert!(parent <= 3, "the idle parent used {parent} ticks in 2 s");
    assert!(
        workers <= 3,
        "{} idle workers used {workers} ticks in 2 s",
        pids.len()
    );
}

// Idle pools use no CPU, in the parent as in the workers (the existing test measures only the
// workers), with 24 workers on a small machine.
#[test]
fn idle_oversubscribed_pools_use_no_cpu_in_parent_or_workers() {
    crate::in_child(idle_parent_uses_no_cpu_alone);
}

#[process_fn]
fn maps_rings(x: u64) -> (u64, bool) {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    (x * 2, maps.contains("mp-rings"))
}

// The fork server's workers use rings too, and answer right, also when killed mid-stream.
#[test]
fn fork_server_workers_use_rings_and_answer_right() {
    let pool = Pool::builder()
        .processes(2)
        .start_method(StartMethod::ForkServer)
        .build()
        .unwrap();
    let got = must("a map on the fork server", move || {
        let got = pool
            .with(&CallOptions::new().chunksize(1))
            .map(maps_rings, 0..2000u64)
            .unwrap();
        drop(pool);
        got
    });
    for (x, (value, rings)) in got.into_iter().enumerate() {
        assert_eq!(value, 2 * x as u64);
        assert!(rings, "a fork server worker answered without rings");
    }
}

/// Moves this worker's answers `tail` on with empty records until the next record starts
/// `before_end` bytes before the end of the ring, then publishes a record that announces
/// `len` bytes of garbage and crosses the end; returns 5 (an answer the worker then publishes
/// behind what it forged).
#[process_fn]
fn forge_across_the_end(len: u64) -> u64 {
    let mut tail = word(ANSWERS_TAIL).load(Ordering::SeqCst);
    let before_end = 8;
    while (tail as usize) % CAPACITY != CAPACITY - before_end {
        write_answer_bytes(tail, &0u64.to_le_bytes());
        tail += 8;
    }
    write_answer_bytes(tail, &len.to_le_bytes());
    write_answer_bytes(tail + 8, &vec![0xa5; len as usize]);
    word(ANSWERS_TAIL).store(tail + (8 + len).next_multiple_of(8), Ordering::SeqCst);
    ring_parent();
    5
}

// A record that crosses the end of the ring, forged with garbage, is read within the mapping
// and makes at most its own task fail; the calls after it get their own answers.
#[test]
fn a_forged_record_across_the_end_fails_only_its_task() {
    for len in [100u64, 4000, 200_000] {
        let pool = Arc::new(Pool::new(1).unwrap());
        let outcome = must("a task forging across the end", {
            let pool = pool.clone();
            move || pool.apply(forge_across_the_end, (len,))
        });
        eprintln!("len {len}: {outcome:?}");
        for x in 10..20u64 {
            let next = must("a call after the forgery", {
                let pool = pool.clone();
                move || pool.apply(double, (x,))
            });
            match next {
                Ok(value) => assert_eq!(value, 2 * x, "len {len}: call {x} got another's answer"),
                Err(error) if x == 10 => eprintln!("len {len}: call {x} failed: {error}"),
                Err(error) => panic!("len {len}: call {x} failed: {error}"),
            }
        }
    }
}

/// Forks; the copy goes on as a second worker on the same rings and socket (it returns too).
#[process_fn]
fn fork_a_twin(x: u64) -> u64 {
    // SAFETY: the copy runs the worker's loop, which the test means it to (a task that forks
    // without exec, as a careless library would).
    unsafe { libc::fork() };
    x * 2
}

#[process_fn]
fn a_twin_on_the_rings_alone() {
    let pool = Arc::new(Pool::new(1).unwrap());
    let twin = must("a task that forks a twin", {
        let pool = pool.clone();
        move || pool.apply(fork_a_twin, (3,))
    });
    eprintln!("the forking task: {twin:?}");
    let results = must("calls after the twin", {
        let pool = pool.clone();
        move || {
            pool.with(
                &CallOptions::new()
                    .chunksize(1)
                    .timeout(Duration::from_secs(5)),
            )
            .imap(double, 0..500u64)
            .collect::<Vec<_>>()
        }
    });
    assert_eq!(results.len(), 500);
    let wrong: Vec<_> = results
        .iter()
        .enumerate()
        .filter(|(x, r)| matches!(r, Ok(v) if *v != 2 * *x as u64))
        .collect();
    eprintln!(
        "{} failed, {} wrong",
        results.iter().filter(|r| r.is_err()).count(),
        wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "answers delivered to the wrong task: {wrong:?}"
    );
    must("terminate", move || pool.terminate());
    // The twin is not a child of this process (it is the worker's); kill what is left.
}

// A task that forks without exec leaves a twin running the worker's loop on the same rings:
// the parent must not hang or crash, and must not hand a task another task's answer.
#[test]
fn a_twin_worker_on_the_same_rings_never_hands_out_wrong_answers() {
    crate::in_child(a_twin_on_the_rings_alone);
}

#[process_fn]
fn sized(x: u64) -> Vec<u8> {
    let len = if x % 7 == 0 {
        1 << 20
    } else {
        (x % 50) as usize
    };
    vec![(x % 251) as u8; len]
}

#[process_fn]
fn mixed_sizes_under_kills_alone() {
    use std::sync::atomic::AtomicBool;
    const TASKS: u64 = 1500;
    let pool = Pool::builder()
        .processes(3)
        .retries(20)
        .max_tasks_per_child(37)
        .build()
        .unwrap();
    let done = AtomicBool::new(false);
    let results: Vec<_> = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut seed = 0x9e37_79b9_7f4a_7c15u64;
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(7));
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let victims = children();
                if let Some(&pid) = victims.get(seed as usize % victims.len().max(1)) {
                    // SAFETY: plain system call on a worker of this process.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        });
        let results = pool
            .with(&CallOptions::new().chunksize(1).buffersize(64))
            .imap(sized, 0..TASKS)
            .collect();
        done.store(true, Ordering::SeqCst);
        results
    });
    assert_eq!(results.len() as u64, TASKS);
    for (x, result) in results.iter().enumerate() {
        let x = x as u64;
        match result {
            Ok(bytes) => {
                let len = if x % 7 == 0 {
                    1 << 20
                } else {
                    (x % 50) as usize
                };
                assert_eq!(bytes.len(), len, "task {x}");
                assert!(bytes.iter().all(|&b| b == (x % 251) as u8), "task {x}");
            }
            Err(error) => panic!("task {x} failed despite 20 retries: {error}"),
        }
    }
    drop(pool);
    assert!(children().is_empty(), "workers left: {:?}", children());
}

// Large values (memfd, announced in the ring) mixed with tiny ones, workers replaced every 37
// tasks and killed every 7 ms, with retries: every task gets its own value, once.
#[test]
fn mixed_sizes_with_kills_retries_and_replacement_deliver_each_value_once() {
    crate::in_child(mixed_sizes_under_kills_alone);
}

// An imap with a small buffer dropped half-way, while its calls and answers are in the rings,
// then the same pool: every later call gets its own answer, none of the dropped map's.
#[test]
fn an_imap_dropped_mid_ring_leaves_no_stale_answer() {
    let pool = Arc::new(Pool::new(2).unwrap());
    for round in 0..20u64 {
        let pool2 = pool.clone();
        must("a dropped imap", move || {
            let mut it = pool2
                .with(&CallOptions::new().chunksize(1).buffersize(32))
                .imap(double, 0..100_000u64);
            for x in 0..(round * 7) {
                assert_eq!(it.next().unwrap().unwrap(), 2 * x);
            }
        });
        let pool2 = pool.clone();
        let got = must("the map after", move || pool2.map(double, 1000..1100u64)).unwrap();
        assert_eq!(
            got,
            (1000..1100).map(|x| 2 * x).collect::<Vec<_>>(),
            "round {round}"
        );
    }
}

// A sandboxed pool's workers get their rings (the sandbox is set before) and answer right.
#[test]
fn sandboxed_workers_answer_through_rings() {
    let pool = Pool::builder()
        .processes(2)
        .sandbox(mp_runtime::Sandbox::new())
        .build()
        .unwrap();
    // (A sandboxed task cannot read /proc/self/maps: only the answers are checked.)
    let got = must("a sandboxed map", move || {
        pool.with(&CallOptions::new().chunksize(1))
            .map(double, 0..5000u64)
    })
    .unwrap();
    assert_eq!(got, (0..5000).map(|x| 2 * x).collect::<Vec<_>>());
}

fn recurse(depth: u64) -> u64 {
    let pad = std::hint::black_box([depth; 64]);
    if depth == u64::MAX {
        return pad[0];
    }
    recurse(depth + 1) + std::hint::black_box(pad[1])
}

/// Overflows its stack (its worker's last words go on the socket) when `x` is 100; else
/// doubles it.
#[process_fn]
fn overflow_at_100(x: u64) -> u64 {
    if x == 100 {
        return recurse(0);
    }
    x * 2
}

/// Sleeps for 3 s when `x` is 100; else doubles it.
#[process_fn]
fn slow_at_100(x: u64) -> u64 {
    if x == 100 {
        std::thread::sleep(Duration::from_secs(3));
    }
    x * 2
}

/// Runs `f` over 0..400 with one call per task, many in flight, under a 500 ms time limit on a
/// one-worker pool, and checks that only task 100 fails.
fn only_task_100_fails(name: &str, f: fn(&Pool) -> Vec<mp_runtime::Result<u64>>) {
    let pool = Arc::new(Pool::new(1).unwrap());
    let results: Vec<_> = must(name, {
        let pool = pool.clone();
        move || f(&pool)
    });
    assert_eq!(results.len(), 400, "{name}");
    for (x, result) in results.iter().enumerate() {
        match result {
            Ok(value) if x != 100 => assert_eq!(*value, 2 * x as u64, "{name}: task {x}"),
            Err(error) if x == 100 => eprintln!("{name}: task 100: {error}"),
            other => panic!("{name}: task {x} (sent behind task 100): {other:?}"),
        }
    }
}

fn pipelined() -> CallOptions {
    CallOptions::new()
        .chunksize(1)
        .timeout(Duration::from_millis(500))
}

// A stack overflow (the worker's last words go on the socket, unannounced, with answers before
// it in the ring) ends only its own task: the calls sent behind it never started and must run
// again (task 101 used to fail with the worker's SIGSEGV, before the rings too).
#[test]
fn a_stack_overflow_amid_pipelined_calls_fails_only_its_task() {
    only_task_100_fails("overflow", |pool| {
        pool.with(&pipelined())
            .imap(overflow_at_100, 0..400u64)
            .collect()
    });
}

// A time limit amid pipelined ring calls ends only its own task; the calls behind it run again.
#[test]
fn a_time_limit_amid_pipelined_calls_fails_only_its_task() {
    only_task_100_fails("time limit", |pool| {
        pool.with(&pipelined())
            .imap(slow_at_100, 0..400u64)
            .collect()
    });
}

// Callbacks of many quick apply_async calls on rings: each runs exactly once, with its own
// value, and none is lost while the driver and the worker sleep and spin in turn.
#[test]
fn callbacks_of_quick_calls_run_once_each() {
    use std::sync::Mutex;
    let pool = Pool::new(2).unwrap();
    let seen = Arc::new(Mutex::new(vec![0u32; 3000]));
    let results: Vec<_> = (0..3000u64)
        .map(|x| {
            let result = pool.apply_async(double, (x,));
            let seen = seen.clone();
            result.add_done_callback(move |r| {
                assert_eq!(*r.as_ref().unwrap(), 2 * x);
                seen.lock().unwrap()[x as usize] += 1;
            });
            if x % 97 == 0 {
                std::thread::sleep(Duration::from_millis(3));
            }
            result
        })
        .collect();
    for (x, result) in results.into_iter().enumerate() {
        assert_eq!(
            must("a result", move || result.get()).unwrap(),
            2 * x as u64
        );
    }
    // Callbacks run on the pool's callback thread: bounded wait for the last ones.
    let start = std::time::Instant::now();
    while seen.lock().unwrap().contains(&0) && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let seen = seen.lock().unwrap();
    let wrong: Vec<_> = seen.iter().enumerate().filter(|(_, n)| **n != 1).collect();
    assert!(
        wrong.is_empty(),
        "callbacks that did not run exactly once: {wrong:?}"
    );
}

#[process_fn]
fn log_and_double(x: u64) -> u64 {
    log::info!("ring-review log {x};");
    x * 2
}

#[process_fn]
fn logs_before_results_alone() {
    let captured = mp_support::Captured::default();
    env_logger::Builder::new()
        .parse_filters("info")
        .target(env_logger::Target::Pipe(Box::new(captured.clone())))
        .init();
    let pool = Arc::new(Pool::new(2).unwrap());
    let mut late = Vec::new();
    for x in 0..400u64 {
        let value = must("a logging call", {
            let pool = pool.clone();
            move || pool.apply(log_and_double, (x,))
        });
        assert_eq!(value.unwrap(), 2 * x);
        if !captured.text().contains(&format!("ring-review log {x};")) {
            late.push(x);
        }
    }
    assert!(
        late.is_empty(),
        "{} of 400 results came before what their task logged: {:?}",
        late.len(),
        &late[..late.len().min(20)]
    );
}

// What a task logs is passed on before its result is delivered (tests/it/logging), also when
// the result comes through the ring, taken by a spinning parent at once.
#[test]
fn what_a_task_logs_comes_before_its_result_through_the_ring() {
    crate::in_child(logs_before_results_alone);
}

/// Finds this worker's rings file (a descriptor, or else its mapping's file under
/// /proc/self/map_files) and tries to shrink it to nothing, then to grow it; returns what
/// each attempt came to.
#[process_fn]
fn shrink_the_rings(_: ()) -> (String, String) {
    use std::os::fd::AsRawFd;
    let by_fd = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .find(|entry| {
            std::fs::read_link(entry.path())
                .is_ok_and(|to| to.to_string_lossy().contains("mp-rings"))
        })
        .map(|entry| entry.path());
    let by_map = || {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let line = maps
            .lines()
            .find(|line| line.contains("mp-rings"))?
            .to_string();
        let range = line.split_whitespace().next()?.to_string();
        Some(std::path::PathBuf::from(format!(
            "/proc/self/map_files/{range}"
        )))
    };
    let Some(path) = by_fd.or_else(by_map) else {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let memfds: Vec<&str> = maps.lines().filter(|l| l.contains("memfd")).collect();
        return (
            format!("no path; memfd mappings: {memfds:?}"),
            String::new(),
        );
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
    {
        Ok(file) => file,
        Err(error) => return (format!("open {path:?}: {error}"), String::new()),
    };
    let attempt = |len: i64| {
        // SAFETY: plain system call on a descriptor this task owns.
        let rc = unsafe { libc::ftruncate(file.as_raw_fd(), len) };
        if rc == 0 {
            "done".to_string()
        } else {
            std::io::Error::last_os_error().to_string()
        }
    };
    let shrink = attempt(0);
    let grow = attempt(1 << 30);
    (shrink, grow)
}

#[process_fn]
fn shrunk_rings_alone() {
    let pool = Arc::new(Pool::new(1).unwrap());
    assert_eq!(pool.apply(double, (1,)).unwrap(), 2);
    let outcome = must("a task that shrinks its rings", {
        let pool = pool.clone();
        move || pool.apply(shrink_the_rings, ((),))
    });
    eprintln!("shrink, grow: {outcome:?}");
    // The parent must be alive (a shrunk file under its mapping would fault its reads) and
    // the pool go on.
    let after = must("calls after", {
        let pool = pool.clone();
        move || pool.map(double, 0..100u64)
    });
    let after = after.or_else(|_| pool.map(double, 0..100u64));
    assert_eq!(after.unwrap(), (0..100).map(|x| 2 * x).collect::<Vec<_>>());
    if let Ok((shrink, _)) = &outcome {
        assert_ne!(shrink, "done", "a worker shrank its rings' file");
    }
}

// A task cannot shrink its rings' file under the parent's mapping (the size is sealed): the
// parent never faults, and the pool goes on.
#[test]
fn a_task_cannot_shrink_its_rings_under_the_parent() {
    crate::in_child(shrunk_rings_alone);
}

/// Stops its worker; a thread of the parent's test continues it.
#[process_fn]
fn stop_then_double(x: u64) -> u64 {
    // SAFETY: plain system call on this process.
    unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
    x * 2
}

#[process_fn]
fn stopped_and_continued_alone() {
    let pool = Arc::new(Pool::new(1).unwrap());
    assert_eq!(pool.apply(double, (1,)).unwrap(), 2);
    for round in 0..20u64 {
        let result = pool.apply_async(stop_then_double, (round,));
        // Continue the worker once it has stopped (bounded), whenever that is.
        let start = std::time::Instant::now();
        loop {
            let stopped = children().into_iter().any(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                    stat.rsplit_once(')')
                        .is_some_and(|(_, s)| s.trim_start().starts_with('T'))
                })
            });
            if stopped || start.elapsed() > Duration::from_secs(10) {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(round % 5));
        for pid in children() {
            // SAFETY: plain system call on a worker of this process.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
        let value = must("a continued task", move || result.get());
        assert_eq!(value.unwrap(), 2 * round, "round {round}");
    }
}

// A worker stopped in its task and continued later: its answer is delivered (the doorbell
// rings for the parent asleep by then), every time.
#[test]
fn a_stopped_and_continued_worker_delivers_its_answer() {
    crate::in_child(stopped_and_continued_alone);
}

#[process_fn]
fn rings_in_a_child_process_alone() {
    let pool = Pool::new(2).unwrap();
    let got = pool
        .with(&CallOptions::new().chunksize(1))
        .map(maps_rings, 0..200u64)
        .unwrap();
    let without = got.iter().filter(|(_, rings)| !rings).count();
    let own: Vec<String> = std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("memfd"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        without, 0,
        "{without} of 200 tasks ran in a worker without rings, in a pool made in a child \
         process (as `crate::in_child` runs the ring chaos test); the parent's memfd mappings: {own:?}"
    );
}

// A pool made in a process that mp started (`crate::in_child`, where the suite's ring chaos
// test runs) shares rings with its workers, as one made in `main` does.
#[test]
fn a_pool_in_a_child_process_uses_rings() {
    crate::in_child(rings_in_a_child_process_alone);
}

#[process_fn]
fn slow_double(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(300));
    x * 2
}

#[process_fn]
fn forked_copy_of_a_ring_parent_alone() {
    let pool = Pool::new(1).unwrap();
    assert_eq!(pool.apply(double, (1,)).unwrap(), 2);
    // A call in flight in the rings as the program forks.
    let pending = pool.apply_async(slow_double, (21,));
    std::thread::sleep(Duration::from_millis(50));
    // SAFETY: the copy only makes mp calls (which must fail at once), drops the pool, and
    // `_exit`s; the original reaps it with a bound.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let apply = pool.apply(double, (5,));
            let map = pool
                .with(&CallOptions::new().chunksize(1))
                .map(double, 0..50u64);
            drop(pool);
            i32::from(apply.is_ok()) + 2 * i32::from(map.is_ok())
        }))
        .unwrap_or(9);
        // SAFETY: ends the copy at once.
        unsafe { libc::_exit(code) };
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut status = 0;
    loop {
        // SAFETY: plain system call on our own child.
        let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if reaped == pid {
            break;
        }
        if std::time::Instant::now() >= deadline {
            // SAFETY: plain system calls on our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the forked copy hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "in the copy a call on the original's pool did not fail at once (status {status:#x}: \
         1 = apply succeeded, 2 = map succeeded, 9 = panicked)"
    );
    // The original: its call in flight is answered, and nothing the copy did reached its
    // worker's rings (no extra call run, no answer shifted).
    assert_eq!(
        must("the call in flight", move || pending.get()).unwrap(),
        42
    );
    let got = pool
        .with(&CallOptions::new().chunksize(1))
        .map(double, 0..500u64)
        .unwrap();
    assert_eq!(got, (0..500).map(|x| 2 * x).collect::<Vec<_>>());
}

// A program that forks while its pool's rings are mapped (a call in flight): in the copy every
// call fails at once and writes nothing into the shared rings; the original goes on unharmed.
#[test]
fn a_forked_copy_of_the_parent_leaves_the_rings_alone() {
    crate::in_child(forked_copy_of_a_ring_parent_alone);
}

// Cancelling calls that sit in a worker's rings, in flight behind others or running, while a
// stream of quick calls goes through the same workers: each cancelled call ends cancelled (or
// with its value, if it finished first), every other call gets its own value, once.
#[test]
fn cancels_amid_ring_traffic_end_only_the_cancelled_calls() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let pool2 = pool.clone();
    must("cancels amid traffic", move || {
        let mut results = Vec::new();
        for x in 0..600u64 {
            let result = if x % 50 == 7 {
                pool2.apply_async(slow_double, (x,))
            } else {
                pool2.apply_async(double, (x,))
            };
            results.push((x, result));
        }
        // Some slow calls are running by now, others are in the rings behind them.
        std::thread::sleep(Duration::from_millis(20));
        for (x, result) in &results {
            if x % 50 == 7 || x % 97 == 3 {
                result.cancel();
            }
        }
        for (x, result) in results {
            match result.get() {
                Ok(value) => assert_eq!(value, 2 * x, "call {x} got another's answer"),
                Err(error) if x % 50 == 7 || x % 97 == 3 => {
                    assert!(error.is_cancelled(), "call {x}: {error}")
                }
                Err(error) => panic!("call {x}, not cancelled, failed: {error}"),
            }
        }
    });
    let got = pool.map(double, 0..100u64).unwrap();
    assert_eq!(got, (0..100).map(|x| 2 * x).collect::<Vec<_>>());
}

#[process_fn]
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[process_fn]
fn waiting_parent_uses_no_cpu_alone() {
    let pools: Vec<Pool> = (0..2).map(|_| Pool::new(8).unwrap()).collect();
    for pool in &pools {
        // Warm: every worker has its rings and has answered quickly (hot links spin).
        pool.with(&CallOptions::new().chunksize(1))
            .map(double, 0..2000u64)
            .unwrap();
    }
    // Then every worker sleeps in a task while the parent's drivers and a caller wait.
    let pending: Vec<_> = pools
        .iter()
        .map(|pool| {
            pool.with(&CallOptions::new().chunksize(1))
                .map_async(sleep_ms, vec![1500u64; 8])
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let me = std::process::id();
    let before = cpu_ticks(me);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(me) - before;
    for result in pending {
        assert_eq!(result.get().unwrap(), vec![1500u64; 8]);
    }
    eprintln!("parent waiting on 16 busy workers for 1 s: {used} ticks");
    assert!(
        used <= 3,
        "the parent used {used} ticks in 1 s waiting on 16 sleeping tasks"
    );
}

// A parent waiting on 16 workers that all sleep in their tasks uses no CPU: no driver spins
// past its first 50 µs.
#[test]
fn a_parent_waiting_on_busy_workers_uses_no_cpu() {
    crate::in_child(waiting_parent_uses_no_cpu_alone);
}

/// Streams 50 000 tiny calls through a pool of 2 while a thread stops a random worker for up to
/// 2 ms, over and over: a stop can land anywhere in the rings' protocol (between "I sleep" and
/// the look at `tail`, between a publish and the look at `sleeps`, in a spin).
#[process_fn]
fn stops_everywhere_alone() {
    use std::sync::atomic::AtomicBool;
    let pool = Pool::new(2).unwrap();
    let done = AtomicBool::new(false);
    let (results, stops) = std::thread::scope(|scope| {
        let stopper = scope.spawn(|| {
            let mut seed = 0x1234_5678_9abc_def1u64;
            let mut stops = 0;
            while !done.load(Ordering::SeqCst) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let victims = children();
                if let Some(&pid) = victims.get(seed as usize % victims.len().max(1)) {
                    // SAFETY: plain system calls on a worker of this process.
                    unsafe { libc::kill(pid, libc::SIGSTOP) };
                    std::thread::sleep(Duration::from_micros(seed % 2000));
                    // SAFETY: as above.
                    unsafe { libc::kill(pid, libc::SIGCONT) };
                    stops += 1;
                }
                std::thread::sleep(Duration::from_micros(300));
            }
            stops
        });
        let results: Vec<_> = pool
            .with(&CallOptions::new().chunksize(1))
            .imap(double, 0..50_000u64)
            .collect();
        done.store(true, Ordering::SeqCst);
        (results, stopper.join().unwrap())
    });
    eprintln!("{stops} stops");
    assert_eq!(results.len(), 50_000);
    for (x, result) in results.into_iter().enumerate() {
        assert_eq!(result.unwrap(), 2 * x as u64, "task {x}");
    }
}

// Workers stopped and continued at random points of the protocol, thousands of times: no
// wake-up is lost (the map ends; a lost one hangs it), no answer lost or wrong.
#[test]
fn workers_stopped_anywhere_in_the_protocol_lose_no_wake_up() {
    let mut child = mp_runtime::Process::start(stops_everywhere_alone, ()).unwrap();
    child.join_timeout(Duration::from_secs(60)).unwrap();
}

/// Streams 50 000 tiny calls through a pool of 2 with no stops: run in a process that the test
/// stops and continues at random, so that the parent's drivers stop anywhere too.
#[process_fn]
fn a_stream_of_calls_alone() {
    let pool = Pool::new(2).unwrap();
    let results: Vec<_> = pool
        .with(&CallOptions::new().chunksize(1))
        .imap(double, 0..50_000u64)
        .collect();
    for (x, result) in results.into_iter().enumerate() {
        assert_eq!(result.unwrap(), 2 * x as u64, "task {x}");
    }
}

// The parent itself stopped and continued at random points, thousands of times, while its
// workers answer: no wake-up is lost on either side.
#[test]
fn a_parent_stopped_anywhere_in_the_protocol_loses_no_wake_up() {
    let mut child = mp_runtime::Process::start(a_stream_of_calls_alone, ()).unwrap();
    let pid = child.pid() as i32;
    let mut seed = 0x0fed_cba9_8765_4321u64;
    let start = std::time::Instant::now();
    while child.is_alive() && start.elapsed() < Duration::from_secs(60) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // SAFETY: plain system calls on our own child, alive (not reaped) here.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        std::thread::sleep(Duration::from_micros(seed % 1500));
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        std::thread::sleep(Duration::from_micros(400));
    }
    // SAFETY: as above: never left stopped.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let joined = child.join_timeout(Duration::from_secs(10));
    assert!(
        joined.is_ok(),
        "the stream under stops did not end in 60 s: {joined:?}"
    );
}

/// Its argument's bytes summed, and as many bytes back as it was given, reversed.
#[process_fn]
fn echo_sum(bytes: Vec<u8>) -> (u64, Vec<u8>) {
    let sum = bytes.iter().map(|&b| u64::from(b)).sum();
    (sum, bytes.into_iter().rev().collect())
}

// Calls and answers of every size around the rings' limits (records that fit, records that
// leave less than the markers' reserve, chunks larger than a ring, memfd values), in chunks of
// several sizes: each arrives whole, in order.
#[test]
fn sizes_around_the_rings_limits_arrive_whole_and_in_order() {
    const CAPACITY: usize = 256 << 10;
    let sizes: Vec<usize> = [0, 1, 7, 8, 9, 4000, 65_536, CAPACITY / 2, CAPACITY - 2200]
        .into_iter()
        .chain([
            CAPACITY - 2100,
            CAPACITY - 8,
            CAPACITY,
            CAPACITY + 8,
            1 << 20,
        ])
        .collect();
    let pool = Arc::new(Pool::new(2).unwrap());
    for chunksize in [1, 3, 16] {
        let inputs: Vec<Vec<u8>> = (0..42)
            .map(|i| {
                let len = sizes[i % sizes.len()];
                (0..len).map(|j| (i * 31 + j) as u8).collect()
            })
            .collect();
        let expected: Vec<(u64, Vec<u8>)> = inputs
            .iter()
            .map(|b| {
                (
                    b.iter().map(|&x| u64::from(x)).sum(),
                    b.iter().rev().copied().collect(),
                )
            })
            .collect();
        let got = must("a map of every size", {
            let pool = pool.clone();
            move || {
                pool.with(&CallOptions::new().chunksize(chunksize))
                    .map(echo_sum, inputs)
            }
        })
        .unwrap();
        assert!(
            got == expected,
            "chunksize {chunksize}: a value came back wrong"
        );
    }
}

/// At `x` = 5, publishes a ring of empty records (as [`Forge::ARingOfEmptyRecords`]) and
/// wakes the parent; otherwise doubles `x`.
#[process_fn]
fn forge_at_5(x: u64) -> u64 {
    if x == 5 {
        let tail = word(ANSWERS_TAIL).load(Ordering::SeqCst);
        write_answer_bytes(tail, &vec![0; CAPACITY]);
        word(ANSWERS_TAIL).store(tail + CAPACITY as u64, Ordering::SeqCst);
        ring_parent();
    }
    x * 2
}

// The same forgery amid pipelined calls (one worker, many calls in flight): the forger's own
// call may fail; no other call may get a wrong value, and at most the calls in flight with it
// may fail.
#[test]
fn forged_empty_records_amid_pipelined_calls_fail_only_the_calls_in_flight() {
    let pool = Arc::new(Pool::new(1).unwrap());
    let results: Vec<_> = must("an imap with a forger", {
        let pool = pool.clone();
        move || {
            pool.with(&CallOptions::new().chunksize(1))
                .imap(forge_at_5, 0..3000u64)
                .collect()
        }
    });
    let wrong: Vec<_> = results
        .iter()
        .enumerate()
        .filter(|(x, r)| matches!(r, Ok(v) if *v != 2 * *x as u64))
        .map(|(x, r)| (x, r.as_ref().ok().copied()))
        .collect();
    let failed: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_err())
        .map(|(x, _)| x)
        .collect();
    eprintln!(
        "{} failed ({:?}..), {} wrong",
        failed.len(),
        failed.first(),
        wrong.len()
    );
    assert!(wrong.is_empty(), "calls got another's value: {wrong:?}");
    assert!(
        failed.len() <= 64,
        "{} calls failed for one forger: {:?}...",
        failed.len(),
        &failed[..failed.len().min(10)]
    );
}

/// Publishes a marker (a message announced on the socket) that no frame follows, wakes the
/// parent so that it takes it, and returns 5: the parent then waits for a frame that never
/// comes, while the worker idles.
#[process_fn]
fn forge_a_marker(_: ()) -> u64 {
    let tail = word(ANSWERS_TAIL).load(Ordering::SeqCst);
    write_answer_bytes(tail, &(1u64 << 32).to_le_bytes());
    word(ANSWERS_TAIL).store(tail + 8, Ordering::SeqCst);
    ring_parent();
    5
}

// A forged marker is the forger's own delay: with a time limit the task fails by it (the
// parent's wait for the announced frame still watches the deadline), and without one,
// terminate still ends the pool and the call.
#[test]
fn a_forged_marker_is_held_to_the_time_limit_and_to_terminate() {
    let pool = Arc::new(Pool::new(1).unwrap());
    let limited = CallOptions::new().timeout(Duration::from_millis(500));
    let outcome = must("a forged marker under a time limit", {
        let pool = pool.clone();
        move || pool.with(&limited).apply(forge_a_marker, ((),))
    });
    assert!(outcome.is_err(), "{outcome:?}");
    let after = must("the call after", {
        let pool = pool.clone();
        move || pool.apply(double, (4,))
    });
    assert_eq!(after.unwrap(), 8);
    let unlimited = pool.apply_async(forge_a_marker, ((),));
    std::thread::sleep(Duration::from_millis(300));
    must("terminate", {
        let pool = pool.clone();
        move || pool.terminate()
    });
    let outcome = must("the forged marker's call after terminate", move || {
        unlimited.get()
    });
    assert!(outcome.is_err(), "{outcome:?}");
}
