//! The one error type of the crate, with predicates to branch on.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::sys::Signal;

/// A `Result` whose error is [`Error`]: what every fallible call of mp returns.
///
/// # Examples
///
/// ```
/// use mp_runtime::{process_fn, spawn};
///
/// #[process_fn]
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn squared_elsewhere(x: u64) -> mp_runtime::Result<u64> {
///     spawn!(square, x)?.join()
/// }
///
/// assert_eq!(squared_elsewhere(7).unwrap(), 49);
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a call to another process.
///
/// The kind is opaque; branch on it with the predicates ([`is_panic`](Error::is_panic),
/// [`is_died`](Error::is_died), [`is_timeout`](Error::is_timeout), ...). `Display` says what
/// happened and, where there is something to do, what to do.
///
/// # Examples
///
/// ```
/// use mp_runtime::{process_fn, spawn};
///
/// #[process_fn]
/// fn fail() {
///     panic!("boom");
/// }
///
/// let err = spawn!(fail).unwrap().join().unwrap_err();
/// assert!(err.is_panic());
/// assert_eq!(err.panic_message(), Some("boom"));
/// ```
#[derive(Clone)]
pub struct Error {
    kind: Kind,
}

/// The cases, with what each knows. Private, so new ones can be added; users see
/// [`ErrorKind`]. Serde, so that an error raised in a worker crosses to the parent whole.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) enum Kind {
    /// The function panicked in the child.
    Panic {
        function: String,
        message: String,
        location: Option<Location>,
        /// The child's backtrace, when `RUST_BACKTRACE` or `RUST_LIB_BACKTRACE` enabled one.
        backtrace: Option<String>,
    },
    /// The process `pid` ended before it sent a result; `said` is why, when it said so before
    /// it exited (a worker that could not start).
    Died {
        function: String,
        pid: u32,
        exit: ExitReason,
        said: Option<String>,
    },
    /// A worker with a memory limit ended the way an allocation past the limit ends it.
    OutOfMemory {
        function: String,
        pid: u32,
        exit: ExitReason,
        limit: u64,
    },
    /// An MPI rank that was running the task was lost: it died, or MPI lost contact with it.
    #[cfg(feature = "mpi")]
    RankLost {
        function: String,
        rank: i32,
        why: String,
    },
    /// An MPI call failed.
    #[cfg(feature = "mpi")]
    Mpi(String),
    /// A wait ran out of time; `what` says for what.
    Timeout { what: String, after: Duration },
    /// A pool's task ran past its time limit, so its worker `pid` was killed.
    TimeLimit {
        function: String,
        pid: u32,
        limit: Duration,
    },
    /// The function was passed without `#[process_fn]`.
    NotRegistered { name: String },
    /// The child does not know the id the parent asked for.
    UnknownId {
        id: String,
        binary: String,
        known: Vec<String>,
    },
    /// Two functions share one id.
    DuplicateId {
        id: String,
        first: String,
        second: String,
    },
    /// Arguments or a result could not be encoded or decoded.
    Codec(String),
    /// The peer sent something that is not our protocol.
    Protocol(String),
    /// The pool was closed or terminated.
    Closed,
    /// The task was cancelled before it produced a result.
    Cancelled,
    /// The result was already taken out of a handle.
    ResultTaken,
    /// The API was used in a way it cannot work; the message says how to use it.
    Usage(String),
    /// The other end of a pipe is gone, or a queue was closed.
    Disconnected(String),
    /// A process died holding a lock; the lock was taken over and released.
    OwnerDied(String),
    /// A barrier was broken: a party died, timed out or aborted.
    BrokenBarrier(String),
    /// `try_get` on an empty queue.
    Empty,
    /// `try_put` on a full queue.
    Full(String),
    /// A handle was used in a forked copy of the process that made it (`here`), whose threads
    /// and children are the original's (`owner`).
    ForeignProcess {
        handle: Handle,
        owner: u32,
        here: u32,
    },
    /// A worker could not enter its sandbox; the message says why and what to do.
    Sandbox(String),
    /// An operating-system call failed.
    /// Shared, so that one failure can be reported for every call it ended.
    Io {
        context: String,
        #[serde(with = "io_error_as_text")]
        source: Arc<io::Error>,
    },
}

