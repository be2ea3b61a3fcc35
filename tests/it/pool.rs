//! The pool: Python's API, and what happens when tasks panic or workers die.

use std::collections::HashSet;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use mp_runtime::{CallOptions, Pool, pool_map, process_fn};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const LONG: Duration = Duration::from_secs(60);

#[process_fn]
fn cube(n: u64) -> u64 {
    n * n * n
}

#[process_fn]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[process_fn]
fn sleep_then(ms: u64, value: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    value
}

#[process_fn]
fn sleep_for(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[process_fn]
fn pid_of(_: u64) -> u32 {
    std::process::id()
}

#[process_fn]
fn panic_on(bad: u64, x: u64) -> u64 {
    assert_ne!(x, bad, "input {x} is bad");
    x
}

/// Python raises on `chunksize=0`; so does mp, with a usage error that says what to give.
#[test]
fn a_chunk_size_of_zero_is_refused() {
    let pool = Pool::new(2).unwrap();
    let zero = CallOptions::new().chunksize(0);
    let err = pool.with(&zero).map(cube, 0..9).unwrap_err();
    assert!(err.is_usage(), "{err}");
    assert!(
        err.to_string().contains("give `chunksize` 1 or more"),
        "{err}"
    );
    let streamed: Vec<_> = pool.with(&zero).imap(cube, 0..9).collect();
    assert_eq!(streamed.len(), 1);
    assert!(streamed[0].as_ref().unwrap_err().is_usage());
}

fn cubes(range: std::ops::Range<u64>) -> Vec<u64> {
    range.map(|n| n * n * n).collect()
}

#[test]
fn map_keeps_input_order_for_every_chunk_size() {
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.map(cube, 0..50).unwrap(), cubes(0..50));
    for chunksize in [1, 3, 50, 1000] {
        assert_eq!(
            pool.with(&CallOptions::new().chunksize(chunksize))
                .map(cube, 0..50)
                .unwrap(),
            cubes(0..50)
        );
    }
    assert_eq!(
        pool.map(cube, Vec::<u64>::new()).unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(pool.map_async(cube, 0..10).get().unwrap(), cubes(0..10));
    assert_eq!(
        pool.with(&CallOptions::new().chunksize(4))
            .map_async(cube, 0..10)
            .get()
            .unwrap(),
        cubes(0..10)
    );
}

#[test]
fn a_million_tiny_tasks() {
    let pool = Pool::new(2).unwrap();
    let out = pool.map(cube, 0..1_000_000).unwrap();
    assert_eq!(out.len(), 1_000_000);
    assert_eq!(out[999_999], 999_999 * 999_999 * 999_999);
    assert_eq!(
        out.iter().take(1000).copied().collect::<Vec<_>>(),
        cubes(0..1000)
    );
}

#[test]
fn starmap_and_apply() {
    let pool = Pool::new(2).unwrap();
    assert_eq!(
        pool.starmap(add, vec![(1, 2), (3, 4), (-5, 5)]).unwrap(),
        vec![3, 7, 0]
    );
    assert_eq!(
        pool.starmap_async(add, vec![(1, 1)]).get().unwrap(),
        vec![2]
    );
    assert_eq!(
        pool.starmap(add, Vec::<(i64, i64)>::new()).unwrap(),
        Vec::<i64>::new()
    );
    assert_eq!(pool.apply(add, (20, 22)).unwrap(), 42);
    let pending: Vec<_> = (0..10).map(|i| pool.apply_async(add, (i, i))).collect();
    let sums: Vec<i64> = pending.into_iter().map(|r| r.get().unwrap()).collect();
    assert_eq!(sums, (0..10).map(|i| 2 * i).collect::<Vec<_>>());
}

#[test]
fn imap_is_ordered_and_imap_unordered_is_complete() {
    let pool = Pool::new(2).unwrap();
    let ordered: Vec<u64> = pool.imap(cube, 0..100).map(Result::unwrap).collect();
    assert_eq!(ordered, cubes(0..100));
    let chunked: Vec<u64> = pool
        .with(&CallOptions::new().chunksize(7))
        .imap(cube, 0..100)
        .map(Result::unwrap)
        .collect();
    assert_eq!(chunked, cubes(0..100));
    let mut unordered: Vec<u64> = pool
        .imap_unordered(cube, 0..100)
        .map(Result::unwrap)
        .collect();
    unordered.sort();
    assert_eq!(unordered, cubes(0..100));
    let mut unordered: Vec<u64> = pool
        .with(&CallOptions::new().chunksize(1000))
        .imap_unordered(cube, 0..100)
        .map(Result::unwrap)
        .collect();
    unordered.sort();
    assert_eq!(unordered, cubes(0..100));
    assert_eq!(pool.imap(cube, 0..0).count(), 0);
}

#[test]
fn imap_unordered_yields_in_completion_order() {
    let pool = Pool::new(2).unwrap();
    // The first input is slow, the second fast: the fast one must come first.
    let inputs = vec![(400, 1), (0, 2)];
    let order: Vec<u64> = pool
        .imap_unordered(identity_after, inputs)
        .map(Result::unwrap)
        .collect();
    assert_eq!(order, vec![2, 1]);
}

#[process_fn]
fn identity_after(input: (u64, u64)) -> u64 {
    std::thread::sleep(Duration::from_millis(input.0));
    input.1
}

#[test]
fn imap_reads_an_endless_input_lazily() {
    let pool = Pool::new(2).unwrap();
    let mut results = pool.imap(cube, 0..);
    for batch in 0..3u64 {
        let got: Vec<u64> = results.by_ref().take(100).map(Result::unwrap).collect();
        assert_eq!(got, cubes(batch * 100..(batch + 1) * 100));
    }
}

#[test]
fn imap_streams_results_before_the_input_is_done() {
    let pool = Pool::new(2).unwrap();
    let started = Instant::now();
    let mut results = pool.imap(sleep_then_value, 0..20);
    // The first result needs one task, not twenty.
    assert_eq!(results.next().unwrap().unwrap(), 0);
    let first = started.elapsed();
    assert_eq!(results.map(Result::unwrap).count(), 19);
    assert!(
        first < started.elapsed(),
        "the first result came with the last"
    );
}

#[process_fn]
fn sleep_then_value(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(50));
    x
}

