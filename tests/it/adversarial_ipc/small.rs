//! Small behaviours CPython's tests and a review found: `poll(ZERO)`, an event's `Debug`, and
//! errors that must not be swallowed.

use std::process::Command;
use std::time::Duration;

use mp_runtime::{BoundedSemaphore, Event, pipe};

use super::bounded;

// `poll(Duration::ZERO)` sees messages that already wait: a zero timeout is a check, not a
// miss.
#[test]
fn poll_zero_sees_waiting_messages() {
    let received = bounded("poll(ZERO)", Duration::from_secs(20), || {
        let (tx, rx) = pipe::<u32>().unwrap();
        for i in 0..7 {
            tx.send(&i).unwrap();
        }
        let mut received = Vec::new();
        while received.len() < 100 && rx.poll(Duration::ZERO).unwrap() {
            received.push(rx.recv().unwrap());
        }
        received
    });
    assert_eq!(received, (0..7).collect::<Vec<u32>>());
}

// An event's `Debug` shows whether it is set, as what a reader of a log wants to know.
#[test]
fn an_events_debug_shows_whether_it_is_set() {
    let event = Event::new().unwrap();
    let unset = format!("{event:?}");
    event.set().unwrap();
    let set = format!("{event:?}");
    for shown in [&unset, &set] {
        assert!(
            shown.contains("true") || shown.contains("false") || shown.contains("set"),
            "{shown}"
        );
    }
    assert_ne!(
        unset, set,
        "the Debug of a set and an unset event are the same"
    );
}

const OVER_RELEASE_VAR: &str = "MP_ADV_OVER_RELEASE";

// Run by the test below in a process of its own (it does nothing
// otherwise): a bounded guard dropped when the value is already at its bound.
#[test]
fn child_scenario_bounded_guard_dropped_at_its_bound() {
    if std::env::var_os(OVER_RELEASE_VAR).is_none() {
        return;
    }
    let sem = BoundedSemaphore::new(1).unwrap();
    let guard = sem.acquire().unwrap();
    sem.release().unwrap();
    drop(guard); // one release too many: refused, and that must be reported
}

// `SemaphoreGuard::drop` of a bounded semaphore reports an over-release (a panic or a message
// naming the semaphore), not nothing: a drop cannot return the error, but must not swallow it.
#[test]
fn a_bounded_semaphore_guard_over_release_is_reported() {
    let output = bounded("swallowed errors", Duration::from_secs(60), || {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "adversarial_ipc::small::child_scenario_bounded_guard_dropped_at_its_bound",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(OVER_RELEASE_VAR, "1")
            .output()
            .unwrap()
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("1 passed") || text.contains("1 failed"),
        "the scenario did not run: {text}"
    );
    assert!(
        text.to_lowercase().contains("semaphore"),
        "an over-release of a bounded semaphore by a guard's drop went unreported: {text}"
    );
}
