//! [`pipe`]: two connected [`Connection`]s, Python's `multiprocessing.Pipe`.
//!
//! A connection is one end of a Unix stream socket pair carrying the runtime's frames, so a
//! message of any size crosses whole, and handles inside a message (another connection, a
//! queue, a lock) cross as descriptors beside it. When every copy of one end is closed, in
//! whatever process, the other end's `recv` and `send` fail with
//! [`is_disconnected`](crate::Error::is_disconnected) instead of hanging.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::base::{Error, Kind, Result};
use crate::ipc::shm::deadline;
use crate::wire::codec;
use crate::wire::frame::{self as channel, Channel, Frame};

/// Creates a duplex pipe: two connected ends, each of which can send and receive `T`s.
///
/// Pass one end to another process (as an argument to [`spawn!`](crate::spawn) or a pool task,
/// or through another pipe) and keep the other.
///
/// # Examples
///
/// ```
/// use mp_runtime::{pipe, process_fn, spawn, Connection};
///
/// #[process_fn]
/// fn echo_twice(conn: Connection<String>) {
///     let text = conn.recv().unwrap();
///     conn.send(&format!("{text} {text}")).unwrap();
/// }
///
/// let (here, there) = pipe::<String>().unwrap();
/// let child = spawn!(echo_twice, there).unwrap();
/// here.send(&"hey".to_string()).unwrap();
/// assert_eq!(here.recv().unwrap(), "hey hey");
/// child.join().unwrap();
/// ```
pub fn pipe<T>() -> Result<(Connection<T>, Connection<T>)> {
    let (a, b) = UnixStream::pair().map_err(|e| Error::io("cannot create a pipe", e))?;
    Ok((
        Connection::from_stream(a, Direction::Both)?,
        Connection::from_stream(b, Direction::Both)?,
    ))
}

/// Creates a one-way pipe, Python's `Pipe(duplex=False)`: returns `(receiver, sender)`; the
/// receiver cannot send and the sender cannot receive.
///
/// # Examples
///
/// ```
/// let (rx, tx) = mp_runtime::pipe_oneway::<u32>().unwrap();
/// tx.send(&7).unwrap();
/// assert_eq!(rx.recv().unwrap(), 7);
/// assert!(rx.send(&8).unwrap_err().is_usage());
/// ```
pub fn pipe_oneway<T>() -> Result<(Connection<T>, Connection<T>)> {
    let (a, b) = UnixStream::pair().map_err(|e| Error::io("cannot create a pipe", e))?;
    Ok((
        Connection::from_stream(a, Direction::Receive)?,
        Connection::from_stream(b, Direction::Send)?,
    ))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
enum Direction {
    Both,
    Send,
    Receive,
}

/// One end of a [`pipe`]: sends and receives values of type `T`.
///
/// Methods take `&self`; sends from several threads do not interleave, nor do receives.
/// Dropping the end (or [`close`](Connection::close)) closes it; once every copy of it is
/// closed, the other end sees [`is_disconnected`](crate::Error::is_disconnected).
///
/// # Examples
///
/// ```
/// let (a, b) = mp_runtime::pipe::<(u32, String)>().unwrap();
/// a.send(&(1, "one".to_string())).unwrap();
/// assert_eq!(b.recv().unwrap(), (1, "one".to_string()));
/// ```
pub struct Connection<T> {
    /// Shared with this end's [`try_clone`](Connection::try_clone)s: one buffer and one lock
    /// per direction, so a message is never split between two readers or two writers.
    sender: Arc<Mutex<Channel>>,
    receiver: Arc<Mutex<Channel>>,
    direction: Direction,
    message: PhantomData<fn(T) -> T>,
}

/// Locks a mutex whose data stays valid if a panic interrupted its holder.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn disconnected() -> Error {
    Error::new(Kind::Disconnected(
        "the other end of the pipe is closed: its process ended or dropped it".into(),
    ))
}

impl<T> Connection<T> {
    fn from_stream(stream: UnixStream, direction: Direction) -> Result<Self> {
        let reader = stream
            .try_clone()
            .map_err(|e| Error::io("cannot duplicate a pipe's socket", e))?;
        Ok(Connection {
            sender: Arc::new(Mutex::new(Channel::new(stream))),
            receiver: Arc::new(Mutex::new(Channel::new(reader))),
            direction,
            message: PhantomData,
        })
    }

