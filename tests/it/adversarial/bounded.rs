//! Every wait in these suites has a bound: a call under test runs on its own thread, and the
//! test waits for it with a timeout (leaking the thread if it hangs).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::time::Duration;

/// How long a call that must not hang may take before it counts as hung.
pub const HANG: Duration = Duration::from_secs(20);

/// Runs `f` on a thread; its value, or why there is none: `hung: {what}` when it took longer
/// than `limit` (the thread is left behind), `panicked: {what}: message` when it panicked.
pub fn bounded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(payload)) => Err(format!("panicked: {what}: {}", message(&*payload))),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("hung: {what} (over {limit:?})")),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(format!("lost: {what}")),
    }
}

/// [`bounded`] with the usual limit, panicking (failing the test) on a hang or a panic.
pub fn must<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    bounded(what, HANG, f).unwrap_or_else(|why| panic!("{why}"))
}

/// A panic payload's message.
pub fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}
