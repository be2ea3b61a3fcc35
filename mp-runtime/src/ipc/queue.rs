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

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::base::{Error, Kind, Result};
use crate::ipc::shm::{SharedState, Shm, Wait, lock_state, map_fd, set_len, wait_state};
use crate::sys::mmap::{InMapping, Mapping};
use crate::sys::mutex::{Condvar, Monitor, MonitorGuard};
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
    monitor: Monitor<Fields>,
    not_empty: Condvar,
    not_full: Condvar,
    all_done: Condvar,
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
// fields are used only under the monitor's mutex, the signals are atomics.
unsafe impl InMapping for QueueState {}

impl SharedState for QueueState {
    const KIND: u64 = 0x6d70_5175_6575_6503;
    const RESIZABLE: bool = true;

    fn init(&self) -> io::Result<()> {
        self.monitor.init(false)
    }
}

/// A held queue mutex: the fields, while it lives.
type Locked<'a> = MonitorGuard<'a, Fields>;

/// A first-in first-out queue of `T`s shared by any number of processes, Python's
/// `multiprocessing.Queue`.
///
/// Pass it to other processes as an argument to [`spawn!`](crate::spawn) or to pool tasks (a
/// clone is cheap: it is the same queue). Items are encoded like call arguments; handles
/// cannot be put on a queue (send them through a [`pipe`](crate::pipe())).
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
    mapping: Arc<QueueMapping>,
    item: PhantomData<fn(T) -> T>,
}

/// One process's mapping of a queue: the state, and its own mapping of the ring.
struct QueueMapping {
    shm: Shm<QueueState>,
    ring: Mutex<Ring>,
}

impl QueueMapping {
    fn new(shm: Shm<QueueState>) -> Self {
        QueueMapping {
            shm,
            ring: Mutex::new(Ring { map: None }),
        }
    }
}

/// This process's mapping of the file from its start: the ring is `RECORDS` in. It may be
/// larger than the ring is now (after a shrink), never smaller when used.
struct Ring {
    map: Option<Arc<Mapping>>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            mapping: self.mapping.clone(),
            item: PhantomData,
        }
    }
}

/// Bytes a record of `len` item bytes takes in the ring.
fn record_size(len: u64) -> u64 {
    (RECORD_HEADER + len).next_multiple_of(8)
}

/// The ring of `capacity` bytes that starts `RECORDS` into `map`.
struct RingView<'a> {
    map: &'a Mapping,
    capacity: u64,
}

