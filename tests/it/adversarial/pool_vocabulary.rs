//! The pool's newer vocabulary, attacked: `Pool::resize`, `pool_map!`'s shared pool taking a new
//! size, `PoolBuilder::env`, the depth limit, `max_memory_growth`, cancelling maps, and `wait`.
//! Each test attacks one claim of the README or the rustdoc; every wait is bounded, so a hang
//! shows as a failure.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mp_runtime::{CallOptions, Pool, StartMethod, pool_map, process_fn};
use mp_support::{is_running, wait_for};

const LONG: Duration = Duration::from_secs(60);

#[process_fn]
fn pid_after(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

#[process_fn]
fn quick_pid(_: u64) -> u32 {
    std::process::id()
}

#[process_fn]
fn square(x: u64) -> u64 {
    x * x
}

/// Sleeps 20 s in the initializer when `marker` exists: a worker started after the marker is
/// made is slow to start.
#[process_fn]
fn slow_start_if(marker: PathBuf) {
    if marker.exists() {
        std::thread::sleep(Duration::from_secs(20));
    }
}

/// Appends a line to `log` each time a worker starts.
#[process_fn]
fn count_start(log: PathBuf) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    writeln!(file, "{}", std::process::id()).unwrap();
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mp-review20-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

/// A pool of one whose next workers (after `marker` is made) take 20 s to start, and a thread
/// growing it to 2: returns once the new worker is in its initializer.
fn growing_slowly<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    pool: &'scope Pool,
    marker: &Path,
) -> std::thread::ScopedJoinHandle<'scope, mp_runtime::Result<()>> {
    let before = pool.map(pid_after, [0]).unwrap()[0];
    std::fs::write(marker, "").unwrap();
    let grow = scope.spawn(move || pool.resize(2));
    // The new worker is a child of this process, beside the first.
    let started = wait_for(LONG, || {
        mp_runtime::active_children()
            .iter()
            .any(|child| child.pid() != before && child.name().contains("PoolWorker"))
    });
    assert!(started, "the resize started no worker");
    std::thread::sleep(Duration::from_millis(300));
    grow
}

/// `join_timeout` promises a bounded wait, also while a grow waits for its new workers to start
/// (their initializer): a grow must not hold the list of driver threads that `join_timeout`
/// looks at while it waits.
#[test]
fn join_timeout_stays_bounded_while_a_resize_waits_for_a_slow_initializer() {
    let dir = scratch("join-timeout");
    let marker = dir.join("slow");
    let pool = Pool::builder()
        .processes(1)
        .initializer(slow_start_if, (marker.clone(),))
        .build()
        .unwrap();
    std::thread::scope(|scope| {
        let grow = growing_slowly(scope, &pool, &marker);
        pool.close();
        let asked = Instant::now();
        let joined = pool.join_timeout(Duration::from_millis(100));
        let took = asked.elapsed();
        // Let the grow end now, whatever happened.
        pool.terminate();
        let _ = grow.join();
        assert!(
            took < Duration::from_secs(10),
            "join_timeout(100 ms) took {took:?} (it returned {joined:?}): it waited for a \
             resize's new worker to run its initializer"
        );
    });
}

/// A grow that a `terminate` interrupts: the new worker is killed in its initializer, and the
/// resize says the pool was terminated, not that the initializer failed.
#[test]
fn a_resize_interrupted_by_terminate_says_the_pool_was_terminated() {
    let dir = scratch("terminate-grow");
    let marker = dir.join("slow");
    let pool = Pool::builder()
        .processes(1)
        .initializer(slow_start_if, (marker.clone(),))
        .build()
        .unwrap();
    std::thread::scope(|scope| {
        let grow = growing_slowly(scope, &pool, &marker);
        pool.terminate();
        let error = grow.join().unwrap().unwrap_err();
        assert!(
            error.is_closed(),
            "a resize interrupted by terminate() failed with: {error}"
        );
    });
    pool.join_timeout(LONG).unwrap();
}

