//! [`Queue`] and [`JoinableQueue`]: many producers, many consumers, in any processes.
//!
//! The queue is one anonymous memory file. Its first page holds the state (a robust mutex, the
//! read and write offsets, counts, and futex signals); the rest is a ring buffer of
//! length-prefixed records, mapped in every process that uses the queue and written and read
//! with plain memory copies under the mutex, so a `put` or `get` makes no system call unless
//! someone is waiting (a futex wake) or the ring must grow. `put` returns once the item is in
//! the shared memory, so an item is never lost when its producer exits right after (Python's
//! feeder thread loses or deadlocks there), and the offsets move only after a whole record is
//! written or read, so a process that dies in the middle leaves the queue consistent: the next
//! locker takes the mutex over and goes on. A full ring doubles (the file grows and each
//! process remaps it when it next holds the mutex), and an emptied large ring is cut back.

use std::cell::UnsafeCell;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Kind, Result};
use crate::ipc::shm::{LockFailure, RawMutex, SharedState, Shm, Signal, deadline, map_fd, set_len};
use crate::wire::codec;

/// Where the ring starts in the file: past the state, page aligned.
const RECORDS: u64 = 4096;
/// The ring's first size, and the size it is cut back to when it empties.
const FIRST_CAPACITY: u64 = 64 << 10;
/// An empty ring larger than this is given back to the system.
const SHRINK_ABOVE: u64 = 4 << 20;
/// Record header: the length of the item's bytes. Records start 8-byte aligned, so a header
/// never wraps around the end of the ring.
const RECORD_HEADER: u64 = 8;

#[repr(C)]
struct QueueState {
    mutex: RawMutex,
    not_empty: Signal,
    not_full: Signal,
    all_done: Signal,
    fields: UnsafeCell<Fields>,
}

/// What the mutex guards.
#[repr(C)]
#[derive(Default)]
struct Fields {
    /// Offsets of the next record to read and of the end of the last one, counted from the
    /// start of the ring without wrapping: a record is at `offset % capacity`.
    head: u64,
    tail: u64,
    /// Records between them.
    len: u64,
    /// Bytes in the ring; the file is at least `RECORDS + capacity` long.
    capacity: u64,
    /// 0 for unbounded.
    maxsize: u64,
    /// Items put and not yet marked done (JoinableQueue).
    unfinished: u64,
    closed: bool,
}

// SAFETY: all-zero bytes are a valid (unbounded, empty, open) state until `init` runs; the
// fields are used only under `mutex`, the signals are atomics.
unsafe impl SharedState for QueueState {
    const KIND: u64 = 0x6d70_5175_6575_6502;
    const MAP_DATA: bool = false;

    fn init(&self) -> io::Result<()> {
        self.mutex.init(false)
    }
}

/// A held queue mutex: the fields, while it lives.
struct Locked<'a> {
    state: &'a QueueState,
}

impl Locked<'_> {
    fn fields(&mut self) -> &mut Fields {
        // SAFETY: the mutex is held for as long as `self`, so nothing else touches the fields.
        unsafe { &mut *self.state.fields.get() }
    }

    /// Waits on `signal`; false if `deadline` passed.
    fn wait(&mut self, signal: &Signal, deadline: Option<Instant>) -> Result<bool> {
        match signal.wait(&self.state.mutex, deadline) {
            Ok(woke) => Ok(woke),
            // The state is consistent after every change: a dead owner is no reason to fail.
            Err(LockFailure::OwnerDied) => Ok(true),
            Err(failure) => Err(os_error(failure)),
        }
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.state.mutex.unlock();
    }
}

fn os_error(failure: LockFailure) -> Error {
    match failure {
        LockFailure::Os(e) => Error::io("cannot lock a queue", e),
        other => Error::protocol(format!("unexpected lock failure {other:?}")),
    }
}

/// How long to wait: forever, not at all, or until a deadline.
#[derive(Clone, Copy)]
enum Wait {
    Forever,
    No,
    Until(Option<Instant>, Duration),
}

impl Wait {
    fn timeout(timeout: Duration) -> Self {
        Wait::Until(deadline(timeout), timeout)
    }

    fn deadline(self) -> Option<Instant> {
        match self {
            Wait::Until(deadline, _) => deadline,
            _ => None,
        }
    }
}

