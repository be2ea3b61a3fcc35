//! One function call in one child process: [`Process`].
//!
//! A public room: uses `base`, `wire` and the runtime tier; used by users and `pool`.

use std::marker::PhantomData;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::base::{Error, Handle, Kind, Result};
use crate::runtime::registry::{self, ProcessFn};
use crate::runtime::sandbox::{Sandbox, SandboxReport};
use crate::runtime::spawn::{self, ChildProcess, Owner, Received};
use crate::sys::Signal;
use crate::wire::codec;
use crate::wire::frame::Channel;
use crate::wire::protocol::{self, Outcomes, Request};

/// A child process running one call of a `#[process_fn]` function, whose result is an `R`.
///
/// Made by [`spawn!`](crate::spawn) or [`Process::start`]. The call starts at once; [`join`]
/// waits for its result.
///
/// Dropping a `Process` without joining it lets the child run to its end; its result is thrown
/// away and the child is reaped in the background, so no zombie is left.
///
/// A child never outlives its parent: when the parent process ends, however it ends, its
/// children are killed (SIGKILL), and theirs in turn.
///
/// The child is the child of the process that started it. A copy of that process made by
/// `fork()` holds the handle too: there [`join`], [`join_timeout`](Process::join_timeout),
/// [`terminate`](Process::terminate) and [`kill`](Process::kill) fail at once with an error
/// whose [`is_foreign_process`](Error::is_foreign_process) is true, [`is_alive`](Process::is_alive)
/// is false and [`exit_code`](Process::exit_code) `None` (it is no child of the copy), and
/// dropping the handle leaves the child alone.
///
/// [`join`]: Process::join
///
/// # Examples
///
/// ```
/// use mp_runtime::{process_fn, spawn};
///
/// #[process_fn]
/// fn greet(name: String) -> String {
///     format!("hello, {name}")
/// }
///
/// let p = spawn!(greet, "world".to_string()).unwrap();
/// assert!(p.pid() > 0);
/// assert_eq!(p.join().unwrap(), "hello, world");
/// ```
pub struct Process<R> {
    name: String,
    function: &'static str,
    child: ChildProcess,
    /// The channel, until the result has been read from it.
    channel: Option<Channel>,
    /// The process that started the child: the only one that may wait for it or end it.
    owner: Owner,
    /// What the kernel enforces of the child's sandbox, when it has one.
    sandbox: Option<SandboxReport>,
    result: PhantomData<fn() -> R>,
}

impl Process<()> {
    /// Settings for a process beyond its function and arguments: its name, its sandbox. The
    /// type of the result is the function's, fixed by [`ProcessBuilder::start`].
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Process};
    ///
    /// #[process_fn]
    /// fn whoami() -> String {
    ///     mp_runtime::current_process().name().to_string()
    /// }
    ///
    /// let p = Process::builder().name("decoder").start(whoami, ()).unwrap();
    /// assert_eq!(p.name(), "decoder");
    /// assert_eq!(p.join().unwrap(), "decoder");
    /// ```
    pub fn builder() -> ProcessBuilder {
        ProcessBuilder::default()
    }
}

/// Settings for a [`Process`], from [`Process::builder`]; [`start`](ProcessBuilder::start)
/// starts it.
///
/// # Examples
///
/// ```
/// use mp_runtime::{process_fn, Process, Sandbox};
///
/// #[process_fn]
/// fn add(a: i32, b: i32) -> i32 {
///     a + b
/// }
///
/// let p = Process::builder().sandbox(Sandbox::new()).start(add, (2, 3)).unwrap();
/// assert_eq!(p.join().unwrap(), 5);
/// ```
#[derive(Clone, Debug, Default)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct ProcessBuilder {
    name: Option<String>,
    sandbox: Option<Sandbox>,
}

