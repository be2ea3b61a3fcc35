//! [`Queue`] and [`JoinableQueue`]: many producers, many consumers, in any processes.
//!
//! The queue is one anonymous memory file. Its first page holds the state (a robust mutex, the
//! read and write offsets, counts, and futex signals); the items follow as length-prefixed
//! records, appended with `pwrite` and read with `pread` under the mutex. `put` returns once
//! the item is in the shared file, so an item is never lost when its producer exits right
//! after (Python's feeder thread loses or deadlocks there), and the offsets move only after a
//! whole record is written or read, so a process that dies in the middle leaves the queue
//! consistent: the next locker takes the mutex over and goes on. The file grows as needed
//! (unbounded) and its consumed part is given back to the system as the queue drains.

use std::cell::UnsafeCell;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec;
use crate::error::{Error, Kind, Result};
use crate::shm::{LockFailure, RawMutex, SharedState, Shm, Signal, deadline, set_len};

/// Where the records start in the file: past the mapped state, page aligned.
const RECORDS: u64 = 4096;
/// Bytes of the consumed part worth giving back to the system at once.
const RELEASE_STEP: u64 = 4 << 20;
/// Record header: the length of the item's bytes.
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
    /// Offsets past `RECORDS` of the next record to read and of the end of the last one.
    head: u64,
    tail: u64,
    /// Records between them.
    len: u64,
    /// Up to where the consumed records were given back.
    released: u64,
    /// 0 for unbounded.
    maxsize: u64,
    /// Items put and not yet marked done (JoinableQueue).
    unfinished: u64,
    closed: bool,
}

// SAFETY: all-zero bytes are a valid (unbounded, empty, open) state until `init` runs; the
// fields are used only under `mutex`, the signals are atomics.
unsafe impl SharedState for QueueState {
    const KIND: u64 = 0x6d70_5175_6575_6501;
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
/// cannot be put on a queue (send them through a [`pipe`](crate::pipe)).
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
    shm: Arc<Shm<QueueState>>,
    item: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            shm: self.shm.clone(),
            item: PhantomData,
        }
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
        set_len(shm.fd(), RECORDS as usize)?;
        let queue = Queue {
            shm: Arc::new(shm),
            item: PhantomData,
        };
        queue.lock(Wait::Forever)?.fields().maxsize = maxsize;
        Ok(queue)
    }

    fn state(&self) -> &QueueState {
        self.shm.state()
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
        let at = RECORDS + fields.tail;
        write_all_at(&self.shm, &(bytes.len() as u64).to_le_bytes(), at)?;
        write_all_at(&self.shm, bytes, at + RECORD_HEADER)?;
        // Only now is the record visible: a death above leaves the queue as it was.
        fields.tail += RECORD_HEADER + bytes.len() as u64;
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
        let at = RECORDS + fields.head;
        let mut header = [0u8; RECORD_HEADER as usize];
        read_exact_at(&self.shm, &mut header, at)?;
        let len = u64::from_le_bytes(header);
        let mut bytes = vec![0u8; len as usize];
        read_exact_at(&self.shm, &mut bytes, at + RECORD_HEADER)?;
        fields.head += RECORD_HEADER + len;
        fields.len -= 1;
        self.release(fields)?;
        drop(locked);
        state.not_full.notify(1);
        Ok(bytes)
    }

    /// Gives the consumed part of the file back to the system.
    fn release(&self, fields: &mut Fields) -> Result<()> {
        if fields.len == 0 && fields.tail >= RELEASE_STEP {
            // Empty: start over at the beginning of a file cut back to the state.
            fields.head = 0;
            fields.tail = 0;
            fields.released = 0;
            set_len(self.shm.fd(), RECORDS as usize)?;
        } else if fields.head - fields.released >= RELEASE_STEP {
            let upto = fields.head / 4096 * 4096;
            // SAFETY: plain system call; the range holds only records already read.
            let punched = unsafe {
                libc::fallocate(
                    self.shm.fd().as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    (RECORDS + fields.released) as libc::off_t,
                    (upto - fields.released) as libc::off_t,
                )
            };
            if punched == 0 {
                fields.released = upto;
            }
        }
        Ok(())
    }
}

fn write_all_at(shm: &Shm<QueueState>, mut bytes: &[u8], mut at: u64) -> Result<()> {
    while !bytes.is_empty() {
        // SAFETY: plain system call reading `bytes`, which lives across it.
        let n = unsafe {
            libc::pwrite(
                shm.fd().as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                at as libc::off_t,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::io("cannot store an item in the queue", e));
        }
        bytes = &bytes[n as usize..];
        at += n as u64;
    }
    Ok(())
}

fn read_exact_at(shm: &Shm<QueueState>, mut buf: &mut [u8], mut at: u64) -> Result<()> {
    while !buf.is_empty() {
        // SAFETY: plain system call writing into `buf`, which lives across it.
        let n = unsafe {
            libc::pread(
                shm.fd().as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                at as libc::off_t,
            )
        };
        match n {
            0 => return Err(Error::protocol("a queue's record is cut short")),
            n if n < 0 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(Error::io("cannot read an item from the queue", e));
                }
            }
            n => {
                buf = &mut buf[n as usize..];
                at += n as u64;
            }
        }
    }
    Ok(())
}

fn closed() -> Error {
    Error::new(Kind::Disconnected("the queue is closed".into()))
}

fn timed_out(wait: Wait) -> Error {
    let after = match wait {
        Wait::Until(_, after) => after,
        _ => Duration::ZERO,
    };
    Error::new(Kind::WaitTimedOut {
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
        self.shm.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Queue {
            shm: Arc::new(Shm::deserialize(deserializer)?),
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
