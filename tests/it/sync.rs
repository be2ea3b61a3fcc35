//! Locks, semaphores, events, conditions and barriers between processes.

use std::time::Duration;

use mp_runtime::{
    Barrier, BoundedSemaphore, Condition, Event, Lock, Pool, Process, RLock, Semaphore, Value,
    process_fn, spawn,
};

const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(20);

#[process_fn]
fn hold_forever(lock: Lock, holding: Event) {
    let guard = lock.acquire().unwrap();
    holding.set().unwrap();
    std::thread::sleep(Duration::from_secs(600));
    drop(guard);
}

#[test]
fn a_lock_whose_holder_is_killed_reports_the_owner_died() {
    let lock = Lock::new().unwrap();
    let holding = Event::new().unwrap();
    let mut child = spawn!(hold_forever, lock.clone(), holding.clone()).unwrap();
    assert!(holding.wait_timeout(LONG).unwrap());
    // Held elsewhere: a timeout, then nothing taken.
    assert!(lock.acquire_timeout(SHORT).unwrap_err().is_timeout());
    assert!(lock.try_acquire().unwrap().is_none());
    child.kill().unwrap();
    let err = lock.acquire_timeout(LONG).unwrap_err();
    assert!(err.is_owner_died(), "{err}");
    assert!(err.to_string().contains("died holding"), "{err}");
    // Reported once; the lock is usable again.
    drop(lock.acquire_timeout(LONG).unwrap());
}

#[test]
fn a_lock_taken_twice_on_one_thread_is_an_error_and_an_rlock_is_not() {
    let lock = Lock::new().unwrap();
    let guard = lock.acquire().unwrap();
    assert!(lock.acquire().unwrap_err().is_usage());
    drop(guard);
    let rlock = RLock::new().unwrap();
    let a = rlock.acquire().unwrap();
    let b = rlock.acquire_timeout(SHORT).unwrap();
    let c = rlock.try_acquire().unwrap().unwrap();
    drop((a, b, c));
}

#[process_fn]
fn try_rlock(rlock: RLock) -> bool {
    rlock.try_acquire().unwrap().is_some()
}

#[test]
fn an_rlock_held_here_is_taken_elsewhere_only_once_free() {
    let rlock = RLock::new().unwrap();
    let held = rlock.acquire().unwrap();
    assert!(!spawn!(try_rlock, rlock.clone()).unwrap().join().unwrap());
    drop(held);
    assert!(spawn!(try_rlock, rlock.clone()).unwrap().join().unwrap());
}

#[process_fn]
fn count_under_semaphore(sem: Semaphore, inside: Value<u32>, peak: Value<u32>) {
    for _ in 0..20 {
        let _unit = sem.acquire_timeout(LONG).unwrap();
        let now = {
            let mut inside = inside.lock().unwrap();
            *inside += 1;
            *inside
        };
        {
            let mut peak = peak.lock().unwrap();
            *peak = (*peak).max(now);
        }
        std::thread::yield_now();
        *inside.lock().unwrap() -= 1;
    }
}

#[test]
fn a_semaphore_bounds_how_many_processes_are_inside() {
    let sem = Semaphore::new(2).unwrap();
    let inside = Value::new(0u32).unwrap();
    let peak = Value::new(0u32).unwrap();
    let children: Vec<Process<()>> = (0..4)
        .map(|_| {
            spawn!(
                count_under_semaphore,
                sem.clone(),
                inside.clone(),
                peak.clone()
            )
            .unwrap()
        })
        .collect();
    for mut child in children {
        child.join_timeout(LONG).unwrap();
    }
    assert!(peak.get().unwrap() <= 2);
    assert_eq!(sem.value().unwrap(), 2);
    let none = Semaphore::new(0).unwrap();
    assert!(none.try_acquire().unwrap().is_none());
    assert!(none.acquire_timeout(SHORT).unwrap_err().is_timeout());
    none.release().unwrap();
    std::mem::forget(none.acquire().unwrap());
    assert_eq!(none.value().unwrap(), 0);
}

