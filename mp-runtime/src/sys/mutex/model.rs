//! The robust mutex under loom, which cannot run glibc: glibc's protocol for a robust,
//! process-shared mutex (`nptl/lowlevelrobustlock.c`), on the futex of `sys/futex.rs`, which
//! is loom's then. [`Monitor`], [`MonitorGuard`] and [`Condvar`] above it are the real code.
//!
//! The lock word holds its owner's thread number, [`WAITERS`] while a thread may sleep on it,
//! and [`OWNER_DIED`] once its owner died holding it: the kernel sets that bit, and wakes one
//! sleeper, when it walks a dead thread's list of robust mutexes ([`RawMutex::die_holding`]
//! does it here).

use std::io;
use std::sync::atomic::Ordering;
use std::time::Instant;

use loom::sync::atomic::AtomicBool;

use super::{LockFailure, Monitor, Taken};
use crate::sys::futex::{self, AtomicU32};

/// `FUTEX_WAITERS`: someone may sleep on the word; its unlocker wakes one.
const WAITERS: u32 = 0x8000_0000;
/// `FUTEX_OWNER_DIED`: the owner died holding it; the next locker is told.
const OWNER_DIED: u32 = 0x4000_0000;
/// `FUTEX_TID_MASK`: the owner, 0 when free.
const OWNER: u32 = 0x3fff_ffff;

loom::lazy_static! {
    // Counts loom's threads as they first lock, for their numbers (tids). A std atomic: the
    // numbering is bookkeeping of the model, not an access loom should interleave.
    static ref THREADS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
}

loom::thread_local! {
    static NUMBER: u32 = THREADS.fetch_add(1, Ordering::Relaxed) + 1;
}

/// This thread's number: its tid, as far as the lock word is concerned.
fn me() -> u32 {
    NUMBER.with(|number| *number)
}

/// A robust mutex as glibc makes one, on a loom futex.
pub(crate) struct RawMutex {
    word: AtomicU32,
    recursive: AtomicBool,
    /// How many times its owner took it again (recursive only); touched by the owner only.
    depth: AtomicU32,
}

impl RawMutex {
    #[cfg(test)]
    fn new() -> Self {
        RawMutex {
            word: AtomicU32::new(0),
            recursive: AtomicBool::new(false),
            depth: AtomicU32::new(0),
        }
    }

    pub(crate) fn init(&self, recursive: bool) -> io::Result<()> {
        self.recursive.store(recursive, Ordering::Relaxed);
        Ok(())
    }