    fn check(&self, wanted: Direction) -> Result<()> {
        if self.direction == Direction::Both || self.direction == wanted {
            return Ok(());
        }
        let what = match wanted {
            Direction::Send => "this end of a one-way pipe only receives",
            _ => "this end of a one-way pipe only sends",
        };
        Err(Error::new(Kind::Usage(what.into())))
    }

    /// Sends raw bytes as one message, Python's `send_bytes`; the other end reads them with
    /// [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = mp_runtime::pipe::<()>().unwrap();
    /// a.send_bytes(b"raw").unwrap();
    /// assert_eq!(b.recv_bytes().unwrap(), b"raw");
    /// ```
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        self.send_frame(bytes, &[])
    }

    fn send_frame(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
        self.check(Direction::Send)?;
        match lock(&self.sender).send_with_fds(bytes, fds) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) =>
            {
                Err(disconnected())
            }
            Err(e) => Err(Error::io("cannot send on a pipe", e)),
        }
    }

    /// Receives one message as raw bytes, Python's `recv_bytes`.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = mp_runtime::pipe::<u8>().unwrap();
    /// a.send_bytes(&[1, 2, 3]).unwrap();
    /// assert_eq!(b.recv_bytes().unwrap(), [1, 2, 3]);
    /// ```
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.recv_frame(None).map(|frame| frame.to_vec())
    }

    /// [`recv_bytes`](Connection::recv_bytes), waiting at most `timeout`, Python's
    /// `poll(timeout)` then `recv_bytes()` in one call; on timeout the error's
    /// [`is_timeout`](crate::Error::is_timeout) is true and nothing is lost.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (a, b) = mp_runtime::pipe::<()>().unwrap();
    /// assert!(b.recv_bytes_timeout(Duration::from_millis(10)).unwrap_err().is_timeout());
    /// a.send_bytes(b"late").unwrap();
    /// assert_eq!(b.recv_bytes_timeout(Duration::from_secs(10)).unwrap(), b"late");
    /// ```
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.recv_frame_timeout(timeout).map(|frame| frame.to_vec())
    }

    /// The next frame, waiting at most `timeout`; a timeout's error names it.
    fn recv_frame_timeout(&self, timeout: Duration) -> Result<Frame> {
        self.recv_frame(deadline(timeout)).map_err(|e| {
            if !e.is_timeout() {
                return e;
            }
            Error::new(Kind::Timeout {
                what: "a message on a pipe".into(),
                after: timeout,
            })
        })
    }

    fn recv_frame(&self, deadline: Option<Instant>) -> Result<Frame> {
        self.check(Direction::Receive)?;
        match lock(&self.receiver).recv_until(deadline) {
            Ok(Some(frame)) => Ok(frame),
            Ok(None) => Err(disconnected()),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(Error::new(Kind::Timeout {
                what: "a message on a pipe".into(),
                after: Duration::ZERO,
            })),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                ) =>
            {
                Err(disconnected())
            }
            Err(e) => Err(Error::io("cannot receive on a pipe", e)),
        }
    }

    /// Whether a message can be received now, waiting up to `timeout` for one, Python's
    /// `poll`. Also true when the other end is closed (`recv` then says so at once).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (a, b) = mp_runtime::pipe::<u8>().unwrap();
    /// assert!(!b.poll(Duration::ZERO).unwrap());
    /// a.send(&1).unwrap();
    /// assert!(b.poll(Duration::from_secs(10)).unwrap());
    /// ```
    pub fn poll(&self, timeout: Duration) -> Result<bool> {
        self.check(Direction::Receive)?;
        let receiver = lock(&self.receiver);
        if receiver.has_frame() {
            return Ok(true);
        }
        let deadline =
            deadline(timeout).unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 40));
        match channel::wait_readable(receiver.stream(), deadline) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(false),
            Err(e) => Err(Error::io("cannot poll a pipe", e)),
        }
    }

    /// Another handle to this same end, for another thread or owner, as
    /// [`UnixStream::try_clone`] gives one. The clones share one lock and one buffer per
    /// direction: each message sent to this end is received by exactly one of them, whole, and
    /// their sends do not interleave. The end closes when the last of them is dropped.
    ///
    /// A `Result`, as `UnixStream`'s is, so code reads the same for both; sharing within this
    /// process does not fail.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = mp_runtime::pipe::<u32>().unwrap();
    /// let reader = b.try_clone().unwrap();
    /// let thread = std::thread::spawn(move || reader.recv().unwrap());
    /// a.send(&7).unwrap();
    /// assert_eq!(thread.join().unwrap(), 7);
    /// drop(b); // the clone is gone too: now the end is closed
    /// assert!(a.send(&8).unwrap_err().is_disconnected());
    /// ```
    pub fn try_clone(&self) -> Result<Connection<T>> {
        Ok(Connection {
            sender: Arc::clone(&self.sender),
            receiver: Arc::clone(&self.receiver),
            direction: self.direction,
            message: PhantomData,
        })
    }

    /// Closes this end, as dropping it does.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = mp_runtime::pipe::<u8>().unwrap();
    /// a.close();
    /// assert!(b.recv().unwrap_err().is_disconnected());
    /// ```
    pub fn close(self) {}
}