impl RingView<'_> {
    /// Copies `bytes` in from `offset` on, wrapping.
    fn copy_in(&self, offset: u64, bytes: &[u8]) {
        let at = (offset % self.capacity) as usize;
        let first = bytes.len().min(self.capacity as usize - at);
        let start = RECORDS as usize;
        self.map.write(start + at, &bytes[..first]);
        self.map.write(start, &bytes[first..]);
    }

    /// Copies `out.len()` bytes out from `offset` on, wrapping.
    fn copy_out(&self, offset: u64, out: &mut [u8]) {
        let at = (offset % self.capacity) as usize;
        let first = out.len().min(self.capacity as usize - at);
        let start = RECORDS as usize;
        let (head, tail) = out.split_at_mut(first);
        self.map.read(start + at, head);
        self.map.read(start, tail);
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
            mapping: Arc::new(QueueMapping::new(shm)),
            item: PhantomData,
        };
        let mut locked = queue.lock(Wait::Forever)?.expect("waited");
        let fields = locked.fields();
        fields.maxsize = maxsize;
        fields.capacity = FIRST_CAPACITY;
        drop(locked);
        Ok(queue)
    }

    fn state(&self) -> &QueueState {
        self.mapping.shm.state()
    }

    /// The ring's memory in this process, mapped (again) if it grew since this process last
    /// looked. Call with the queue's mutex held, and use it only while it is: the bytes are
    /// another process's to change otherwise.
    fn ring(&self, fields: &Fields) -> Result<Arc<Mapping>> {
        let mut ring = self
            .mapping
            .ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let len = (RECORDS + fields.capacity) as usize;
        match &ring.map {
            Some(map) if map.len() >= len => {}
            _ => ring.map = Some(Arc::new(map_fd(self.mapping.shm.fd(), len)?)),
        }
        Ok(ring.map.clone().expect("mapped above"))
    }

    /// Doubles the ring (at least) until `need` more bytes fit, keeping its records in order.
    fn grow(&self, fields: &mut Fields, need: u64) -> Result<()> {
        let used = fields.tail - fields.head;
        let old = fields.capacity;
        let capacity = (used + need).next_power_of_two().max(2 * old);
        set_len(self.mapping.shm.fd(), (RECORDS + capacity) as usize)?;
        let map = self.ring(&Fields {
            capacity,
            ..*fields
        })?;
        // Lay the records out without a wrap in the larger ring: the part that wrapped to the
        // start moves to just past the old end. A death here changes nothing yet.
        let head = fields.head % old;
        let wrapped = (head + used).saturating_sub(old);
        let mut moved = vec![0; wrapped as usize];
        map.read(RECORDS as usize, &mut moved);
        map.write((RECORDS + old) as usize, &moved);
        fields.head = head;
        fields.tail = head + used;
        fields.capacity = capacity;
        Ok(())
    }

    /// Locks the queue; `Ok(None)` for `Wait::No` when another process or thread holds it.
    fn lock(&self, wait: Wait) -> Result<Option<Locked<'_>>> {
        lock_state(&self.state().monitor, wait, "the queue")
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
        Ok(self.lock(Wait::Forever)?.expect("waited").get().len as usize)
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
        self.lock(Wait::Forever)?.expect("waited").fields().closed = true;
        let state = self.state();
        state.not_empty.notify_all();
        state.not_full.notify_all();
        Ok(())
    }

    /// Appends one encoded item.
    fn put_bytes(&self, bytes: &[u8], wait: Wait) -> Result<()> {
        let state = self.state();
        // Busy counts as full for a put that must not wait, as in Python.
        let mut locked = self.lock(wait)?.ok_or_else(full)?;
        loop {
            let fields = locked.fields();
            if fields.closed {
                return Err(closed());
            }
            if fields.maxsize == 0 || fields.len < fields.maxsize {
                break;
            }
            match wait {
                Wait::No => return Err(full()),
                _ => {
                    if !wait_state(&mut locked, &state.not_full, wait, "the queue")? {
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
        let map = self.ring(fields)?;
        let ring = RingView {
            map: &map,
            capacity: fields.capacity,
        };
        // The ring has room for the record at `tail` (checked above): header and bytes land
        // in free space that nobody reads.
        ring.copy_in(fields.tail, &(bytes.len() as u64).to_le_bytes());
        ring.copy_in(fields.tail + RECORD_HEADER, bytes);
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
        // Busy counts as empty for a get that must not wait, as in Python.
        let mut locked = self.lock(wait)?.ok_or_else(|| Error::new(Kind::Empty))?;
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
                    if !wait_state(&mut locked, &state.not_empty, wait, "the queue")? {
                        return Err(timed_out(wait));
                    }
                }
            }
        }
        let fields = locked.fields();
        let map = self.ring(fields)?;
        let ring = RingView {
            map: &map,
            capacity: fields.capacity,
        };
        let mut header = [0u8; RECORD_HEADER as usize];
        ring.copy_out(fields.head, &mut header);
        let len = u64::from_le_bytes(header);
        if record_size(len) > fields.tail - fields.head {
            return Err(Error::protocol("a queue's record is cut short"));
        }
        let mut bytes = vec![0u8; len as usize];
        ring.copy_out(fields.head + RECORD_HEADER, &mut bytes);
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
            set_len(self.mapping.shm.fd(), (RECORDS + FIRST_CAPACITY) as usize)?;
        }
        Ok(())
    }
}