static STATE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

#[process_fn]
fn set_state(value: String) {
    STATE.set(value).unwrap();
}

#[process_fn]
fn read_state(_: u64) -> String {
    STATE.get().cloned().unwrap_or_default()
}

#[process_fn]
fn failing_initializer() {
    panic!("no database");
}

#[test]
fn the_initializer_runs_in_each_worker_before_tasks() {
    let pool = Pool::builder()
        .processes(2)
        .initializer(set_state, ("ready".to_string(),))
        .build()
        .unwrap();
    let states = pool
        .with(&CallOptions::new().chunksize(1))
        .map(read_state, 0..8)
        .unwrap();
    assert!(states.iter().all(|s| s == "ready"), "{states:?}");
}

#[test]
fn a_failing_initializer_fails_the_build_without_looping() {
    let err = Pool::builder()
        .processes(2)
        .initializer(failing_initializer, ())
        .build()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("initializer") && text.contains("no database"),
        "{text}"
    );
    // The user's panic, as `PoolBuilder::initializer` promises: not a protocol error.
    assert!(err.is_panic(), "{err:?}");
    assert_eq!(err.panic_message(), Some("no database"));
    let location = err.panic_location().expect("the panic's location");
    assert!(location.file().ends_with("pool.rs"), "{location:?}");
}

#[test]
fn max_tasks_per_child_rotates_workers() {
    let pool = Pool::builder()
        .processes(1)
        .max_tasks_per_child(2)
        .build()
        .unwrap();
    let pids = pool
        .with(&CallOptions::new().chunksize(1))
        .map(pid_of, 0..6)
        .unwrap();
    assert_eq!(pids[0], pids[1]);
    assert_eq!(pids[2], pids[3]);
    assert_eq!(pids[4], pids[5]);
    let distinct: HashSet<u32> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "{pids:?}");
}

/// Leaks `mib` MiB, touched so that it is resident, then naps `ms`; its worker's pid.
#[process_fn]
fn leak(mib: usize, ms: u64) -> u32 {
    std::mem::forget(vec![1u8; mib << 20]);
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

#[test]
fn a_worker_whose_memory_grows_past_the_limit_is_replaced_and_no_task_fails() {
    let pool = Pool::builder()
        .processes(1)
        .max_memory_growth(32 << 20)
        .build()
        .unwrap();
    // Measured after the first task; one that grows less than the limit stays.
    let first = pool.apply(leak, (0, 150)).unwrap();
    assert_eq!(pool.apply(leak, (8, 150)).unwrap(), first);
    assert_eq!(pool.apply(leak, (8, 150)).unwrap(), first);
    // 16 + 48 MiB above its first size: retired after this task, which does not fail.
    assert_eq!(pool.apply(leak, (48, 150)).unwrap(), first);
    let second = pool.apply(leak, (0, 0)).unwrap();
    assert_ne!(second, first);
    assert!(
        mp_support::wait_for(LONG, || !mp_support::is_running(first)),
        "the leaking worker still runs"
    );
    // Quick tasks that leak, many to a worker in flight: each is answered, and workers turn over.
    let pids = pool.starmap(leak, vec![(8, 10); 40]).unwrap();
    let distinct: HashSet<u32> = pids.iter().copied().collect();
    assert!(distinct.len() >= 2, "{distinct:?}");
    assert_eq!(pids.len(), 40);
}

#[test]
fn a_worker_that_does_not_grow_is_kept() {
    let pool = Pool::builder()
        .processes(1)
        .max_memory_growth(64 << 20)
        .build()
        .unwrap();
    let pids: HashSet<u32> = (0..8).map(|_| pool.apply(leak, (0, 60)).unwrap()).collect();
    assert_eq!(pids.len(), 1);
}

#[test]
fn a_panicking_task_fails_its_map_and_the_pool_goes_on() {
    let pool = Pool::new(2).unwrap();
    let err = pool.starmap(panic_on, (0..20).map(|x| (7, x))).unwrap_err();
    assert!(err.is_panic(), "{err}");
    assert_eq!(
        err.panic_message(),
        Some("assertion `left != right` failed: input 7 is bad\n  left: 7\n right: 7")
    );
    assert_eq!(pool.map(cube, 0..10).unwrap(), cubes(0..10));
    // In imap, only the failing item is an error.
    let results: Vec<_> = pool.imap(panic_on_five, 0..8).collect();
    assert!(results[5].as_ref().unwrap_err().is_panic());
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 7);
}