/// "busy ones [exit] as they finish their current task": also a busy driver whose quick tasks
/// would keep its worker's pipeline full without ever going idle.
#[test]
fn a_shrink_takes_effect_under_a_steady_stream_of_quick_tasks() {
    let pool = Pool::new(2).unwrap();
    let mut stream = pool.imap(quick_pid, 0..);
    let mut before = HashSet::new();
    let warmed = wait_for(LONG, || {
        before.extend((&mut stream).take(500).map(Result::unwrap));
        before.len() == 2
    });
    assert!(warmed, "two workers never both served: {before:?}");
    pool.resize(1).unwrap();
    let asked = Instant::now();
    let mut after = HashSet::new();
    let mut taken = 0;
    let left = wait_for(Duration::from_secs(20), || {
        after.extend((&mut stream).take(200).map(Result::unwrap));
        taken += 200;
        before.iter().any(|&pid| !is_running(pid))
    });
    assert!(
        left,
        "resize(1) left both workers {before:?} serving for {:?} ({taken} more tasks, run by \
         {after:?}): a busy worker does not leave while quick tasks keep coming",
        asked.elapsed()
    );
}

/// The shared pool is the process's own: in a child.
#[test]
fn pool_map_with_zero_processes_neither_blames_resize_nor_ends_the_shared_pool() {
    crate::in_child(pool_map_zero);
}

#[process_fn]
fn pool_map_zero() {
    let alone = pool_map!(square, [3], processes = 0)
        .unwrap_err()
        .to_string();
    let two: HashSet<u32> = pool_map!(pid_after, [200, 200], processes = 2)
        .unwrap()
        .into_iter()
        .collect();
    let error = pool_map!(square, [3], processes = 0)
        .unwrap_err()
        .to_string();
    let problems = [
        (
            error.contains("resize"),
            "names `resize`, which the caller never called",
        ),
        (error != alone, "differs from the error with no shared pool"),
    ];
    let again: HashSet<u32> = pool_map!(pid_after, [200, 200], processes = 2)
        .unwrap()
        .into_iter()
        .collect();
    let killed = two.is_disjoint(&again);
    let found: Vec<&str> = (problems.iter())
        .filter(|(problem, _)| *problem)
        .map(|(_, what)| *what)
        .chain(killed.then_some("ended the shared pool's workers"))
        .collect();
    assert!(
        found.is_empty(),
        "pool_map!(.., processes = 0) after a shared pool of 2: {found:?}; its error: \
         {error:?}; with no shared pool: {alone:?}"
    );
}

/// Concurrent `pool_map!` calls of different sizes from several threads, with the idle
/// retirer racing them: every result right, nothing hangs, and the workers all go at the end.
#[test]
fn concurrent_pool_maps_of_different_sizes_race_the_retirer() {
    crate::in_child(concurrent_pool_maps);
}