/// A first-in first-out queue of `T`s shared by any number of processes, Python's
/// `multiprocessing.Queue`.
///
/// Pass it to other processes as an argument to [`spawn!`](crate::spawn) or to pool tasks (a
/// clone is cheap: it is the same queue). Items are encoded like call arguments; handles
/// cannot be put on a queue (send them through a [`pipe`](crate::ipc::pipe)).
///
/// [`close`](Queue::close) ends the queue for every process: `put` fails, and `get` returns
/// what is left, then fails with [`is_disconnected`](crate::Error::is_disconnected), which is
/// how consumers learn that the producers are done.
///
/// # Examples
///
/// ```
/// use mp_runtime::{process_fn, spawn, Queue};
///
/// #[process_fn]
/// fn produce(queue: Queue<u32>) {
///     for i in 0..3 {
///         queue.put(&i).unwrap();
///     }
/// }
///
/// let queue = Queue::new().unwrap();
/// spawn!(produce, queue.clone()).unwrap().join().unwrap();
/// assert_eq!([queue.get().unwrap(), queue.get().unwrap(), queue.get().unwrap()], [0, 1, 2]);
/// ```
pub struct Queue<T> {
    shared: Arc<Shared>,
    item: PhantomData<fn(T) -> T>,
}

/// One process's view of a queue: the state, and its own mapping of the ring.
struct Shared {
    shm: Shm<QueueState>,
    ring: Mutex<Ring>,
}

impl Shared {
    fn new(shm: Shm<QueueState>) -> Self {
        Shared {
            shm,
            ring: Mutex::new(Ring { map: None, len: 0 }),
        }
    }
}

/// This process's mapping of the file from its start: the ring is `RECORDS` in. It may be
/// larger than the ring is now (after a shrink), never smaller when used.
struct Ring {
    map: Option<NonNull<u8>>,
    len: u64,
}

// SAFETY: the mapping is shared memory, touched only under the queue's mutex.
unsafe impl Send for Ring {}

impl Drop for Ring {
    fn drop(&mut self) {
        if let Some(map) = self.map {
            // SAFETY: unmaps exactly the mapping made in `ring`; no borrow of it outlives the
            // queue's mutex, let alone `self`.
            unsafe { libc::munmap(map.as_ptr().cast(), (RECORDS + self.len) as usize) };
        }
    }
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            shared: self.shared.clone(),
            item: PhantomData,
        }
    }
}

/// Bytes a record of `len` item bytes takes in the ring.
fn record_size(len: u64) -> u64 {
    (RECORD_HEADER + len).next_multiple_of(8)
}

/// Copies `bytes` into the ring of `capacity` bytes at `data`, from `offset` on, wrapping.
///
/// # Safety
///
/// `data` must be valid for `capacity` bytes, and `bytes.len() <= capacity`.
unsafe fn copy_in(data: *mut u8, capacity: u64, offset: u64, bytes: &[u8]) {
    let at = (offset % capacity) as usize;
    let first = bytes.len().min(capacity as usize - at);
    // SAFETY: both ranges lie inside the ring (caller), and `bytes` is not in it.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), data.add(at), first);
        std::ptr::copy_nonoverlapping(bytes.as_ptr().add(first), data, bytes.len() - first);
    }
}

/// Copies `out.len()` bytes out of the ring, from `offset` on, wrapping.
///
/// # Safety
///
/// As for [`copy_in`].
unsafe fn copy_out(data: *const u8, capacity: u64, offset: u64, out: &mut [u8]) {
    let at = (offset % capacity) as usize;
    let first = out.len().min(capacity as usize - at);
    // SAFETY: both ranges lie inside the ring (caller), and `out` is not in it.
    unsafe {
        std::ptr::copy_nonoverlapping(data.add(at), out.as_mut_ptr(), first);
        std::ptr::copy_nonoverlapping(data, out.as_mut_ptr().add(first), out.len() - first);
    }
}

impl<T> Queue<T> {
    /// An unbounded queue: `put` never waits.
    ///
    /// # Examples
    ///
    /// ```
    /// let queue = mp_runtime::Queue::new().unwrap();
    /// queue.put(&"a".to_string()).unwrap();
    /// assert_eq!(queue.get().unwrap(), "a");
    /// ```
    pub fn new() -> Result<Self> {
        Self::with_maxsize(0)
    }

