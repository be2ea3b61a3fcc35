//! Futexes: waiting on a 32-bit word in shared memory until another process changes it.
//!
//! Under `--cfg loom` the words are loom's atomics and a wait and a wake are loom's (`model`
//! here): loom's threads, sharing the words as processes share a mapping, then run the
//! protocols built on them (`sys/mutex.rs`, `ipc/`) through every interleaving.

#[cfg(not(loom))]
use std::io;
#[cfg(not(loom))]
use std::time::Instant;

#[cfg(not(loom))]
use rustix::thread::futex;

#[cfg(loom)]
mod model;
#[cfg(loom)]
pub(crate) use model::{AtomicU32, wait, wake};

/// The word a futex waits on.
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::AtomicU32;

/// Sleeps while `word` is `expected`, until woken or `deadline`. `Ok(false)` if the deadline
/// passed; `Ok(true)` when woken, when the word had changed already, or spuriously (a
/// signal): the caller checks its condition again.
///
/// The word may be in shared memory, so the wait is not process-private.
#[cfg(not(loom))]
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
#[cfg(not(loom))]
pub(crate) fn wake(word: &AtomicU32, n: u32) {
    // Waking fails only for a word that is not mapped or not aligned: `&AtomicU32` is both.
    let _ = futex::wake(word, futex::Flags::empty(), n.min(i32::MAX as u32));
}