#[process_fn]
fn concurrent_pool_maps() {
    mp_runtime::set_shared_pool_idle_timeout(Duration::from_millis(1));
    let (done, finished) = mpsc::channel();
    for thread in 0..4u64 {
        let done = done.clone();
        std::thread::spawn(move || {
            for round in 0..15u64 {
                let size = ((thread + round) % 4 + 1) as usize;
                let inputs: Vec<u64> = (0..50).map(|x| x + round).collect();
                let got = pool_map!(square, &inputs, processes = size).unwrap();
                let want: Vec<u64> = inputs.iter().map(|x| x * x).collect();
                assert_eq!(got, want);
            }
            done.send(()).unwrap();
        });
    }
    for _ in 0..4 {
        finished
            .recv_timeout(Duration::from_secs(300))
            .expect("a thread's pool_map! calls hung or panicked");
    }
    assert!(
        wait_for(LONG, || mp_runtime::active_children().is_empty()),
        "the shared pools' workers outlived the idle timeout: {:?}",
        mp_runtime::active_children()
    );
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Many resizes from several threads while maps run: the last size holds, every map is right,
/// and neither worker processes nor threads are left over.
#[test]
fn concurrent_resizes_during_maps_leave_no_workers_or_threads_behind() {
    crate::in_child(concurrent_resizes);
}

#[process_fn]
fn concurrent_resizes() {
    let pool = Arc::new(Pool::new(2).unwrap());
    assert_eq!(pool.map(square, 0..4).unwrap(), [0, 1, 4, 9]);
    let base_threads = threads();
    let (done, finished) = mpsc::channel();
    for thread in 0..3usize {
        let (pool, done) = (pool.clone(), done.clone());
        std::thread::spawn(move || {
            for round in 0..20usize {
                pool.resize((thread * 7 + round * 3) % 4 + 1).unwrap();
                let got = pool.map(square, 0..20u64).unwrap();
                assert_eq!(got[19], 361);
            }
            done.send(()).unwrap();
        });
    }
    for _ in 0..3 {
        finished
            .recv_timeout(Duration::from_secs(300))
            .expect("a thread's resizes or maps hung or panicked");
    }
    pool.resize(2).unwrap();
    assert_eq!(pool.processes(), 2);
    assert_eq!(pool.map(square, 0..3).unwrap(), [0, 1, 4]);
    assert!(
        wait_for(LONG, || mp_runtime::active_children().len() == 2),
        "a pool resized back to 2 has workers {:?}",
        mp_runtime::active_children()
    );
    assert!(
        wait_for(LONG, || threads() <= base_threads),
        "{} threads after the resizes, {base_threads} before",
        threads()
    );
    pool.close();
    pool.join_timeout(LONG).unwrap();
}

/// A callback may grow and shrink the pool that runs it.
#[test]
fn a_callback_resizes_its_own_pool() {
    let pool = Arc::new(Pool::new(1).unwrap());
    let (tx, rx) = mpsc::channel();
    let result = pool.apply_async(square, (3,));
    let inner = pool.clone();
    result.add_done_callback(move |_| {
        let grown = inner.resize(3).map(|()| inner.processes());
        let shrunk = inner.resize(1).map(|()| inner.processes());
        tx.send((grown, shrunk)).unwrap();
    });
    let (grown, shrunk) = rx.recv_timeout(LONG).expect("the callback's resize hung");
    assert_eq!(grown.unwrap(), 3);
    assert_eq!(shrunk.unwrap(), 1);
    assert_eq!(result.get_timeout(LONG).unwrap(), 9);
    assert_eq!(pool.map(square, 0..5).unwrap(), [0, 1, 4, 9, 16]);
}

/// A driver told to leave whose worker was retired (max_tasks_per_child) or died leaves without
/// starting a replacement: a shrink runs the pool's initializer in no worker that would never
/// take a task.
#[test]
fn a_shrink_starts_no_worker_just_to_retire_it() {
    let dir = scratch("shrink-starts");
    let log = dir.join("starts");
    let pool = Pool::builder()
        .processes(3)
        .max_tasks_per_child(1)
        .initializer(count_start, (log.clone(),))
        .build()
        .unwrap();
    assert_eq!(lines(&log), 3);
    let busy = pool.map_async(pid_after, [800, 800, 800]);
    std::thread::sleep(Duration::from_millis(300));
    pool.resize(1).unwrap();
    busy.get_timeout(LONG).unwrap();
    // The one that stays replaces its worker (max_tasks_per_child = 1): one start more.
    assert_eq!(pool.map(pid_after, [0]).unwrap().len(), 1);
    pool.close();
    pool.join_timeout(LONG).unwrap();
    let starts = lines(&log);
    assert!(
        starts <= 5,
        "the pool's initializer ran {starts} times: 3 workers at the start, 1 replacement for \
         the one that stays and 1 for its next task; the 2 that left were replaced first"
    );
}

/// A pool whose new workers cannot start (the initializer fails from now on): the grow says
/// why, the pool keeps the size it had, and still works.
#[test]
fn a_failed_grow_keeps_the_pool_as_it_was() {
    let dir = scratch("failed-grow");
    let marker = dir.join("fail");
    let pool = Pool::builder()
        .processes(1)
        .initializer(fail_if, (marker.clone(),))
        .build()
        .unwrap();
    std::fs::write(&marker, "").unwrap();
    let error = pool.resize(3).unwrap_err();
    assert!(error.to_string().contains("no more workers"), "{error}");
    assert_eq!(pool.processes(), 1);
    assert_eq!(pool.map(square, 0..4).unwrap(), [0, 1, 4, 9]);
    // Shrinking a pool of one to one, then growing again: still one, still failing.
    pool.resize(1).unwrap();
    assert!(pool.resize(2).is_err());
    assert_eq!(pool.processes(), 1);
    assert_eq!(pool.apply(square, (5,)).unwrap(), 25);
}

#[process_fn]
fn fail_if(marker: PathBuf) {
    assert!(!marker.exists(), "no more workers");
}

/// A shrink of a pool whose busy tasks then time out: they fail with their time limit, no
/// other task is lost, and the pool ends at the new size.
#[test]
fn a_shrink_beside_tasks_over_their_time_limit() {
    let pool = Pool::builder()
        .processes(3)
        .task_timeout(Duration::from_millis(500))
        .retries(2)
        .build()
        .unwrap();
    let slow = pool.map_async(pid_after, [60_000, 60_000]);
    let quick = pool.map_async(pid_after, vec![10; 30]);
    std::thread::sleep(Duration::from_millis(100));
    pool.resize(1).unwrap();
    let error = slow.get_timeout(LONG).unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert_eq!(quick.get_timeout(LONG).unwrap().len(), 30);
    let after: HashSet<u32> = pool
        .map(pid_after, vec![100; 3])
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(after.len(), 1, "a pool shrunk to 1 ran on {after:?}");
}

#[process_fn]
fn var_bytes(name: Vec<u8>) -> Option<Vec<u8>> {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    std::env::var_os(std::ffi::OsStr::from_bytes(&name)).map(OsStringExt::into_vec)
}

/// Names and values that are not UTF-8, many variables, PATH replaced: each reaches the
/// workers as given, under both start methods.
#[test]
fn odd_variables_reach_the_workers_under_both_start_methods() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let mut builder = Pool::builder()
            .processes(1)
            .start_method(method)
            .env(
                OsStr::from_bytes(b"MP_R20_\xff\xfe"),
                OsStr::from_bytes(b"v\xc3\x28\n x"),
            )
            .env("PATH", "/nonexistent")
            .env("MP_R20_EMPTY", "");
        for i in 0..300 {
            builder = builder.env(format!("MP_R20_MANY_{i}"), format!("{i}"));
        }
        let pool = builder.build().unwrap();
        let names: Vec<Vec<u8>> = vec![
            b"MP_R20_\xff\xfe".to_vec(),
            b"PATH".to_vec(),
            b"MP_R20_EMPTY".to_vec(),
            b"MP_R20_MANY_299".to_vec(),
        ];
        let got = pool.map(var_bytes, names).unwrap();
        assert_eq!(
            got,
            [
                Some(b"v\xc3\x28\n x".to_vec()),
                Some(b"/nonexistent".to_vec()),
                Some(Vec::new()),
                Some(b"299".to_vec()),
            ],
            "{method:?}"
        );
    }
}