#[process_fn]
fn panic_on_five(x: u64) -> u64 {
    if x == 5 {
        panic!("five");
    }
    x
}

#[process_fn]
fn die(how: String) -> u64 {
    match how.as_str() {
        "abort" => std::process::abort(),
        "exit" => std::process::exit(9),
        // SAFETY: deliberately crash with a signal, as a buggy native library would.
        "segv" => unsafe {
            libc::raise(libc::SIGSEGV);
            unreachable!()
        },
        // SAFETY: plain system call: the worker kills itself.
        "kill" => unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
            unreachable!()
        },
        _ => 1,
    }
}

#[test]
fn a_dying_worker_fails_only_its_task() {
    let pool = Pool::new(2).unwrap();
    for (how, check) in [
        ("abort", "signal 6"),
        ("exit", "exited with code 9"),
        ("segv", "signal 11"),
        ("kill", "signal 9"),
    ] {
        let pending: Vec<_> = (0..6)
            .map(|i| pool.apply_async(die, (if i == 2 { how } else { "live" }.to_string(),)))
            .collect();
        let results: Vec<_> = pending.into_iter().map(|r| r.get()).collect();
        for (i, result) in results.iter().enumerate() {
            if i == 2 {
                let err = result.as_ref().unwrap_err();
                assert!(err.is_died(), "{how}: {err}");
                assert!(err.to_string().contains(check), "{how}: {err}");
            } else {
                assert_eq!(result.as_ref().unwrap(), &1, "{how}: task {i}");
            }
        }
    }
    assert_eq!(pool.map(cube, 0..10).unwrap(), cubes(0..10));
}

#[process_fn]
fn report_pid_then_die(pids: mp_runtime::Queue<u32>) -> u64 {
    pids.put(&std::process::id()).unwrap();
    // SAFETY: plain system call: the worker kills itself.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!()
}

// pebble's `ProcessExpired.pid`: the error names the worker that died, by its pid.
#[test]
fn a_dead_workers_error_carries_its_pid() {
    let pool = Pool::new(2).unwrap();
    let pids = mp_runtime::Queue::new().unwrap();
    let err = pool
        .apply(report_pid_then_die, (pids.clone(),))
        .unwrap_err();
    let pid = pids.get_timeout(LONG).unwrap();
    assert!(err.is_died(), "{err}");
    assert_eq!(err.signal(), Some(libc::SIGKILL), "{err}");
    assert_eq!(err.pid(), Some(pid), "{err}");
    assert!(err.to_string().contains(&format!("process {pid}")), "{err}");
    // Errors of other kinds have none.
    assert_eq!(pool.apply(panic_on_five, (5,)).unwrap_err().pid(), None);
}

// The same for a worker killed because its task ran past its time limit.
#[test]
fn a_timed_out_tasks_error_carries_its_killed_workers_pid() {
    let pool = Pool::new(1).unwrap();
    let worker = pool.apply(pid_of, (0,)).unwrap();
    let err = pool
        .with(&CallOptions::new().timeout(Duration::from_millis(200)))
        .apply(sleep_for, (120_000,))
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(err.pid(), Some(worker), "{err}");
    assert!(
        err.to_string().contains(&format!("worker {worker}")),
        "{err}"
    );
    assert!(
        mp_support::wait_for(LONG, || !mp_support::is_running(worker)),
        "the worker was killed and reaped"
    );
    assert_ne!(pool.apply(pid_of, (0,)).unwrap(), worker, "it was replaced");
}

#[test]
fn a_worker_killed_from_outside_mid_map_fails_the_map_and_the_pool_recovers() {
    let pool = Pool::new(1).unwrap();
    let victim = pool.apply(pid_of, (0,)).unwrap();
    let pending = pool
        .with(&CallOptions::new().chunksize(1))
        .map_async(sleep_for, (0..8).map(|_| 300));
    std::thread::sleep(Duration::from_millis(100));
    // Kill the busy worker from outside, as the OOM killer would.
    // SAFETY: plain system call on a child of this process.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let started = Instant::now();
    let err = pending.get().unwrap_err();
    assert!(err.is_died(), "{err}");
    assert_eq!(err.signal(), Some(libc::SIGKILL));
    assert!(started.elapsed() < LONG);
    assert_eq!(pool.map(cube, 0..10).unwrap(), cubes(0..10));
}

#[test]
fn every_task_runs_once_when_workers_die() {
    let pool = Pool::new(2).unwrap();
    // Every third task kills its worker; the others must each run exactly once.
    let results: Vec<_> = pool.imap(die_every_third, 0..30).collect::<Vec<_>>();
    for (i, result) in results.iter().enumerate() {
        if i % 3 == 0 {
            assert!(result.as_ref().unwrap_err().is_died(), "task {i}");
        } else {
            assert_eq!(*result.as_ref().unwrap(), i as u64, "task {i}");
        }
    }
}

#[process_fn]
fn die_every_third(x: u64) -> u64 {
    if x % 3 == 0 {
        std::process::abort();
    }
    x
}

#[test]
fn cancel_a_queued_and_a_running_task() {
    let pool = Pool::new(1).unwrap();
    let running = pool.apply_async(sleep_then, (60_000, 1));
    let queued = pool.apply_async(sleep_then, (0, 2));
    let after = pool.apply_async(sleep_then, (0, 3));
    assert!(queued.cancel());
    // Wait until the long task is surely running, then cancel it: its worker is killed.
    std::thread::sleep(Duration::from_millis(200));
    assert!(running.cancel());
    assert!(running.get().unwrap_err().is_cancelled());
    assert!(queued.get().unwrap_err().is_cancelled());
    // A fresh worker takes over; the task behind runs once.
    assert_eq!(after.get_timeout(LONG).unwrap(), 3);
    assert!(!after.cancel(), "a finished task cannot be cancelled");
}