    /// A queue of at most `maxsize` items: `put` waits while it is full. `bounded(0)` is
    /// unbounded, as in Python.
    ///
    /// # Examples
    ///
    /// ```
    /// let queue = mp_runtime::Queue::bounded(2).unwrap();
    /// queue.put(&1).unwrap();
    /// queue.put(&2).unwrap();
    /// assert!(queue.try_put(&3).unwrap_err().is_full());
    /// assert_eq!(queue.get().unwrap(), 1);
    /// ```
    pub fn bounded(maxsize: usize) -> Result<Self> {
        Self::with_maxsize(maxsize as u64)
    }

    fn with_maxsize(maxsize: u64) -> Result<Self> {
        let shm = Shm::<QueueState>::create(c"mp-queue", 0)?;
        set_len(shm.fd(), (RECORDS + FIRST_CAPACITY) as usize)?;
        let queue = Queue {
            shared: Arc::new(Shared::new(shm)),
            item: PhantomData,
        };
        let mut locked = queue.lock(Wait::Forever)?;
        let fields = locked.fields();
        fields.maxsize = maxsize;
        fields.capacity = FIRST_CAPACITY;
        drop(locked);
        Ok(queue)
    }

    fn state(&self) -> &QueueState {
        self.shared.shm.state()
    }

    /// The ring's memory in this process, mapped (again) if it grew since this process last
    /// looked. Call with the queue's mutex held, and use the pointer only while it is.
    fn ring(&self, fields: &Fields) -> Result<*mut u8> {
        let mut ring = self
            .shared
            .ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match ring.map {
            Some(_) if ring.len >= fields.capacity => {}
            old => {
                let len = (RECORDS + fields.capacity) as usize;
                let map = map_fd(self.shared.shm.fd(), len)?;
                if let Some(old) = old {
                    // SAFETY: the old mapping is unused: every use is under the queue's mutex,
                    // which this thread holds.
                    unsafe { libc::munmap(old.as_ptr().cast(), (RECORDS + ring.len) as usize) };
                }
                ring.map = Some(map);
                ring.len = fields.capacity;
            }
        }
        let map = ring.map.expect("mapped above");
        // SAFETY: the mapping is `RECORDS + len` bytes long.
        Ok(unsafe { map.as_ptr().add(RECORDS as usize) })
    }

    /// Doubles the ring (at least) until `need` more bytes fit, keeping its records in order.
    fn grow(&self, fields: &mut Fields, need: u64) -> Result<()> {
        let used = fields.tail - fields.head;
        let old = fields.capacity;
        let capacity = (used + need).next_power_of_two().max(2 * old);
        set_len(self.shared.shm.fd(), (RECORDS + capacity) as usize)?;
        let data = self.ring(&Fields {
            capacity,
            ..*fields
        })?;
        // Lay the records out without a wrap in the larger ring: the part that wrapped to the
        // start moves to just past the old end. A death here changes nothing yet.
        let head = fields.head % old;
        let wrapped = (head + used).saturating_sub(old);
        // SAFETY: `wrapped < old`, so both ranges lie inside the new ring and do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(data, data.add(old as usize), wrapped as usize) };
        fields.head = head;
        fields.tail = head + used;
        fields.capacity = capacity;
        Ok(())
    }

