//! Synchronization between processes: [`Lock`], [`RLock`], [`Semaphore`],
//! [`BoundedSemaphore`], [`Event`], [`Condition`], [`Barrier`].
//!
//! Each lives in its own page of anonymous shared memory (see `shm`), and crosses to other
//! processes as that memory's descriptor: pass them to [`spawn!`](crate::spawn), to pool tasks,
//! through pipes, or return them. Locks are robust: when a process dies holding one, the next
//! `acquire` fails with [`is_owner_died`](crate::Error::is_owner_died) instead of waiting
//! forever, and the lock is free again after that.

use std::fmt;
use std::io;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::base::{Error, Kind, Result};
use crate::ipc::shm::{
    Held, SharedState, Shm, Wait, data_offset, deadline, lock_error, lock_state, wait_state,
};
use crate::sys;
use crate::sys::mmap::InMapping;
use crate::sys::mutex::{Condvar, LockFailure, Monitor, MonitorGuard};
use crate::wire::codec;

/// Clone, Serialize, Deserialize and (unless `no Debug`) Debug for a handle that is an
/// `Arc<Shm<State>>`.
macro_rules! shared_handle {
    ($handle:ident) => {
        shared_handle!($handle, no Debug);

        impl fmt::Debug for $handle {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($handle)).finish_non_exhaustive()
            }
        }
    };
    ($handle:ident, no Debug) => {
        impl Clone for $handle {
            fn clone(&self) -> Self {
                $handle {
                    shm: self.shm.clone(),
                }
            }
        }

        impl Serialize for $handle {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.shm.serialize(serializer)
            }
        }

        impl<'de> Deserialize<'de> for $handle {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                Ok($handle {
                    shm: Arc::new(Shm::deserialize(deserializer)?),
                })
            }
        }
    };
}

/// A lock's state: a mutex that guards nothing in the mapping. `RECURSIVE` tells an
/// [`RLock`] from a [`Lock`].
#[repr(C)]
struct LockState<const RECURSIVE: bool> {
    monitor: Monitor<()>,
}

// SAFETY: zeros are an unused mutex until `init`; the mutex is made for shared use.
unsafe impl<const RECURSIVE: bool> InMapping for LockState<RECURSIVE> {}

impl<const RECURSIVE: bool> SharedState for LockState<RECURSIVE> {
    const KIND: u64 = if RECURSIVE {
        0x6d70_524c_6f63_6b01
    } else {
        0x6d70_4c6f_636b_0001
    };

    fn init(&self) -> io::Result<()> {
        self.monitor.init(RECURSIVE)
    }
}

/// What [`Lock`] and [`RLock`] are, told apart by `RECURSIVE`: each is this with its own docs.
#[derive(Clone)]
struct RawLock<const RECURSIVE: bool> {
    shm: Arc<Shm<LockState<RECURSIVE>>>,
}

impl<const RECURSIVE: bool> RawLock<RECURSIVE> {
    fn new() -> Result<Self> {
        let name = if RECURSIVE { c"mp-rlock" } else { c"mp-lock" };
        Ok(RawLock {
            shm: Arc::new(Shm::create(name, 0)?),
        })
    }

    /// Takes the lock's mutex: the one way [`Lock`] and [`RLock`] are acquired.
    fn take(&self, wait: Wait) -> Result<Option<LockGuard<'_>>> {
        let what = if RECURSIVE { "an rlock" } else { "a lock" };
        let held = self.shm.acquire(&self.shm.state().monitor, wait, what)?;
        Ok(held.map(|held| LockGuard { _held: held }))
    }

    fn acquire(&self) -> Result<LockGuard<'_>> {
        waited(self.take(Wait::Forever))
    }

    fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>> {
        waited(self.take(Wait::timeout(timeout)))
    }

    fn try_acquire(&self) -> Result<Option<LockGuard<'_>>> {
        self.take(Wait::No)
    }
}

impl<const RECURSIVE: bool> Serialize for RawLock<RECURSIVE> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.shm.serialize(serializer)
    }
}

impl<'de, const RECURSIVE: bool> Deserialize<'de> for RawLock<RECURSIVE> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(RawLock {
            shm: Arc::new(Shm::deserialize(deserializer)?),
        })
    }
}

/// What a wait without a timeout returns: there is always a guard.
pub(crate) fn waited<G>(guard: Result<Option<G>>) -> Result<G> {
    guard.map(|g| g.expect("a wait without a timeout ends with the lock"))
}

/// A lock shared by processes, Python's `multiprocessing.Lock`, held through a [`LockGuard`].
///
/// Robust: if a process dies holding it, the next `acquire` returns an error whose
/// [`is_owner_died`](crate::Error::is_owner_died) is true (what the lock guarded may be
/// half-changed), and the lock is free again. Taking it twice on one thread is an error
/// rather than a deadlock; use an [`RLock`] for that.
///
/// # Examples
///
/// ```
/// use mp_runtime::{process_fn, spawn, Lock};
///
/// #[process_fn]
/// fn try_it(lock: Lock) -> bool {
///     lock.try_acquire().unwrap().is_some()
/// }
///
/// let lock = Lock::new().unwrap();
/// let guard = lock.acquire().unwrap();
/// assert!(!spawn!(try_it, lock.clone()).unwrap().join().unwrap()); // held here
/// drop(guard);
/// assert!(spawn!(try_it, lock.clone()).unwrap().join().unwrap());
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Lock {
    raw: RawLock<false>,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock").finish_non_exhaustive()
    }
}