#[test]
fn a_bounded_semaphore_refuses_extra_releases() {
    let sem = BoundedSemaphore::new(1).unwrap();
    assert!(sem.release().unwrap_err().is_usage());
    let unit = sem.acquire().unwrap();
    assert_eq!(sem.value().unwrap(), 0);
    drop(unit);
    assert_eq!(sem.value().unwrap(), 1);
}

#[process_fn]
fn wait_for_event(event: Event) -> bool {
    event.wait_timeout(LONG).unwrap()
}

#[test]
fn an_event_wakes_processes_that_wait() {
    let event = Event::new().unwrap();
    assert!(!event.wait_timeout(SHORT).unwrap());
    let children: Vec<Process<bool>> = (0..3)
        .map(|_| spawn!(wait_for_event, event.clone()).unwrap())
        .collect();
    event.set().unwrap();
    for mut child in children {
        assert!(child.join_timeout(LONG).unwrap());
    }
    event.clear().unwrap();
    assert!(!event.is_set().unwrap());
}

#[process_fn]
fn wait_for_value(cond: Condition, value: Value<u32>, wanted: u32) -> bool {
    let mut guard = cond.acquire().unwrap();
    guard
        .wait_for(|| value.get().unwrap() == wanted, LONG)
        .unwrap()
}

#[test]
fn a_condition_notifies_processes_that_wait() {
    let cond = Condition::new().unwrap();
    let value = Value::new(0u32).unwrap();
    let children: Vec<Process<bool>> = (0..2)
        .map(|_| spawn!(wait_for_value, cond.clone(), value.clone(), 3).unwrap())
        .collect();
    for step in 1..=3 {
        let _guard = cond.acquire_timeout(LONG).unwrap();
        value.set(step).unwrap();
        cond.notify_all();
    }
    for mut child in children {
        assert!(child.join_timeout(LONG).unwrap());
    }
    let mut guard = cond.try_acquire().unwrap().unwrap();
    assert!(!guard.wait_timeout(SHORT).unwrap());
    cond.notify(1);
}

#[process_fn]
fn meet(barrier: Barrier) -> usize {
    barrier.wait_timeout(LONG).unwrap()
}

#[process_fn]
fn meet_or_break(barrier: Barrier) -> bool {
    barrier.wait_timeout(LONG).unwrap_err().is_broken_barrier()
}

#[process_fn]
fn die_before_arriving(_barrier: Barrier) {
    std::process::abort();
}

#[test]
fn a_barrier_lets_three_processes_pass_together() {
    let barrier = Barrier::new(3).unwrap();
    assert_eq!(barrier.parties().unwrap(), 3);
    let children: Vec<Process<usize>> = (0..3)
        .map(|_| spawn!(meet, barrier.clone()).unwrap())
        .collect();
    let mut indices: Vec<usize> = children
        .into_iter()
        .map(|mut c| c.join_timeout(LONG).unwrap())
        .collect();
    indices.sort_unstable();
    assert_eq!(indices, [0, 1, 2]);
    assert!(!barrier.is_broken().unwrap());
}

#[test]
fn a_barrier_breaks_when_a_party_dies_before_arriving() {
    let barrier = Barrier::new(3).unwrap();
    let waiting: Vec<Process<bool>> = (0..2)
        .map(|_| spawn!(meet_or_break, barrier.clone()).unwrap())
        .collect();
    let mut dying = spawn!(die_before_arriving, barrier.clone()).unwrap();
    assert_eq!(dying.join_timeout(LONG).unwrap_err().signal(), Some(6));
    for mut child in waiting {
        assert!(child.join_timeout(LONG).unwrap(), "a waiter was not told");
    }
    assert!(barrier.is_broken().unwrap());
    assert!(barrier.wait().unwrap_err().is_broken_barrier());
}

#[test]
fn a_barrier_breaks_on_timeout_and_abort() {
    let barrier = Barrier::new(2).unwrap();
    assert!(barrier.wait_timeout(SHORT).unwrap_err().is_broken_barrier());
    assert_eq!(barrier.n_waiting().unwrap(), 0);
    let other = Barrier::new(2).unwrap();
    other.abort();
    assert!(other.wait().unwrap_err().is_broken_barrier());
}