/// What kind of handle a forked copy tried to use: what to do instead depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Handle {
    /// A [`Pool`](crate::Pool).
    Pool,
    /// A [`Process`](crate::Process).
    Process,
    /// An [`AsyncResult`](crate::AsyncResult) or an [`IMap`](crate::IMap) of a pool.
    PoolResult,
    /// The table of `pool_map!`'s shared pools, locked by a thread of the original at the
    /// fork.
    SharedPools,
}

/// An `io::Error` crosses between processes as its text (its kind and OS code stay behind).
mod io_error_as_text {
    use std::io;
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        error: &Arc<io::Error>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_str(error)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<io::Error>, D::Error> {
        String::deserialize(d).map(|text| Arc::new(io::Error::other(text)))
    }
}

/// What kind of error an [`Error`] is: match on it, as on [`std::io::ErrorKind`]. The
/// predicates ([`Error::is_panic`], ...) say the same, one kind at a time.
///
/// # Examples
///
/// ```
/// use mp_runtime::{process_fn, spawn, ErrorKind};
///
/// #[process_fn]
/// fn quit() {
///     std::process::exit(3);
/// }
///
/// let err = spawn!(quit).unwrap().join().unwrap_err();
/// match err.kind() {
///     ErrorKind::Died => assert_eq!(err.exit_code(), Some(3)),
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The function panicked in the child ([`Error::is_panic`]).
    Panic,
    /// The process ended before it sent a result ([`Error::is_died`]).
    Died,
    /// A worker went over its pool's memory limit ([`Error::is_out_of_memory`]).
    OutOfMemory,
    /// The MPI rank running the task was lost (feature `mpi`; also [`Error::is_died`]).
    RankLost,
    /// A wait ran out of time ([`Error::is_timeout`]).
    Timeout,
    /// The function is not registered with `#[process_fn]`, not known to the child, or its id
    /// is taken twice ([`Error::is_not_registered`]).
    NotRegistered,
    /// A value could not be encoded or decoded ([`Error::is_codec`]).
    Codec,
    /// The other side sent something that is not mp's protocol.
    Protocol,
    /// The pool is closed or terminated ([`Error::is_closed`]).
    Closed,
    /// The task was cancelled ([`Error::is_cancelled`]).
    Cancelled,
    /// The API was used in a way that cannot work ([`Error::is_usage`]).
    Usage,
    /// The other end of a pipe is gone, or a queue is closed ([`Error::is_disconnected`]).
    Disconnected,
    /// A process died holding a lock ([`Error::is_owner_died`]).
    OwnerDied,
    /// A barrier is broken ([`Error::is_broken_barrier`]).
    BrokenBarrier,
    /// A queue is empty ([`Error::is_empty`]).
    Empty,
    /// A queue is full ([`Error::is_full`]).
    Full,
    /// A pool, process or result was used in a forked copy of the process that made it
    /// ([`Error::is_foreign_process`]).
    ForeignProcess,
    /// A worker could not enter its sandbox ([`Error::is_sandbox`]).
    Sandbox,
    /// An operating-system call failed ([`Error::is_io`]); `source()` is the `io::Error`.
    Io,
    /// An MPI call failed (feature `mpi`).
    Mpi,
}

/// Where a panic happened: file, line and column, as `std::panic::Location` says.
///
/// # Examples
///
/// ```
/// use mp_runtime::{process_fn, spawn};
///
/// #[process_fn]
/// fn fail() {
///     panic!("boom");
/// }
///
/// let err = spawn!(fail).unwrap().join().unwrap_err();
/// let location = err.panic_location().unwrap();
/// assert!(location.file().ends_with(".rs") && location.line() > 0);
/// assert_eq!(location.to_string(), format!("{}:{}:{}", location.file(), location.line(), location.column()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Location {
    file: String,
    line: u32,
    column: u32,
}

impl Location {
    /// Reads `file:line:column`, as a panic hook formats a location (the file may itself
    /// hold colons).
    pub(crate) fn parse(text: &str) -> Option<Location> {
        let mut parts = text.rsplitn(3, ':');
        let column = parts.next()?.parse().ok()?;
        let line = parts.next()?.parse().ok()?;
        let file = parts.next()?.to_string();
        Some(Location { file, line, column })
    }

