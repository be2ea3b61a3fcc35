//! Robust process-shared pthread mutexes: a lock whose owner died is reported to the next
//! locker instead of being held forever. [`Monitor`] is such a mutex with the data it guards
//! (fields of a fixed size, or a slice: `Monitor<[T]>`), and [`Condvar`] a condition variable
//! for it made of a sequence number and a futex: unlike a pthread condition variable it has no
//! state that a waiter's death can corrupt.
//!
//! Timed locks wait on `CLOCK_MONOTONIC` (`pthread_mutex_clocklock`, glibc 2.30 or later), so
//! a change of the wall clock neither cuts a wait short nor stretches it.

use std::alloc::Layout;
use std::cell::UnsafeCell;
use std::io;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::sys::futex::{self, AtomicU32};
use crate::sys::mmap::{InMapping, Mapping, PAGE};

// loom cannot run glibc: under `--cfg loom` the mutex is glibc's protocol for a robust mutex on
// loom's futex (`model` here), and everything else in this file is the real code.
#[cfg(loom)]
mod model;
#[cfg(loom)]
use model::RawMutex;

// Not in the `libc` crate yet; glibc has had it since 2.30.
#[cfg(not(loom))]
unsafe extern "C" {
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

/// Why a [`RawMutex`] was not taken.
#[derive(Debug)]
pub(crate) enum LockFailure {
    TimedOut,
    Os(io::Error),
}

/// A robust, process-shared pthread mutex, in shared memory.
#[cfg(not(loom))]
#[repr(C)]
pub(crate) struct RawMutex {
    inner: UnsafeCell<libc::pthread_mutex_t>,
}

// SAFETY: a pthread mutex is made to be locked from any thread (and process).
#[cfg(not(loom))]
unsafe impl Sync for RawMutex {}

/// How a [`RawMutex`] was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    Cleanly,
    /// Its previous owner died holding it: what it guards may be half-changed. It is held
    /// now, and marked consistent again so that it stays usable.
    FromTheDead,
}

#[cfg(not(loom))]
fn check(code: libc::c_int) -> io::Result<()> {
    match code {
        0 => Ok(()),
        code => Err(io::Error::from_raw_os_error(code)),
    }
}

#[cfg(not(loom))]
impl RawMutex {
    /// Initializes the mutex in place; `recursive` lets its owner lock it again.
    pub(crate) fn init(&self, recursive: bool) -> io::Result<()> {
        let kind = if recursive {
            libc::PTHREAD_MUTEX_RECURSIVE
        } else {
            libc::PTHREAD_MUTEX_ERRORCHECK
        };
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: `attr` is initialized by pthread_mutexattr_init before any other use and
        // destroyed once, at the end; `inner` is zeroed shared memory that nobody locks
        // before its creator has initialized it here.
        unsafe {
            check(libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
            let attr = attr.as_mut_ptr();
            let result = check(libc::pthread_mutexattr_setpshared(
                attr,
                libc::PTHREAD_PROCESS_SHARED,
            ))
            .and_then(|()| {
                check(libc::pthread_mutexattr_setrobust(
                    attr,
                    libc::PTHREAD_MUTEX_ROBUST,
                ))
            })
            .and_then(|()| check(libc::pthread_mutexattr_settype(attr, kind)))
            .and_then(|()| check(libc::pthread_mutex_init(self.inner.get(), attr)));
            libc::pthread_mutexattr_destroy(attr);
            result
        }
    }

    /// Locks, waiting until `deadline` (forever if `None`).
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> Result<Taken, LockFailure> {
        // SAFETY: the mutex was initialized by its creator before the memory was shared, and
        // stays mapped while `self` is borrowed; `at` lives across the call.
        let code = unsafe {
            match deadline {
                None => libc::pthread_mutex_lock(self.inner.get()),
                Some(deadline) => {
                    let at = monotonic(deadline);
                    pthread_mutex_clocklock(self.inner.get(), libc::CLOCK_MONOTONIC, &at)
                }
            }
        };
        self.taken(code)
    }

    /// Locks if free now; `Ok(None)` if another holds it.
    pub(crate) fn try_lock(&self) -> Result<Option<Taken>, LockFailure> {
        // SAFETY: as in `lock`.
        match unsafe { libc::pthread_mutex_trylock(self.inner.get()) } {
            libc::EBUSY => Ok(None),
            code => self.taken(code).map(Some),
        }
    }

    fn taken(&self, code: libc::c_int) -> Result<Taken, LockFailure> {
        match code {
            0 => Ok(Taken::Cleanly),
            libc::EOWNERDEAD => {
                // SAFETY: EOWNERDEAD means this thread holds the mutex now, which is what
                // pthread_mutex_consistent requires; it cannot fail then.
                unsafe { libc::pthread_mutex_consistent(self.inner.get()) };
                Ok(Taken::FromTheDead)
            }
            libc::ETIMEDOUT => Err(LockFailure::TimedOut),
            code => Err(LockFailure::Os(io::Error::from_raw_os_error(code))),
        }
    }

    /// Unlocks. An error-checking mutex refuses (EPERM) when this thread does not hold it.
    pub(crate) fn unlock(&self) -> io::Result<()> {
        // SAFETY: the mutex is initialized and mapped; unlocking one this thread does not
        // hold is refused with EPERM rather than undefined (error-checking and robust).
        check(unsafe { libc::pthread_mutex_unlock(self.inner.get()) })
    }
}

/// A deadline as the absolute CLOCK_MONOTONIC time pthread_mutex_clocklock wants. `Instant`
/// is that clock too, but keeps its reading private: go through what is left.
#[cfg(not(loom))]
fn monotonic(deadline: Instant) -> libc::timespec {
    let left = deadline.saturating_duration_since(Instant::now());
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let nanos = now.tv_nsec as u64 + u64::from(left.subsec_nanos());
    let secs = (now.tv_sec as u64)
        .saturating_add(left.as_secs())
        .saturating_add(nanos / 1_000_000_000);
    libc::timespec {
        tv_sec: secs.min(libc::time_t::MAX as u64) as libc::time_t,
        tv_nsec: (nanos % 1_000_000_000) as _,
    }
}

/// A condition variable for a [`Monitor`]: a sequence number that each notification bumps,
/// and a futex on it.
#[repr(C)]
#[derive(Default)]
pub(crate) struct Condvar {
    seq: AtomicU32,
    waiters: AtomicU32,
}

impl Condvar {
    /// Wakes up to `n` waiters.
    pub(crate) fn notify(&self, n: u32) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            futex::wake(&self.seq, n);
        }
    }

    /// Wakes every waiter.
    pub(crate) fn notify_all(&self) {
        self.notify(u32::MAX);
    }
}