impl ProcessBuilder {
    /// The process's name, as [`Process::name`] and, in the child,
    /// [`current_process`](crate::current_process) give it; by default `Process-N`. It may not
    /// hold a newline or a NUL byte ([`start`](ProcessBuilder::start) fails).
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Process};
    ///
    /// #[process_fn]
    /// fn nothing() {}
    ///
    /// let p = Process::builder().name("worker-a").start(nothing, ()).unwrap();
    /// assert_eq!(p.name(), "worker-a");
    /// p.join().unwrap();
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Runs the child in `sandbox` (see [`Sandbox`]): it enters it before the call runs.
    /// [`start`](ProcessBuilder::start) waits until it has, and fails with an error whose
    /// [`is_sandbox`](Error::is_sandbox) is true where the kernel cannot enforce it all, unless
    /// the sandbox was made with [`best_effort`](Sandbox::best_effort).
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Process, Sandbox};
    ///
    /// #[process_fn]
    /// fn run_a_program() -> bool {
    ///     std::process::Command::new("true").status().is_ok()
    /// }
    ///
    /// let p = Process::builder().sandbox(Sandbox::new()).start(run_a_program, ()).unwrap();
    /// assert!(!p.join().unwrap());
    /// ```
    pub fn sandbox(mut self, sandbox: Sandbox) -> Self {
        self.sandbox = Some(sandbox);
        self
    }

    /// Starts `f(args..)` in a new child process with these settings, as
    /// [`Process::start`] does.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Process};
    ///
    /// #[process_fn]
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let p = Process::builder().start(square, (9,)).unwrap();
    /// assert_eq!(p.join().unwrap(), 81);
    /// ```
    pub fn start<F, Args>(self, f: F, args: Args) -> Result<Process<F::Output>>
    where
        F: ProcessFn<Args>,
        Args: Serialize,
    {
        let entry = registry::lookup(&f)?;
        let args = protocol::Args::encode(entry.id, [args])?;
        let exit = codec::encode(&Request::Exit)?;
        let name = match self.name {
            Some(name) if name.contains(['\n', '\0']) => {
                return Err(Error::usage(format!(
                    "the process name {name:?} holds a newline or a NUL byte, which cannot cross \
                     to the child; give a name without them"
                )));
            }
            Some(name) => name,
            None => next_name(),
        };
        let sandbox = self.sandbox.as_ref().map(Sandbox::resolved).transpose()?;
        let started = spawn::start_worker(crate::runtime::spawn::get_start_method(), &name, &[])?;
        let mut process = Process {
            name,
            function: entry.path,
            child: started.child,
            channel: Some(started.channel),
            owner: Owner::this_process(),
            sandbox: None,
            result: PhantomData,
        };
        let channel = process.channel.as_mut().expect("just set");
        if let Some(sandbox) = &sandbox {
            // On an error the child has ended; dropping the handle reaps it.
            let report = spawn::enter_sandbox(&mut process.child, channel, sandbox)?;
            process.sandbox = Some(report);
        }
        spawn::forward_logs(channel, started.logs);
        // A child that dies at once closes the socket: that is reported by `join`, with its
        // exit status, rather than as a failed send here.
        let _ = args
            .send(channel)
            .and_then(|()| channel.send(&exit).map_err(|e| Error::io("cannot send", e)));
        Ok(process)
    }
}

impl<R: serde::de::DeserializeOwned> Process<R> {
    /// Starts `f(args..)` in a new child process; `args` is the tuple of arguments.
    ///
    /// [`spawn!`](crate::spawn) is the short form: `spawn!(f, a, b)` is
    /// `Process::start(f, (a, b))`. The function must carry `#[process_fn]`; otherwise this
    /// fails before any process starts.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Process};
    ///
    /// #[process_fn]
    /// fn add(a: i32, b: i32) -> i32 {
    ///     a + b
    /// }
    ///
    /// let p = Process::start(add, (2, 3)).unwrap();
    /// assert_eq!(p.join().unwrap(), 5);
    /// ```
    pub fn start<F, Args>(f: F, args: Args) -> Result<Process<R>>
    where
        F: ProcessFn<Args, Output = R>,
        Args: Serialize,
    {
        ProcessBuilder::default().start(f, args)
    }

    /// Waits for the result.
    ///
    /// Errors tell a panic in the child ([`Error::is_panic`], with its message and location), a
    /// child that ended without a result ([`Error::is_died`], with its exit code or signal), or
    /// a result that could not be decoded.
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
    /// assert_eq!(spawn!(square, 12).unwrap().join().unwrap(), 144);
    /// ```
    pub fn join(mut self) -> Result<R> {
        self.wait_result(None)
    }

    /// Waits at most `timeout` for the result. On timeout the error's
    /// [`is_timeout`](Error::is_timeout) is true and the child goes on: call this again, or
    /// [`join`](Process::join), or end the child.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mp_runtime::{process_fn, spawn};
    ///
    /// #[process_fn]
    /// fn slow() -> u8 {
    ///     std::thread::sleep(Duration::from_millis(300));
    ///     7
    /// }
    ///
    /// let mut p = spawn!(slow).unwrap();
    /// assert!(p.join_timeout(Duration::from_millis(1)).unwrap_err().is_timeout());
    /// assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), 7);
    /// ```
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<R> {
        // A timeout too long to reach (`Duration::MAX`) waits as `join` does.
        let deadline = Instant::now().checked_add(timeout);
        self.wait_result(deadline.map(|at| (at, timeout)))
    }

