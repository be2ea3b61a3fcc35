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
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Kind, Result};
use crate::ipc::shm::{
    LockFailure, Monitor, MonitorGuard, RawMutex, SharedState, Shm, Signal, deadline, lock_error,
    process_start,
};

/// Clone, Serialize, Deserialize and Debug for a handle that is an `Arc<Shm<State>>`.
macro_rules! shared_handle {
    ($handle:ident) => {
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

        impl fmt::Debug for $handle {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($handle)).finish_non_exhaustive()
            }
        }
    };
}

/// Takes `mutex` for a user-visible lock: a dead previous owner is reported (and the lock
/// released again), a timeout says how long it waited.
pub(crate) fn acquire_mutex(mutex: &RawMutex, timeout: Option<Duration>, what: &str) -> Result<()> {
    let until = timeout.and_then(deadline);
    match mutex.lock(until) {
        Ok(()) => Ok(()),
        Err(LockFailure::OwnerDied) => {
            mutex.unlock();
            Err(lock_error(LockFailure::OwnerDied, what, None))
        }
        Err(failure) => Err(lock_error(failure, what, timeout)),
    }
}

/// Like [`acquire_mutex`], without waiting; `Ok(false)` when it is taken.
pub(crate) fn try_acquire_mutex(mutex: &RawMutex, what: &str) -> Result<bool> {
    match mutex.try_lock() {
        Err(LockFailure::OwnerDied) => {
            mutex.unlock();
            Err(lock_error(LockFailure::OwnerDied, what, None))
        }
        Err(failure) => Err(lock_error(failure, what, None)),
        Ok(taken) => Ok(taken),
    }
}

#[repr(C)]
struct LockState {
    mutex: RawMutex,
}

// SAFETY: zeroed until `init`; the mutex is made for shared use.
unsafe impl SharedState for LockState {
    const KIND: u64 = 0x6d70_4c6f_636b_0001;

    fn init(&self) -> io::Result<()> {
        self.mutex.init(false)
    }
}

#[repr(C)]
struct RLockState {
    mutex: RawMutex,
}

// SAFETY: zeroed until `init`; the mutex is made for shared use.
unsafe impl SharedState for RLockState {
    const KIND: u64 = 0x6d70_524c_6f63_6b01;

    fn init(&self) -> io::Result<()> {
        self.mutex.init(true)
    }
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
pub struct Lock {
    shm: Arc<Shm<LockState>>,
}

shared_handle!(Lock);

/// Holds a [`Lock`] or [`RLock`] until dropped. It stays on the thread that took it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    mutex: &'a RawMutex,
    /// pthread mutexes must be unlocked by the thread that locked them.
    thread_bound: PhantomData<*const ()>,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard")
    }
}

impl LockGuard<'_> {
    fn new(mutex: &RawMutex) -> LockGuard<'_> {
        LockGuard {
            mutex,
            thread_bound: PhantomData,
        }
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
            shm: Arc::new(Shm::create(c"mp-lock", 0)?),
        })
    }

    fn mutex(&self) -> &RawMutex {
        &self.shm.state().mutex
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
        acquire_mutex(self.mutex(), None, "a lock").map(|()| LockGuard::new(self.mutex()))
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
        acquire_mutex(self.mutex(), Some(timeout), "a lock").map(|()| LockGuard::new(self.mutex()))
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
        Ok(try_acquire_mutex(self.mutex(), "a lock")?.then(|| LockGuard::new(self.mutex())))
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
pub struct RLock {
    shm: Arc<Shm<RLockState>>,
}

shared_handle!(RLock);

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
            shm: Arc::new(Shm::create(c"mp-rlock", 0)?),
        })
    }

    fn mutex(&self) -> &RawMutex {
        &self.shm.state().mutex
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
        acquire_mutex(self.mutex(), None, "an rlock").map(|()| LockGuard::new(self.mutex()))
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
        acquire_mutex(self.mutex(), Some(timeout), "an rlock")
            .map(|()| LockGuard::new(self.mutex()))
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
        Ok(try_acquire_mutex(self.mutex(), "an rlock")?.then(|| LockGuard::new(self.mutex())))
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
}

// SAFETY: zeroed until `init`; the fields are used only under the monitor's mutex.
unsafe impl SharedState for SemaphoreState {
    const KIND: u64 = 0x6d70_5365_6d61_0001;

    fn init(&self) -> io::Result<()> {
        self.monitor.init()
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
#[must_use = "the unit is given back as soon as the guard is dropped"]
#[derive(Debug)]
pub struct SemaphoreGuard<'a> {
    semaphore: &'a Semaphore,
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        let _ = self.semaphore.release();
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
        let mut fields = semaphore.lock(None)?;
        fields.fields().value = value as u64;
        fields.fields().bound = bound;
        drop(fields);
        Ok(semaphore)
    }