/// Holds a [`Lock`] or [`RLock`] until dropped. It stays on the thread that took it.
///
/// # Examples
///
/// ```
/// let lock = mp_runtime::Lock::new().unwrap();
/// let guard = lock.acquire().unwrap();
/// assert!(lock.acquire().unwrap_err().is_usage()); // this thread holds it already
/// drop(guard);
/// assert!(lock.try_acquire().unwrap().is_some());
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    _held: Held<'a, ()>,
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard")
    }
}

impl Lock {
    /// A new, free lock.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = mp_runtime::Lock::new().unwrap();
    /// drop(lock.acquire().unwrap());
    /// ```
    pub fn new() -> Result<Self> {
        Ok(Lock {
            raw: RawLock::new()?,
        })
    }

    /// Waits for the lock and takes it.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = mp_runtime::Lock::new().unwrap();
    /// let guard = lock.acquire().unwrap();
    /// assert!(lock.acquire().unwrap_err().is_usage()); // not twice on one thread
    /// drop(guard);
    /// ```
    pub fn acquire(&self) -> Result<LockGuard<'_>> {
        self.raw.acquire()
    }

    /// Waits at most `timeout` for the lock.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let lock = mp_runtime::Lock::new().unwrap();
    /// let _guard = lock.acquire_timeout(Duration::from_secs(1)).unwrap();
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>> {
        self.raw.acquire_timeout(timeout)
    }

    /// Takes the lock if it is free now; `Ok(None)` if another holds it.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = mp_runtime::Lock::new().unwrap();
    /// assert!(lock.try_acquire().unwrap().is_some());
    /// ```
    pub fn try_acquire(&self) -> Result<Option<LockGuard<'_>>> {
        self.raw.try_acquire()
    }
}

/// A reentrant lock shared by processes, Python's `multiprocessing.RLock`: the thread that
/// holds it may take it again; it is free when every guard is dropped. Robust like [`Lock`].
///
/// # Examples
///
/// ```
/// let lock = mp_runtime::RLock::new().unwrap();
/// let outer = lock.acquire().unwrap();
/// let inner = lock.acquire().unwrap(); // the same thread again
/// drop(inner);
/// drop(outer);
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RLock {
    raw: RawLock<true>,
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock").finish_non_exhaustive()
    }
}

impl RLock {
    /// A new, free reentrant lock.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = mp_runtime::RLock::new().unwrap();
    /// assert!(lock.try_acquire().unwrap().is_some());
    /// ```
    pub fn new() -> Result<Self> {
        Ok(RLock {
            raw: RawLock::new()?,
        })
    }

    /// Waits for the lock and takes it (at once if this thread holds it).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = mp_runtime::RLock::new().unwrap();
    /// let _a = lock.acquire().unwrap();
    /// let _b = lock.acquire().unwrap();
    /// ```
    pub fn acquire(&self) -> Result<LockGuard<'_>> {
        self.raw.acquire()
    }

    /// Waits at most `timeout` for the lock.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let lock = mp_runtime::RLock::new().unwrap();
    /// let _guard = lock.acquire_timeout(Duration::from_secs(1)).unwrap();
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>> {
        self.raw.acquire_timeout(timeout)
    }

    /// Takes the lock if this thread can now; `Ok(None)` if another holds it.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = mp_runtime::RLock::new().unwrap();
    /// let _a = lock.try_acquire().unwrap().unwrap();
    /// assert!(lock.try_acquire().unwrap().is_some());
    /// ```
    pub fn try_acquire(&self) -> Result<Option<LockGuard<'_>>> {
        self.raw.try_acquire()
    }
}

#[repr(C)]
#[derive(Default)]
struct SemaphoreFields {
    value: u64,
    /// The most `value` may be after a release; 0 for no bound.
    bound: u64,
}

#[repr(C)]
struct SemaphoreState {
    monitor: Monitor<SemaphoreFields>,
    signal: Condvar,
}

// SAFETY: zeros are an unused mutex until `init`, a semaphore of no units, and a signal
// nobody waits on; the fields are used only under the monitor's mutex, the signal is atomics.
unsafe impl InMapping for SemaphoreState {}

impl SharedState for SemaphoreState {
    const KIND: u64 = 0x6d70_5365_6d61_0001;

    fn init(&self) -> io::Result<()> {
        self.monitor.init(false)
    }
}

impl SemaphoreState {
    /// Takes one unit, waiting as `wait` says; false for none with `Wait::No`, where a lock
    /// held elsewhere counts as none too.
    fn take(&self, wait: Wait) -> Result<bool> {
        let Some(mut fields) = lock_state(&self.monitor, wait, "a semaphore")? else {
            return Ok(false);
        };
        while fields.fields().value == 0 {
            if let Wait::No = wait {
                return Ok(false);
            }
            if !wait_state(&mut fields, &self.signal, wait, "a semaphore")? {
                return Err(lock_error(LockFailure::TimedOut, "a semaphore", wait));
            }
        }
        fields.fields().value -= 1;
        Ok(true)
    }