/// A value too large for a new program: the Spawn pool fails to build with the reason; a
/// ForkServer pool either gives it to its workers or fails the same way.
#[test]
fn a_huge_variable_is_given_or_refused_with_the_reason() {
    let huge = "x".repeat(256 << 10);
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let built = Pool::builder()
            .processes(1)
            .start_method(method)
            .env("MP_R20_HUGE", &huge)
            .build();
        match built {
            Ok(pool) => {
                let got = pool.apply(var_bytes, (b"MP_R20_HUGE".to_vec(),)).unwrap();
                assert_eq!(got.map(|v| v.len()), Some(huge.len()), "{method:?}");
            }
            Err(error) => {
                assert!(
                    error.to_string().contains("environment"),
                    "{method:?}: {error}"
                );
            }
        }
    }
}

/// Builds a pool (of the given start method) whose worker runs this again, `levels` times.
#[process_fn]
fn nest_with(levels: u32, fork_server: bool) -> Result<u32, String> {
    if levels == 0 {
        return Ok(0);
    }
    let method = if fork_server {
        StartMethod::ForkServer
    } else {
        StartMethod::Spawn
    };
    let pool = Pool::builder()
        .processes(1)
        .start_method(method)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(1 + pool
        .apply(nest_with, (levels - 1, fork_server))
        .map_err(|e| e.to_string())??)
}