    fn lock(&self, timeout: Option<Duration>) -> Result<MonitorGuard<'_, SemaphoreFields>> {
        self.shm
            .state()
            .monitor
            .lock(timeout.and_then(deadline))
            .map_err(|f| lock_error(f, "a semaphore", timeout))
    }

    fn take(&self, wait: Option<Option<Duration>>) -> Result<Option<SemaphoreGuard<'_>>> {
        let timeout = wait.flatten();
        let until = timeout.and_then(deadline);
        let mut fields = self.lock(timeout)?;
        while fields.fields().value == 0 {
            let Some(_) = wait else {
                return Ok(None);
            };
            let woke = fields
                .wait(until)
                .map_err(|f| lock_error(f, "a semaphore", timeout))?;
            if !woke {
                return Err(lock_error(LockFailure::TimedOut, "a semaphore", timeout));
            }
        }
        fields.fields().value -= 1;
        Ok(Some(SemaphoreGuard { semaphore: self }))
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
        self.take(Some(None)).map(|g| g.expect("waited for a unit"))
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
        self.take(Some(Some(timeout)))
            .map(|g| g.expect("waited for a unit"))
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
        self.take(None)
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
        let mut fields = self.lock(None)?;
        let fields_now = fields.fields();
        if fields_now.bound != 0 && fields_now.value >= fields_now.bound {
            return Err(Error::new(Kind::Usage(
                "a bounded semaphore was released more times than it was acquired".into(),
            )));
        }
        fields_now.value += 1;
        drop(fields);
        self.shm.state().monitor.notify(1);
        Ok(())
    }

    /// The number of units available now.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(mp_runtime::Semaphore::new(4).unwrap().value().unwrap(), 4);
    /// ```
    pub fn value(&self) -> Result<usize> {
        Ok(self.lock(None)?.fields().value as usize)
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
}

// SAFETY: zeroed (unset) until `init`; the flag is used only under the monitor's mutex.
unsafe impl SharedState for EventState {
    const KIND: u64 = 0x6d70_4576_656e_7401;

    fn init(&self) -> io::Result<()> {
        self.monitor.init()
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

shared_handle!(Event);

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

    fn lock(&self) -> Result<MonitorGuard<'_, bool>> {
        self.shm
            .state()
            .monitor
            .lock(None)
            .map_err(|f| lock_error(f, "an event", None))
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
        *self.lock()?.fields() = true;
        self.shm.state().monitor.notify(u32::MAX);
        Ok(())
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
        *self.lock()?.fields() = false;
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
        Ok(*self.lock()?.fields())
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
        self.wait_until(None).map(drop)
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
        self.wait_until(deadline(timeout))
    }

    fn wait_until(&self, until: Option<Instant>) -> Result<bool> {
        let mut flag = self.lock()?;
        while !*flag.fields() {
            let woke = flag
                .wait(until)
                .map_err(|f| lock_error(f, "an event", None))?;
            if !woke {
                return Ok(*flag.fields());
            }
        }
        Ok(true)
    }
}

#[repr(C)]
struct ConditionState {
    mutex: RawMutex,
    signal: Signal,
}

// SAFETY: zeroed until `init`; the mutex and signal are made for shared use.
unsafe impl SharedState for ConditionState {
    const KIND: u64 = 0x6d70_436f_6e64_0001;

