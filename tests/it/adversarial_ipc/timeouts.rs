//! A `*_timeout` call must end near its timeout even when another process holds the lock it has
//! to take again after its wait: no wait without a bound.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use mp_runtime::{Condition, Event, JoinableQueue, process_fn, spawn};

use super::Reaped;

const LONG: Duration = Duration::from_secs(20);

#[process_fn]
fn take_condition_and_sleep(cond: Condition, started: Event, holding: Event) {
    started.set().unwrap();
    let guard = cond.acquire().unwrap();
    holding.set().unwrap();
    std::thread::sleep(Duration::from_secs(600));
    drop(guard);
}

// `ConditionGuard::wait_timeout` returns near its timeout although another
// process took the condition's lock while it slept.
#[test]
fn a_condition_wait_timeout_ends_while_another_process_holds_the_lock() {
    let cond = Condition::new().unwrap();
    let (started, holding) = (Event::new().unwrap(), Event::new().unwrap());
    let (to_main, from_waiter) = mpsc::channel();
    let (go, wait_for_go) = mpsc::channel::<()>();
    let waiter_cond = cond.clone();
    let waiter = std::thread::spawn(move || {
        let mut guard = waiter_cond.acquire().unwrap();
        to_main.send(None).unwrap();
        if wait_for_go.recv().is_err() {
            return;
        }
        let start = Instant::now();
        let woke = guard.wait_timeout(Duration::from_millis(500));
        let _ = to_main.send(Some((start.elapsed(), woke.is_ok())));
    });
    // The lock is ours: the child blocks in `acquire` until the wait below releases it.
    assert_eq!(from_waiter.recv_timeout(LONG).unwrap(), None);
    let child = Reaped(Some(
        spawn!(
            take_condition_and_sleep,
            cond.clone(),
            started.clone(),
            holding.clone()
        )
        .unwrap(),
    ));
    assert!(
        started.wait_timeout(LONG).unwrap(),
        "the child did not start"
    );
    std::thread::sleep(Duration::from_millis(200));
    go.send(()).unwrap();
    assert!(
        holding.wait_timeout(LONG).unwrap(),
        "setup: the child never took the lock the wait released"
    );
    let outcome = from_waiter.recv_timeout(Duration::from_secs(5));
    drop(child); // killed: the waiter gets the lock back (owner died) and ends
    let _ = waiter.join();
    let (elapsed, _) = outcome
        .unwrap_or_else(|_| panic!("hung: a 500 ms wait_timeout did not return in 5 s"))
        .expect("the waiter answers once after the go");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[process_fn]
fn churn_queue(queue: JoinableQueue<String>, churning: Event) {
    // Large items: most of the time goes to copying them under the queue's lock.
    let item = "x".repeat(32 << 20);
    loop {
        queue.put(&item).unwrap();
        churning.set().unwrap();
        let _: String = queue.get().unwrap();
    }
}

/// The state letter of `/proc/PID/stat`.
fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

// `JoinableQueue::join_timeout` returns near its timeout although another
// process (stopped by SIGSTOP) holds the queue's lock when the timeout passes.
#[test]
fn a_queue_join_timeout_ends_while_a_stopped_process_holds_the_lock() {
    let queue = JoinableQueue::<String>::new().unwrap();
    queue.put(&"unfinished".to_string()).unwrap();
    let churning = Event::new().unwrap();
    let child = Reaped(Some(
        spawn!(churn_queue, queue.clone(), churning.clone()).unwrap(),
    ));
    let pid = child.pid();
    assert!(
        churning.wait_timeout(LONG).unwrap(),
        "the child did not start"
    );
    let timeout = Duration::from_secs(3);
    let (to_main, from_waiter) = mpsc::channel();
    let waiter_queue = queue.clone();
    let start = Instant::now();
    std::thread::spawn(move || {
        let done = waiter_queue.join_timeout(timeout);
        let _ = to_main.send(done.is_ok());
    });
    // Let the waiter reach its sleep, then stop the child until it is caught holding the lock
    // (a `len()` that does not answer).
    std::thread::sleep(Duration::from_millis(300));
    let mut caught = false;
    while !caught && start.elapsed() < timeout - Duration::from_millis(800) {
        // SAFETY: plain system call on our own child.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
        assert!(
            mp_support::wait_for(LONG, || state_of(pid) == Some('T')),
            "the child did not stop"
        );
        let (answered, answer) = mpsc::channel();
        let probe = queue.clone();
        std::thread::spawn(move || {
            let _ = answered.send(probe.len().is_ok());
        });
        caught = answer.recv_timeout(Duration::from_millis(150)).is_err();
        if !caught {
            // SAFETY: as above.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) };
            std::thread::sleep(Duration::from_millis(13));
        }
    }
    assert!(
        caught,
        "setup: the child was never caught holding the queue's lock"
    );
    assert!(
        from_waiter.try_recv().is_err(),
        "setup: the wait ended before the lock was held"
    );
    let outcome = from_waiter.recv_timeout(timeout + Duration::from_secs(5));
    let elapsed = start.elapsed();
    drop(child); // killed even while stopped: the lock's next owner is told it died
    assert!(
        outcome.is_ok(),
        "hung: a 3 s join_timeout had not returned after {elapsed:?}"
    );
}
