//! Adversarial tests of the inter-process objects and of how workers run: each case misuses
//! one of them on purpose, every wait has a bound, and every process started is killed and
//! reaped. A case that hangs names what hung.

mod barrier;
mod small;
mod timeouts;
mod unsound;
mod worker_runtime;

use std::sync::mpsc;
use std::time::Duration;

use mp_runtime::Process;

/// Runs `f` on its own thread and waits at most `limit` for it; a call that does not return
/// fails the test as a hang of `what`. A panic in `f` is passed on.
pub fn bounded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the thread sends before it ends"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("hung: {what} (no answer within {limit:?})")
        }
    }
}

/// A child process killed and reaped when dropped, whatever the test did with it.
pub struct Reaped<R: serde::de::DeserializeOwned>(pub Option<Process<R>>);

impl<R: serde::de::DeserializeOwned> Reaped<R> {
    /// The child's pid, while it is not joined.
    pub fn pid(&self) -> u32 {
        self.0.as_ref().expect("not joined yet").pid()
    }
}

impl<R: serde::de::DeserializeOwned> Drop for Reaped<R> {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.join_timeout(Duration::from_secs(10));
        }
    }
}