/// Fork-server pools nest no deeper than re-executed ones.
#[test]
fn the_depth_limit_bounds_fork_server_pools_too() {
    let pool = Pool::builder()
        .processes(1)
        .start_method(StartMethod::ForkServer)
        .env("MP_MAX_DEPTH", "3")
        .build()
        .unwrap();
    assert_eq!(pool.apply(nest_with, (2, true)).unwrap(), Ok(2));
    let error = pool.apply(nest_with, (5, true)).unwrap().unwrap_err();
    assert!(error.contains("MP_MAX_DEPTH=3"), "{error}");
}

#[process_fn]
fn try_pool() -> Result<(), String> {
    Pool::new(1).map(drop).map_err(|e| e.to_string())
}

/// Odd values of MP_MAX_DEPTH: whitespace is trimmed; a negative or too large number is
/// refused, and the error should not call a number "not a number".
#[test]
fn odd_depth_limits_get_errors_that_fit_them() {
    let outcome = |value: &str| {
        let pool = Pool::builder()
            .processes(1)
            .env("MP_MAX_DEPTH", value)
            .build()
            .unwrap();
        pool.apply(try_pool, ()).unwrap()
    };
    assert_eq!(outcome(" 3\n"), Ok(()));
    let one = outcome("1").unwrap_err();
    assert!(
        one.contains("1 levels below") || one.contains("1 level below"),
        "{one}"
    );
    let mut wrong = Vec::new();
    for value in ["-1", "99999999999999999999999"] {
        let error = outcome(value).unwrap_err();
        if error.contains("is not a number") {
            wrong.push(format!("{value}: {error}"));
        }
    }
    assert!(wrong.is_empty(), "numbers called not numbers: {wrong:#?}");
}

/// Leaks `kib` KiB (touched) and says which worker ran it.
#[process_fn]
fn leak_kib(kib: usize) -> u32 {
    std::mem::forget(vec![1u8; kib << 10]);
    std::process::id()
}

/// Quick leaking tasks, pipelined: workers are replaced as they grow, and no task fails.
#[test]
fn the_leak_guard_replaces_pipelined_quick_workers_without_failing_a_task() {
    let pool = Pool::builder()
        .processes(2)
        .max_memory_growth(4 << 20)
        .build()
        .unwrap();
    let results: Vec<u32> = pool
        .with(&CallOptions::new().chunksize(1))
        .imap(leak_kib, vec![64usize; 3000])
        .map(|result| result.expect("a task failed under the leak guard"))
        .collect();
    assert_eq!(results.len(), 3000);
    let workers: HashSet<u32> = results.into_iter().collect();
    // 3000 x 64 KiB = 187 MiB leaked, 4 MiB allowed per worker: many workers.
    assert!(workers.len() > 4, "only {} workers ran them", workers.len());
}