    /// Adds one unit and wakes one waiter; refused above the bound.
    fn release(&self) -> Result<()> {
        let mut fields = waited(lock_state(&self.monitor, Wait::Forever, "a semaphore"))?;
        let fields_now = fields.fields();
        if fields_now.bound != 0 && fields_now.value >= fields_now.bound {
            return Err(Error::new(Kind::Usage(
                "a bounded semaphore was released more times than it was acquired".into(),
            )));
        }
        fields_now.value += 1;
        drop(fields);
        self.signal.notify(1);
        Ok(())
    }
}

/// A counting semaphore shared by processes, Python's `multiprocessing.Semaphore`.
///
/// `acquire` takes one unit (waiting while there is none) and returns a guard that gives it
/// back when dropped; [`release`](Semaphore::release) adds one without a guard. A process
/// that dies holding units does not give them back, as in Python.
///
/// # Examples
///
/// ```
/// let sem = mp_runtime::Semaphore::new(2).unwrap();
/// let a = sem.acquire().unwrap();
/// let b = sem.acquire().unwrap();
/// assert!(sem.try_acquire().unwrap().is_none());
/// drop(a);
/// assert_eq!(sem.value().unwrap(), 1);
/// # drop(b);
/// ```
pub struct Semaphore {
    shm: Arc<Shm<SemaphoreState>>,
}

shared_handle!(Semaphore);

/// One unit of a [`Semaphore`], given back when dropped.
///
/// # Examples
///
/// ```
/// let slots = mp_runtime::Semaphore::new(1).unwrap();
/// let unit = slots.acquire().unwrap();
/// assert_eq!(slots.value().unwrap(), 0);
/// drop(unit);
/// assert_eq!(slots.value().unwrap(), 1);
/// ```
#[must_use = "the unit is given back as soon as the guard is dropped"]
#[derive(Debug)]
pub struct SemaphoreGuard<'a> {
    semaphore: &'a Semaphore,
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        // A bounded semaphore refuses a unit given back after an extra `release`: a bug of
        // the caller that a drop cannot return, and must not hide.
        if let Err(e) = self.semaphore.release() {
            eprintln!("mp: a semaphore guard could not give its unit back: {e}");
        }
    }
}

impl Semaphore {
    /// A semaphore with `value` units.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(mp_runtime::Semaphore::new(3).unwrap().value().unwrap(), 3);
    /// ```
    pub fn new(value: usize) -> Result<Self> {
        Self::with_bound(value, 0)
    }

    fn with_bound(value: usize, bound: u64) -> Result<Self> {
        let semaphore = Semaphore {
            shm: Arc::new(Shm::create(c"mp-semaphore", 0)?),
        };
        let mut fields = semaphore.lock(Wait::Forever)?;
        fields.fields().value = value as u64;
        fields.fields().bound = bound;
        drop(fields);
        Ok(semaphore)
    }

    fn lock(&self, wait: Wait) -> Result<MonitorGuard<'_, SemaphoreFields>> {
        waited(lock_state(&self.shm.state().monitor, wait, "a semaphore"))
    }

    fn take(&self, wait: Wait) -> Result<Option<SemaphoreGuard<'_>>> {
        // Lazily: a guard made and dropped would give back a unit never taken.
        let taken = self.shm.state().take(wait)?;
        Ok(taken.then(|| SemaphoreGuard { semaphore: self }))
    }

    /// Takes one unit, waiting while there is none.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = mp_runtime::Semaphore::new(1).unwrap();
    /// let _unit = sem.acquire().unwrap();
    /// assert_eq!(sem.value().unwrap(), 0);
    /// ```
    pub fn acquire(&self) -> Result<SemaphoreGuard<'_>> {
        waited(self.take(Wait::Forever))
    }

    /// Takes one unit, waiting at most `timeout`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let sem = mp_runtime::Semaphore::new(0).unwrap();
    /// assert!(sem.acquire_timeout(Duration::from_millis(10)).unwrap_err().is_timeout());
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<SemaphoreGuard<'_>> {
        waited(self.take(Wait::timeout(timeout)))
    }

    /// Takes one unit if there is one now.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = mp_runtime::Semaphore::new(0).unwrap();
    /// assert!(sem.try_acquire().unwrap().is_none());
    /// ```
    pub fn try_acquire(&self) -> Result<Option<SemaphoreGuard<'_>>> {
        self.take(Wait::No)
    }

    /// Adds one unit (wakes one waiter). On a [`BoundedSemaphore`], adding more than it
    /// started with is an error ([`is_usage`](crate::Error::is_usage)).
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = mp_runtime::Semaphore::new(0).unwrap();
    /// sem.release().unwrap();
    /// assert_eq!(sem.value().unwrap(), 1);
    /// ```
    pub fn release(&self) -> Result<()> {
        self.shm.state().release()
    }

    /// The number of units available now.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(mp_runtime::Semaphore::new(4).unwrap().value().unwrap(), 4);
    /// ```
    pub fn value(&self) -> Result<usize> {
        Ok(self.lock(Wait::Forever)?.get().value as usize)
    }
}

/// A [`Semaphore`] that refuses to be released above its starting value, Python's
/// `BoundedSemaphore`. Derefs to [`Semaphore`].
///
/// # Examples
///
/// ```
/// let sem = mp_runtime::BoundedSemaphore::new(1).unwrap();
/// assert!(sem.release().unwrap_err().is_usage());
/// let unit = sem.acquire().unwrap();
/// drop(unit); // gives it back: fine
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BoundedSemaphore {
    semaphore: Semaphore,
}