    fn lock(&self, wait: Wait) -> Result<Locked<'_>> {
        let state = self.state();
        match state.mutex.lock_state(wait.deadline()) {
            Ok(()) => Ok(Locked { state }),
            Err(LockFailure::TimedOut) => Err(timed_out(wait)),
            Err(failure) => Err(os_error(failure)),
        }
    }

    /// The number of items in the queue now (others may change it at once), Python's `qsize`.
    ///
    /// # Examples
    ///
    /// ```
    /// let queue = mp_runtime::Queue::new().unwrap();
    /// queue.put(&1u8).unwrap();
    /// assert_eq!(queue.len().unwrap(), 1);
    /// ```
    pub fn len(&self) -> Result<usize> {
        Ok(self.lock(Wait::Forever)?.fields().len as usize)
    }

    /// Whether the queue is empty now, Python's `empty()`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(mp_runtime::Queue::<u8>::new().unwrap().is_empty().unwrap());
    /// ```
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Ends the queue for every process: later `put`s fail, and `get`s return what is left,
    /// then fail with [`is_disconnected`](crate::Error::is_disconnected).
    ///
    /// # Examples
    ///
    /// ```
    /// let queue = mp_runtime::Queue::new().unwrap();
    /// queue.put(&1).unwrap();
    /// queue.close().unwrap();
    /// assert!(queue.put(&2).unwrap_err().is_disconnected());
    /// assert_eq!(queue.get().unwrap(), 1);
    /// assert!(queue.get().unwrap_err().is_disconnected());
    /// ```
    pub fn close(&self) -> Result<()> {
        self.lock(Wait::Forever)?.fields().closed = true;
        let state = self.state();
        state.not_empty.notify_all();
        state.not_full.notify_all();
        Ok(())
    }

    /// Appends one encoded item.
    fn put_bytes(&self, bytes: &[u8], wait: Wait) -> Result<()> {
        let state = self.state();
        let mut locked = self.lock(wait)?;
        loop {
            let fields = locked.fields();
            if fields.closed {
                return Err(closed());
            }
            if fields.maxsize == 0 || fields.len < fields.maxsize {
                break;
            }
            match wait {
                Wait::No => return Err(Error::new(Kind::Full("the queue is full".into()))),
                _ => {
                    if !locked.wait(&state.not_full, wait.deadline())? {
                        return Err(timed_out(wait));
                    }
                }
            }
        }
        let fields = locked.fields();
        let size = record_size(bytes.len() as u64);
        if fields.capacity - (fields.tail - fields.head) < size {
            self.grow(fields, size)?;
        }
        let data = self.ring(fields)?;
        // SAFETY: the mutex is held and the ring has room for the record at `tail` (checked
        // above): header and bytes land in free space that nobody reads.
        unsafe {
            copy_in(
                data,
                fields.capacity,
                fields.tail,
                &(bytes.len() as u64).to_le_bytes(),
            );
            copy_in(data, fields.capacity, fields.tail + RECORD_HEADER, bytes);
        }
        // Only now is the record visible: a death above leaves the queue as it was.
        fields.tail += size;
        fields.len += 1;
        fields.unfinished += 1;
        drop(locked);
        state.not_empty.notify(1);
        Ok(())
    }

    /// Takes the first encoded item.
    fn get_bytes(&self, wait: Wait) -> Result<Vec<u8>> {
        let state = self.state();
        let mut locked = self.lock(wait)?;
        loop {
            let fields = locked.fields();
            if fields.len > 0 {
                break;
            }
            if fields.closed {
                return Err(closed());
            }
            match wait {
                Wait::No => return Err(Error::new(Kind::Empty)),
                _ => {
                    if !locked.wait(&state.not_empty, wait.deadline())? {
                        return Err(timed_out(wait));
                    }
                }
            }
        }
        let fields = locked.fields();
        let data = self.ring(fields)?;
        let mut header = [0u8; RECORD_HEADER as usize];
        // SAFETY: the mutex is held and a whole record is at `head`.
        unsafe { copy_out(data, fields.capacity, fields.head, &mut header) };
        let len = u64::from_le_bytes(header);
        if record_size(len) > fields.tail - fields.head {
            return Err(Error::protocol("a queue's record is cut short"));
        }
        let mut bytes = vec![0u8; len as usize];
        // SAFETY: as above; the record's bytes follow its header.
        unsafe {
            copy_out(
                data,
                fields.capacity,
                fields.head + RECORD_HEADER,
                &mut bytes,
            )
        };
        fields.head += record_size(len);
        fields.len -= 1;
        self.release(fields)?;
        drop(locked);
        state.not_full.notify(1);
        Ok(bytes)
    }

    /// When the ring is empty: starts over at its beginning, and gives a large ring back to
    /// the system.
    fn release(&self, fields: &mut Fields) -> Result<()> {
        if fields.len > 0 {
            return Ok(());
        }
        fields.head = 0;
        fields.tail = 0;
        if fields.capacity > SHRINK_ABOVE {
            // Every process touches only `capacity` bytes of its mapping, so a mapping larger
            // than the file is harmless.
            fields.capacity = FIRST_CAPACITY;
            set_len(self.shared.shm.fd(), (RECORDS + FIRST_CAPACITY) as usize)?;
        }
        Ok(())
    }
}

fn closed() -> Error {
    Error::new(Kind::Disconnected("the queue is closed".into()))
}

