//! Process-shared memory and the primitives every handle is built from.
//!
//! A [`Shm<T>`] is an anonymous memory file (memfd) mapped in each process that holds the
//! handle: a `T` at its start, then optional room for data. Nothing appears in `/dev/shm`, and
//! the memory is freed when the last process holding the descriptor closes it, however it ends.
//! Handles cross to other processes as that descriptor (see `codec::serialize_fd`).
//!
//! Inside the memory, [`RawMutex`] is a robust, process-shared pthread mutex: when its owner
//! dies, the kernel hands it to the next locker with `EOWNERDEAD`. [`Signal`] is a condition
//! variable made of a sequence number and a futex; unlike a pthread condition variable it has no
//! state that a waiter's death can corrupt.

use std::cell::UnsafeCell;
use std::ffi::CStr;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserializer, Serializer};

use crate::error::{Error, Result};
use crate::wire::codec;

/// Where `T` starts in the mapping: after the kind tag, on its own cache line.
const STATE_OFFSET: usize = 64;

/// A state that lives in shared memory. `KIND` tags the memory so that a descriptor decoded as
/// the wrong handle type is refused rather than misread.
///
/// # Safety
///
/// All-zero bytes must be a valid `Self` until [`SharedState::init`] has run, and `Self` must
/// be usable from several processes at once through `&Self` (atomics, `UnsafeCell` behind a
/// [`RawMutex`]).
pub(crate) unsafe trait SharedState: Sized {
    /// A tag unique to the type.
    const KIND: u64;
    /// Whether the data after the state is mapped; a state that keeps its data in the file
    /// beyond (read and written with `pread`/`pwrite`) maps only itself.
    const MAP_DATA: bool = true;
    /// What a freshly created handle's state is, written once by the creator.
    fn init(&self) -> io::Result<()>;
}

/// A mapped memfd holding a `T` and `extra` bytes after it.
pub(crate) struct Shm<T> {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
    state: PhantomData<T>,
}

// SAFETY: the mapping is shared memory that `T` is designed to be used through from any number
// of processes at once (see `SharedState`); threads of one process are no different.
unsafe impl<T: SharedState> Send for Shm<T> {}
// SAFETY: as for Send.
unsafe impl<T: SharedState> Sync for Shm<T> {}

/// Where the data after the state starts.
const fn data_offset<T>() -> usize {
    (STATE_OFFSET + size_of::<T>()).next_multiple_of(64)
}

impl<T: SharedState> Shm<T> {
    /// Creates a new anonymous region with room for `extra` bytes after the state.
    pub(crate) fn create(name: &CStr, extra: usize) -> Result<Self> {
        let len = data_offset::<T>()
            .checked_add(extra)
            .ok_or_else(|| Error::io("shared memory", io::ErrorKind::OutOfMemory.into()))?;
        let fd = memfd(name, len)?;
        let shm: Self = Shm::map(fd, len)?;
        // SAFETY: the memory is new and zeroed, the one place `KIND` is written.
        unsafe { shm.ptr.cast::<u64>().write(T::KIND) };
        shm.state()
            .init()
            .map_err(|e| Error::io("cannot set up a process-shared lock", e))?;
        Ok(shm)
    }

    /// Maps a region received from another process, checking that it holds a `T`.
    pub(crate) fn open(fd: OwnedFd) -> Result<Self> {
        let mut len = file_len(fd.as_fd())?;
        if len < data_offset::<T>() {
            return Err(Error::protocol(
                "a handle's shared memory is smaller than its type",
            ));
        }
        if !T::MAP_DATA {
            len = data_offset::<T>();
        }
        let shm: Self = Shm::map(fd, len)?;
        // SAFETY: at least `data_offset` bytes are mapped; the tag is aligned and only read.
        if unsafe { shm.ptr.cast::<u64>().read() } != T::KIND {
            return Err(Error::protocol(format!(
                "a descriptor decoded as a {} is another kind of handle: parent and child \
                 disagree on the type",
                std::any::type_name::<T>()
            )));
        }
        Ok(shm)
    }

    fn map(fd: OwnedFd, len: usize) -> Result<Self> {
        let ptr = map_fd(fd.as_fd(), len)?;
        Ok(Shm {
            fd,
            ptr,
            len,
            state: PhantomData,
        })
    }