    /// The source file, as the compiler named it.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, spawn};
    ///
    /// #[process_fn]
    /// fn fail() {
    ///     panic!("boom");
    /// }
    ///
    /// let err = spawn!(fail).unwrap().join().unwrap_err();
    /// assert!(err.panic_location().unwrap().file().ends_with(".rs"));
    /// ```
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The line, from 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, spawn};
    ///
    /// #[process_fn]
    /// fn fail() {
    ///     panic!("boom");
    /// }
    ///
    /// let err = spawn!(fail).unwrap().join().unwrap_err();
    /// assert!(err.panic_location().unwrap().line() > 0);
    /// ```
    pub fn line(&self) -> u32 {
        self.line
    }

    /// The column, from 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, spawn};
    ///
    /// #[process_fn]
    /// fn fail() {
    ///     panic!("boom");
    /// }
    ///
    /// let err = spawn!(fail).unwrap().join().unwrap_err();
    /// assert!(err.panic_location().unwrap().column() > 0);
    /// ```
    pub fn column(&self) -> u32 {
        self.column
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// How a process ended, as far as the parent could tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum ExitReason {
    /// It called `exit` with this code.
    Code(i32),
    /// A signal ended it.
    Signal(#[serde(with = "signal_as_number")] Signal),
    /// Its status could not be read (it was reaped elsewhere).
    Unknown,
    /// It overflowed its stack (and was killed by SIGSEGV), as it reported before dying.
    StackOverflow,
}

impl ExitReason {
    pub(crate) fn from_status(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => ExitReason::Code(code),
            (None, Some(signal)) => ExitReason::Signal(Signal::from_raw(signal)),
            (None, None) => ExitReason::Unknown,
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitReason::Code(code) => write!(f, "exited with code {code}"),
            ExitReason::Signal(signal) => {
                let number = signal.as_raw();
                write!(f, "was killed by signal {number} ({})", signal_name(signal))
            }
            ExitReason::Unknown => f.write_str("ended with an unknown status"),
            ExitReason::StackOverflow => f.write_str("has overflowed its stack"),
        }
    }
}

fn signal_name(signal: Signal) -> &'static str {
    match signal {
        Signal::ABRT => "SIGABRT: abort() or a failed assertion in C code",
        Signal::KILL => "SIGKILL: killed, often by the out-of-memory killer",
        Signal::SEGV => "SIGSEGV: invalid memory access",
        Signal::BUS => "SIGBUS: bad memory access",
        Signal::TERM => "SIGTERM: asked to terminate",
        Signal::INT => "SIGINT: interrupted",
        Signal::FPE => "SIGFPE: arithmetic fault",
        Signal::ILL => "SIGILL: illegal instruction",
        Signal::PIPE => "SIGPIPE: wrote to a closed pipe",
        _ => "see `man 7 signal`",
    }
}

/// A signal crosses between processes as its number.
mod signal_as_number {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::sys::Signal;

    pub(super) fn serialize<S: Serializer>(signal: &Signal, s: S) -> Result<S::Ok, S::Error> {
        signal.as_raw().serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Signal, D::Error> {
        i32::deserialize(d).map(Signal::from_raw)
    }
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Self {
        Error { kind }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::new(Kind::Io {
            context: context.into(),
            source: Arc::new(source),
        })
    }

    pub(crate) fn codec(message: impl Into<String>) -> Self {
        Error::new(Kind::Codec(message.into()))
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        Error::new(Kind::Protocol(message.into()))
    }

    /// A wait for `what` that ran out of time after `after`.
    pub(crate) fn timeout(what: impl Into<String>, after: Duration) -> Self {
        Error::new(Kind::Timeout {
            what: what.into(),
            after,
        })
    }

    /// A use of the API that cannot work; `message` says what to do instead.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Error::new(Kind::Usage(message.into()))
    }

    /// What the error knows, for the crate's own use.
    pub(crate) fn details(&self) -> &Kind {
        &self.kind
    }

