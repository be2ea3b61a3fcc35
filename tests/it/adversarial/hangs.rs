//! A worker's death is known from its exit, not from end-of-file on its channel: a task that
//! forks a grandchild (which holds the channel open) and then exits must fail at once, and
//! neither the pool's drop nor `join_timeout` may wait for the grandchild. And no wait without
//! a bound: `join_timeout` must not wait past its deadline for a child that replied but does
//! not exit.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mp_runtime::{CallOptions, Pool, process_fn, spawn};
use mp_support::wait_for;

use super::bounded::{bounded, must};

/// How long a grandchild lives unless the test kills it first: longer than any bound here.
const GRANDCHILD_SECS: u32 = 40;

/// Forks a grandchild that keeps every inherited descriptor (the worker's channel too) and
/// sleeps; writes its pid to `pidfile`; then ends the worker with `exit(3)`.
#[process_fn]
fn fork_then_exit(pidfile: String) -> u64 {
    // SAFETY: the child only sleeps and `_exit`s: async-signal-safe calls.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above.
        unsafe {
            libc::sleep(GRANDCHILD_SECS);
            libc::_exit(0);
        }
    }
    std::fs::write(&pidfile, pid.to_string()).unwrap();
    std::process::exit(3);
}

/// Kills the grandchild whose pid `fork_then_exit` wrote, when the test ends however it ends.
struct Grandchild(PathBuf);

impl Grandchild {
    fn new(name: &str) -> Grandchild {
        let path = std::env::temp_dir().join(format!("mp-adv-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Grandchild(path)
    }

    fn path(&self) -> String {
        self.0.to_str().unwrap().to_string()
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.0).ok()?.trim().parse().ok()
    }
}

impl Drop for Grandchild {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // SAFETY: plain system call on the grandchild this test made.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = std::fs::remove_file(&self.0);
    }
}

#[process_fn]
fn triple(x: u64) -> u64 {
    3 * x
}

// `apply` of a task whose worker exits while a grandchild holds its channel: the exit, not the
// channel's end, fails the task.
#[test]
fn apply_fails_at_once_when_the_worker_exits_under_a_forked_grandchild() {
    let grandchild = Grandchild::new("apply");
    let pool = Arc::new(Pool::new(1).unwrap());
    let p = pool.clone();
    let path = grandchild.path();
    let started = Instant::now();
    let got = bounded(
        "apply under a forked grandchild",
        Duration::from_secs(15),
        move || p.apply(fork_then_exit, (path,)),
    )
    .unwrap_or_else(|why| panic!("{why}"));
    let error = got.expect_err("the worker exited");
    assert!(error.is_died(), "not a death: {error}");
    assert_eq!(error.exit_code(), Some(3), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the error took {:?}",
        started.elapsed()
    );
    let p = pool.clone();
    assert_eq!(
        must("the pool after", move || p.apply(triple, (5,))).unwrap(),
        15
    );
    must("drop after apply", move || drop(pool));
    drop(grandchild);
}

// Dropping a pool whose worker exited under a forked grandchild returns without waiting for the
// grandchild to close the channel.
#[test]
fn dropping_the_pool_does_not_wait_for_a_forked_grandchild() {
    let grandchild = Grandchild::new("drop");
    let pool = Pool::new(1).unwrap();
    let pending = pool.apply_async(fork_then_exit, (grandchild.path(),));
    assert!(
        wait_for(Duration::from_secs(15), || grandchild.pid().is_some()),
        "the task never forked"
    );
    // The worker exits right after it wrote the pid.
    std::thread::sleep(Duration::from_millis(300));
    must("dropping the pool", move || drop(pool));
    let got = must("the task's result", move || {
        pending.get_timeout(Duration::from_secs(5))
    });
    let error = got.expect_err("the worker exited");
    assert!(
        error.is_died() || error.is_closed(),
        "neither a death nor the pool's closing: {error}"
    );
    drop(grandchild);
}