impl BoundedSemaphore {
    /// A bounded semaphore with `value` units, which is also its maximum.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(mp_runtime::BoundedSemaphore::new(2).unwrap().value().unwrap(), 2);
    /// ```
    pub fn new(value: usize) -> Result<Self> {
        Ok(BoundedSemaphore {
            semaphore: Semaphore::with_bound(value, value as u64)?,
        })
    }
}

impl Deref for BoundedSemaphore {
    type Target = Semaphore;

    fn deref(&self) -> &Semaphore {
        &self.semaphore
    }
}

#[repr(C)]
struct EventState {
    monitor: Monitor<bool>,
    signal: Condvar,
}

// SAFETY: zeros are an unused mutex until `init`, an unset flag, and a signal nobody waits
// on; the flag is used only under the monitor's mutex, the signal is atomics.
unsafe impl InMapping for EventState {}

impl SharedState for EventState {
    const KIND: u64 = 0x6d70_4576_656e_7401;

    fn init(&self) -> io::Result<()> {
        self.monitor.init(false)
    }
}

impl EventState {
    fn lock(&self, wait: Wait) -> Result<Option<MonitorGuard<'_, bool>>> {
        lock_state(&self.monitor, wait, "an event")
    }

    /// Sets the flag and wakes every waiter.
    fn set(&self) -> Result<()> {
        *waited(self.lock(Wait::Forever))?.fields() = true;
        self.signal.notify_all();
        Ok(())
    }

    /// Waits for the flag as `wait` says; whether it is set.
    fn wait(&self, wait: Wait) -> Result<bool> {
        let mut flag = waited(self.lock(wait))?;
        while !*flag.get() {
            if !wait_state(&mut flag, &self.signal, wait, "an event")? {
                return Ok(*flag.get());
            }
        }
        Ok(true)
    }
}

/// A flag shared by processes that others can wait for, Python's `multiprocessing.Event`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mp_runtime::{process_fn, spawn, Event};
///
/// #[process_fn]
/// fn wait_for_go(go: Event) -> bool {
///     go.wait_timeout(Duration::from_secs(30)).unwrap()
/// }
///
/// let go = Event::new().unwrap();
/// let child = spawn!(wait_for_go, go.clone()).unwrap();
/// go.set().unwrap();
/// assert!(child.join().unwrap());
/// ```
pub struct Event {
    shm: Arc<Shm<EventState>>,
}

shared_handle!(Event, no Debug);

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut event = f.debug_struct("Event");
        match self.is_set() {
            Ok(set) => event.field("set", &set),
            Err(e) => event.field("set", &format_args!("unknown ({e})")),
        }
        .finish()
    }
}

impl Event {
    /// A new event, not set.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!mp_runtime::Event::new().unwrap().is_set().unwrap());
    /// ```
    pub fn new() -> Result<Self> {
        Ok(Event {
            shm: Arc::new(Shm::create(c"mp-event", 0)?),
        })
    }

    fn lock(&self, wait: Wait) -> Result<Option<MonitorGuard<'_, bool>>> {
        self.shm.state().lock(wait)
    }

    /// Sets the flag and wakes every waiter.
    ///
    /// # Examples
    ///
    /// ```
    /// let event = mp_runtime::Event::new().unwrap();
    /// event.set().unwrap();
    /// assert!(event.is_set().unwrap());
    /// ```
    pub fn set(&self) -> Result<()> {
        self.shm.state().set()
    }

    /// Clears the flag.
    ///
    /// # Examples
    ///
    /// ```
    /// let event = mp_runtime::Event::new().unwrap();
    /// event.set().unwrap();
    /// event.clear().unwrap();
    /// assert!(!event.is_set().unwrap());
    /// ```
    pub fn clear(&self) -> Result<()> {
        *waited(self.lock(Wait::Forever))?.fields() = false;
        Ok(())
    }

    /// Whether the flag is set.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!mp_runtime::Event::new().unwrap().is_set().unwrap());
    /// ```
    pub fn is_set(&self) -> Result<bool> {
        Ok(*waited(self.lock(Wait::Forever))?.get())
    }

    /// Waits until the flag is set.
    ///
    /// # Examples
    ///
    /// ```
    /// let event = mp_runtime::Event::new().unwrap();
    /// event.set().unwrap();
    /// event.wait().unwrap(); // returns at once
    /// ```
    pub fn wait(&self) -> Result<()> {
        self.shm.state().wait(Wait::Forever).map(drop)
    }

    /// Waits at most `timeout` for the flag; returns whether it is set.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let event = mp_runtime::Event::new().unwrap();
    /// assert!(!event.wait_timeout(Duration::from_millis(10)).unwrap());
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.shm.state().wait(Wait::timeout(timeout))
    }
}

#[repr(C)]
struct ConditionState {
    monitor: Monitor<()>,
    signal: Condvar,
}

// SAFETY: zeros are an unused mutex until `init` and a signal nobody waits on; both are made
// for shared use.
unsafe impl InMapping for ConditionState {}

impl SharedState for ConditionState {
    const KIND: u64 = 0x6d70_436f_6e64_0001;

    fn init(&self) -> io::Result<()> {
        self.monitor.init(false)
    }
}

