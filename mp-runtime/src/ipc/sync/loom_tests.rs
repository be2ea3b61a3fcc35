//! Every interleaving of a few threads on the real semaphore and event code (`--cfg loom`;
//! README: Testing). Each state is built in ordinary memory behind an `Arc` that loom's threads
//! share as processes share a mapping; the futex and the robust mutex under it are loom's
//! (`sys/futex/model.rs`, `sys/mutex/model.rs`). A lost wake-up leaves a thread asleep with no
//! one to wake it, which loom reports as a deadlock.

use super::*;
use loom::sync::atomic::AtomicUsize;
use loom::thread;

fn check(preemptions: usize, model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemptions);
    builder.check(model);
}

fn semaphore(value: u64, bound: u64) -> loom::sync::Arc<SemaphoreState> {
    let state = SemaphoreState {
        monitor: Monitor::new(SemaphoreFields { value, bound }),
        signal: Condvar::default(),
    };
    state.init().unwrap();
    loom::sync::Arc::new(state)
}

fn value(semaphore: &SemaphoreState) -> u64 {
    waited(lock_state(&semaphore.monitor, Wait::Forever, "a semaphore"))
        .unwrap()
        .get()
        .value
}

#[test]
fn a_released_unit_wakes_the_waiter_for_it() {
    check(3, || {
        let semaphore = semaphore(0, 0);
        let taker = {
            let semaphore = semaphore.clone();
            thread::spawn(move || semaphore.take(Wait::Forever).unwrap())
        };
        semaphore.release().unwrap();
        assert!(taker.join().unwrap());
        assert_eq!(value(&semaphore), 0);
    });
}

/// Two threads share a bounded semaphore's one unit: never both at once, and the one that
/// waits is woken (`notify(1)`) when the other gives it back.
#[test]
fn one_unit_is_held_by_one_thread_at_a_time_and_handed_on() {
    check(2, || {
        let semaphore = semaphore(1, 1);
        let holders = loom::sync::Arc::new(AtomicUsize::new(0));
        let users: Vec<_> = (0..2)
            .map(|_| {
                let (semaphore, holders) = (semaphore.clone(), holders.clone());
                thread::spawn(move || {
                    assert!(semaphore.take(Wait::Forever).unwrap());
                    assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                    holders.fetch_sub(1, Ordering::SeqCst);
                    semaphore.release().unwrap();
                })
            })
            .collect();
        for user in users {
            user.join().unwrap();
        }
        assert_eq!(value(&semaphore), 1);
        assert!(
            semaphore.release().unwrap_err().is_usage(),
            "above its bound"
        );
    });
}

#[test]
fn setting_an_event_wakes_every_waiter() {
    check(2, || {
        let event = EventState {
            monitor: Monitor::new(false),
            signal: Condvar::default(),
        };
        event.init().unwrap();
        let event = loom::sync::Arc::new(event);
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let event = event.clone();
                thread::spawn(move || event.wait(Wait::Forever).unwrap())
            })
            .collect();
        event.set().unwrap();
        for waiter in waiters {
            assert!(waiter.join().unwrap());
        }
    });
}