fn timed_out(wait: Wait) -> Error {
    let after = match wait {
        Wait::Until(_, after) => after,
        _ => Duration::ZERO,
    };
    Error::new(Kind::Timeout {
        what: "the queue".into(),
        after,
    })
}

impl<T: Serialize> Queue<T> {
    /// Puts an item at the end, waiting while a bounded queue is full. Once this returns,
    /// the item is in the queue even if this process ends at once.
    ///
    /// # Examples
    ///
    /// ```
    /// let queue = mp_runtime::Queue::new().unwrap();
    /// queue.put(&vec![1, 2]).unwrap();
    /// assert_eq!(queue.get().unwrap(), [1, 2]);
    /// ```
    pub fn put(&self, item: &T) -> Result<()> {
        self.put_bytes(&codec::encode(item)?, Wait::Forever)
    }

    /// [`put`](Queue::put), waiting at most `timeout` for room.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let queue = mp_runtime::Queue::bounded(1).unwrap();
    /// queue.put_timeout(&1, Duration::from_secs(1)).unwrap();
    /// assert!(queue.put_timeout(&2, Duration::from_millis(10)).unwrap_err().is_timeout());
    /// ```
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.put_bytes(&codec::encode(item)?, Wait::timeout(timeout))
    }

    /// [`put`](Queue::put) without waiting: fails with [`is_full`](crate::Error::is_full)
    /// when there is no room.
    ///
    /// # Examples
    ///
    /// ```
    /// let queue = mp_runtime::Queue::bounded(1).unwrap();
    /// queue.try_put(&1).unwrap();
    /// assert!(queue.try_put(&2).unwrap_err().is_full());
    /// ```
    pub fn try_put(&self, item: &T) -> Result<()> {
        self.put_bytes(&codec::encode(item)?, Wait::No)
    }
}

impl<T: DeserializeOwned> Queue<T> {
    /// Takes the first item, waiting while the queue is empty; fails with
    /// [`is_disconnected`](crate::Error::is_disconnected) once it is closed and empty.
    ///
    /// # Examples
    ///
    /// ```
    /// let queue = mp_runtime::Queue::new().unwrap();
    /// queue.put(&7u64).unwrap();
    /// assert_eq!(queue.get().unwrap(), 7);
    /// ```
    pub fn get(&self) -> Result<T> {
        codec::decode(&self.get_bytes(Wait::Forever)?)
    }

    /// [`get`](Queue::get), waiting at most `timeout`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let queue = mp_runtime::Queue::<u8>::new().unwrap();
    /// assert!(queue.get_timeout(Duration::from_millis(10)).unwrap_err().is_timeout());
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        codec::decode(&self.get_bytes(Wait::timeout(timeout))?)
    }

    /// [`get`](Queue::get) without waiting: fails with [`is_empty`](crate::Error::is_empty)
    /// when there is nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// let queue = mp_runtime::Queue::new().unwrap();
    /// assert!(queue.try_get().unwrap_err().is_empty());
    /// queue.put(&1u8).unwrap();
    /// assert_eq!(queue.try_get().unwrap(), 1);
    /// ```
    pub fn try_get(&self) -> Result<T> {
        codec::decode(&self.get_bytes(Wait::No)?)
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.shared.shm.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Queue {
            shared: Arc::new(Shared::new(Shm::deserialize(deserializer)?)),
            item: PhantomData,
        })
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

/// A [`Queue`] that also counts unfinished items, Python's `JoinableQueue`: every item put
/// must be marked done with [`task_done`](JoinableQueue::task_done), and
/// [`join`](JoinableQueue::join) waits until all are.
///
/// It derefs to [`Queue`] for `put`, `get` and the rest.
///
/// # Examples
///
/// ```
/// use mp_runtime::{process_fn, spawn, JoinableQueue};
///
/// #[process_fn]
/// fn consume(queue: JoinableQueue<u32>) -> u32 {
///     let mut sum = 0;
///     for _ in 0..3 {
///         sum += queue.get().unwrap();
///         queue.task_done().unwrap();
///     }
///     sum
/// }
///
/// let queue = JoinableQueue::new().unwrap();
/// let child = spawn!(consume, queue.clone()).unwrap();
/// for i in 1..=3 {
///     queue.put(&i).unwrap();
/// }
/// queue.join().unwrap(); // every item was taken and marked done
/// assert_eq!(child.join().unwrap(), 6);
/// ```
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;

    fn deref(&self) -> &Queue<T> {
        &self.queue
    }
}

