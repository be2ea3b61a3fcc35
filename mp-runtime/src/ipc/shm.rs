//! Process-shared memory and the primitives every handle is built from.
//!
//! A [`Shm<T>`] is an anonymous memory file (memfd) mapped in each process that holds the
//! handle: a `T` at its start, then optional room for data. Nothing appears in `/dev/shm`, and
//! the memory is freed when the last process holding the descriptor closes it, however it ends.
//! Its size is sealed, so no process can shrink it under another's mapping (a bus error) —
//! except a queue's, whose ring grows and is cut back (see `queue`). Handles cross to other
//! processes as that descriptor (see `codec::serialize_fd`).
//!
//! Inside the memory, a `Monitor` (from `sys::mutex`) is a robust, process-shared mutex with
//! the data it guards, and a `Condvar` a condition variable for it. [`Shm::acquire`] is how
//! every user-visible lock is taken: one place for waiting, timeouts, a dead owner, and the
//! count of held locks that keeps the mapping alive while one may be held.

use std::ffi::CStr;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserializer, Serializer};

use crate::base::{Error, Kind, Result};
use crate::sys::error::Cause;
use crate::sys::memfd;
use crate::sys::mmap::{InMapping, Mapping};
use crate::sys::mutex::{Condvar, LockFailure, Monitor, MonitorGuard, Taken};
use crate::wire::codec;

/// Where `T` starts in the mapping: after the kind tag, on its own cache line.
const STATE_OFFSET: usize = 64;

/// The largest alignment a state (and the data after it) gets: states start on a 64-byte
/// boundary, and so does the data.
pub(crate) const MAX_ALIGN: usize = 64;

/// A state that lives in shared memory. `KIND` tags the memory so that a descriptor decoded as
/// the wrong handle type is refused rather than misread.
pub(crate) trait SharedState: InMapping {
    /// A tag unique to the type.
    const KIND: u64;
    /// Whether the file changes size after it is made. A resizable state keeps its data in
    /// the file beyond and maps it itself; [`Shm`] then maps only the state and does not seal
    /// the file.
    const RESIZABLE: bool = false;
    /// What a freshly created handle's state is, written once by the creator.
    fn init(&self) -> io::Result<()>;
}

/// A mapped memfd holding a `T` and `extra` bytes after it.
pub(crate) struct Shm<T> {
    fd: OwnedFd,
    /// `None` only while dropping.
    map: Option<Mapping>,
    /// How many user-visible locks in the mapping this handle has handed out and not seen
    /// released: a forgotten guard leaves its robust mutex on glibc's list of the thread's
    /// held locks, which glibc walks (writes into) later, so the memory must stay mapped.
    holds: AtomicUsize,
    state: PhantomData<fn() -> T>,
}

/// Where the data after the state starts.
pub(crate) const fn data_offset<T>() -> usize {
    (STATE_OFFSET + size_of::<T>()).next_multiple_of(MAX_ALIGN)
}

impl<T: SharedState> Shm<T> {
    /// Creates a new anonymous region with room for `extra` bytes after the state.
    pub(crate) fn create(name: &CStr, extra: usize) -> Result<Self> {
        let len = data_offset::<T>()
            .checked_add(extra)
            .ok_or_else(|| Error::io("shared memory", io::ErrorKind::OutOfMemory.into()))?;
        let fd = memfd::create(name)
            .map_err(|e| Error::io("cannot create shared memory (memfd_create)", e))?;
        set_len(fd.as_fd(), len)?;
        if !T::RESIZABLE {
            memfd::seal_size(fd.as_fd())
                .map_err(|e| Error::io("cannot seal the size of shared memory", e))?;
        }
        let shm: Self = Shm::map(
            fd,
            if T::RESIZABLE {
                data_offset::<T>()
            } else {
                len
            },
        )?;
        shm.mapping().words(0, 1)[0].store(T::KIND, Ordering::Relaxed);
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
        if T::RESIZABLE {
            len = data_offset::<T>();
        }
        let shm: Self = Shm::map(fd, len)?;
        if shm.mapping().words(0, 1)[0].load(Ordering::Relaxed) != T::KIND {
            return Err(Error::protocol(format!(
                "a descriptor decoded as a {} is another kind of handle: parent and child \
                 disagree on the type",
                std::any::type_name::<T>()
            )));
        }
        Ok(shm)
    }

