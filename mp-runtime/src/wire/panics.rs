//! Panics in the user's code that mp runs for a call, caught as values: a worker's call, whose
//! panic becomes its PANIC outcome record, and the user's `Serialize`/`Deserialize` on a pool's
//! thread, whose panic becomes that call's error. One panic hook, installed once, serves both.
//!
//! The hook is needed because only it sees the panic's location and can take its backtrace;
//! [`catch`] then hands them back with the message. Under `panic = "abort"` nothing unwinds back
//! to [`catch`]: the hook gives the panic to the answer set by [`answer_before_abort`] instead,
//! which replies before the process aborts.

use std::any::Any;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Once, OnceLock};

/// A panic caught by [`catch`]: what a PANIC outcome record carries.
pub(crate) struct Panic {
    pub message: String,
    /// `file:line:column`; `None` when the hook did not see the panic (the program replaced it).
    pub location: Option<String>,
    /// When `RUST_BACKTRACE` or `RUST_LIB_BACKTRACE` enables one.
    pub backtrace: Option<String>,
}

thread_local! {
    /// Set while [`catch`] runs on this thread: a panic there is captured, not printed.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    /// The last panic captured on this thread.
    static CAUGHT: RefCell<Option<Panic>> = const { RefCell::new(None) };
}

/// Under `panic = "abort"`: who replies for a panic inside [`catch`] before the process aborts.
static BEFORE_ABORT: OnceLock<fn(&Panic) -> bool> = OnceLock::new();

/// Runs `f`; a panic in it comes back as its message, location and backtrace, without being
/// printed and without unwinding further.
#[inline]
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, Panic> {
    static HOOK: Once = Once::new();
    HOOK.call_once(install_hook);
    let outer = CATCHING.replace(true);
    let result = panic::catch_unwind(AssertUnwindSafe(f)).map_err(caught);
    CATCHING.set(outer);
    result
}

/// The panic the hook captured for `payload`; only its message if the hook did not see this
/// panic (the program replaced the hook, or `resume_unwind` calls none). Drops the payload,
/// whose `Drop` is the user's and may panic too: that panic goes no further.
#[cold]
fn caught(payload: Box<dyn Any + Send>) -> Panic {
    let message = payload_message(&*payload);
    let panic = match CAUGHT.take() {
        // A capture with another message is left from a panic that `f` caught itself.
        Some(panic) if panic.message == message => panic,
        _ => Panic {
            message,
            location: None,
            backtrace: None,
        },
    };
    if let Err(again) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        // Its payload may be another such one: kept, not dropped.
        std::mem::forget(again);
    }
    CAUGHT.take();
    panic
}

/// Under `panic = "abort"`, makes `answer` the one to reply for a panic inside [`catch`], from
/// the panic hook, before the process aborts; `answer` returns whether it replied. A panic it
/// does not reply for is printed as usual. Set once per process; later calls change nothing.
pub(crate) fn answer_before_abort(answer: fn(&Panic) -> bool) {
    let _ = BEFORE_ABORT.set(answer);
}

/// Chains a hook that captures the panics inside [`catch`] and hands every other panic to the
/// hook that was there. A program that sets its own hook later still gets its panics back from
/// [`catch`], with the message but no location (and its hook prints them).
fn install_hook() {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if !CATCHING.get() {
            return previous(info);
        }
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        // `capture` reads the environment variables, as std's own hook does.
        let backtrace = Backtrace::capture();
        let backtrace =
            (backtrace.status() == BacktraceStatus::Captured).then(|| backtrace.to_string());
        let panic = Panic {
            message: payload_message(info.payload()),
            location,
            backtrace,
        };
        if cfg!(panic = "abort") {
            // Nothing unwinds back to `catch` to report it: reply now, before the abort.
            if !BEFORE_ABORT.get().is_some_and(|answer| answer(&panic)) {
                previous(info);
            }
            return;
        }
        CAUGHT.set(Some(panic));
    }));
}

/// A panic's message, as `panic!` gives it.
fn payload_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "Box<dyn Any>".to_string())
}
