//! Tasks that misbehave without crashing: one that closes every descriptor its process holds
//! (the channel to the parent among them), and one that stops itself with SIGSTOP. Each fails
//! alone, and the pool can still be terminated and dropped promptly.

use std::time::Duration;

use mp_runtime::{Pool, process_fn, spawn};

use super::bounded::must;

/// Closes every descriptor above standard error: the worker loses its channel mid-task.
#[process_fn]
fn close_everything(x: u64) -> u64 {
    for fd in 3..1024 {
        // SAFETY: closing descriptors this process owns is the point of the test; nothing in
        // the task uses them afterwards.
        unsafe { libc::close(fd) };
    }
    x
}

/// Stops its own process, which then never answers unless someone kills it.
#[process_fn]
fn stop_myself() {
    // SAFETY: a signal to this very process.
    unsafe { libc::raise(libc::SIGSTOP) };
}

#[process_fn]
fn double(x: u64) -> u64 {
    2 * x
}

// A task that closes its channel (every descriptor) is that task's error, or, in a pool, its
// value if that reached the rings the worker shares with the parent before the parent saw the
// socket close (the rings' memory outlives the descriptor): the pool goes on.
#[test]
fn a_task_that_closes_its_channel_fails_alone() {
    must("apply of a task that closes every descriptor", || {
        let pool = Pool::new(2).unwrap();
        match pool.apply(close_everything, (1,)) {
            Ok(value) => assert_eq!(value, 1),
            Err(err) => assert!(err.is_died() || err.is_io(), "{err:?}"),
        }
        assert_eq!(
            pool.map(double, 0..20).unwrap(),
            (0..20).map(|x| 2 * x).collect::<Vec<_>>()
        );
    });
    must("spawn! of a task that closes every descriptor", || {
        let err = spawn!(close_everything, 1).unwrap().join().unwrap_err();
        assert!(err.is_died() || err.is_io(), "{err:?}");
    });
}

// A stopped worker times out its waiter, and terminate and drop still return promptly (SIGKILL
// ends a stopped process): no wait without a bound.
#[test]
fn a_stopped_worker_does_not_hold_up_terminate_or_drop() {
    must("a pool with a stopped worker", || {
        let pool = Pool::new(1).unwrap();
        let stopped = pool.apply_async(stop_myself, ());
        let err = stopped.get_timeout(Duration::from_millis(300)).unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        pool.terminate();
        pool.join().unwrap();
        assert!(stopped.get_timeout(Duration::from_secs(10)).is_err());
    });
    must("spawn! of a stopped child", || {
        let mut p = spawn!(stop_myself).unwrap();
        assert!(
            p.join_timeout(Duration::from_millis(300))
                .unwrap_err()
                .is_timeout()
        );
        p.kill().unwrap();
        assert!(
            p.join_timeout(Duration::from_secs(10))
                .unwrap_err()
                .is_died()
        );
    });
}