#[test]
fn get_timeout_leaves_the_task_running() {
    let pool = Pool::new(1).unwrap();
    let result = pool.apply_async(sleep_then, (300, 5));
    let err = result.get_timeout(Duration::from_millis(10)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(!result.ready());
    assert!(result.wait_timeout(LONG));
    assert!(result.ready() && result.successful());
    assert_eq!(result.get_timeout(LONG).unwrap(), 5);
}

/// The smallest executor: polls on the current thread, parks until woken.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park_timeout(Duration::from_secs(1)),
        }
    }
}

#[test]
fn async_results_can_be_awaited() {
    let pool = Pool::new(2).unwrap();
    let sum = block_on(async {
        let a = pool.apply_async(sleep_then, (100, 20)).await.unwrap();
        let b = pool.map_async(cube, vec![2]).await.unwrap();
        a + b[0]
    });
    assert_eq!(sum, 28);
}

#[test]
fn eight_threads_share_one_pool() {
    let pool = Pool::new(2).unwrap();
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let pool = &pool;
            scope.spawn(move || {
                for round in 0..5 {
                    let start = t * 1000 + round * 10;
                    assert_eq!(
                        pool.map(cube, start..start + 10).unwrap(),
                        cubes(start..start + 10)
                    );
                }
            });
        }
    });
}

// Python's `join()` has no timeout; `join_timeout` bounds it, and can be called again.
#[test]
fn join_timeout_waits_at_most_its_timeout_and_can_be_called_again() {
    let pool = Pool::new(2).unwrap();
    assert!(
        pool.join_timeout(LONG).unwrap_err().is_usage(),
        "still open"
    );
    let pending = pool.apply_async(sleep_then, (3_000, 1));
    let worker = pool.apply(pid_of, (0,)).unwrap();
    pool.close();
    let started = Instant::now();
    let err = pool.join_timeout(Duration::from_millis(100)).unwrap_err();
    let waited = started.elapsed();
    assert!(err.is_timeout(), "{err}");
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_millis(2_500),
        "{waited:?}"
    );
    pool.join_timeout(LONG).unwrap();
    assert_eq!(pending.get().unwrap(), 1);
    assert!(!mp_support::is_running(worker), "the workers were reaped");
    // Again, once joined: at once.
    pool.join_timeout(Duration::ZERO).unwrap();

    // After terminate, a stuck task's worker is killed: the join is quick.
    let pool = Pool::new(1).unwrap();
    let stuck = pool.apply_async(sleep_then, (60_000, 1));
    std::thread::sleep(Duration::from_millis(100));
    pool.terminate();
    pool.join_timeout(LONG).unwrap();
    assert!(stuck.get().unwrap_err().is_closed());
}