/// Data of type `F` guarded by a robust mutex, in shared memory.
#[repr(C)]
pub(crate) struct Monitor<F: ?Sized> {
    mutex: RawMutex,
    fields: UnsafeCell<F>,
}

// SAFETY: the fields are reached only through a guard, with the mutex held, as for
// `std::sync::Mutex<F>`, or under the promise of `unlocked`'s callers.
unsafe impl<F: ?Sized + Send> Sync for Monitor<F> {}

impl<T> Monitor<[T]>
where
    Monitor<[T]>: InMapping,
{
    /// The bytes a monitor of `len` elements takes in a mapping; `None` when that is more
    /// than an address space holds.
    pub(crate) fn size(len: usize) -> Option<usize> {
        Some(Self::layout(len)?.size())
    }

    /// The layout of `#[repr(C)]`: the mutex, then the elements at their alignment, padded to
    /// the alignment of the whole.
    fn layout(len: usize) -> Option<Layout> {
        let (layout, _) = Layout::new::<RawMutex>()
            .extend(Layout::array::<T>(len).ok()?)
            .ok()?;
        Some(layout.pad_to_align())
    }

    /// The monitor of `len` elements at byte `offset` of `map`. Panics if it does not fit or
    /// is misaligned.
    pub(crate) fn in_mapping(map: &Mapping, offset: usize, len: usize) -> &Monitor<[T]> {
        let layout = Self::layout(len).expect("a monitor larger than memory");
        assert!(
            offset
                .checked_add(layout.size())
                .is_some_and(|end| end <= map.len())
                && offset % layout.align() == 0
                && layout.align() <= PAGE,
            "a monitor outside its mapping"
        );
        let first = map.as_ptr().as_ptr().wrapping_add(offset).cast::<T>();
        // The pointer to a struct whose last field is a slice carries the slice's length.
        let monitor = std::ptr::slice_from_raw_parts(first, len) as *const Monitor<[T]>;
        // SAFETY: in bounds and aligned (checked above against the layout `#[repr(C)]` gives,
        // the mapping is page aligned); the memory is a valid `Monitor<[T]>` whatever its bytes
        // (`InMapping`: zeros are an unused mutex and valid elements, and the only writes are
        // through `&Self`); it stays mapped for as long as `map` is borrowed.
        unsafe { &*monitor }
    }
}