    /// The shared state.
    pub(crate) fn state(&self) -> &T {
        // SAFETY: the mapping holds an initialized `T` at STATE_OFFSET (64-byte aligned, and
        // `T`'s alignment is at most 64 for every state here) for as long as `self` lives.
        unsafe { &*self.ptr.as_ptr().add(STATE_OFFSET).cast::<T>() }
    }

    /// The data after the state, and its length in bytes.
    pub(crate) fn data(&self) -> (*mut u8, usize) {
        let offset = data_offset::<T>();
        // SAFETY: `offset <= len`, checked when the region was created or opened.
        (unsafe { self.ptr.as_ptr().add(offset) }, self.len - offset)
    }

    /// The memory file's descriptor.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Serializes the handle: its descriptor goes beside the message.
    pub(crate) fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        codec::serialize_fd(self.fd(), serializer)
    }

    /// Deserializes a handle sent by [`Shm::serialize`].
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let fd = codec::deserialize_fd(deserializer)?;
        Shm::open(fd).map_err(D::Error::custom)
    }
}

impl<T> Drop for Shm<T> {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`; no reference into it outlives
        // `self` (every borrow handed out is tied to `&self`).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len.max(1)) };
    }
}

/// Maps `len` bytes of a memory file, shared and writable; unmap with `munmap`.
pub(crate) fn map_fd(fd: BorrowedFd<'_>, len: usize) -> Result<NonNull<u8>> {
    // SAFETY: a fresh shared mapping of an open file; nothing else in this process aliases
    // the address range the kernel picks.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len.max(1),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(Error::io(
            format!("cannot map {len} bytes of shared memory"),
            io::Error::last_os_error(),
        ));
    }
    Ok(NonNull::new(ptr.cast()).expect("mmap never returns null on success"))
}

/// A new anonymous memory file of `len` zero bytes, close-on-exec.
pub(crate) fn memfd(name: &CStr, len: usize) -> Result<OwnedFd> {
    // SAFETY: `name` is a valid C string; the returned descriptor is new and ours.
    let raw = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(Error::io(
            "cannot create shared memory (memfd_create)",
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: `raw` is a descriptor we just opened and own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    set_len(fd.as_fd(), len)?;
    Ok(fd)
}

/// Resizes a memory file.
pub(crate) fn set_len(fd: BorrowedFd<'_>, len: usize) -> Result<()> {
    // SAFETY: plain system call on an open descriptor.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } == -1 {
        return Err(Error::io(
            format!("cannot size shared memory to {len} bytes"),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// A file's length.
pub(crate) fn file_len(fd: BorrowedFd<'_>) -> Result<usize> {
    // SAFETY: an all-zero `stat` is valid; fstat fills it.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: plain system call with a valid out-pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } == -1 {
        return Err(Error::io(
            "cannot read the size of shared memory",
            io::Error::last_os_error(),
        ));
    }
    Ok(stat.st_size as usize)
}

/// Why a [`RawMutex`] was not taken cleanly.
#[derive(Debug)]
pub(crate) enum LockFailure {
    /// Taken, but its previous owner died holding it: the data it guards may be half-changed.
    /// The lock is held now and marked consistent again.
    OwnerDied,
    TimedOut,
    Os(io::Error),
}

/// A robust, process-shared pthread mutex, in shared memory.
#[repr(C)]
pub(crate) struct RawMutex {
    inner: UnsafeCell<libc::pthread_mutex_t>,
}

impl RawMutex {
    /// Initializes the mutex in place; `recursive` lets its owner lock it again.
    pub(crate) fn init(&self, recursive: bool) -> io::Result<()> {
        let check = |code: libc::c_int| match code {
            0 => Ok(()),
            code => Err(io::Error::from_raw_os_error(code)),
        };
        // SAFETY: `attr` is initialized by pthread_mutexattr_init before any other use, and
        // destroyed at the end; `inner` is zeroed shared memory nobody uses until created.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            check(libc::pthread_mutexattr_init(&mut attr))?;
            let result = check(libc::pthread_mutexattr_setpshared(
                &mut attr,
                libc::PTHREAD_PROCESS_SHARED,
            ))
            .and_then(|()| {
                check(libc::pthread_mutexattr_setrobust(
                    &mut attr,
                    libc::PTHREAD_MUTEX_ROBUST,
                ))
            })
            .and_then(|()| {
                let kind = if recursive {
                    libc::PTHREAD_MUTEX_RECURSIVE
                } else {
                    libc::PTHREAD_MUTEX_ERRORCHECK
                };
                check(libc::pthread_mutexattr_settype(&mut attr, kind))
            })
            .and_then(|()| check(libc::pthread_mutex_init(self.inner.get(), &attr)));
            libc::pthread_mutexattr_destroy(&mut attr);
            result
        }
    }

    /// Locks, waiting until `deadline` (forever if `None`).
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> std::result::Result<(), LockFailure> {
        // SAFETY: the mutex was initialized by its creator and lives in mapped shared memory.
        let code = unsafe {
            match deadline {
                None => libc::pthread_mutex_lock(self.inner.get()),
                Some(deadline) => {
                    let at = realtime(deadline);
                    libc::pthread_mutex_timedlock(self.inner.get(), &at)
                }
            }
        };
        self.check(code)
    }

    /// Locks if free now.
    pub(crate) fn try_lock(&self) -> std::result::Result<bool, LockFailure> {
        // SAFETY: as in `lock`.
        match unsafe { libc::pthread_mutex_trylock(self.inner.get()) } {
            libc::EBUSY => Ok(false),
            code => self.check(code).map(|()| true),
        }
    }

    fn check(&self, code: libc::c_int) -> std::result::Result<(), LockFailure> {
        match code {
            0 => Ok(()),
            libc::EOWNERDEAD => {
                // SAFETY: we own the mutex now (EOWNERDEAD hands it over); marking it
                // consistent keeps it usable for everyone after us.
                unsafe { libc::pthread_mutex_consistent(self.inner.get()) };
                Err(LockFailure::OwnerDied)
            }
            libc::ETIMEDOUT => Err(LockFailure::TimedOut),
            code => Err(LockFailure::Os(io::Error::from_raw_os_error(code))),
        }
    }

    /// Unlocks; the caller holds the lock.
    pub(crate) fn unlock(&self) {
        // SAFETY: the caller holds the lock (every guard unlocks once, on the thread that
        // locked; an error-checking mutex refuses anything else).
        unsafe { libc::pthread_mutex_unlock(self.inner.get()) };
    }

    /// Locks for the runtime's own bookkeeping, whose state is consistent after every write:
    /// a previous owner's death is no reason to fail.
    pub(crate) fn lock_state(
        &self,
        deadline: Option<Instant>,
    ) -> std::result::Result<(), LockFailure> {
        match self.lock(deadline) {
            Err(LockFailure::OwnerDied) => Ok(()),
            other => other,
        }
    }
}

/// A deadline as the absolute CLOCK_REALTIME time pthread_mutex_timedlock wants.
fn realtime(deadline: Instant) -> libc::timespec {
    let left = deadline.saturating_duration_since(Instant::now());
    let at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        + left;
    libc::timespec {
        tv_sec: at.as_secs() as libc::time_t,
        tv_nsec: at.subsec_nanos() as _,
    }
}

/// A condition variable for a [`RawMutex`]: a sequence number that each notification bumps,
/// and a futex on it.
#[repr(C)]
#[derive(Default)]
pub(crate) struct Signal {
    seq: AtomicU32,
    waiters: AtomicU32,
}

impl Signal {
    /// With `mutex` held: releases it, sleeps until notified (or spuriously) or `deadline`,
    /// and locks it again. Returns false if the deadline passed.
    pub(crate) fn wait(
        &self,
        mutex: &RawMutex,
        deadline: Option<Instant>,
    ) -> std::result::Result<bool, LockFailure> {
        let seq = self.seq.load(Ordering::SeqCst);
        self.waiters.fetch_add(1, Ordering::SeqCst);
        mutex.unlock();
        let woke = futex_wait(&self.seq, seq, deadline);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        mutex.lock(None)?;
        Ok(woke)
    }

    /// Wakes up to `n` waiters.
    pub(crate) fn notify(&self, n: u32) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            futex_wake(&self.seq, n.min(i32::MAX as u32) as i32);
        }
    }

    /// Wakes every waiter.
    pub(crate) fn notify_all(&self) {
        self.notify(u32::MAX);
    }
}

/// Sleeps while `word` is `expected`, until woken or `deadline`; false if the deadline passed.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> bool {
    let timeout = deadline.map(|d| {
        let left = d.saturating_duration_since(Instant::now());
        libc::timespec {
            tv_sec: left.as_secs() as libc::time_t,
            tv_nsec: left.subsec_nanos() as _,
        }
    });
    if timeout
        .as_ref()
        .is_some_and(|t| t.tv_sec == 0 && t.tv_nsec == 0)
    {
        return false;
    }
    let timeout_ptr = timeout
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned u32 (in shared memory, hence no FUTEX_PRIVATE_FLAG);
    // the timeout pointer is null or points at a live timespec.
    let result = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            timeout_ptr,
        )
    };
    !(result == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT))
}

/// Wakes up to `n` sleepers on `word`.
pub(crate) fn futex_wake(word: &AtomicU32, n: i32) {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE only reads its address.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
}

/// The deadline `timeout` from now; a timeout too large to represent waits forever.
pub(crate) fn deadline(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// State guarded by a mutex, with a signal to wait on: the shape of every synchronization
/// handle. The runtime's own fields are consistent after every change, so a dead owner of
/// the mutex is no reason to fail here.
#[repr(C)]
pub(crate) struct Monitor<F> {
    mutex: RawMutex,
    signal: Signal,
    fields: UnsafeCell<F>,
}

impl<F> Monitor<F> {
    pub(crate) fn init(&self) -> io::Result<()> {
        self.mutex.init(false)
    }

    /// Locks the fields, waiting until `deadline`.
    pub(crate) fn lock(
        &self,
        deadline: Option<Instant>,
    ) -> std::result::Result<MonitorGuard<'_, F>, LockFailure> {
        self.mutex.lock_state(deadline)?;
        Ok(MonitorGuard { monitor: self })
    }

    /// Wakes up to `n` waiters.
    pub(crate) fn notify(&self, n: u32) {
        self.signal.notify(n);
    }
}

/// The fields of a [`Monitor`], while its mutex is held.
pub(crate) struct MonitorGuard<'a, F> {
    monitor: &'a Monitor<F>,
}

impl<F> MonitorGuard<'_, F> {
    pub(crate) fn fields(&mut self) -> &mut F {
        // SAFETY: the mutex is held for as long as `self`, so nothing else touches the fields.
        unsafe { &mut *self.monitor.fields.get() }
    }

    /// Releases the mutex, sleeps until notified or `deadline`, and locks again; false if
    /// the deadline passed.
    pub(crate) fn wait(
        &mut self,
        deadline: Option<Instant>,
    ) -> std::result::Result<bool, LockFailure> {
        match self.monitor.signal.wait(&self.monitor.mutex, deadline) {
            Err(LockFailure::OwnerDied) => Ok(true),
            other => other,
        }
    }
}

impl<F> Drop for MonitorGuard<'_, F> {
    fn drop(&mut self) {
        self.monitor.mutex.unlock();
    }
}

/// The error for a lock that could not be taken: `what` names it in messages.
pub(crate) fn lock_error(failure: LockFailure, what: &str, timeout: Option<Duration>) -> Error {
    use crate::error::Kind;
    match failure {
        LockFailure::OwnerDied => Error::new(Kind::OwnerDied(what.to_string())),
        LockFailure::TimedOut => Error::new(Kind::Timeout {
            what: what.to_string(),
            after: timeout.unwrap_or_default(),
        }),
        LockFailure::Os(e) if e.raw_os_error() == Some(libc::EDEADLK) => {
            Error::new(Kind::Usage(format!(
                "this thread already holds {what}; use an RLock to take a lock again on one thread"
            )))
        }
        LockFailure::Os(e) => Error::io(format!("cannot lock {what}"), e),
    }
}

/// When the process `pid` started (in clock ticks since boot), or `None` if it is gone or a
/// zombie: with the pid, this names a process even after its pid is reused.
pub(crate) fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything: parse after the last ')'.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // Field 22 of the line is the start time; `fields` began at field 3.
    fields.nth(18)?.parse().ok()
}