static TERMINATED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_sigterm(_: libc::c_int) {
    TERMINATED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Handles SIGTERM (`handle`: by noting it; else by ignoring it), says it is ready, then waits
/// (bounded) for the signal; returns 7 once it came.
#[process_fn]
fn until_sigterm(ready: mp_runtime::Queue<()>, handle: bool) -> u64 {
    let handler = if handle {
        on_sigterm as extern "C" fn(libc::c_int) as libc::sighandler_t
    } else {
        libc::SIG_IGN
    };
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    let previous = unsafe { libc::signal(libc::SIGTERM, handler) };
    assert_ne!(previous, libc::SIG_ERR);
    ready.put(&()).unwrap();
    let deadline = Instant::now() + LONG;
    while !TERMINATED.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if TERMINATED.load(std::sync::atomic::Ordering::SeqCst) {
        7
    } else {
        0
    }
}

// Python 3.14's `terminate_workers()`: SIGTERM to every worker; the pool ends as after
// `terminate`, but a task that handles the signal gives its result.
#[test]
fn terminate_workers_sends_sigterm_and_ends_the_pool() {
    let pool = Pool::new(2).unwrap();
    let ready = mp_runtime::Queue::new().unwrap();
    let handles = pool.apply_async(until_sigterm, (ready.clone(), true));
    ready.get_timeout(LONG).unwrap();
    let default = pool.apply_async(sleep_then, (60_000, 1));
    let queued = pool.apply_async(sleep_then, (0, 2));
    std::thread::sleep(Duration::from_millis(200));
    pool.terminate_workers();
    pool.join_timeout(LONG).unwrap();
    assert_eq!(handles.get().unwrap(), 7);
    assert!(default.get().unwrap_err().is_closed());
    assert!(queued.get().unwrap_err().is_closed());
    assert!(
        pool.map(cube, 0..3).unwrap_err().is_closed(),
        "no more work"
    );
}

// A task that ignores SIGTERM keeps its worker: `join_timeout` says so, `kill_workers` ends it.
#[test]
fn kill_workers_ends_a_worker_that_ignored_terminate_workers() {
    let pool = Pool::new(1).unwrap();
    let ready = mp_runtime::Queue::new().unwrap();
    let ignores = pool.apply_async(until_sigterm, (ready.clone(), false));
    ready.get_timeout(LONG).unwrap();
    pool.terminate_workers();
    let err = pool.join_timeout(Duration::from_millis(300)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(!ignores.ready());
    pool.kill_workers();
    pool.join_timeout(LONG).unwrap();
    assert!(ignores.get().unwrap_err().is_closed());
}

#[test]
fn a_closed_or_terminated_pool_says_so() {
    let pool = Pool::new(1).unwrap();
    let pending = pool.apply_async(sleep_then, (100, 1));
    pool.close();
    assert!(pool.map(cube, 0..3).unwrap_err().is_closed());
    assert!(pool.apply_async(cube, (1,)).get().unwrap_err().is_closed());
    pool.join().unwrap();
    assert_eq!(pending.get().unwrap(), 1);

    let pool = Pool::new(1).unwrap();
    let stuck = pool.apply_async(sleep_then, (60_000, 1));
    let queued = pool.apply_async(sleep_then, (0, 2));
    std::thread::sleep(Duration::from_millis(100));
    pool.terminate();
    pool.join().unwrap();
    assert!(stuck.get().unwrap_err().is_closed());
    assert!(queued.get().unwrap_err().is_closed());
    assert!(
        pool.imap(cube, 0..3)
            .next()
            .unwrap()
            .unwrap_err()
            .is_closed()
    );
}

#[test]
fn dropping_a_pool_reaps_its_workers() {
    let pool = Pool::new(2).unwrap();
    let pids: HashSet<u32> = pool
        .with(&CallOptions::new().chunksize(1))
        .map(pid_of, 0..20)
        .unwrap()
        .into_iter()
        .collect();
    drop(pool);
    for pid in pids {
        assert!(
            !mp_support::is_running(pid),
            "worker {pid} outlived its pool"
        );
        assert!(!mp_support::zombie_children().contains(&pid));
    }
}

/// Encodes only values below 100: stands for a result that cannot be sent back.
#[derive(Debug)]
struct Picky(u64);

impl Serialize for Picky {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 >= 100 {
            return Err(serde::ser::Error::custom("too big to send"));
        }
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Picky {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        u64::deserialize(deserializer).map(Picky)
    }
}

#[process_fn]
fn picky(x: u64) -> Picky {
    Picky(x)
}

#[test]
fn a_result_that_cannot_be_encoded_fails_only_its_task() {
    let pool = Pool::new(1).unwrap();
    let results: Vec<_> = pool.imap(picky, [1, 500, 2]).collect();
    assert_eq!(results[0].as_ref().unwrap().0, 1);
    let err = results[1].as_ref().unwrap_err();
    assert!(
        err.is_codec() && err.to_string().contains("too big to send"),
        "{err}"
    );
    assert_eq!(results[2].as_ref().unwrap().0, 2);
}

fn plain(x: u64) -> u64 {
    x
}

#[test]
fn an_unregistered_function_is_an_error_not_a_hang() {
    let pool = Pool::new(1).unwrap();
    assert!(pool.map(plain, 0..3).unwrap_err().is_not_registered());
    assert!(
        pool.imap(plain, 0..3)
            .next()
            .unwrap()
            .unwrap_err()
            .is_not_registered()
    );
    assert!(pool.apply(plain, (1,)).unwrap_err().is_not_registered());
}

#[test]
fn pool_map_inside_a_test_reuses_its_pool() {
    assert_eq!(pool_map!(cube, vec![3, 4, 5]).unwrap(), vec![27, 64, 125]);
    // Fresh pools would give at least one new pid per map: three maps, three or more pids.
    let mut pids = HashSet::new();
    for _ in 0..3 {
        pids.extend(pool_map!(pid_of, 0..40, processes = 2).unwrap());
    }
    assert!(
        pids.len() <= 2,
        "three maps on a shared pool of 2 ran in {pids:?}"
    );
}

/// Decodes only values below 1000: stands for arguments the child cannot read.
#[derive(Debug, Serialize)]
struct Strict(u64);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = u64::deserialize(deserializer)?;
        if value >= 1000 {
            return Err(serde::de::Error::custom("value out of range"));
        }
        Ok(Strict(value))
    }
}

#[process_fn]
fn strict(x: Strict) -> u64 {
    x.0
}

#[test]
fn arguments_that_cannot_be_decoded_fail_only_their_task() {
    let pool = Pool::new(1).unwrap();
    let results: Vec<_> = pool
        .imap(strict, [Strict(1), Strict(5000), Strict(2)])
        .collect();
    assert_eq!(*results[0].as_ref().unwrap(), 1);
    let err = results[1].as_ref().unwrap_err();
    assert!(
        err.is_codec() && err.to_string().contains("value out of range"),
        "{err}"
    );
    assert_eq!(*results[2].as_ref().unwrap(), 2);
}

#[process_fn]
fn count_runs(marker_dir: std::path::PathBuf) -> u64 {
    // Each run leaves a file; every run dies, so the count is the number of attempts.
    let runs = std::fs::read_dir(&marker_dir).unwrap().count();
    std::fs::write(marker_dir.join(format!("run-{runs}")), b"").unwrap();
    std::process::abort();
}

