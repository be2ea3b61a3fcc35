//! The end of this process: code to run when it exits with a status, and leaving at once.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

/// The function [`at_exit`] registered.
static AT_EXIT: OnceLock<fn(i32)> = OnceLock::new();

/// Has `f` run when this process exits by `exit` (returning from `main` included), with the
/// exit status (glibc's `on_exit`; elsewhere `atexit`, and the status is taken as 0). Once per
/// process: a second call is ignored.
pub(crate) fn at_exit(f: fn(i32)) {
    if AT_EXIT.set(f).is_err() {
        return;
    }
    register();
}

#[cfg(target_env = "gnu")]
fn register() {
    unsafe extern "C" {
        fn on_exit(function: extern "C" fn(c_int, *mut c_void), argument: *mut c_void) -> c_int;
    }
    extern "C" fn handler(status: c_int, _: *mut c_void) {
        if let Some(f) = AT_EXIT.get() {
            f(status);
        }
    }
    // SAFETY: `handler` has the signature glibc's `on_exit` calls, and ignores its argument, so
    // a null one is fine; the C runtime calls it once, at exit.
    unsafe { on_exit(handler, std::ptr::null_mut()) };
}

#[cfg(not(target_env = "gnu"))]
fn register() {
    extern "C" fn handler() {
        if let Some(f) = AT_EXIT.get() {
            f(0);
        }
    }
    // SAFETY: `handler` is an `extern "C" fn()`, as `atexit` requires; the C runtime calls it
    // once, at exit.
    unsafe { libc::atexit(handler) };
}

/// Ends this process at once with `status`, running no exit handler and flushing nothing: for a
/// process whose work is done but which is stuck where an ordinary exit would be stuck too.
pub(crate) fn exit_now(status: i32) -> ! {
    // SAFETY: `_exit` takes any status and never returns; it touches no memory of this process.
    unsafe { libc::_exit(status) }
}