    /// What kind of error this is, to match on; see [`ErrorKind`].
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{ErrorKind, Pool};
    ///
    /// assert_eq!(Pool::new(0).unwrap_err().kind(), ErrorKind::Usage);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self.kind {
            Kind::Panic { .. } => ErrorKind::Panic,
            Kind::Died { .. } => ErrorKind::Died,
            Kind::OutOfMemory { .. } => ErrorKind::OutOfMemory,
            #[cfg(feature = "mpi")]
            Kind::RankLost { .. } => ErrorKind::RankLost,
            #[cfg(feature = "mpi")]
            Kind::Mpi(_) => ErrorKind::Mpi,
            Kind::Timeout { .. } | Kind::TimeLimit { .. } => ErrorKind::Timeout,
            Kind::NotRegistered { .. } | Kind::UnknownId { .. } | Kind::DuplicateId { .. } => {
                ErrorKind::NotRegistered
            }
            Kind::Codec(_) => ErrorKind::Codec,
            Kind::Protocol(_) => ErrorKind::Protocol,
            Kind::Closed => ErrorKind::Closed,
            Kind::Cancelled => ErrorKind::Cancelled,
            Kind::ResultTaken | Kind::Usage(_) => ErrorKind::Usage,
            Kind::Disconnected(_) => ErrorKind::Disconnected,
            Kind::OwnerDied(_) => ErrorKind::OwnerDied,
            Kind::BrokenBarrier(_) => ErrorKind::BrokenBarrier,
            Kind::Empty => ErrorKind::Empty,
            Kind::Full(_) => ErrorKind::Full,
            Kind::ForeignProcess { .. } => ErrorKind::ForeignProcess,
            Kind::Sandbox(_) => ErrorKind::Sandbox,
            Kind::Io { .. } => ErrorKind::Io,
        }
    }

    /// True when the function panicked in the child; [`panic_message`](Error::panic_message)
    /// and [`panic_location`](Error::panic_location) tell more.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, spawn};
    ///
    /// #[process_fn]
    /// fn divide(a: i32, b: i32) -> i32 {
    ///     a / b
    /// }
    ///
    /// let err = spawn!(divide, 1, 0).unwrap().join().unwrap_err();
    /// assert!(err.is_panic());
    /// assert!(err.to_string().contains("divide by zero"));
    /// ```
    pub fn is_panic(&self) -> bool {
        matches!(self.kind, Kind::Panic { .. })
    }

    /// The panic's message, when [`is_panic`](Error::is_panic).
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, spawn};
    ///
    /// #[process_fn]
    /// fn fail(code: u8) {
    ///     panic!("failed with {code}");
    /// }
    ///
    /// let err = spawn!(fail, 7).unwrap().join().unwrap_err();
    /// assert_eq!(err.panic_message(), Some("failed with 7"));
    /// ```
    pub fn panic_message(&self) -> Option<&str> {
        match &self.kind {
            Kind::Panic { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Where the panic happened, when [`is_panic`](Error::is_panic) and the child knew.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, spawn};
    ///
    /// #[process_fn]
    /// fn fail() {
    ///     panic!("boom");
    /// }
    ///
    /// let err = spawn!(fail).unwrap().join().unwrap_err();
    /// assert!(err.panic_location().unwrap().to_string().contains(".rs:"));
    /// ```
    pub fn panic_location(&self) -> Option<&Location> {
        match &self.kind {
            Kind::Panic { location, .. } => location.as_ref(),
            _ => None,
        }
    }

    /// The child's backtrace of the panic, when [`is_panic`](Error::is_panic) and backtraces
    /// were enabled in the child: `RUST_BACKTRACE` or `RUST_LIB_BACKTRACE` set to anything but
    /// `0` in its environment, which it inherits from the parent. `Debug` (what `unwrap` prints)
    /// shows it after the message; `Display` does not.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, spawn};
    ///
    /// #[process_fn]
    /// fn fail() {
    ///     panic!("boom");
    /// }
    ///
    /// let err = spawn!(fail).unwrap().join().unwrap_err();
    /// // There is one exactly when the child had backtraces enabled.
    /// let enabled = ["RUST_LIB_BACKTRACE", "RUST_BACKTRACE"]
    ///     .iter()
    ///     .find_map(|name| std::env::var(name).ok())
    ///     .is_some_and(|value| value != "0");
    /// assert_eq!(err.panic_backtrace().is_some(), enabled);
    /// ```
    pub fn panic_backtrace(&self) -> Option<&str> {
        match &self.kind {
            Kind::Panic { backtrace, .. } => backtrace.as_deref(),
            _ => None,
        }
    }

    /// True when the process ended (crashed, exited, was killed) before it sent a result.
    /// [`exit_code`](Error::exit_code) and [`signal`](Error::signal) tell how. Also true when
    /// the MPI rank running the task was lost (see the `mpi` feature).
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, spawn};
    ///
    /// #[process_fn]
    /// fn quit() {
    ///     std::process::exit(3);
    /// }
    ///
    /// let err = spawn!(quit).unwrap().join().unwrap_err();
    /// assert!(err.is_died());
    /// assert_eq!(err.exit_code(), Some(3));
    /// ```
    pub fn is_died(&self) -> bool {
        match self.kind {
            Kind::Died { .. } | Kind::OutOfMemory { .. } => true,
            #[cfg(feature = "mpi")]
            Kind::RankLost { .. } => true,
            _ => false,
        }
    }

    /// True when a worker of a pool with a
    /// [`memory_limit`](crate::PoolBuilder::memory_limit) died the way a task that allocates
    /// past the limit dies (also [`is_died`](Error::is_died)).
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool, StartMethod};
    ///
    /// #[process_fn]
    /// fn hog() -> usize {
    ///     vec![0u8; 1 << 30].iter().filter(|&&b| b == 0).count()
    /// }
    ///
    /// let pool = Pool::builder()
    ///     .processes(1)
    ///     .start_method(StartMethod::Spawn)
    ///     .memory_limit(128 << 20)
    ///     .build()
    ///     .unwrap();
    /// let err = pool.apply(hog, ()).unwrap_err();
    /// assert!(err.is_out_of_memory() && err.is_died());
    /// assert!(err.to_string().contains("memory limit"), "{err}");
    /// ```
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self.kind, Kind::OutOfMemory { .. })
    }

    /// How the process ended, for either kind of death.
    fn exit_reason(&self) -> Option<ExitReason> {
        match self.kind {
            Kind::Died { exit, .. } | Kind::OutOfMemory { exit, .. } => Some(exit),
            _ => None,
        }
    }

    /// The exit code of a process that [died](Error::is_died) by calling `exit`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, spawn};
    ///
    /// #[process_fn]
    /// fn quit() {
    ///     std::process::exit(4);
    /// }
    ///
    /// assert_eq!(spawn!(quit).unwrap().join().unwrap_err().exit_code(), Some(4));
    /// ```
    pub fn exit_code(&self) -> Option<i32> {
        match self.exit_reason()? {
            ExitReason::Code(code) => Some(code),
            _ => None,
        }
    }

    /// The signal that ended a process that [died](Error::is_died) of one.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, spawn};
    ///
    /// #[process_fn]
    /// fn crash() {
    ///     std::process::abort();
    /// }
    ///
    /// let err = spawn!(crash).unwrap().join().unwrap_err();
    /// assert_eq!(err.signal(), Some(6)); // SIGABRT
    /// ```
    pub fn signal(&self) -> Option<i32> {
        match self.exit_reason()? {
            ExitReason::Signal(signal) => Some(signal.as_raw()),
            _ => None,
        }
    }

    /// The process id of the process that [died](Error::is_died) (pebble's
    /// `ProcessExpired.pid`), or of the pool worker that was killed because its task ran past
    /// its time limit ([`is_timeout`](Error::is_timeout)). `None` for every other error, and
    /// for a lost MPI rank. The pid is that of a process already reaped: by now it may name
    /// another process.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, spawn};
    ///
    /// #[process_fn]
    /// fn crash() {
    ///     std::process::abort();
    /// }
    ///
    /// let p = spawn!(crash).unwrap();
    /// let pid = p.pid();
    /// let err = p.join().unwrap_err();
    /// assert_eq!(err.pid(), Some(pid));
    /// assert!(err.to_string().contains(&format!("process {pid}")), "{err}");
    /// ```
    pub fn pid(&self) -> Option<u32> {
        match self.kind {
            Kind::Died { pid, .. }
            | Kind::OutOfMemory { pid, .. }
            | Kind::TimeLimit { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// True when a wait ran out of time; the work goes on. Also true when a pool's task ran
    /// past its time limit: its worker was killed ([`pid`](Error::pid) names it) and replaced.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mp_runtime::{process_fn, spawn};
    ///
    /// #[process_fn]
    /// fn nap() {
    ///     std::thread::sleep(Duration::from_secs(5));
    /// }
    ///
    /// let mut p = spawn!(nap).unwrap();
    /// assert!(p.join_timeout(Duration::from_millis(10)).unwrap_err().is_timeout());
    /// p.kill().unwrap();
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout { .. } | Kind::TimeLimit { .. })
    }

    /// True when the other end of a [`Connection`](crate::Connection) is gone (closed, or its
    /// process ended), or a [`Queue`](crate::Queue) was closed and is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = mp_runtime::pipe::<u32>().unwrap();
    /// drop(b);
    /// assert!(a.recv().unwrap_err().is_disconnected());
    /// ```
    pub fn is_disconnected(&self) -> bool {
        matches!(self.kind, Kind::Disconnected(_))
    }

    /// True when a process died holding a [`Lock`](crate::Lock) (or the lock of a
    /// [`Value`](crate::Value), [`Array`](crate::Array), [`Condition`](crate::Condition)):
    /// what it guarded may be half-changed. The lock was released; acquiring it again works.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, spawn, Lock};
    ///
    /// #[process_fn]
    /// fn die_holding(lock: Lock) {
    ///     std::mem::forget(lock.acquire().unwrap());
    ///     std::process::exit(1);
    /// }
    ///
    /// let lock = Lock::new().unwrap();
    /// let _ = spawn!(die_holding, lock.clone()).unwrap().join();
    /// assert!(lock.acquire().unwrap_err().is_owner_died());
    /// assert!(lock.acquire().is_ok());
    /// ```
    pub fn is_owner_died(&self) -> bool {
        matches!(self.kind, Kind::OwnerDied(_))
    }

    /// True when a [`Barrier`](crate::Barrier) is broken: a party died before it arrived,
    /// a wait timed out, or it was aborted.
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = mp_runtime::Barrier::new(2).unwrap();
    /// barrier.abort();
    /// assert!(barrier.wait().unwrap_err().is_broken_barrier());
    /// ```
    pub fn is_broken_barrier(&self) -> bool {
        matches!(self.kind, Kind::BrokenBarrier(_))
    }

    /// True when [`Queue::try_get`](crate::Queue::try_get) found the queue empty.
    ///
    /// # Examples
    ///
    /// ```
    /// let queue = mp_runtime::Queue::<u8>::new().unwrap();
    /// assert!(queue.try_get().unwrap_err().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        matches!(self.kind, Kind::Empty)
    }

    /// True when [`Queue::try_put`](crate::Queue::try_put) found the queue full.
    ///
    /// # Examples
    ///
    /// ```
    /// let queue = mp_runtime::Queue::bounded(1).unwrap();
    /// queue.put(&1).unwrap();
    /// assert!(queue.try_put(&2).unwrap_err().is_full());
    /// ```
    pub fn is_full(&self) -> bool {
        matches!(self.kind, Kind::Full(_))
    }

    /// True when a function was passed to [`spawn!`](crate::spawn) or a [`Pool`](crate::Pool)
    /// without `#[process_fn]`, or the child process does not know it.
    ///
    /// # Examples
    ///
    /// ```
    /// fn plain(x: u32) -> u32 {
    ///     x
    /// }
    ///
    /// let err = mp_runtime::spawn!(plain, 1).unwrap_err();
    /// assert!(err.is_not_registered());
    /// assert!(err.to_string().contains("#[process_fn]"));
    /// ```
    pub fn is_not_registered(&self) -> bool {
        matches!(
            self.kind,
            Kind::NotRegistered { .. } | Kind::UnknownId { .. } | Kind::DuplicateId { .. }
        )
    }

    /// True when arguments or a result could not be encoded or decoded.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, spawn};
    /// use serde::{Deserialize, Deserializer, Serialize, Serializer};
    ///
    /// /// A value that refuses to leave its process.
    /// struct Secret;
    ///
    /// impl Serialize for Secret {
    ///     fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
    ///         Err(serde::ser::Error::custom("a secret stays where it is"))
    ///     }
    /// }
    ///
    /// impl<'de> Deserialize<'de> for Secret {
    ///     fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
    ///         <()>::deserialize(d).map(|()| Secret)
    ///     }
    /// }
    ///
    /// #[process_fn]
    /// fn keep(_secret: Secret) {}
    ///
    /// let err = spawn!(keep, Secret).unwrap_err();
    /// assert!(err.is_codec());
    /// assert!(err.to_string().contains("a secret stays where it is"));
    /// ```
    pub fn is_codec(&self) -> bool {
        matches!(self.kind, Kind::Codec(_))
    }

    /// True when a task was cancelled before it produced a result.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn slow(x: u32) -> u32 {
    ///     std::thread::sleep(std::time::Duration::from_millis(200));
    ///     x
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let first = pool.apply_async(slow, (1,));
    /// let second = pool.apply_async(slow, (2,));
    /// second.cancel();
    /// assert!(second.get().unwrap_err().is_cancelled());
    /// assert_eq!(first.get().unwrap(), 1);
    /// ```
    pub fn is_cancelled(&self) -> bool {
        matches!(self.kind, Kind::Cancelled)
    }

    /// True when the pool was closed or terminated before the work was submitted.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn double(x: u32) -> u32 {
    ///     x * 2
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// pool.close();
    /// assert!(pool.map(double, vec![1]).unwrap_err().is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        matches!(self.kind, Kind::Closed)
    }

    /// True when the API was used in a way that cannot work (a pool of no processes, `join`
    /// before `close`, a result taken twice); the message says what to do instead.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = mp_runtime::Pool::new(0).unwrap_err();
    /// assert!(err.is_usage());
    /// ```
    pub fn is_usage(&self) -> bool {
        matches!(self.kind, Kind::Usage(_) | Kind::ResultTaken)
    }

    /// True when a [`Pool`](crate::Pool), a [`Process`](crate::Process), or a pool's
    /// [`AsyncResult`](crate::AsyncResult) or [`IMap`](crate::IMap) was used in a copy of the
    /// process that made it, made by `fork()` (a daemonising library, `nix::unistd::fork`): the
    /// pool's threads and workers, and the process's child, are the original's. Every call on
    /// such a handle fails at once with this error, and dropping it leaves the original's
    /// workers and children alone; make a new pool or process in the copy. Queues, pipes,
    /// locks and shared memory are made to be shared and keep working in the copy.
    ///
    /// # Examples
    ///
    /// ```
    /// /// What a daemon's forked child should do when a call fails.
    /// fn advice(err: &mp_runtime::Error) -> &'static str {
    ///     if err.is_foreign_process() {
    ///         "the pool was made before the fork: make a new one here"
    ///     } else {
    ///         "see the error"
    ///     }
    /// }
    ///
    /// let err = mp_runtime::Pool::new(0).unwrap_err();
    /// assert_eq!(advice(&err), "see the error");
    /// ```
    pub fn is_foreign_process(&self) -> bool {
        matches!(self.kind, Kind::ForeignProcess { .. })
    }

    /// True when a worker could not enter its [`Sandbox`](crate::Sandbox): the kernel cannot
    /// enforce it (and [`best_effort`](crate::Sandbox::best_effort) was not asked for), a path
    /// given to it does not exist, or the worker ended before it entered. The message names
    /// what is missing and what to do.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{Pool, Sandbox};
    ///
    /// let sandbox = Sandbox::new().read_only("/no/such/directory");
    /// let err = Pool::builder().processes(1).sandbox(sandbox).build().unwrap_err();
    /// assert!(err.is_sandbox());
    /// assert!(err.to_string().contains("/no/such/directory"), "{err}");
    /// ```
    pub fn is_sandbox(&self) -> bool {
        matches!(self.kind, Kind::Sandbox(_))
    }

    /// True when an operating-system call failed (starting a process, a socket, a signal).
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, spawn};
    ///
    /// #[process_fn]
    /// fn one() -> u8 {
    ///     1
    /// }
    ///
    /// // A successful call has no error at all; an I/O error would say which call failed.
    /// assert_eq!(spawn!(one).unwrap().join().unwrap(), 1);
    /// ```
    pub fn is_io(&self) -> bool {
        matches!(self.kind, Kind::Io { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Panic {
                function,
                message,
                location,
                ..
            } => match location {
                Some(location) => write!(
                    f,
                    "`{function}` panicked in the child process at {location}: {message}"
                ),
                None => write!(f, "`{function}` panicked in the child process: {message}"),
            },
            Kind::Died {
                function,
                pid,
                exit,
                said: None,
            } => write!(
                f,
                "process {pid}, running `{function}`, {exit} before it sent a result"
            ),
            Kind::Died {
                function,
                pid,
                exit,
                said: Some(said),
            } => write!(
                f,
                "process {pid}, running `{function}`, {exit} before it sent a result; it said: \
                 {said}"
            ),
            Kind::OutOfMemory {
                function,
                pid,
                exit,
                limit,
            } => write!(
                f,
                "process {pid}, running `{function}`, {exit} before it sent a result: it most \
                 likely went over the pool's memory limit of {} MiB; raise `memory_limit` or \
                 make the task use less",
                limit >> 20
            ),
            #[cfg(feature = "mpi")]
            Kind::RankLost {
                function,
                rank,
                why,
            } => write!(
                f,
                "MPI rank {rank}, which was running `{function}`, was lost before it sent a \
                 result: {why}"
            ),
            #[cfg(feature = "mpi")]
            Kind::Mpi(message) => write!(f, "MPI: {message}"),
            Kind::Timeout { what, after } => {
                write!(f, "timed out after {after:?} waiting for {what}")
            }
            Kind::TimeLimit {
                function,
                pid,
                limit,
            } => write!(
                f,
                "timed out after {limit:?} waiting for `{function}` to return: it ran past its \
                 time limit, so its worker {pid} was killed and replaced (raise the limit if it \
                 needs longer)"
            ),
            Kind::NotRegistered { name } => write!(
                f,
                "`{name}` cannot run in another process: it is not registered; add `#[process_fn]` \
                 to the function (closures and methods cannot be sent, wrap them in one)"
            ),
            Kind::UnknownId { id, binary, known } => write!(
                f,
                "the child process ({binary}) has no function registered as `{id}`; parent and child \
                 must be the same build of the same binary (registered: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
            Kind::DuplicateId { id, first, second } => write!(
                f,
                "two functions are registered as `{id}`: `{first}` and `{second}`; give one of them \
                 another id with `#[process_fn(name = \"...\")]`"
            ),
            Kind::Codec(message) => write!(
                f,
                "could not encode or decode a value: {message}; arguments and results must \
                 implement serde's Serialize and Deserialize"
            ),
            Kind::Protocol(message) => {
                write!(f, "protocol error between parent and child: {message}")
            }
            Kind::Closed => {
                f.write_str("the pool is closed or terminated; build a new pool to run more work")
            }
            Kind::Cancelled => f.write_str("the task was cancelled before it produced a result"),
            Kind::ResultTaken => f.write_str("the result was already taken from this handle"),
            Kind::Usage(message) => f.write_str(message),
            Kind::Disconnected(what) => f.write_str(what),
            Kind::OwnerDied(what) => write!(
                f,
                "a process died holding {what}; what it guards may be half-changed (the lock \
                 was released: check the data, then acquire again)"
            ),
            Kind::BrokenBarrier(why) => write!(f, "the barrier is broken: {why}"),
            Kind::Empty => f.write_str("the queue is empty"),
            Kind::Full(what) => f.write_str(what),
            Kind::ForeignProcess {
                handle,
                owner,
                here,
            } => {
                let (what, instead) = match handle {
                    Handle::Pool => ("this pool", "make a new pool in this process"),
                    Handle::Process => (
                        "this process handle",
                        "only the process that started the child can join or end it; start \
                         a new one from this process",
                    ),
                    Handle::PoolResult => (
                        "this result of a pool",
                        "submit the work again to a new pool made in this process",
                    ),
                    Handle::SharedPools => (
                        "the table of `pool_map!`'s shared pools, locked by another thread at the \
                         fork,",
                        "build a `Pool` in this process instead of calling `pool_map!`",
                    ),
                };
                write!(
                    f,
                    "{what} belongs to process {owner}, and this process ({here}) is a copy of \
                     it made by fork(), without its threads and children: {instead}"
                )
            }
            Kind::Sandbox(why) => f.write_str(why),
            // The cause is `source()`: printed by whoever walks the chain, not twice.
            Kind::Io { context, .. } => f.write_str(context),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug is what `unwrap` and `main -> Result` print: make it the readable sentence,
        // with the cause that Display leaves to `source()`.
        match &self.kind {
            // Unless the context names the cause already.
            Kind::Io { context, source } if !context.contains(&source.to_string()) => {
                write!(f, "Error({self}: {source})")
            }
            Kind::Panic {
                backtrace: Some(backtrace),
                ..
            } => write!(f, "Error({self})\n\nchild process backtrace:\n{backtrace}"),
            _ => write!(f, "Error({self})"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Io { source, .. } => Some(&**source),
            _ => None,
        }
    }
}