#[test]
fn retries_run_a_task_again_when_its_worker_dies() {
    let dir = std::env::temp_dir().join(format!("mp-retries-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pool = Pool::builder().processes(1).retries(2).build().unwrap();
    let err = pool.apply(count_runs, (dir.clone(),)).unwrap_err();
    assert!(err.is_died(), "{err}");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        3,
        "one run and two retries"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[process_fn]
fn allocate_mib(mib: usize) -> usize {
    if mib >= 1024 {
        // Meant to fail: the allocator's last words (and, under RUST_BACKTRACE, a backtrace of
        // a hundred lines) would look like a crash in the test's output.
        silence_stderr();
    }
    let block = vec![1u8; mib << 20];
    block.iter().map(|&b| b as usize).sum::<usize>() >> 20
}

/// Points this process's standard error at /dev/null.
fn silence_stderr() {
    use std::os::fd::AsRawFd;
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .unwrap();
    // SAFETY: both descriptors are open; fd 2 is replaced in place, so every handle to standard
    // error stays valid and now writes to /dev/null.
    let replaced = unsafe { libc::dup2(null.as_raw_fd(), libc::STDERR_FILENO) };
    assert_eq!(replaced, libc::STDERR_FILENO);
}

#[test]
fn a_task_over_the_memory_limit_fails_alone() {
    for method in [
        mp_runtime::StartMethod::Spawn,
        mp_runtime::StartMethod::ForkServer,
    ] {
        let pool = Pool::builder()
            .processes(1)
            .memory_limit(200 << 20)
            .start_method(method)
            .build()
            .unwrap();
        assert_eq!(pool.apply(allocate_mib, (32,)).unwrap(), 32);
        let err = pool.apply(allocate_mib, (4096,)).unwrap_err();
        assert!(err.is_out_of_memory() && err.is_died(), "{method:?}: {err}");
        assert!(err.to_string().contains("memory limit of 200 MiB"), "{err}");
        assert_eq!(pool.apply(allocate_mib, (32,)).unwrap(), 32, "{method:?}");
    }
}

#[process_fn]
fn slow_pid(_: u32) -> u32 {
    std::thread::sleep(Duration::from_millis(150));
    std::process::id()
}

#[test]
fn slow_tasks_after_quick_ones_spread_over_every_worker() {
    let pool = Pool::new(4).unwrap();
    // Quick tasks teach the workers to take several at a time...
    for _ in 0..3 {
        pool.map(cube, 0..2000).unwrap();
    }
    // ...which slow tasks of another function must not inherit: each of the four idle workers
    // takes one of them, then one more when it is done (two each). A worker that took several
    // at once would run four or more while others idle.
    let mut per_worker = std::collections::HashMap::<u32, usize>::new();
    for pid in pool
        .with(&CallOptions::new().chunksize(1))
        .map(slow_pid, 0..8)
        .unwrap()
    {
        *per_worker.entry(pid).or_default() += 1;
    }
    assert_eq!(per_worker.len(), 4, "{per_worker:?}");
    assert!(per_worker.values().all(|&n| n <= 3), "{per_worker:?}");
}

// Per-task time limits (pebble's `schedule(timeout=)`): a stuck task fails alone, and its
// worker is replaced so the pool keeps its size.
#[test]
fn a_task_over_the_pools_time_limit_fails_alone_and_its_worker_is_replaced() {
    let limit = Duration::from_secs(2);
    let pool = Pool::builder()
        .processes(2)
        .task_timeout(limit)
        .build()
        .unwrap();
    // Slow tasks, so that each worker takes one.
    let workers =
        |pool: &Pool| -> HashSet<u32> { pool.map(slow_pid, 0..2).unwrap().into_iter().collect() };
    let before = workers(&pool);
    assert_eq!(before.len(), 2);
    let results: Vec<_> = pool.imap(sleep_for, [5, 120_000, 10, 15, 20]).collect();
    let err = results[1].as_ref().unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(err.to_string().contains("2s"), "the limit is named: {err}");
    assert!(err.to_string().contains("sleep_for"), "{err}");
    let others: Vec<u64> = [0, 2, 3, 4]
        .iter()
        .map(|&i| *results[i].as_ref().unwrap())
        .collect();
    assert_eq!(others, [5, 10, 15, 20]);
    // Maps within the limit run as before.
    assert_eq!(pool.map(sleep_for, vec![1; 50]).unwrap(), vec![1; 50]);
    let after = workers(&pool);
    assert_eq!(after.len(), 2);
    assert_eq!(
        before.intersection(&after).count(),
        1,
        "the worker that ran over was replaced, the other kept: {before:?} {after:?}"
    );
    // A chunk size asked for is taken as 1: the stuck input fails alone, not its chunk.
    let chunked: Vec<_> = pool
        .with(&CallOptions::new().chunksize(3))
        .imap(sleep_for, [1, 120_000, 2])
        .collect();
    assert!(chunked[1].as_ref().unwrap_err().is_timeout());
    assert_eq!(
        (chunked[0].as_ref().ok(), chunked[2].as_ref().ok()),
        (Some(&1), Some(&2))
    );
}

#[test]
fn a_per_call_time_limit_kills_only_its_task_and_not_those_queued_behind_it() {
    let pool = Pool::new(1).unwrap();
    // Quick tasks of the same function teach the worker to take several at a time, so the
    // quick calls below wait in the worker behind the stuck one: they must run again elsewhere.
    pool.map(sleep_for, vec![0; 200]).unwrap();
    let stuck = pool
        .with(&CallOptions::new().timeout(Duration::from_millis(300)))
        .apply_async(sleep_for, (120_000,));
    let quick: Vec<_> = (0..20).map(|_| pool.apply_async(sleep_for, (0,))).collect();
    let err = stuck.get_timeout(LONG).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(err.to_string().contains("300ms"), "{err}");
    for result in quick {
        assert_eq!(result.get_timeout(LONG).unwrap(), 0);
    }
    // The limit counts from when the call starts running, not from when it was queued.
    let ahead = pool.apply_async(sleep_for, (2_000,));
    let behind = pool
        .with(&CallOptions::new().timeout(Duration::from_millis(1_500)))
        .apply_async(sleep_for, (1,));
    assert_eq!(ahead.get_timeout(LONG).unwrap(), 2_000);
    assert_eq!(behind.get_timeout(LONG).unwrap(), 1);
    // A per-call limit overrides the pool's.
    let strict = Pool::builder()
        .processes(1)
        .task_timeout(Duration::from_millis(1))
        .build()
        .unwrap();
    assert_eq!(
        strict
            .with(&CallOptions::new().timeout(Duration::from_secs(30)))
            .apply(sleep_for, (50,))
            .unwrap(),
        50
    );
    assert!(strict.apply(sleep_for, (5_000,)).unwrap_err().is_timeout());
}

#[process_fn]
fn byte_sum(bytes: Vec<u8>) -> u64 {
    bytes.iter().map(|&b| u64::from(b)).sum()
}

#[process_fn]
fn shout(text: String) -> String {
    text.to_uppercase()
}

#[process_fn]
fn repeat(text: String, times: usize) -> String {
    text.repeat(times)
}

// Inputs by reference, as encoding needs only a reference: the caller keeps its data.
#[test]
fn inputs_may_be_borrowed() {
    let pool = Pool::new(2).unwrap();
    let blobs: Vec<Vec<u8>> = (0..10u8).map(|n| vec![n; 100]).collect();
    let sums: Vec<u64> = (0..10).map(|n| n * 100).collect();
    assert_eq!(pool.map(byte_sum, &blobs).unwrap(), sums);
    assert_eq!(pool.map(byte_sum, blobs.iter()).unwrap(), sums);
    assert_eq!(
        pool.with(&CallOptions::new().chunksize(3))
            .map(byte_sum, &blobs)
            .unwrap(),
        sums
    );
    assert_eq!(pool.map_async(byte_sum, &blobs).get().unwrap(), sums);
    let words: Vec<String> = ["ann", "bob"].map(String::from).to_vec();
    let streamed: Vec<String> = pool.imap(shout, &words).map(Result::unwrap).collect();
    assert_eq!(streamed, ["ANN", "BOB"]);
    let mut unordered: Vec<String> = pool
        .imap_unordered(shout, words.iter())
        .map(Result::unwrap)
        .collect();
    unordered.sort();
    assert_eq!(unordered, ["ANN", "BOB"]);
    let pairs = vec![("ab".to_string(), 2), ("c".to_string(), 3)];
    assert_eq!(pool.starmap(repeat, &pairs).unwrap(), ["abab", "ccc"]);
    assert_eq!(
        pool_map!(shout, &words, processes = 2).unwrap(),
        ["ANN", "BOB"]
    );
    // The inputs are still ours.
    assert_eq!(words.len() + blobs.len() + pairs.len(), 14);
}

// An `IMap` knows how many results are to come, and waits with a bound: a consumer can size
// its buffers and never hangs on a slow task.
#[test]
fn imap_has_an_exact_length_and_a_next_with_a_timeout() {
    let pool = Pool::new(2).unwrap();
    let inputs: Vec<u64> = (0..10).collect();
    let mut squares = pool
        .with(&CallOptions::new().chunksize(3))
        .imap(cube, &inputs);
    assert_eq!(squares.len(), 10);
    squares.next().unwrap().unwrap();
    assert_eq!(squares.len(), 9);
    assert_eq!(squares.by_ref().count(), 9);
    assert_eq!(squares.size_hint(), (0, Some(0)));
    let filtered = pool.imap_unordered(cube, (0..10).filter(|x| x % 2 == 0));
    assert_eq!(filtered.size_hint(), (0, Some(10)));
    assert_eq!(filtered.count(), 5);

    let mut naps = pool.imap(sleep_for, [400, 0]);
    let err = naps.next_timeout(Duration::from_millis(1)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(naps.len(), 2, "a timeout loses nothing");
    let got: Vec<u64> = std::iter::from_fn(|| naps.next_timeout(LONG).unwrap())
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, [400, 0]);
}

// Progress of a `map_async`, for a progress bar.
#[test]
fn map_async_reports_its_progress() {
    let pool = Pool::new(2).unwrap();
    let pending = pool
        .with(&CallOptions::new().chunksize(1))
        .map_async(sleep_for, vec![30; 12]);
    let deadline = Instant::now() + LONG;
    let mut last = 0;
    while !pending.ready() && Instant::now() < deadline {
        let (done, total) = pending.progress();
        assert_eq!(total, 12);
        assert!(done >= last && done <= total, "{done} after {last}");
        last = done;
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(pending.progress(), (12, 12));
    assert_eq!(pending.get().unwrap(), vec![30; 12]);
    assert_eq!(pool.apply_async(cube, (2,)).progress().1, 1);
}

// A limit too far to reach is no limit, not an overflow.
#[test]
fn timeouts_of_duration_max_wait_as_long_as_it_takes() {
    let pool = Pool::builder()
        .processes(1)
        .task_timeout(Duration::MAX)
        .build()
        .unwrap();
    assert_eq!(pool.apply(sleep_for, (5,)).unwrap(), 5);
    let pending = pool
        .with(&CallOptions::new().timeout(Duration::MAX))
        .apply_async(sleep_for, (5,));
    assert!(pending.wait_timeout(Duration::MAX));
    assert_eq!(pending.get_timeout(Duration::MAX).unwrap(), 5);
    let mut naps = pool.imap(sleep_for, [5]);
    assert_eq!(
        naps.next_timeout(Duration::MAX).unwrap().unwrap().unwrap(),
        5
    );
    let mut process = mp_runtime::spawn!(sleep_for, 5).unwrap();
    assert_eq!(process.join_timeout(Duration::MAX).unwrap(), 5);
}

// Attacks on join_timeout, terminate_workers, kill_workers and the pid of an error.

/// Runs `f` on a thread and fails the test if it does not end within `limit` (a hang).
fn bounded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).expect("hung")
}

// `join` takes the driver handles out under the lock and joins them outside it; a
// `join_timeout` racing with it then finds no handles and says the workers were reaped,
// while they still run.
#[test]
fn join_timeout_during_a_join_does_not_return_before_the_workers_exit() {
    let pool = Arc::new(Pool::new(1).unwrap());
    let worker = pool.apply(pid_of, (0,)).unwrap();
    let pending = pool.apply_async(sleep_then, (2_000, 1));
    pool.close();
    let joiner = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.join())
    };
    std::thread::sleep(Duration::from_millis(200));
    pool.join_timeout(LONG).unwrap();
    assert!(
        pending.ready(),
        "join_timeout returned Ok while the task still ran"
    );
    assert!(!mp_support::is_running(worker), "worker still running");
    joiner.join().unwrap().unwrap();
}