    /// Waits for the result until the deadline, if any (`timeout` is what it was set from).
    fn wait_result(&mut self, deadline: Option<(Instant, Duration)>) -> Result<R> {
        self.owner.check(Handle::Process)?;
        let (deadline, timeout) = (deadline.map(|(at, _)| at), deadline.map(|(_, t)| t));
        let channel = self
            .channel
            .as_mut()
            .ok_or_else(|| Error::new(Kind::ResultTaken))?;
        let frame = match self.child.recv(channel, deadline) {
            Received::Frame(frame) => frame,
            Received::TimedOut => {
                return Err(Error::timeout(
                    format!(
                        "the result of process {} (it goes on: join again, or end it)",
                        self.pid()
                    ),
                    timeout.unwrap_or_default(),
                ));
            }
            Received::Gone => {
                self.channel = None;
                // Gone by its exit (then this is at once) or by closing its channel (then it
                // can never answer, and is ended after a moment).
                let exit = self
                    .child
                    .reap_until(Instant::now() + EXIT_GRACE)
                    .map_err(|e| {
                        Error::io(format!("cannot learn how process {} ended", self.pid()), e)
                    })?;
                return Err(Error::new(Kind::Died {
                    function: self.function.to_string(),
                    pid: self.pid(),
                    exit,
                    said: self.child.said().map(str::to_string),
                }));
            }
            Received::Failed(error) => {
                self.channel = None;
                // The error to report is the receive's; how the ending went adds nothing.
                let _ = self.child.reap_until(Instant::now());
                return Err(spawn::receive_failed(self.pid(), error));
            }
        };
        self.channel = None;
        // The reply is the result, whatever becomes of the process now. It exits right after
        // replying: a moment's wait (within the deadline) makes its exit code known; if it
        // lingers, it is reaped when this handle is dropped.
        let settle = Instant::now() + EXIT_GRACE;
        let _ = self
            .child
            .wait_until(Some(deadline.map_or(settle, |at| at.min(settle))));
        let outcomes = Outcomes::new(frame, 1);
        let mut values = Vec::with_capacity(1);
        outcomes.decode_all(self.function, &mut values)?;
        values
            .pop()
            .ok_or_else(|| Error::protocol("the child answered a call with no outcome"))
    }
}

/// How long a child that answered, or closed its channel, is given to exit.
const EXIT_GRACE: Duration = Duration::from_secs(1);

impl<R> Process<R> {
    /// The child's process id.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, spawn};
    ///
    /// #[process_fn]
    /// fn own_pid() -> u32 {
    ///     std::process::id()
    /// }
    ///
    /// let p = spawn!(own_pid).unwrap();
    /// let pid = p.pid();
    /// assert_eq!(p.join().unwrap(), pid);
    /// ```
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The process's name, `Process-N` as in Python, N counting from 1 in this parent.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, spawn};
    ///
    /// #[process_fn]
    /// fn nothing() {}
    ///
    /// let p = spawn!(nothing).unwrap();
    /// assert!(p.name().starts_with("Process-"));
    /// p.join().unwrap();
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the kernel enforces of the child's sandbox (see [`ProcessBuilder::sandbox`]);
    /// `None` for a process started without one.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, spawn, Process, Sandbox};
    ///
    /// #[process_fn]
    /// fn nothing() {}
    ///
    /// let plain = spawn!(nothing).unwrap();
    /// assert!(plain.sandbox_report().is_none());
    /// let boxed = Process::builder().sandbox(Sandbox::new()).start(nothing, ()).unwrap();
    /// assert!(boxed.sandbox_report().unwrap().is_complete());
    /// ```
    pub fn sandbox_report(&self) -> Option<&SandboxReport> {
        self.sandbox.as_ref()
    }

    /// Whether the child is still running.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mp_runtime::{process_fn, spawn};
    ///
    /// #[process_fn]
    /// fn nap() {
    ///     std::thread::sleep(Duration::from_secs(10));
    /// }
    ///
    /// let mut p = spawn!(nap).unwrap();
    /// assert!(p.is_alive());
    /// p.kill().unwrap();
    /// assert!(!p.is_alive());
    /// ```
    pub fn is_alive(&mut self) -> bool {
        self.owner.is_here() && !self.child.has_exited()
    }

    /// Whether [`join`](Process::join) would return without waiting: the result, or the end of
    /// the channel (the child is gone), can be read, or it was read already.
    pub(crate) fn result_ready(&self) -> bool {
        // In a forked copy, `join` fails at once.
        !self.owner.is_here() || self.channel.as_ref().is_none_or(Channel::readable_now)
    }