    fn init(&self) -> io::Result<()> {
        self.mutex.init(false)
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
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a> {
    state: &'a ConditionState,
    thread_bound: PhantomData<*const ()>,
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        self.state.mutex.unlock();
    }
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

    fn guard(&self) -> ConditionGuard<'_> {
        ConditionGuard {
            state: self.shm.state(),
            thread_bound: PhantomData,
        }
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
        acquire_mutex(&self.shm.state().mutex, None, "a condition's lock").map(|()| self.guard())
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
        acquire_mutex(&self.shm.state().mutex, Some(timeout), "a condition's lock")
            .map(|()| self.guard())
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
        Ok(try_acquire_mutex(&self.shm.state().mutex, "a condition's lock")?.then(|| self.guard()))
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
        self.state
            .signal
            .wait(&self.state.mutex, until)
            .map_err(|f| lock_error(f, "a condition's lock", timeout))
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

/// How many processes' handles a barrier tracks to notice deaths.
const PARTY_SLOTS: usize = 128;
/// How often a waiting party checks that the others are alive.
const LIVENESS_POLL: Duration = Duration::from_millis(50);

#[repr(C)]
#[derive(Clone, Copy)]
struct Party {
    /// 0 when the slot is free.
    pid: u32,
    start: u64,
}

#[repr(C)]
struct BarrierFields {
    parties: u32,
    count: u32,
    generation: u32,
    broken: bool,
    /// The processes that hold this barrier: if one dies, waiting for it is hopeless.
    holders: [Party; PARTY_SLOTS],
}

#[repr(C)]
struct BarrierState {
    monitor: Monitor<BarrierFields>,
}

// SAFETY: zeroed until `init` (no holders, not broken); fields only under the monitor.
unsafe impl SharedState for BarrierState {
    const KIND: u64 = 0x6d70_4261_7272_0001;

    fn init(&self) -> io::Result<()> {
        self.monitor.init()
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
    slot: Option<usize>,
}

impl BarrierHandle {
    fn register(shm: Shm<BarrierState>) -> Result<Self> {
        let pid = std::process::id();
        let start = process_start(pid).unwrap_or(0);
        let mut fields = lock_barrier(&shm)?;
        let holders = &mut fields.fields().holders;
        let slot = holders.iter().position(|p| p.pid == 0);
        if let Some(slot) = slot {
            holders[slot] = Party { pid, start };
        }
        drop(fields);
        Ok(BarrierHandle { shm, slot })
    }
}

impl Drop for BarrierHandle {
    fn drop(&mut self) {
        let Ok(mut fields) = lock_barrier(&self.shm) else {
            return;
        };
        if let Some(slot) = self.slot {
            fields.fields().holders[slot].pid = 0;
        }
        if std::thread::panicking() {
            // This process will not arrive: do not let the others wait for it.
            fields.fields().broken = true;
            drop(fields);
            self.shm.state().monitor.notify(u32::MAX);
        }
    }
}

fn lock_barrier(shm: &Shm<BarrierState>) -> Result<MonitorGuard<'_, BarrierFields>> {
    shm.state()
        .monitor
        .lock(None)
        .map_err(|f| lock_error(f, "a barrier", None))
}

fn broken(why: impl Into<String>) -> Error {
    Error::new(Kind::BrokenBarrier(why.into()))
}

/// A holder of the barrier whose process is gone.
fn dead_holder(fields: &BarrierFields) -> Option<u32> {
    fields
        .holders
        .iter()
        .find(|p| p.pid != 0 && process_start(p.pid) != Some(p.start))
        .map(|p| p.pid)
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
        let shm = Shm::<BarrierState>::create(c"mp-barrier", 0)?;
        lock_barrier(&shm)?.fields().parties = parties as u32;
        Ok(Barrier {
            inner: Arc::new(BarrierHandle::register(shm)?),
        })
    }

    fn monitor(&self) -> &Monitor<BarrierFields> {
        &self.inner.shm.state().monitor
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
        let until = timeout.and_then(deadline);
        let mut guard = self.lock()?;
        let fields = guard.fields();
        if fields.broken {
            return Err(broken("it was broken before this wait"));
        }
        let generation = fields.generation;
        let index = fields.count as usize;
        fields.count += 1;
        if fields.count == fields.parties {
            fields.count = 0;
            fields.generation = fields.generation.wrapping_add(1);
            drop(guard);
            self.monitor().notify(u32::MAX);
            return Ok(index);
        }
        loop {
            let poll = Instant::now() + LIVENESS_POLL;
            let wake = until.map_or(poll, |until| until.min(poll));
            guard
                .wait(Some(wake))
                .map_err(|f| lock_error(f, "a barrier", timeout))?;
            let fields = guard.fields();
            if fields.generation != generation {
                return Ok(index);
            }
            let why = if fields.broken {
                Some("another party broke it (it died, timed out or aborted)".to_string())
            } else if let Some(pid) = dead_holder(fields) {
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
                self.monitor().notify(u32::MAX);
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
        self.monitor().notify(u32::MAX);
    }

    /// Whether the barrier is broken.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!mp_runtime::Barrier::new(2).unwrap().is_broken().unwrap());
    /// ```
    pub fn is_broken(&self) -> Result<bool> {
        Ok(self.lock()?.fields().broken)
    }

    /// How many callers it takes to pass.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(mp_runtime::Barrier::new(4).unwrap().parties().unwrap(), 4);
    /// ```
    pub fn parties(&self) -> Result<usize> {
        Ok(self.lock()?.fields().parties as usize)
    }

    /// How many callers wait now.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(mp_runtime::Barrier::new(4).unwrap().n_waiting().unwrap(), 0);
    /// ```
    pub fn n_waiting(&self) -> Result<usize> {
        Ok(self.lock()?.fields().count as usize)
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
        use serde::de::Error as _;
        let shm = Shm::deserialize(deserializer)?;
        let handle = BarrierHandle::register(shm).map_err(D::Error::custom)?;
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