#[test]
fn join_timeout_zero_max_and_concurrent() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let pending = pool.apply_async(sleep_then, (500, 1));
    pool.close();
    assert!(pool.join_timeout(Duration::ZERO).unwrap_err().is_timeout());
    let other = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.join_timeout(LONG))
    };
    let p = pool.clone();
    bounded(LONG, move || p.join_timeout(Duration::MAX)).unwrap();
    other.join().unwrap().unwrap();
    assert_eq!(pending.get().unwrap(), 1);
    pool.join().unwrap();
    pool.join_timeout(Duration::ZERO).unwrap();
    pool.join_timeout(Duration::MAX).unwrap();
}

#[process_fn]
fn ignore_sigterm_then(ms: u64) -> u64 {
    // SAFETY: plain system call: the worker ignores SIGTERM from now on.
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

// A worker left ignoring SIGTERM by an earlier task, idle when terminate_workers comes.
#[test]
fn terminate_workers_ends_an_idle_worker_that_ignores_sigterm() {
    let pool = Arc::new(Pool::new(1).unwrap());
    let worker = pool.apply(pid_of, (0,)).unwrap();
    assert_eq!(pool.apply(ignore_sigterm_then, (0,)).unwrap(), 0);
    pool.terminate_workers();
    pool.terminate_workers();
    pool.join_timeout(LONG).unwrap();
    assert!(!mp_support::is_running(worker));
}

// Pending map_async / imap with a task that ignores SIGTERM: every result gets an error (or
// its value), none hangs, after terminate_workers, join_timeout, kill_workers.
#[test]
fn terminate_workers_with_pending_map_async_and_imap() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let stuck = pool.apply_async(ignore_sigterm_then, (60_000,));
    let mapped = pool
        .with(&CallOptions::new().chunksize(1))
        .map_async(sleep_then_value, 0..50);
    let p = pool.clone();
    let imapped = std::thread::spawn(move || {
        p.imap(ignore_sigterm_then, [30_000, 30_000, 1, 1, 1])
            .map(|r| r.is_ok())
            .collect::<Vec<_>>()
    });
    std::thread::sleep(Duration::from_millis(500));
    pool.close();
    pool.terminate_workers();
    pool.terminate_workers();
    assert!(
        pool.join_timeout(Duration::from_millis(500))
            .unwrap_err()
            .is_timeout()
    );
    pool.kill_workers();
    pool.kill_workers();
    let p = pool.clone();
    bounded(Duration::from_secs(20), move || p.join_timeout(LONG)).unwrap();
    assert!(stuck.get_timeout(LONG).unwrap_err().is_closed());
    assert!(mapped.get_timeout(LONG).is_err());
    let imapped = bounded(Duration::from_secs(20), move || imapped.join().unwrap());
    assert_eq!(imapped.len(), 5);
}

// With retries, the error names the last worker that died, a dead one.
#[test]
fn a_retried_tasks_error_names_its_last_dead_worker() {
    let pool = Pool::builder().processes(1).retries(2).build().unwrap();
    let pids = mp_runtime::Queue::new().unwrap();
    let err = pool
        .apply(report_pid_then_die, (pids.clone(),))
        .unwrap_err();
    let seen: Vec<u32> = (0..3).map(|_| pids.get_timeout(LONG).unwrap()).collect();
    assert!(err.is_died(), "{err}");
    assert_eq!(err.pid(), seen.last().copied(), "{err} {seen:?}");
    assert!(!mp_support::is_running(err.pid().unwrap()));
    let now = pool.apply(pid_of, (0,)).unwrap();
    assert!(!seen.contains(&now));
}