    /// Locks, waiting for a wake-up after each try (no deadline under loom: time stands
    /// still).
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> Result<Taken, LockFailure> {
        if let Some(again) = self.again()? {
            return Ok(again);
        }
        let mut slept = false;
        loop {
            let word = self.word.load(Ordering::Relaxed);
            if word & OWNER == 0 {
                // After a sleep, others may sleep still: keep them to be woken (glibc too).
                let waiters = if slept { WAITERS } else { word & WAITERS };
                if self.take(word, me() | waiters) {
                    return Ok(taken(word));
                }
                continue;
            }
            if word & WAITERS == 0
                && self
                    .word
                    .compare_exchange(word, word | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            if !futex::wait(&self.word, word | WAITERS, deadline).map_err(LockFailure::Os)? {
                return Err(LockFailure::TimedOut);
            }
            slept = true;
        }
    }

    /// Locks if free now; `Ok(None)` if another holds it.
    pub(crate) fn try_lock(&self) -> Result<Option<Taken>, LockFailure> {
        if let Some(again) = self.again()? {
            return Ok(Some(again));
        }
        loop {
            let word = self.word.load(Ordering::Relaxed);
            if word & OWNER != 0 {
                return Ok(None);
            }
            if self.take(word, me() | word & WAITERS) {
                return Ok(Some(taken(word)));
            }
        }
    }

    /// When this thread holds it already: taken again if recursive, refused (EDEADLK) if not;
    /// `None` when another thread holds it or no one does.
    fn again(&self) -> Result<Option<Taken>, LockFailure> {
        if self.word.load(Ordering::Relaxed) & OWNER != me() {
            return Ok(None);
        }
        if !self.recursive.load(Ordering::Relaxed) {
            let deadlock = io::Error::from_raw_os_error(libc::EDEADLK);
            return Err(LockFailure::Os(deadlock));
        }
        self.depth.fetch_add(1, Ordering::Relaxed);
        Ok(Some(Taken::Cleanly))
    }

    /// Changes a free `word` to `mine`, making this thread the owner; false if it changed.
    fn take(&self, word: u32, mine: u32) -> bool {
        self.word
            .compare_exchange(word, mine, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Unlocks; refused (EPERM) when this thread does not hold it.
    pub(crate) fn unlock(&self) -> io::Result<()> {
        if self.word.load(Ordering::Relaxed) & OWNER != me() {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        if self.depth.load(Ordering::Relaxed) > 0 {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            return Ok(());
        }
        if self.word.swap(0, Ordering::Release) & WAITERS != 0 {
            futex::wake(&self.word, 1);
        }
        Ok(())
    }

    /// What the kernel does for a robust mutex held by a thread that exits: marks the owner
    /// dead and wakes one sleeper. The caller plays the dying thread, which holds it.
    #[cfg(test)]
    fn die_holding(&self) {
        self.depth.store(0, Ordering::Relaxed);
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            assert_eq!(word & OWNER, me(), "only the owner dies holding it");
            let dead = word & WAITERS | OWNER_DIED;
            match self
                .word
                .compare_exchange(word, dead, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) if dead & WAITERS != 0 => return futex::wake(&self.word, 1),
                Ok(_) => return,
                Err(now) => word = now,
            }
        }
    }
}

/// How a word that was free was taken: from a dead owner if the kernel had marked it so.
/// (glibc reports EOWNERDEAD, and `RawMutex::taken` marks it consistent, which clears the
/// mark: here taking it over with this thread's number did.)
fn taken(word: u32) -> Taken {
    if word & OWNER_DIED != 0 {
        Taken::FromTheDead
    } else {
        Taken::Cleanly
    }
}

impl<F> Monitor<F> {
    /// A monitor in ordinary memory, for loom's threads, which share it as processes share a
    /// mapping (the tests' only: the runtime's monitors live in mappings).
    #[cfg(test)]
    pub(crate) fn new(fields: F) -> Self {
        Monitor {
            mutex: RawMutex::new(),
            fields: std::cell::UnsafeCell::new(fields),
        }
    }
}

/// Every interleaving of a few threads on a monitor (`--cfg loom`; README: Testing). A lost
/// wake-up leaves a thread asleep with no one to wake it, which loom reports as a deadlock.
#[cfg(test)]
mod loom_tests {
    use super::super::{Condvar, MonitorGuard};
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    fn check(preemptions: usize, model: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(preemptions);
        builder.check(model);
    }

    /// A monitor over a cell that loom watches: two accesses not ordered by the lock (one
    /// outside it, or a lock without acquire and release) fail the model.
    fn counter() -> Arc<Monitor<loom::cell::UnsafeCell<u32>>> {
        let monitor = Monitor::new(loom::cell::UnsafeCell::new(0));
        monitor.init(false).unwrap();
        Arc::new(monitor)
    }

    fn add_one(guard: &mut MonitorGuard<'_, loom::cell::UnsafeCell<u32>>) {
        guard.fields().with_mut(|count| {
            // SAFETY: the lock is held: loom checks that no other access overlaps this one.
            unsafe { *count += 1 }
        });
    }

    /// The mutex of every `Lock` (and of every other primitive's state).
    #[test]
    fn a_lock_is_held_by_one_thread_at_a_time_and_wakes_the_next() {
        check(2, || {
            let monitor = counter();
            let others: Vec<_> = (0..2)
                .map(|_| {
                    let monitor = monitor.clone();
                    thread::spawn(move || add_one(&mut monitor.lock(None).unwrap()))
                })
                .collect();
            add_one(&mut monitor.lock(None).unwrap());
            for other in others {
                other.join().unwrap();
            }
            let mut guard = monitor.lock(None).unwrap();
            // SAFETY: the lock is held and every other thread is done.
            assert_eq!(guard.fields().with(|count| unsafe { *count }), 3);
        });
    }

    /// A thread that dies holding the lock: the next locker, waiting or not, takes it over
    /// and is told; the one after it takes it cleanly.
    #[test]
    fn a_lock_whose_owner_died_goes_to_the_next_locker_marked() {
        check(3, || {
            let monitor = counter();
            let mut guard = monitor.lock(None).unwrap();
            add_one(&mut guard);
            let heir = {
                let monitor = monitor.clone();
                thread::spawn(move || {
                    let mut guard = monitor.lock(None).unwrap();
                    add_one(&mut guard);
                    guard.taken()
                })
            };
            std::mem::forget(guard);
            monitor.mutex.die_holding();
            assert_eq!(heir.join().unwrap(), Taken::FromTheDead);
            assert_eq!(monitor.lock(None).unwrap().taken(), Taken::Cleanly);
        });
    }

    /// `MonitorGuard::wait` (every condition, semaphore, event, barrier and queue wait): a
    /// change made under the lock and notified after it always wakes the waiter, and a
    /// waiter whose notifier died holding the lock takes it back marked.
    #[test]
    fn a_waiter_wakes_for_a_notified_change_even_when_the_notifier_dies() {
        for dies in [false, true] {
            check(3, move || {
                let both = Arc::new((counter(), Condvar::default()));
                let mut guard = both.0.lock(None).unwrap();
                let notifier = {
                    let both = both.clone();
                    thread::spawn(move || {
                        let (monitor, signal) = &*both;
                        let mut guard = monitor.lock(None).unwrap();
                        add_one(&mut guard);
                        signal.notify_all();
                        if dies {
                            std::mem::forget(guard);
                            monitor.mutex.die_holding();
                        }
                    })
                };
                // SAFETY: the lock is held (taken back by each wait).
                while guard.fields().with(|count| unsafe { *count }) == 0 {
                    assert!(guard.wait(&both.1, None, None).unwrap());
                }
                let expected = if dies {
                    Taken::FromTheDead
                } else {
                    Taken::Cleanly
                };
                assert_eq!(guard.taken(), expected);
                drop(guard);
                notifier.join().unwrap();
            });
        }
    }
}