    /// The exit code once the child has ended, as Python gives it: the code it exited with,
    /// or minus the number of the signal that ended it; `None` while it runs.
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
    /// let mut p = spawn!(quit).unwrap();
    /// assert!(p.join_timeout(std::time::Duration::from_secs(30)).unwrap_err().is_died());
    /// assert_eq!(p.exit_code(), Some(3));
    /// ```
    pub fn exit_code(&mut self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        let status = self.try_status()?;
        status.code().or_else(|| status.signal().map(|s| -s))
    }

    /// Asks the child to end with SIGTERM; it may clean up first. Does nothing if it has
    /// already ended. [`join`](Process::join) then reports how it ended.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mp_runtime::{process_fn, spawn};
    ///
    /// #[process_fn]
    /// fn nap() {
    ///     std::thread::sleep(Duration::from_secs(10));
    /// }
    ///
    /// let mut p = spawn!(nap).unwrap();
    /// p.terminate().unwrap();
    /// assert_eq!(p.join().unwrap_err().signal(), Some(15));
    /// ```
    pub fn terminate(&mut self) -> Result<()> {
        self.send(Signal::TERM)
    }

    /// Sends the child SIGINT, as Ctrl-C would (Python 3.14's `Process.interrupt()`): a child
    /// that handles SIGINT can stop its work and clean up, and its result comes as usual. A
    /// child that does not handle it dies of it, as any Rust program does (mp sets no SIGINT
    /// handler in children): [`join`](Process::join) then fails with
    /// [`is_died`](Error::is_died) and [`signal`](Error::signal) `Some(2)`. Does nothing if
    /// the child has already ended.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mp_runtime::{process_fn, spawn};
    ///
    /// #[process_fn]
    /// fn nap() {
    ///     std::thread::sleep(Duration::from_secs(10));
    /// }
    ///
    /// let mut p = spawn!(nap).unwrap();
    /// p.interrupt().unwrap();
    /// let err = p.join().unwrap_err();
    /// assert!(err.is_died());
    /// assert_eq!(err.signal(), Some(2)); // SIGINT, not handled by `nap`
    /// ```
    pub fn interrupt(&mut self) -> Result<()> {
        self.send(Signal::INT)
    }

    /// Sends `signal` to the child, unless it has already ended.
    fn send(&mut self, signal: Signal) -> Result<()> {
        self.owner.check(Handle::Process)?;
        if self.try_status().is_some() {
            return Ok(());
        }
        self.child.signal(signal).map_err(|e| {
            Error::io(
                format!("cannot send {signal} to process {}", self.child.pid()),
                e,
            )
        })
    }

    /// Ends the child at once with SIGKILL and waits until it is gone. Does nothing if it has
    /// already ended.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mp_runtime::{process_fn, spawn};
    ///
    /// #[process_fn]
    /// fn nap() {
    ///     std::thread::sleep(Duration::from_secs(10));
    /// }
    ///
    /// let mut p = spawn!(nap).unwrap();
    /// p.kill().unwrap();
    /// assert_eq!(p.exit_code(), Some(-9));
    /// ```
    pub fn kill(&mut self) -> Result<()> {
        self.owner.check(Handle::Process)?;
        if self.try_status().is_some() {
            return Ok(());
        }
        self.child
            .kill()
            .map_err(|e| Error::io(format!("cannot kill process {}", self.child.pid()), e))?;
        self.child
            .reap_until(Instant::now() + EXIT_GRACE)
            .map(drop)
            .map_err(|e| Error::io(format!("cannot reap process {}", self.child.pid()), e))
    }

    /// How the child ended, without waiting; `None` while it runs, and in a forked copy.
    fn try_status(&mut self) -> Option<ExitStatus> {
        if !self.owner.is_here() {
            return None;
        }
        self.child.try_wait().ok().flatten()
    }
}

impl<R> Drop for Process<R> {
    fn drop(&mut self) {
        // In a forked copy the child is the original's to reap: only this copy's descriptors
        // (its channel end, its pidfd) are closed, which the child does not notice.
        if !self.owner.is_here() || self.try_status().is_some() {
            return;
        }
        // Close our end first: a child still waiting for its call sees end-of-file and exits.
        self.channel = None;
        self.child.reap_in_background();
    }
}

fn next_name() -> String {
    static COUNT: AtomicUsize = AtomicUsize::new(1);
    format!("Process-{}", COUNT.fetch_add(1, Ordering::Relaxed))
}

impl<R> std::fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("pid", &self.child.pid())
            .field("function", &self.function)
            .finish()
    }
}
