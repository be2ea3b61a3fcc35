//! The synchronization that loom model-checks, from one path: std's, or loom's when the crate
//! is built with `--cfg loom` (as tokio's `src/loom/mod.rs`). Code that a loom test drives (the
//! pool's task queue) takes its mutex, condition variable and atomics from here, so that the
//! test runs that very code; the rest of the crate uses std. `sys`, below this tier, switches
//! its futex words itself (`sys/futex.rs`).

use std::sync::PoisonError;
use std::time::Duration;

#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard, atomic};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard, atomic};

/// Locks a mutex, going on if a panicking thread poisoned it: the data it guards stays valid
/// between statements.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Calls `changed` until it returns true or `spell` has passed: a wait for something that
/// usually comes soon, without the cost of a sleep. For its first microseconds it only looks
/// (what another core does shows within a microsecond); after that it yields the processor
/// between looks, so that on a busy core the thread waited for gets to run.
///
/// Under loom time stands still, and a spin is one look: what the caller does after a spin
/// cannot depend on why it ended, so the model loses no interleaving by it.
pub(crate) fn spin(spell: Duration, mut changed: impl FnMut() -> bool) {
    #[cfg(not(loom))]
    {
        /// How long a spin only looks before it yields between looks.
        const ALONE: Duration = Duration::from_micros(2);
        if spell.is_zero() {
            return;
        }
        let start = std::time::Instant::now();
        let mut yielding = false;
        // The clock is read every few looks only: reading it costs more than a look.
        for looks in 1u32.. {
            if changed() {
                return;
            }
            if looks % 16 == 0 {
                let spun = start.elapsed();
                if spun >= spell {
                    return;
                }
                yielding = spun >= ALONE;
            }
            if yielding {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
    #[cfg(loom)]
    {
        let _ = spell;
        changed();
    }
}