/// A condition variable shared by processes, with its own lock, Python's
/// `multiprocessing.Condition`.
///
/// [`acquire`](Condition::acquire) takes the lock; while holding the guard, wait for a
/// notification with [`ConditionGuard::wait`] (which releases the lock while it sleeps).
/// Keep the state the condition is about in shared memory too (a [`Value`](crate::Value)).
/// Robust like [`Lock`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mp_runtime::{process_fn, spawn, Condition, Value};
///
/// #[process_fn]
/// fn announce(cond: Condition, ready: Value<u32>) {
///     let _guard = cond.acquire().unwrap();
///     ready.set(1).unwrap();
///     cond.notify_all();
/// }
///
/// let cond = Condition::new().unwrap();
/// let ready = Value::new(0u32).unwrap();
/// let mut guard = cond.acquire().unwrap();
/// let child = spawn!(announce, cond.clone(), ready.clone()).unwrap();
/// assert!(guard.wait_for(|| ready.get().unwrap() == 1, Duration::from_secs(30)).unwrap());
/// drop(guard);
/// child.join().unwrap();
/// ```
pub struct Condition {
    shm: Arc<Shm<ConditionState>>,
}

shared_handle!(Condition);

/// Holds a [`Condition`]'s lock; waits on it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let ready = mp_runtime::Condition::new().unwrap();
/// let mut guard = ready.acquire().unwrap();
/// // Nobody notifies: the wait ends at its timeout, with the lock held again.
/// assert!(!guard.wait_timeout(Duration::from_millis(10)).unwrap());
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a> {
    held: Held<'a, ()>,
    signal: &'a Condvar,
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConditionGuard")
    }
}

impl Condition {
    /// A new condition with its own lock.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = mp_runtime::Condition::new().unwrap();
    /// drop(cond.acquire().unwrap());
    /// ```
    pub fn new() -> Result<Self> {
        Ok(Condition {
            shm: Arc::new(Shm::create(c"mp-condition", 0)?),
        })
    }

    /// Takes the lock: the one way a condition is acquired.
    fn take(&self, wait: Wait) -> Result<Option<ConditionGuard<'_>>> {
        let state = self.shm.state();
        let held = self
            .shm
            .acquire(&state.monitor, wait, "a condition's lock")?;
        Ok(held.map(|held| ConditionGuard {
            held,
            signal: &state.signal,
        }))
    }

    /// Takes the condition's lock, waiting for it.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = mp_runtime::Condition::new().unwrap();
    /// let _guard = cond.acquire().unwrap();
    /// ```
    pub fn acquire(&self) -> Result<ConditionGuard<'_>> {
        waited(self.take(Wait::Forever))
    }

    /// Takes the condition's lock, waiting at most `timeout`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let cond = mp_runtime::Condition::new().unwrap();
    /// let _guard = cond.acquire_timeout(Duration::from_secs(1)).unwrap();
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<ConditionGuard<'_>> {
        waited(self.take(Wait::timeout(timeout)))
    }

    /// Takes the condition's lock if it is free now.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = mp_runtime::Condition::new().unwrap();
    /// assert!(cond.try_acquire().unwrap().is_some());
    /// ```
    pub fn try_acquire(&self) -> Result<Option<ConditionGuard<'_>>> {
        self.take(Wait::No)
    }

    /// Wakes up to `n` waiters.
    ///
    /// # Examples
    ///
    /// ```
    /// mp_runtime::Condition::new().unwrap().notify(1); // nobody waits: nothing happens
    /// ```
    pub fn notify(&self, n: usize) {
        self.shm
            .state()
            .signal
            .notify(n.min(u32::MAX as usize) as u32);
    }

    /// Wakes every waiter.
    ///
    /// # Examples
    ///
    /// ```
    /// mp_runtime::Condition::new().unwrap().notify_all();
    /// ```
    pub fn notify_all(&self) {
        self.shm.state().signal.notify_all();
    }
}

impl ConditionGuard<'_> {
    fn wait_until(&mut self, until: Option<Instant>, timeout: Option<Duration>) -> Result<bool> {
        self.held
            .wait(self.signal, until, "a condition's lock", timeout)
    }

    /// Releases the lock, sleeps until notified, and takes the lock again. Wake-ups may be
    /// spurious: check the state in a loop, or use [`wait_for`](ConditionGuard::wait_for).
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = mp_runtime::Condition::new().unwrap();
    /// let mut guard = cond.acquire().unwrap();
    /// let waker = std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         let _g = cond.acquire().unwrap(); // free while the other waits
    ///         cond.notify_all();
    ///     });
    ///     guard.wait().unwrap();
    /// });
    /// ```
    pub fn wait(&mut self) -> Result<()> {
        self.wait_until(None, None).map(drop)
    }

    /// [`wait`](ConditionGuard::wait) for at most `timeout`; false if it passed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let cond = mp_runtime::Condition::new().unwrap();
    /// let mut guard = cond.acquire().unwrap();
    /// assert!(!guard.wait_timeout(Duration::from_millis(10)).unwrap());
    /// ```
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<bool> {
        self.wait_until(deadline(timeout), Some(timeout))
    }

    /// Waits until `ready()` is true, at most `timeout`; returns its last answer, Python's
    /// `wait_for`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let cond = mp_runtime::Condition::new().unwrap();
    /// let mut guard = cond.acquire().unwrap();
    /// assert!(guard.wait_for(|| true, Duration::ZERO).unwrap());
    /// ```
    pub fn wait_for(&mut self, mut ready: impl FnMut() -> bool, timeout: Duration) -> Result<bool> {
        let until = deadline(timeout);
        while !ready() {
            if !self.wait_until(until, Some(timeout))? {
                return Ok(ready());
            }
        }
        Ok(true)
    }
}