impl<T: Serialize> Connection<T> {
    /// Sends a value; it is received whole by the other end's [`recv`](Connection::recv).
    /// Fails with [`is_disconnected`](crate::Error::is_disconnected) when the other end is
    /// closed.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = mp_runtime::pipe::<Vec<u32>>().unwrap();
    /// a.send(&vec![1, 2, 3]).unwrap();
    /// assert_eq!(b.recv().unwrap(), [1, 2, 3]);
    /// ```
    pub fn send(&self, value: &T) -> Result<()> {
        let (bytes, fds) = codec::encode_with_fds(value)?;
        let fds: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
        self.send_frame(&bytes, &fds)
    }
}

impl<T: DeserializeOwned> Connection<T> {
    /// Waits for the next value. Fails with
    /// [`is_disconnected`](crate::Error::is_disconnected) once the other end is closed and
    /// everything it sent has been received.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = mp_runtime::pipe::<String>().unwrap();
    /// a.send(&"hi".to_string()).unwrap();
    /// drop(a);
    /// assert_eq!(b.recv().unwrap(), "hi");
    /// assert!(b.recv().unwrap_err().is_disconnected());
    /// ```
    pub fn recv(&self) -> Result<T> {
        self.decode(self.recv_frame(None)?)
    }

    /// Waits at most `timeout` for the next value; on timeout the error's
    /// [`is_timeout`](crate::Error::is_timeout) is true and nothing is lost.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (a, b) = mp_runtime::pipe::<u8>().unwrap();
    /// assert!(b.recv_timeout(Duration::from_millis(10)).unwrap_err().is_timeout());
    /// a.send(&5).unwrap();
    /// assert_eq!(b.recv_timeout(Duration::from_secs(10)).unwrap(), 5);
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T> {
        self.decode(self.recv_frame_timeout(timeout)?)
    }

    fn decode(&self, mut frame: Frame) -> Result<T> {
        let fds: Vec<OwnedFd> = std::mem::take(&mut frame.fds);
        codec::decode_with_fds(&frame, fds)
    }
}

impl<T> Serialize for Connection<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeTuple};
        if !lock(&self.receiver).is_drained() {
            return Err(S::Error::custom(
                "a connection with received messages not yet read cannot be sent to another \
                 process; read them first",
            ));
        }
        let sender = lock(&self.sender);
        let mut tuple = serializer.serialize_tuple(2)?;
        tuple.serialize_element(&self.direction)?;
        tuple.serialize_element(&FdRef(sender.stream().as_fd()))?;
        tuple.end()
    }
}

/// Serializes a borrowed descriptor as a handle.
struct FdRef<'a>(BorrowedFd<'a>);

impl Serialize for FdRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        codec::serialize_fd(self.0, serializer)
    }
}

/// Deserializes a descriptor sent as a handle.
struct FdOwned(OwnedFd);

impl<'de> Deserialize<'de> for FdOwned {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        codec::deserialize_fd(deserializer).map(FdOwned)
    }
}

impl<'de, T> Deserialize<'de> for Connection<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (direction, FdOwned(fd)) = <(Direction, FdOwned)>::deserialize(deserializer)?;
        Connection::from_stream(UnixStream::from(fd), direction).map_err(codec::handle_error)
    }
}

impl<T> fmt::Debug for Connection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("direction", &self.direction)
            .finish_non_exhaustive()
    }
}