// `spawn!(..).join_timeout(8 s)` of a child that exited under a grandchild reports the exit,
// not a timeout: the channel still open must not hide it.
#[test]
fn join_timeout_reports_the_exit_not_a_timeout_under_a_forked_grandchild() {
    let grandchild = Grandchild::new("spawn");
    let mut child = spawn!(fork_then_exit, grandchild.path()).unwrap();
    let (got, code) = must("join_timeout under a forked grandchild", move || {
        let got = child.join_timeout(Duration::from_secs(8));
        let code = child.exit_code();
        (got, code)
    });
    let error = got.expect_err("the child exited");
    assert!(
        !error.is_timeout(),
        "a timeout though the child exited with {code:?}: {error}"
    );
    assert!(error.is_died(), "not a death: {error}");
    assert_eq!(error.exit_code(), Some(3), "{error}");
    drop(grandchild);
}

extern "C" fn linger() {
    // SAFETY: plain libc call.
    unsafe { libc::sleep(10) };
}

/// Answers at once, then takes ten seconds to exit (an `atexit` handler sleeps).
#[process_fn]
fn reply_then_linger() -> u64 {
    // SAFETY: registers a plain `extern "C"` function.
    unsafe { libc::atexit(linger) };
    42
}

// `join_timeout` must not wait past its deadline after the reply, for a child that is slow to
// exit.
#[test]
fn join_timeout_keeps_its_deadline_after_the_reply() {
    let mut child = spawn!(reply_then_linger).unwrap();
    let (got, took) = must("join_timeout after the reply", move || {
        let started = Instant::now();
        let got = child.join_timeout(Duration::from_secs(1));
        let took = started.elapsed();
        let _ = child.kill();
        (got, took)
    });
    assert!(
        took < Duration::from_secs(5),
        "join_timeout(1 s) took {took:?}"
    );
    match got {
        Ok(value) => assert_eq!(value, 42),
        Err(error) => assert!(
            error.is_timeout(),
            "neither the result nor a timeout: {error}"
        ),
    }
}

/// A quick task: the scheduler learns to queue several of these on one worker.
#[process_fn]
fn quick(x: u32) -> u32 {
    x
}

/// Waits at `barrier` with the other tasks given it; the pid of the worker that ran it.
#[process_fn]
fn meet_at(barrier: mp_runtime::Barrier) -> u32 {
    barrier.wait_timeout(Duration::from_secs(5)).unwrap();
    std::process::id()
}

// As many tasks as workers that wait for each other must each get a worker of their own, even
// right behind a stream of quick tasks that workers take several at a time: a busy worker
// queued them behind its own (CI: decode_panic's "both workers run" broke this way).
#[test]
fn tasks_that_meet_get_a_worker_each_behind_quick_tasks() {
    let pool = Arc::new(Pool::new(2).unwrap());
    for round in 0..20 {
        let p = pool.clone();
        let pids = must(
            &format!("round {round}: quick tasks, then two that meet"),
            move || {
                let quick: Vec<_> = (0..200).map(|x| p.apply_async(quick, (x,))).collect();
                let barrier = mp_runtime::Barrier::new(2).unwrap();
                let met = p.map(meet_at, [barrier.clone(), barrier]);
                for (x, pending) in quick.into_iter().enumerate() {
                    assert_eq!(pending.get().unwrap(), x as u32);
                }
                met
            },
        )
        .expect("both tasks met");
        assert_ne!(pids[0], pids[1], "round {round}: one worker ran both");
    }
}

/// Fails at input 100, so that a map of many chunks fails early.
#[process_fn]
fn fail_at_100(x: u64) -> u64 {
    assert_ne!(x, 100, "input 100 fails");
    x
}

// A blocking map keeps only 32 chunks per worker encoded ahead; one whose early chunk fails,
// among many more chunks than that, must still return that chunk's error, not wait for chunks
// it never encoded, and leave the pool working.
#[test]
fn a_blocking_map_of_more_chunks_than_it_holds_fails_at_its_failed_chunk() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let p = pool.clone();
    let failed = must("a map of 5,000 chunks whose chunk 100 panics", move || {
        p.with(&CallOptions::new().chunksize(1))
            .map(fail_at_100, 0..5000u64)
    });
    let error = failed.expect_err("chunk 100 panicked");
    assert!(error.is_panic(), "{error}");
    assert!(error.to_string().contains("input 100 fails"), "{error}");
    let p = pool.clone();
    let again = must("the same pool, after", move || p.map(fail_at_100, 0..50u64));
    assert_eq!(again.unwrap(), (0..50).collect::<Vec<u64>>());
}