/// Room for processes that hold a barrier beyond its parties (onlookers that never wait).
const SPARE_HOLDERS: usize = 128;
/// How often a waiting party checks that the others are alive.
const LIVENESS_POLL: Duration = Duration::from_millis(50);

#[repr(C)]
struct BarrierFields {
    parties: u32,
    count: u32,
    /// How many rounds have ended, by a pass or a [`Barrier::reset`].
    generation: u32,
    /// How the latest 64 rounds ended, the newest in bit 0: 1 for a reset, whose waiters fail,
    /// 0 for a pass. A waiter that wakes after its round ended reads here which it was.
    endings: u64,
    broken: bool,
    /// Entries of the holders' table, which fills the data after the state: one per process
    /// that holds the barrier, two words each: the pid and how many handles it holds
    /// (`pid | count << 32`, 0 when free), and when that process started.
    holders: u32,
}

#[repr(C)]
struct BarrierState {
    monitor: Monitor<BarrierFields>,
    signal: Condvar,
}

// SAFETY: zeros are an unused mutex until `init`, a barrier not broken with no holders, and a
// signal nobody waits on; the fields (and the holders' table) are used only under the
// monitor's mutex, the signal is atomics.
unsafe impl InMapping for BarrierState {}

impl SharedState for BarrierState {
    const KIND: u64 = 0x6d70_4261_7272_0002;

    fn init(&self) -> io::Result<()> {
        self.monitor.init(false)
    }
}

/// The holders' table of a barrier's memory: read and written with its mutex held.
struct Holders<'a> {
    words: &'a [AtomicU64],
}

impl<'a> Holders<'a> {
    fn of(shm: &'a Shm<BarrierState>, fields: &BarrierFields) -> Self {
        let words = shm
            .mapping()
            .words(data_offset::<BarrierState>(), 2 * fields.holders as usize);
        Holders { words }
    }

    fn get(&self, slot: usize) -> (u32, u32, u64) {
        let word = self.words[2 * slot].load(Ordering::Relaxed);
        let start = self.words[2 * slot + 1].load(Ordering::Relaxed);
        (word as u32, (word >> 32) as u32, start)
    }

    fn set(&self, slot: usize, pid: u32, handles: u32, start: u64) {
        self.words[2 * slot].store(u64::from(pid) | u64::from(handles) << 32, Ordering::Relaxed);
        self.words[2 * slot + 1].store(start, Ordering::Relaxed);
    }

    fn slots(&self) -> impl Iterator<Item = (usize, (u32, u32, u64))> + '_ {
        (0..self.words.len() / 2).map(|slot| (slot, self.get(slot)))
    }

    /// A holder of the barrier whose process is gone.
    fn dead(&self) -> Option<u32> {
        self.slots()
            .map(|(_, holder)| holder)
            .find(|&(pid, _, start)| pid != 0 && !sys::process::is_alive_since(pid, start))
            .map(|(pid, _, _)| pid)
    }
}

/// Makes `parties` processes wait for each other, Python's `multiprocessing.Barrier`.
///
/// [`wait`](Barrier::wait) returns when `parties` callers are waiting, each with a different
/// index in `0..parties`. The barrier breaks (every waiter gets
/// [`is_broken_barrier`](crate::Error::is_broken_barrier)) when a process holding it dies
/// before it arrives — Python would wait forever — when a wait times out, or on
/// [`abort`](Barrier::abort).
///
/// A barrier watches every process that holds a handle to it, so that a holder's death breaks
/// it: it has room for its parties plus 128 processes at once. A process holds it from when a
/// handle arrives (as an argument, a result or through a pipe) until it drops its last one;
/// one process past the limit gets an error that says so (a task that receives the handle
/// fails with it). Pass the barrier only to processes that wait on it, or let the others drop
/// their handles first.
///
/// # Examples
///
/// ```
/// use mp_runtime::{process_fn, spawn, Barrier};
///
/// #[process_fn]
/// fn meet(barrier: Barrier) -> usize {
///     barrier.wait().unwrap()
/// }
///
/// let barrier = Barrier::new(3).unwrap();
/// let a = spawn!(meet, barrier.clone()).unwrap();
/// let b = spawn!(meet, barrier.clone()).unwrap();
/// let mine = barrier.wait().unwrap();
/// let mut indices = vec![mine, a.join().unwrap(), b.join().unwrap()];
/// indices.sort();
/// assert_eq!(indices, [0, 1, 2]);
/// ```
pub struct Barrier {
    inner: Arc<BarrierHandle>,
}

/// One process's hold on a barrier: registered among its holders while it lives.
struct BarrierHandle {
    shm: Shm<BarrierState>,
    /// This process's entry in the holders' table.
    slot: usize,
}