impl<T> JoinableQueue<T> {
    /// An unbounded joinable queue.
    ///
    /// # Examples
    ///
    /// ```
    /// let queue = mp_runtime::JoinableQueue::<u8>::new().unwrap();
    /// queue.join().unwrap(); // nothing to wait for
    /// ```
    pub fn new() -> Result<Self> {
        Ok(JoinableQueue {
            queue: Queue::new()?,
        })
    }

    /// A joinable queue of at most `maxsize` items.
    ///
    /// # Examples
    ///
    /// ```
    /// let queue = mp_runtime::JoinableQueue::bounded(1).unwrap();
    /// queue.put(&1).unwrap();
    /// assert!(queue.try_put(&2).unwrap_err().is_full());
    /// ```
    pub fn bounded(maxsize: usize) -> Result<Self> {
        Ok(JoinableQueue {
            queue: Queue::bounded(maxsize)?,
        })
    }

    /// Marks one item taken with `get` as processed. Calling it more often than items were
    /// put is an error ([`is_usage`](crate::Error::is_usage)).
    ///
    /// # Examples
    ///
    /// ```
    /// let queue = mp_runtime::JoinableQueue::new().unwrap();
    /// queue.put(&1).unwrap();
    /// queue.get().unwrap();
    /// queue.task_done().unwrap();
    /// assert!(queue.task_done().unwrap_err().is_usage());
    /// ```
    pub fn task_done(&self) -> Result<()> {
        let mut locked = self.queue.lock(Wait::Forever)?;
        let fields = locked.fields();
        if fields.unfinished == 0 {
            return Err(Error::new(Kind::Usage(
                "task_done() was called more times than items were put on the queue".into(),
            )));
        }
        fields.unfinished -= 1;
        let all_done = fields.unfinished == 0;
        drop(locked);
        if all_done {
            self.queue.state().all_done.notify_all();
        }
        Ok(())
    }

    /// Waits until every item put has been marked done.
    ///
    /// # Examples
    ///
    /// ```
    /// let queue = mp_runtime::JoinableQueue::new().unwrap();
    /// queue.put(&1).unwrap();
    /// assert_eq!(queue.get().unwrap(), 1);
    /// queue.task_done().unwrap();
    /// queue.join().unwrap();
    /// ```
    pub fn join(&self) -> Result<()> {
        self.join_until(Wait::Forever)
    }

    /// [`join`](JoinableQueue::join), waiting at most `timeout`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let queue = mp_runtime::JoinableQueue::new().unwrap();
    /// queue.put(&1).unwrap();
    /// assert!(queue.join_timeout(Duration::from_millis(10)).unwrap_err().is_timeout());
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.join_until(Wait::timeout(timeout))
    }

    fn join_until(&self, wait: Wait) -> Result<()> {
        let state = self.queue.state();
        let mut locked = self.queue.lock(wait)?;
        while locked.fields().unfinished > 0 {
            if !locked.wait(&state.all_done, wait.deadline())? {
                return Err(timed_out(wait));
            }
        }
        Ok(())
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.queue.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Queue::deserialize(deserializer).map(|queue| JoinableQueue { queue })
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_their_order_across_wraps_and_growth() {
        let queue = Queue::<Vec<u8>>::new().unwrap();
        let item = |i: u32| vec![i as u8; 1000 + (i as usize * 7) % 3000];
        let (mut put, mut got) = (0u32, 0u32);
        // Keep about 40 KiB in a 64 KiB ring, so records wrap around its end many times.
        for _ in 0..200 {
            while put - got < 20 {
                queue.put(&item(put)).unwrap();
                put += 1;
            }
            assert_eq!(queue.get().unwrap(), item(got));
            got += 1;
        }
        // Grow while the records wrap: the wrapped part must follow the rest.
        queue.put(&vec![9; 200_000]).unwrap();
        while got < put {
            assert_eq!(queue.get().unwrap(), item(got));
            got += 1;
        }
        assert_eq!(queue.get().unwrap(), vec![9; 200_000]);
        assert!(queue.is_empty().unwrap());
    }
}
