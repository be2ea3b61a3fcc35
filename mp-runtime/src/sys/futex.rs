//! Futexes: waiting on a 32-bit word in shared memory until another process changes it.

use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Instant;

use rustix::thread::futex;

/// Sleeps while `word` is `expected`, until woken or `deadline`. `Ok(false)` if the deadline
/// passed; `Ok(true)` when woken, when the word had changed already, or spuriously (a
/// signal): the caller checks its condition again.
///
/// The word may be in shared memory, so the wait is not process-private.
pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> io::Result<bool> {
    let timeout = match deadline {
        None => None,
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            Some(rustix::time::Timespec {
                tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
                tv_nsec: left.subsec_nanos().into(),
            })
        }
    };
    match futex::wait(word, futex::Flags::empty(), expected, timeout.as_ref()) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::TIMEDOUT) => Ok(false),
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => Ok(true),
        // EFAULT or EINVAL: a word that is not mapped or not aligned. Taking that for a
        // wake-up would spin.
        Err(e) => Err(e.into()),
    }
}

/// Wakes up to `n` sleepers on `word`, in any process.
pub(crate) fn wake(word: &AtomicU32, n: u32) {
    // Waking fails only for a word that is not mapped or not aligned: `&AtomicU32` is both.
    let _ = futex::wake(word, futex::Flags::empty(), n.min(i32::MAX as u32));
}