impl BarrierHandle {
    /// Counts one more handle of this process among the barrier's holders. A handle in a
    /// process the table has no room for would go unwatched (its death unnoticed): refused.
    fn register(shm: Shm<BarrierState>) -> Result<Self> {
        let pid = std::process::id();
        let start = sys::process::own_start_time();
        let fields = lock_barrier(&shm)?;
        let holders = Holders::of(&shm, fields.get());
        let mine = holders
            .slots()
            .find(|&(_, (p, _, s))| p == pid && s == start);
        let slot = match mine {
            Some((slot, (_, handles, _))) => {
                holders.set(slot, pid, handles + 1, start);
                slot
            }
            None => {
                let free = holders.slots().find(|&(_, (p, _, _))| p == 0);
                let Some((slot, _)) = free else {
                    return Err(Error::new(Kind::Usage(format!(
                        "a barrier of {} parties can be held by at most {} processes at once \
                         (its parties and {SPARE_HOLDERS} more), and this process would be \
                         one too many: drop the handles of processes that do not wait on it, \
                         or pass it to fewer processes at once",
                        fields.get().parties,
                        fields.get().holders
                    ))));
                };
                holders.set(slot, pid, 1, start);
                slot
            }
        };
        drop(fields);
        Ok(BarrierHandle { shm, slot })
    }
}

impl Drop for BarrierHandle {
    fn drop(&mut self) {
        let Ok(mut fields) = lock_barrier(&self.shm) else {
            return;
        };
        let holders = Holders::of(&self.shm, fields.get());
        let (pid, handles, start) = holders.get(self.slot);
        if handles > 1 {
            holders.set(self.slot, pid, handles - 1, start);
        } else {
            holders.set(self.slot, 0, 0, 0);
        }
        if std::thread::panicking() {
            // This process will not arrive: do not let the others wait for it.
            fields.fields().broken = true;
            drop(fields);
            self.shm.state().signal.notify_all();
        }
    }
}

fn lock_barrier(shm: &Shm<BarrierState>) -> Result<MonitorGuard<'_, BarrierFields>> {
    waited(lock_state(&shm.state().monitor, Wait::Forever, "a barrier"))
}

/// Ends the barrier's current round: by a pass, or by a reset that fails its waiters.
fn end_round(fields: &mut BarrierFields, reset: bool) {
    fields.count = 0;
    fields.generation = fields.generation.wrapping_add(1);
    fields.endings = fields.endings << 1 | u64::from(reset);
}

fn broken(why: impl Into<String>) -> Error {
    Error::new(Kind::BrokenBarrier(why.into()))
}

impl Barrier {
    /// A barrier for `parties` processes (or threads); at least 1.
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = mp_runtime::Barrier::new(1).unwrap();
    /// assert_eq!(barrier.wait().unwrap(), 0); // one party: no waiting
    /// ```
    pub fn new(parties: usize) -> Result<Self> {
        if parties == 0 || parties > u32::MAX as usize {
            return Err(Error::new(Kind::Usage(
                "a barrier needs at least one party".into(),
            )));
        }
        let holders = parties.saturating_add(SPARE_HOLDERS);
        let table = holders
            .checked_mul(16)
            .filter(|_| holders <= u32::MAX as usize);
        let table = table.ok_or_else(|| {
            Error::new(Kind::Usage(format!(
                "a barrier of {parties} parties is too large"
            )))
        })?;
        let shm = Shm::<BarrierState>::create(c"mp-barrier", table)?;
        let mut fields = lock_barrier(&shm)?;
        fields.fields().parties = parties as u32;
        fields.fields().holders = holders as u32;
        drop(fields);
        Ok(Barrier {
            inner: Arc::new(BarrierHandle::register(shm)?),
        })
    }

    fn signal(&self) -> &Condvar {
        &self.inner.shm.state().signal
    }