    fn map(fd: OwnedFd, len: usize) -> Result<Self> {
        Ok(Shm {
            map: Some(map_fd(fd.as_fd(), len)?),
            fd,
            holds: AtomicUsize::new(0),
            state: PhantomData,
        })
    }

    /// The shared state.
    pub(crate) fn state(&self) -> &T {
        self.mapping().get(STATE_OFFSET)
    }

    /// The mapping: the state, then the data from [`data_offset`] on.
    pub(crate) fn mapping(&self) -> &Mapping {
        self.map.as_ref().expect("mapped until dropped")
    }

    /// The memory file's descriptor.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Takes `monitor`, a user-visible lock in this mapping, waiting as `wait` says;
    /// `Ok(None)` when `wait` is [`Wait::No`] and it is taken. A dead previous owner is
    /// reported (and the lock released again); `what` names the lock in errors.
    pub(crate) fn acquire<'a, F: ?Sized>(
        &'a self,
        monitor: &'a Monitor<F>,
        wait: Wait,
        what: &str,
    ) -> Result<Option<Held<'a, F>>> {
        let guard = match wait {
            Wait::No => monitor.try_lock(),
            _ => monitor.lock(wait.deadline()).map(Some),
        };
        let Some(guard) = guard.map_err(|f| lock_error(f, what, wait))? else {
            return Ok(None);
        };
        if guard.taken() == Taken::FromTheDead {
            drop(guard);
            return Err(owner_died(what));
        }
        self.holds.fetch_add(1, Ordering::Relaxed);
        Ok(Some(Held {
            guard,
            holds: &self.holds,
        }))
    }

    /// Serializes the handle: its descriptor goes beside the message.
    pub(crate) fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        codec::serialize_fd(self.fd(), serializer)
    }

    /// Deserializes a handle sent by [`Shm::serialize`].
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Self, D::Error> {
        let fd = codec::deserialize_fd(deserializer)?;
        Shm::open(fd).map_err(codec::handle_error)
    }
}

impl<T> Drop for Shm<T> {
    fn drop(&mut self) {
        let map = self.map.take().expect("dropped once");
        if self.holds.load(Ordering::Relaxed) > 0 {
            // A guard was forgotten: its mutex may be on glibc's robust list for good.
            map.leak();
        }
    }
}

/// A user-visible lock held, from [`Shm::acquire`]: the guarded fields, until dropped. It
/// stays on the thread that took it (pthread mutexes are unlocked by their owner).
pub(crate) struct Held<'a, F: ?Sized> {
    guard: MonitorGuard<'a, F>,
    holds: &'a AtomicUsize,
}

impl<F: ?Sized> Held<'_, F> {
    /// The guarded fields.
    pub(crate) fn fields(&mut self) -> &mut F {
        self.guard.fields()
    }

    /// The guarded fields, to read.
    pub(crate) fn get(&self) -> &F {
        self.guard.get()
    }

    /// Releases the lock, sleeps until `condvar` is notified or `until`, and takes the lock
    /// again (by `until` too); `Ok(false)` if `until` passed. `what` and `timeout` name the
    /// lock and the wait in errors. After an error the lock may not be held, and the guard
    /// refuses further use.
    pub(crate) fn wait(
        &mut self,
        condvar: &Condvar,
        until: Option<Instant>,
        what: &str,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let woke = self.guard.wait(condvar, until, until).map_err(|f| {
            lock_error(
                f,
                what,
                timeout.map_or(Wait::Forever, |t| Wait::Until(until, t)),
            )
        })?;
        if self.guard.taken() == Taken::FromTheDead {
            return Err(owner_died(what));
        }
        Ok(woke)
    }
}