/// A limit of 0 replaces a worker at its first measured growth; nothing fails, nothing hangs.
#[test]
fn a_leak_guard_of_zero_fails_nothing() {
    let pool = Pool::builder()
        .processes(2)
        .max_memory_growth(0)
        .build()
        .unwrap();
    for _ in 0..5 {
        let got = pool.map(leak_kib, vec![256usize; 40]).unwrap();
        assert_eq!(got.len(), 40);
        std::thread::sleep(Duration::from_millis(120));
    }
    let huge = Pool::builder()
        .processes(1)
        .max_memory_growth(u64::MAX)
        .build()
        .unwrap();
    let first = huge.apply(leak_kib, (0,)).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(huge.apply(leak_kib, (1 << 16,)).unwrap(), first);
    assert_eq!(huge.apply(leak_kib, (0,)).unwrap(), first);
}

#[process_fn]
fn nap_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// A map_async cancelled from a callback of another result, twice, then dropped; another
/// call sharing the workers loses nothing, and the pool serves on.
#[test]
fn cancel_from_a_callback_twice_then_drop() {
    let pool = Pool::new(3).unwrap();
    let trigger = pool.apply_async(nap_ms, (200,));
    let other = pool.map_async(nap_ms, vec![300; 6]);
    let doomed = Arc::new(pool.map_async(nap_ms, vec![3_600_000; 4]));
    let (tx, rx) = mpsc::channel();
    let inner = doomed.clone();
    trigger.add_done_callback(move |_| {
        tx.send((inner.cancel(), inner.cancel())).unwrap();
    });
    let (first, second) = rx.recv_timeout(LONG).expect("the callback never ran");
    assert!(first && !second, "cancel, cancel: {first} {second}");
    assert!(doomed.get_timeout(LONG).unwrap_err().is_cancelled());
    drop(doomed);
    assert_eq!(other.get_timeout(LONG).unwrap(), vec![300; 6]);
    assert_eq!(pool.map(nap_ms, vec![1; 6]).unwrap(), vec![1; 6]);
}

/// `IMap::cancel` during a resize in another thread: no hang, the pool serves at its new size.
#[test]
fn imap_cancel_during_a_resize() {
    let pool = Pool::new(2).unwrap();
    std::thread::scope(|scope| {
        let mut naps = pool.imap_unordered(nap_ms, [1, 3_600_000, 3_600_000, 3_600_000]);
        assert_eq!(naps.next().unwrap().unwrap(), 1);
        let resizing = scope.spawn(|| {
            for size in [4, 1, 3, 2] {
                pool.resize(size).unwrap();
            }
        });
        naps.cancel();
        naps.cancel();
        assert!(naps.next().is_none());
        assert!(
            naps.next_timeout(Duration::from_millis(10))
                .unwrap()
                .is_none()
        );
        drop(naps);
        resizing.join().unwrap();
    });
    assert_eq!(pool.processes(), 2);
    assert_eq!(pool.map(nap_ms, vec![1; 4]).unwrap(), vec![1; 4]);
}

/// `wait` over results of one type returns those very objects.
#[test]
fn wait_returns_the_ready_objects_themselves() {
    let pool = Pool::new(2).unwrap();
    let results = [
        pool.apply_async(nap_ms, (60_000,)),
        pool.apply_async(nap_ms, (1,)),
    ];
    let ready = mp_runtime::wait(&results, LONG);
    assert_eq!(ready.len(), 1);
    assert!(std::ptr::eq(ready[0], &results[1]));
    let none: [&mp_runtime::AsyncResult<u64>; 0] = [];
    assert!(mp_runtime::wait(none, Duration::from_millis(10)).is_empty());
    results[0].cancel();
}