    fn lock(&self) -> Result<MonitorGuard<'_, BarrierFields>> {
        lock_barrier(&self.inner.shm)
    }

    /// Waits until `parties` callers wait; returns this caller's index in `0..parties`.
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = mp_runtime::Barrier::new(2).unwrap();
    /// let other = std::thread::scope(|s| {
    ///     let t = s.spawn(|| barrier.wait().unwrap());
    ///     let mine = barrier.wait().unwrap();
    ///     mine + t.join().unwrap()
    /// });
    /// assert_eq!(other, 1); // indices 0 and 1
    /// ```
    pub fn wait(&self) -> Result<usize> {
        self.wait_until(None)
    }

    /// [`wait`](Barrier::wait) for at most `timeout`; on timeout the barrier breaks, as in
    /// Python, and the error's [`is_broken_barrier`](crate::Error::is_broken_barrier) is
    /// true.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let barrier = mp_runtime::Barrier::new(2).unwrap();
    /// assert!(barrier.wait_timeout(Duration::from_millis(10)).unwrap_err().is_broken_barrier());
    /// assert!(barrier.is_broken().unwrap());
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        self.wait_until(Some(timeout))
    }

    fn wait_until(&self, timeout: Option<Duration>) -> Result<usize> {
        let wait = timeout.map_or(Wait::Forever, Wait::timeout);
        let until = wait.deadline();
        let mut guard = self.lock()?;
        let fields = guard.fields();
        if fields.broken {
            return Err(broken("it was broken before this wait"));
        }
        let generation = fields.generation;
        let index = fields.count as usize;
        fields.count += 1;
        if fields.count == fields.parties {
            end_round(fields, false);
            drop(guard);
            self.signal().notify_all();
            return Ok(index);
        }
        loop {
            let poll = Instant::now() + LIVENESS_POLL;
            let wake = until.map_or(poll, |until| until.min(poll));
            // Taking the lock back is not bounded by `until`: a wait that times out must still
            // take it, to break the barrier for every party (Python's rule). Every holder of
            // this lock keeps it for a few instructions, as `lock_barrier` everywhere assumes,
            // and a holder that dies frees it (robust mutex).
            guard
                .wait(self.signal(), Some(wake), None)
                .map_err(|f| lock_error(f, "a barrier", wait))?;
            let dead = Holders::of(&self.inner.shm, guard.get()).dead();
            let fields = guard.fields();
            if fields.generation != generation {
                // Rounds that ended since this one: a waiter so late that 64 did cannot tell,
                // and takes the common case, a pass.
                let since = fields.generation.wrapping_sub(generation);
                if since <= 64 && fields.endings >> (since - 1) & 1 == 1 {
                    return Err(broken("it was reset while this wait was in progress"));
                }
                return Ok(index);
            }
            let why = if fields.broken {
                Some("another party broke it (it died, timed out or aborted)".to_string())
            } else if let Some(pid) = dead {
                Some(format!(
                    "process {pid}, which holds it, died before it arrived"
                ))
            } else if until.is_some_and(|until| Instant::now() >= until) {
                Some(format!(
                    "a wait timed out after {:?}",
                    timeout.unwrap_or_default()
                ))
            } else {
                None
            };
            if let Some(why) = why {
                fields.broken = true;
                fields.count = fields.count.saturating_sub(1);
                drop(guard);
                self.signal().notify_all();
                return Err(broken(why));
            }
        }
    }

    /// Breaks the barrier: every waiter, now and later, gets a broken-barrier error.
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = mp_runtime::Barrier::new(2).unwrap();
    /// barrier.abort();
    /// assert!(barrier.is_broken().unwrap());
    /// ```
    pub fn abort(&self) {
        if let Ok(mut fields) = self.lock() {
            fields.fields().broken = true;
        }
        self.signal().notify_all();
    }

    /// Returns the barrier to its first state, Python's `reset`: not broken, nobody waiting.
    /// Callers waiting now get a broken-barrier error; later ones wait for a new round. Use it
    /// after [`abort`](Barrier::abort), a timeout or a party's death, once the parties agree
    /// to meet again.
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = mp_runtime::Barrier::new(2).unwrap();
    /// barrier.abort();
    /// assert!(barrier.wait().unwrap_err().is_broken_barrier());
    /// barrier.reset().unwrap();
    /// assert_eq!(barrier.is_broken().unwrap(), false);
    /// let sum = std::thread::scope(|s| {
    ///     let other = s.spawn(|| barrier.wait().unwrap());
    ///     barrier.wait().unwrap() + other.join().unwrap()
    /// });
    /// assert_eq!(sum, 1); // indices 0 and 1: the round passed
    /// ```
    pub fn reset(&self) -> Result<()> {
        let mut guard = self.lock()?;
        let fields = guard.fields();
        // The count may include parties that died waiting: it starts again from nobody.
        fields.broken = false;
        end_round(fields, true);
        drop(guard);
        self.signal().notify_all();
        Ok(())
    }

    /// Whether the barrier is broken.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!mp_runtime::Barrier::new(2).unwrap().is_broken().unwrap());
    /// ```
    pub fn is_broken(&self) -> Result<bool> {
        Ok(self.lock()?.get().broken)
    }

    /// How many callers it takes to pass.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(mp_runtime::Barrier::new(4).unwrap().parties().unwrap(), 4);
    /// ```
    pub fn parties(&self) -> Result<usize> {
        Ok(self.lock()?.get().parties as usize)
    }

    /// How many callers wait now.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(mp_runtime::Barrier::new(4).unwrap().n_waiting().unwrap(), 0);
    /// ```
    pub fn n_waiting(&self) -> Result<usize> {
        Ok(self.lock()?.get().count as usize)
    }
}

impl Clone for Barrier {
    fn clone(&self) -> Self {
        Barrier {
            inner: self.inner.clone(),
        }
    }
}

impl Serialize for Barrier {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.inner.shm.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Barrier {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let shm = Shm::deserialize(deserializer)?;
        let handle = BarrierHandle::register(shm).map_err(codec::handle_error)?;
        Ok(Barrier {
            inner: Arc::new(handle),
        })
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier").finish_non_exhaustive()
    }
}

#[cfg(all(test, loom))]
mod loom_tests;

#[cfg(test)]
mod tests {
    use super::*;

    // The 131st process to hold a 2-party barrier used to fail with a codec error that blamed
    // serde. Here the table is filled with another live process (pid 1), this one's entry
    // included, so that a handle decoded here is one holder too many.
    #[test]
    fn a_holder_past_the_limit_gets_the_barriers_own_error() {
        let barrier = Barrier::new(2).unwrap();
        let (bytes, fds) = codec::encode_with_fds(&barrier).unwrap();
        let guard = barrier.lock().unwrap();
        let holders = Holders::of(&barrier.inner.shm, guard.get());
        for (slot, _) in holders.slots().collect::<Vec<_>>() {
            holders.set(slot, 1, 1, 0);
        }
        drop(guard);
        let err = codec::decode_with_fds::<Barrier>(&bytes, fds).unwrap_err();
        assert!(err.is_usage(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("at most 130 processes") && text.contains("drop the handles"),
            "{text}"
        );
        assert!(!text.contains("serde"), "{text}");
    }
}