fn full() -> Error {
    Error::new(Kind::Full("the queue is full".into()))
}

fn closed() -> Error {
    Error::new(Kind::Disconnected("the queue is closed".into()))
}

fn timed_out(wait: Wait) -> Error {
    Error::new(Kind::Timeout {
        what: "the queue".into(),
        after: wait.after(),
    })
}

impl<T: Serialize> Queue<T> {
    /// Puts an item at the end, waiting while a bounded queue is full. Once this returns,
    /// the item is in the queue even if this process ends at once.
    ///
    /// # Errors
    ///
    /// [`is_disconnected`](crate::Error::is_disconnected) once the queue is closed;
    /// [`is_codec`](crate::Error::is_codec) for an item that cannot be encoded (one holding a
    /// handle, say); [`is_io`](crate::Error::is_io) if the ring cannot grow.
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
    /// # Errors
    ///
    /// [`is_timeout`](crate::Error::is_timeout) when there was no room in time; else as
    /// [`put`](Queue::put).
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

    /// [`put`](Queue::put) without waiting.
    ///
    /// # Errors
    ///
    /// [`is_full`](crate::Error::is_full) when there is no room now, or another process holds
    /// the queue's lock (as in Python); else as [`put`](Queue::put).
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
    /// Takes the first item, waiting while the queue is empty.
    ///
    /// # Errors
    ///
    /// [`is_disconnected`](crate::Error::is_disconnected) once the queue is closed and empty;
    /// [`is_codec`](crate::Error::is_codec) for an item that does not decode as a `T`;
    /// [`is_io`](crate::Error::is_io) if the ring cannot be mapped.
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
    /// # Errors
    ///
    /// [`is_timeout`](crate::Error::is_timeout) when nothing came in time; else as
    /// [`get`](Queue::get).
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

    /// [`get`](Queue::get) without waiting.
    ///
    /// # Errors
    ///
    /// [`is_empty`](crate::Error::is_empty) when there is nothing now, or another process
    /// holds the queue's lock (as in Python); else as [`get`](Queue::get). To tell the
    /// outcomes apart in one `match`, use [`Error::kind`](crate::Error::kind).
    ///
    /// # Examples
    ///
    /// ```
    /// let queue = mp_runtime::Queue::new().unwrap();
    /// assert!(queue.try_get().unwrap_err().is_empty());
    /// queue.put(&1u8).unwrap();
    /// assert_eq!(queue.try_get().unwrap(), 1);
    /// ```
    ///
    /// Taking what is there until the queue is closed, with one `match`:
    ///
    /// ```
    /// use mp_runtime::{ErrorKind, Queue};
    ///
    /// let queue = Queue::new().unwrap();
    /// queue.put(&1u8).unwrap();
    /// queue.close().unwrap();
    /// let mut got = Vec::new();
    /// loop {
    ///     match queue.try_get() {
    ///         Ok(item) => got.push(item),
    ///         Err(e) if e.kind() == ErrorKind::Empty => std::thread::yield_now(),
    ///         Err(e) if e.kind() == ErrorKind::Disconnected => break, // closed and drained
    ///         Err(e) => panic!("{e}"),
    ///     }
    /// }
    /// assert_eq!(got, [1]);
    /// ```
    pub fn try_get(&self) -> Result<T> {
        codec::decode(&self.get_bytes(Wait::No)?)
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.mapping.shm.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Queue {
            mapping: Arc::new(QueueMapping::new(Shm::deserialize(deserializer)?)),
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
        let mut locked = self.queue.lock(Wait::Forever)?.expect("waited");
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
        let mut locked = self.queue.lock(wait)?.expect("a join always waits");
        while locked.get().unfinished > 0 {
            if !wait_state(&mut locked, &state.all_done, wait, "the queue")? {
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