impl<F: ?Sized> Monitor<F> {
    /// Initializes the mutex; the creator calls it once, before sharing the memory.
    pub(crate) fn init(&self, recursive: bool) -> io::Result<()> {
        self.mutex.init(recursive)
    }

    /// Locks, waiting until `deadline` (forever if `None`).
    pub(crate) fn lock(
        &self,
        deadline: Option<Instant>,
    ) -> Result<MonitorGuard<'_, F>, LockFailure> {
        self.mutex.lock(deadline).map(|taken| self.guard(taken))
    }

    /// Locks if free now; `Ok(None)` if another holds it.
    pub(crate) fn try_lock(&self) -> Result<Option<MonitorGuard<'_, F>>, LockFailure> {
        Ok(self.mutex.try_lock()?.map(|taken| self.guard(taken)))
    }

    fn guard(&self, taken: Taken) -> MonitorGuard<'_, F> {
        MonitorGuard {
            monitor: self,
            held: true,
            taken,
            thread_bound: PhantomData,
        }
    }

    /// The fields, without the lock.
    ///
    /// # Safety
    ///
    /// No thread or process may write the fields while the reference lives.
    pub(crate) unsafe fn unlocked(&self) -> &F {
        // SAFETY: the fields are valid (`InMapping`, or owned memory) and live while `self` is
        // borrowed; the caller rules out writers.
        unsafe { &*self.fields.get() }
    }

    /// The fields, for writing, without the lock.
    ///
    /// # Safety
    ///
    /// No other thread or process may read or write the fields while the reference lives.
    #[allow(
        clippy::mut_from_ref,
        reason = "the caller promises the exclusive access that `&mut self` would prove"
    )]
    pub(crate) unsafe fn unlocked_mut(&self) -> &mut F {
        // SAFETY: as in `unlocked`; the caller rules out every other access.
        unsafe { &mut *self.fields.get() }
    }
}

/// A held [`Monitor`]: its fields, until dropped.
pub(crate) struct MonitorGuard<'a, F: ?Sized> {
    monitor: &'a Monitor<F>,
    /// False once a wait could not take the mutex back: the fields are out of reach then.
    held: bool,
    taken: Taken,
    /// pthread mutexes must be unlocked by the thread that locked them.
    thread_bound: PhantomData<*const ()>,
}

impl<F: ?Sized> MonitorGuard<'_, F> {
    /// How the mutex was taken: [`Taken::FromTheDead`] says its last owner died holding it.
    pub(crate) fn taken(&self) -> Taken {
        self.taken
    }

    /// The guarded fields.
    pub(crate) fn fields(&mut self) -> &mut F {
        assert!(self.held, "a monitor's fields used after its lock was lost");
        // SAFETY: this thread holds the mutex (`held`), so nothing else, in any process,
        // touches the fields until the guard is dropped; `&mut self` makes the borrow unique.
        unsafe { &mut *self.monitor.fields.get() }
    }

    /// The guarded fields, to read.
    pub(crate) fn get(&self) -> &F {
        assert!(self.held, "a monitor's fields used after its lock was lost");
        // SAFETY: as in `fields`; `&self` allows only shared borrows.
        unsafe { &*self.monitor.fields.get() }
    }

    /// Releases the mutex, sleeps until `condvar` is notified (or spuriously) or `wake`, and
    /// takes the mutex back, waiting for it no later than `relock`. `Ok(false)` if `wake`
    /// passed (the mutex is held again). On an error the mutex may not be held: the guard is
    /// then spent, and gives nothing more.
    pub(crate) fn wait(
        &mut self,
        condvar: &Condvar,
        wake: Option<Instant>,
        relock: Option<Instant>,
    ) -> Result<bool, LockFailure> {
        if !self.held {
            return Err(LockFailure::Os(io::Error::other(
                "the lock was not taken back after an earlier wait: take it again",
            )));
        }
        let seq = condvar.seq.load(Ordering::SeqCst);
        condvar.waiters.fetch_add(1, Ordering::SeqCst);
        self.held = false;
        let woke = self
            .monitor
            .mutex
            .unlock()
            .and_then(|()| futex::wait(&condvar.seq, seq, wake));
        condvar.waiters.fetch_sub(1, Ordering::SeqCst);
        let woke = woke.map_err(LockFailure::Os)?;
        let taken = match self.monitor.mutex.lock(relock) {
            // The mutex is free by the deadline's end as often as not: try once more then.
            Err(LockFailure::TimedOut) => self
                .monitor
                .mutex
                .try_lock()?
                .ok_or(LockFailure::TimedOut)?,
            other => other?,
        };
        self.held = true;
        if taken == Taken::FromTheDead {
            self.taken = taken;
        }
        Ok(woke)
    }
}