impl<F: ?Sized> Drop for Held<'_, F> {
    fn drop(&mut self) {
        // The mapping cannot go while `self` borrows its handle: the order is free.
        self.holds.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Locks the runtime's own bookkeeping, whose fields are consistent after every write: a
/// previous owner's death is no reason to fail. `Ok(None)` when `wait` is [`Wait::No`] and
/// another holds it; `what` names the lock in errors.
pub(crate) fn lock_state<'a, F>(
    monitor: &'a Monitor<F>,
    wait: Wait,
    what: &str,
) -> Result<Option<MonitorGuard<'a, F>>> {
    match wait {
        Wait::No => monitor.try_lock(),
        _ => monitor.lock(wait.deadline()).map(Some),
    }
    .map_err(|f| lock_error(f, what, wait))
}

/// Waits on `condvar` with the runtime's own bookkeeping locked (see [`lock_state`]) until
/// notified or `wait`'s deadline; `Ok(false)` if that passed.
pub(crate) fn wait_state<F>(
    guard: &mut MonitorGuard<'_, F>,
    condvar: &Condvar,
    wait: Wait,
    what: &str,
) -> Result<bool> {
    guard
        .wait(condvar, wait.deadline(), wait.deadline())
        .map_err(|f| lock_error(f, what, wait))
}

/// Maps `len` bytes of a memory file, shared and writable.
pub(crate) fn map_fd(fd: BorrowedFd<'_>, len: usize) -> Result<Mapping> {
    Mapping::shared(fd, len)
        .map_err(|e| Error::io(format!("cannot map {len} bytes of shared memory"), e))
}

/// Resizes a memory file.
pub(crate) fn set_len(fd: BorrowedFd<'_>, len: usize) -> Result<()> {
    memfd::set_len(fd, len as u64)
        .map_err(|e| Error::io(format!("cannot size shared memory to {len} bytes"), e))
}

/// A file's length.
pub(crate) fn file_len(fd: BorrowedFd<'_>) -> Result<usize> {
    let len = memfd::len(fd).map_err(|e| Error::io("cannot read the size of shared memory", e))?;
    usize::try_from(len).map_err(|_| Error::io("shared memory", io::ErrorKind::OutOfMemory.into()))
}

/// How long to wait for a lock or a condition: forever, not at all, or until a deadline
/// (`None` for a timeout too large to represent, which is forever) that every step of the
/// wait shares, the re-locks after a sleep included.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    Forever,
    No,
    Until(Option<Instant>, Duration),
}

impl Wait {
    /// A wait of at most `timeout` from now.
    pub(crate) fn timeout(timeout: Duration) -> Self {
        Wait::Until(deadline(timeout), timeout)
    }

    /// When the wait ends: `None` for never (or not waiting at all).
    pub(crate) fn deadline(self) -> Option<Instant> {
        match self {
            Wait::Until(deadline, _) => deadline,
            _ => None,
        }
    }

    /// The timeout the caller asked for, for messages.
    pub(crate) fn after(self) -> Duration {
        match self {
            Wait::Until(_, after) => after,
            _ => Duration::ZERO,
        }
    }
}

/// The deadline `timeout` from now; a timeout too large to represent waits forever.
pub(crate) fn deadline(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// The error for a lock whose previous owner died holding it.
pub(crate) fn owner_died(what: &str) -> Error {
    Error::new(Kind::OwnerDied(what.to_string()))
}

/// The error for a lock that could not be taken: `what` names it in messages.
pub(crate) fn lock_error(failure: LockFailure, what: &str, wait: Wait) -> Error {
    match failure {
        LockFailure::TimedOut => Error::new(Kind::Timeout {
            what: what.to_string(),
            after: wait.after(),
        }),
        LockFailure::Os(e) if Cause::AlreadyHeld.is(&e) => Error::new(Kind::Usage(format!(
            "this thread already holds {what}; use an RLock to take a lock again on one thread"
        ))),
        LockFailure::Os(e) => Error::io(format!("cannot lock {what}"), e),
    }
}