/// Under a map whose quick tasks fill the queue ahead (a map_async of many one-item chunks), a
/// busy driver could keep its worker's pipeline full from the queue without ever going idle:
/// then no driver would take a leave until the queue ran dry. A worker leaves after the tasks
/// it has.
#[test]
fn a_shrink_takes_effect_under_a_queued_map_of_quick_tasks() {
    let pool = Pool::new(2).unwrap();
    let before: HashSet<u32> = pool
        .map(pid_after, [300, 300])
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(before.len(), 2);
    let total = 400_000;
    let map = pool
        .with(&CallOptions::new().chunksize(1))
        .map_async(quick_pid, 0..total as u64);
    assert!(wait_for(LONG, || map.progress().0 >= 2_000));
    pool.resize(1).unwrap();
    let at_resize = map.progress().0;
    let left = wait_for(Duration::from_secs(120), || {
        map.ready() || before.iter().any(|&pid| !is_running(pid))
    });
    let done_when_one_left = map.progress().0;
    // The rest is not needed: the suite need not wait for it.
    map.cancel();
    assert!(
        left && done_when_one_left < total,
        "after resize(1) (at {at_resize} of {total} tasks done) both workers {before:?} served \
         until {done_when_one_left} were done"
    );
}

#[process_fn]
fn imap_cancel_in_a_forked_copy() {
    let pool = Pool::new(2).unwrap();
    let mut naps = pool.imap_unordered(nap_ms, [1, 3_600_000, 3_600_000]);
    assert_eq!(naps.next().unwrap().unwrap(), 1);
    let workers: Vec<u32> = mp_runtime::active_children()
        .iter()
        .map(|child| child.pid())
        .collect();
    assert_eq!(workers.len(), 2);
    // SAFETY: the copy only calls mp (which refuses the original's handles) and `_exit`s.
    let copy = unsafe { libc::fork() };
    assert!(copy >= 0);
    if copy == 0 {
        naps.cancel();
        let ended = naps.next().is_none();
        let refused = pool.resize(3).is_err_and(|e| e.is_foreign_process());
        // SAFETY: ends the copy at once.
        unsafe { libc::_exit(if ended && refused { 0 } else { 1 }) };
    }
    let mut status = 0;
    let reaped = wait_for(LONG, || {
        // SAFETY: waits for our own child, without blocking.
        unsafe { libc::waitpid(copy, &mut status, libc::WNOHANG) == copy }
    });
    if !reaped {
        // SAFETY: our own child, not reaped yet.
        unsafe { libc::kill(copy, libc::SIGKILL) };
        panic!("the forked copy hung in IMap::cancel or resize");
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the copy: status {status:#x}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        workers.iter().all(|&pid| is_running(pid)),
        "a cancel in a forked copy killed the original's workers"
    );
    naps.cancel();
    assert!(wait_for(LONG, || workers
        .iter()
        .all(|&pid| !is_running(pid))));
    assert_eq!(pool.map(nap_ms, [1, 2]).unwrap(), [1, 2]);
}

/// `IMap::cancel` in a forked copy ends the copy's iterator only; the original's workers run on.
#[test]
fn imap_cancel_in_a_forked_copy_leaves_the_originals_workers() {
    crate::in_child(imap_cancel_in_a_forked_copy);
}

/// A worker whose leak came in a task less than 100 ms after it was last measured is measured
/// again as it goes idle: it does not sit idle with the leaked memory until some later task.
#[test]
fn a_worker_that_leaked_is_not_left_idle_with_the_leak() {
    let pool = Pool::builder()
        .processes(1)
        .max_memory_growth(8 << 20)
        .build()
        .unwrap();
    let first = pool.apply(leak_kib, (0,)).unwrap(); // measured: its base size
    let leaker = pool.apply(leak_kib, (48 << 10,)).unwrap(); // 48 MiB, at once after
    assert_eq!(leaker, first);
    let replaced = wait_for(Duration::from_secs(5), || !is_running(leaker));
    assert!(
        replaced,
        "the worker {leaker} grew by 48 MiB (limit 8 MiB) and still sits idle with it"
    );
}