impl<F: ?Sized> Drop for MonitorGuard<'_, F> {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        if let Err(e) = self.monitor.mutex.unlock() {
            // Unreachable while guards stay on their thread; a panic in drop would abort.
            eprintln!("mp: cannot unlock a process-shared lock: {e}");
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A monitor in this process's memory (threads are processes enough for these tests).
    fn monitor() -> Box<(Monitor<u64>, Condvar)> {
        let both = Box::new((
            Monitor {
                mutex: RawMutex {
                    // SAFETY: zeros are a valid pthread_mutex_t to initialize.
                    inner: UnsafeCell::new(unsafe { std::mem::zeroed() }),
                },
                fields: UnsafeCell::new(0),
            },
            Condvar::default(),
        ));
        both.0.init(false).unwrap();
        both
    }

    #[test]
    fn a_monitor_of_a_slice_takes_the_size_it_reports_and_no_more() {
        use crate::sys::memfd;
        use std::os::fd::AsFd;

        let fd = memfd::create(c"mp-test").unwrap();
        memfd::set_len(fd.as_fd(), PAGE as u64).unwrap();
        let map = Mapping::shared(fd.as_fd(), PAGE).unwrap();
        for len in [0, 1, 3, 100] {
            let monitor = Monitor::<[u64]>::in_mapping(&map, 64, len);
            assert_eq!(Some(size_of_val(monitor)), Monitor::<[u64]>::size(len));
            assert_eq!(monitor.fields.get().cast::<u64>().align_offset(8), 0);
        }
        let monitor = Monitor::<[u64]>::in_mapping(&map, 0, 4);
        monitor.init(false).unwrap();
        monitor
            .lock(None)
            .unwrap()
            .fields()
            .copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(monitor.lock(None).unwrap().get(), [1, 2, 3, 4]);
        let past_the_end = PAGE / 8;
        let outside = std::panic::catch_unwind(|| {
            Monitor::<[u64]>::in_mapping(&map, 64, past_the_end);
        });
        assert!(outside.is_err(), "a monitor past the mapping's end");
        let misaligned = std::panic::catch_unwind(|| {
            Monitor::<[u64]>::in_mapping(&map, 4, 1);
        });
        assert!(misaligned.is_err(), "a misaligned monitor");
        assert_eq!(Monitor::<[u64]>::size(usize::MAX), None);
    }

    #[test]
    fn a_wait_times_out_and_holds_the_lock_again() {
        let both = monitor();
        let mut guard = both.0.lock(None).unwrap();
        let woke = guard
            .wait(
                &both.1,
                Some(Instant::now() + Duration::from_millis(20)),
                None,
            )
            .unwrap();
        assert!(!woke);
        *guard.fields() += 1;
        assert!(
            !matches!(both.0.try_lock(), Ok(Some(_))),
            "held again by this thread"
        );
    }

    #[test]
    fn a_notification_wakes_a_waiter_that_sees_the_change() {
        let both = monitor();
        let (monitor, condvar) = (&both.0, &both.1);
        std::thread::scope(|s| {
            let mut guard = monitor.lock(None).unwrap();
            s.spawn(|| {
                *monitor.lock(None).unwrap().fields() = 7;
                condvar.notify_all();
            });
            let deadline = Instant::now() + Duration::from_secs(30);
            while *guard.fields() != 7 {
                assert!(
                    guard.wait(condvar, Some(deadline), Some(deadline)).unwrap(),
                    "no notification"
                );
            }
        });
    }

    #[test]
    fn a_relock_past_the_deadline_gives_up_and_spends_the_guard() {
        let both = monitor();
        let (monitor, condvar) = (&both.0, &both.1);
        let (held, release) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|s| {
            let mut guard = monitor.lock(None).unwrap();
            s.spawn(|| {
                let _other = monitor.lock(None).unwrap();
                condvar.notify_all();
                held.wait();
                release.wait();
            });
            let deadline = Instant::now() + Duration::from_millis(200);
            let outcome = loop {
                match guard.wait(condvar, Some(deadline), Some(deadline)) {
                    Ok(true) => continue,
                    other => break other,
                }
            };
            held.wait();
            assert!(matches!(outcome, Err(LockFailure::TimedOut)), "{outcome:?}");
            release.wait();
        });
    }
}