// CPython's test_barrier_timeout: after a first round, one party of five is late and the
// others wait with a timeout. Every party, the ones that timed out included, must get the
// broken-barrier error. The four waits end at once and contend for the lock: a party that took
// it back after its deadline used to get a plain timeout and leave the barrier unbroken.
#[test]
fn a_timed_out_wait_breaks_the_barrier_for_every_party() {
    const PARTIES: usize = 5;
    for round in 0..30 {
        let barrier = Barrier::new(PARTIES).unwrap();
        let outcomes: Vec<Result<usize, mp_runtime::Error>> = std::thread::scope(|s| {
            let parties: Vec<_> = (0..PARTIES)
                .map(|_| {
                    s.spawn(|| {
                        let index = barrier.wait_timeout(LONG).unwrap();
                        if index == PARTIES / 2 {
                            std::thread::sleep(Duration::from_millis(100));
                        }
                        barrier.wait_timeout(Duration::from_millis(50))
                    })
                })
                .collect();
            parties.into_iter().map(|p| p.join().unwrap()).collect()
        });
        for outcome in outcomes {
            let err = outcome.expect_err("a wait that no late party joined in time passed");
            assert!(err.is_broken_barrier(), "round {round}: {err}");
        }
        assert!(barrier.is_broken().unwrap(), "round {round}");
    }
}

#[test]
fn a_reset_fails_the_waiters_and_makes_the_barrier_whole_again() {
    let barrier = Barrier::new(3).unwrap();
    let waiting: Vec<Process<bool>> = (0..2)
        .map(|_| spawn!(meet_or_break, barrier.clone()).unwrap())
        .collect();
    assert!(mp_support::wait_for(LONG, || barrier.n_waiting().unwrap() == 2));
    barrier.reset().unwrap();
    for mut child in waiting {
        assert!(child.join_timeout(LONG).unwrap(), "a waiter was not told");
    }
    assert!(!barrier.is_broken().unwrap());
    assert_eq!(barrier.n_waiting().unwrap(), 0);

    // A party that died waiting leaves the count stale and the barrier broken: reset clears
    // both, and a full round passes again.
    let mut dying = spawn!(die_waiting, barrier.clone()).unwrap();
    assert!(mp_support::wait_for(LONG, || barrier.n_waiting().unwrap() == 1));
    dying.kill().unwrap();
    assert!(dying.join_timeout(LONG).unwrap_err().is_died());
    assert!(barrier.wait_timeout(LONG).unwrap_err().is_broken_barrier());
    barrier.reset().unwrap();
    let children: Vec<Process<usize>> = (0..2)
        .map(|_| spawn!(meet, barrier.clone()).unwrap())
        .collect();
    let mut indices = vec![barrier.wait_timeout(LONG).unwrap()];
    indices.extend(
        children
            .into_iter()
            .map(|mut c| c.join_timeout(LONG).unwrap()),
    );
    indices.sort_unstable();
    assert_eq!(indices, [0, 1, 2]);
}

#[process_fn]
fn die_waiting(barrier: Barrier) {
    // Killed while it waits; the bound only keeps a broken test from hanging.
    let _ = barrier.wait_timeout(LONG);
}

#[process_fn]
fn take_and_release(lock: Lock, sem: Semaphore, event: Event) -> bool {
    drop(lock.acquire_timeout(LONG).unwrap());
    drop(sem.acquire_timeout(LONG).unwrap());
    event.is_set().unwrap()
}

#[test]
fn sync_handles_go_to_pool_tasks() {
    let pool = Pool::new(2).unwrap();
    let (lock, sem, event) = (
        Lock::new().unwrap(),
        Semaphore::new(1).unwrap(),
        Event::new().unwrap(),
    );
    event.set().unwrap();
    let args: Vec<_> = (0..8)
        .map(|_| (lock.clone(), sem.clone(), event.clone()))
        .collect();
    assert!(
        pool.starmap(take_and_release, args)
            .unwrap()
            .into_iter()
            .all(|set| set)
    );
}
