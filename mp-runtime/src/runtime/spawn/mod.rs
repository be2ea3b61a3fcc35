//! Starting a child: [`StartMethod`], [`start_worker`], and [`ChildProcess`], the handle to a
//! child whichever way it started, re-executed ([`reexec`]) or forked by the fork server
//! ([`forkserver`]).
//!
//! Uses `base`, `sys`, `wire` and `logs`, `registry`, `sandbox`, `worker` of its tier; used by
//! `cluster` and the public rooms.

pub(crate) mod forkserver;
pub(crate) mod reexec;

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use crate::base::{Error, ExitReason, Handle, Kind, Result};
use crate::runtime::logs;
use crate::runtime::sandbox::{Sandbox, SandboxReport};
use crate::sys::error::Cause;
use crate::sys::{self, Pid, Signal, pidfd};
use crate::wire::codec;
use crate::wire::frame::{Channel, Frame};
use crate::wire::protocol::Request;
use crate::wire::ring::Rings;
use crate::wire::ring::link::{Interrupted, Link, Side};
use reexec::Role;

/// The process that made a handle to children (a pool, a process, a fork server). A copy of it
/// made by `fork()` holds the handle too, but not the threads behind it, and the children are
/// not its own: there every call must fail at once, and a drop must leave them alone.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Owner {
    pid: u32,
}

impl Owner {
    pub(crate) fn this_process() -> Owner {
        Owner {
            pid: sys::process::pid(),
        }
    }

    /// Whether this is the process that made the handle: an atomic load, cheap enough for
    /// every call (see `sys::process::pid`).
    pub(crate) fn is_here(self) -> bool {
        self.pid == sys::process::pid()
    }

    /// Fails, saying whose it is and what to do, in a process other than the one that made
    /// the `handle`.
    pub(crate) fn check(self, handle: Handle) -> Result<()> {
        let here = sys::process::pid();
        if self.pid == here {
            return Ok(());
        }
        Err(Error::new(Kind::ForeignProcess {
            handle,
            owner: self.pid,
            here,
        }))
    }

    /// The pid of the process that made the handle.
    pub(crate) fn pid(self) -> u32 {
        self.pid
    }
}

/// How child processes are started.
///
/// [`Spawn`](StartMethod::Spawn), the default, re-executes this binary for each child: always
/// safe, about a millisecond or two per child. [`ForkServer`](StartMethod::ForkServer) asks one
/// re-executed, single-threaded helper process (started on first use, one per parent) to fork
/// each child: about ten times faster to start, and as safe, since the helper has none of the
/// parent's threads, locks or state. Choose it when processes are started often: many short
/// [`spawn!`](crate::spawn)s, or pools with `max_tasks_per_child`.
///
/// Set it per pool with [`PoolBuilder::start_method`](crate::PoolBuilder::start_method), or for
/// the whole process with [`set_start_method`].
///
/// # Examples
///
/// ```
/// use mp_runtime::{process_fn, Pool, StartMethod};
///
/// #[process_fn]
/// fn double(x: u32) -> u32 {
///     2 * x
/// }
///
/// let pool = Pool::builder().start_method(StartMethod::ForkServer).processes(2).build().unwrap();
/// assert_eq!(pool.map(double, 1..4).unwrap(), vec![2, 4, 6]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StartMethod {
    /// Re-execute this binary for each child: always safe, whatever threads the parent runs.
    #[default]
    Spawn,
    /// Fork each child from a single-threaded zygote that this process starts once, on first
    /// use: fork-like start times with the safety of `Spawn`.
    ForkServer,
}

/// The start method of [`spawn!`](crate::spawn), [`Process::start`](crate::Process::start) and
/// pools built without [`PoolBuilder::start_method`](crate::PoolBuilder::start_method), like
/// Python's `multiprocessing.set_start_method`. It applies to this process from now on (children
/// start with the default, `Spawn`, for their own children); starts already made are not
/// affected. Unlike Python's, it may be called more than once.
///
/// # Examples
///
/// ```
/// use mp_runtime::{get_start_method, process_fn, set_start_method, spawn, StartMethod};
///
/// #[process_fn]
/// fn answer() -> u32 {
///     42
/// }
///
/// set_start_method(StartMethod::ForkServer);
/// assert_eq!(get_start_method(), StartMethod::ForkServer);
/// assert_eq!(spawn!(answer).unwrap().join().unwrap(), 42);
/// ```
pub fn set_start_method(method: StartMethod) {
    let code = match method {
        StartMethod::Spawn => 0,
        StartMethod::ForkServer => 1,
    };
    START_METHOD.store(code, Ordering::Relaxed);
}

/// The start method that [`set_start_method`] set; `Spawn` unless it was called.
///
/// # Examples
///
/// ```
/// assert_eq!(mp_runtime::get_start_method(), mp_runtime::StartMethod::Spawn);
/// ```
pub fn get_start_method() -> StartMethod {
    match START_METHOD.load(Ordering::Relaxed) {
        1 => StartMethod::ForkServer,
        _ => StartMethod::Spawn,
    }
}

static START_METHOD: AtomicU8 = AtomicU8::new(0);

/// A started worker process and the parent's end of its channel.
pub(crate) struct Started {
    pub child: ChildProcess,
    pub channel: Channel,
    /// What the worker needs to send its logs to this process's logger, when it has one: give
    /// it with [`forward_logs`] before the first call whose logs should reach the parent.
    pub logs: Option<(u8, OwnedFd)>,
}

/// Environment variables set in a worker beside those it inherits, as names and values.
pub(crate) type Env = [(OsString, OsString)];

/// The environment variable that sets how deep mp processes may nest (see [`max_depth`]).
pub(crate) const MAX_DEPTH_VAR: &str = "MP_MAX_DEPTH";

/// How deep mp processes nest when [`MAX_DEPTH_VAR`] does not say: loky's limit.
const DEFAULT_MAX_DEPTH: usize = 10;

/// How many mp processes may be above any process: a process this deep starts no child, so a
/// task that builds a pool whose tasks build pools, without end, fails instead of forking
/// until the machine runs out of processes. [`MAX_DEPTH_VAR`] in the environment sets it; the
/// workers inherit it, as any variable.
pub(crate) fn max_depth() -> Result<usize> {
    match std::env::var_os(MAX_DEPTH_VAR) {
        None => Ok(DEFAULT_MAX_DEPTH),
        Some(value) => value
            .to_str()
            .and_then(|value| value.trim().parse().ok())
            .ok_or_else(|| {
                Error::usage(format!(
                    "{MAX_DEPTH_VAR}={value:?} is not a whole number from 0 to {}: set it to \
                     how many levels of mp processes may be below the main process (the \
                     default is {DEFAULT_MAX_DEPTH}), or unset it",
                    usize::MAX
                ))
            }),
    }
}

/// Refuses a child of a process at the depth limit.
fn check_depth() -> Result<()> {
    let (depth, limit) = (crate::base::depth(), max_depth()?);
    if depth < limit {
        return Ok(());
    }
    let levels = |n: usize| {
        if n == 1 {
            "1 level".to_string()
        } else {
            format!("{n} levels")
        }
    };
    Err(Error::usage(format!(
        "cannot start a child process: it would be {} below the main process, past the \
         limit of {MAX_DEPTH_VAR}={limit} (pools or processes started by tasks, one inside the \
         other; this process is {}); a task that builds a pool whose tasks build pools \
         without end does this: end the recursion, or raise {MAX_DEPTH_VAR} in the \
         environment",
        levels(depth + 1),
        match depth {
            0 => "the main process".to_string(),
            depth => format!("{} below it", levels(depth)),
        }
    )))
}

/// Starts a worker called `name` the way `method` says, with `env` set in its environment.
pub(crate) fn start_worker(method: StartMethod, name: &str, env: &Env) -> Result<Started> {
    check_depth()?;
    let (child, channel) = match method {
        StartMethod::Spawn => {
            let (parent_end, child_end) = UnixStream::pair()
                .map_err(|e| Error::io("cannot create the socket pair for a child", e))?;
            let child = reexec::spawn_self(Role::Worker, name, env, child_end.into())?;
            (Inner::Spawned(child), Channel::new(parent_end))
        }
        StartMethod::ForkServer => {
            let (pid, channel) = forkserver::start_child(name, env)?;
            (Inner::Forked(pid), channel)
        }
    };
    let pid = match &child {
        Inner::Spawned(child) => Pid::of(child),
        Inner::Forked(pid) => *pid,
    };
    // Without one (a kernel before 5.3, or no descriptor free), death is known from the
    // channel alone.
    let pidfd = pidfd::open(pid).ok().map(Arc::new);
    let pid = pid.as_raw();
    let child = ChildProcess {
        inner: child,
        pidfd,
        status: None,
        reaping: false,
        said: None,
    };
    crate::base::child_started(pid, name);
    let logs = logs::for_child(pid, name);
    Ok(Started {
        child,
        channel,
        logs,
    })
}

/// Tells the worker at the other end of `channel` to send its logs to this process's logger
/// (see [`Started::logs`]). Calls sent after this have their logs forwarded; a logger or
/// subscriber that a call before it set up in the worker is kept.
pub(crate) fn forward_logs(channel: &mut Channel, logs: Option<(u8, OwnedFd)>) {
    if let Some((level, socket)) = logs {
        // A worker that cannot take it is gone, which the next call finds.
        let _ = codec::encode(&Request::Logging { level })
            .map(|request| channel.send_with_fds(&request, &[socket.as_fd()]));
    }
}

/// How long a worker may take to enter its sandbox and say so: a few system calls, and a read
/// of its own memory map.
const SANDBOX_ANSWER: Duration = Duration::from_secs(60);

/// Has the worker `child`, just started, enter `sandbox` before anything else is asked of it;
/// returns what its kernel enforces. On an error the worker has exited or been killed.
pub(crate) fn enter_sandbox(
    child: &mut ChildProcess,
    channel: &mut Channel,
    sandbox: &Sandbox,
) -> Result<SandboxReport> {
    let request = codec::encode(&Request::Sandbox {
        rules: sandbox.rules(),
    })?;
    // A worker that is gone already is found by the receive below.
    let _ = channel.send(&request);
    let pid = child.pid();
    let frame = match child.recv(channel, Some(Instant::now() + SANDBOX_ANSWER)) {
        Received::Frame(frame) => frame,
        Received::Failed(error) => {
            let _ = child.kill();
            return Err(receive_failed(pid, error));
        }
        Received::TimedOut => {
            let _ = child.kill();
            return Err(Error::new(Kind::Sandbox(format!(
                "worker process {pid} did not enter its sandbox within {SANDBOX_ANSWER:?}, so it \
                 was killed; the machine may be overloaded"
            ))));
        }
        Received::Gone => {
            let exit = child
                .reap_until(Instant::now() + KILLED_GRACE)
                .unwrap_or(ExitReason::Unknown);
            let said = child
                .said()
                .map_or(String::new(), |said| format!(": {said}"));
            return Err(Error::new(Kind::Sandbox(format!(
                "worker process {pid} {exit} before it entered its sandbox{said}"
            ))));
        }
    };
    match codec::decode::<std::result::Result<SandboxReport, String>>(&frame)? {
        Ok(report) => Ok(report),
        Err(why) => {
            // It exits after its answer.
            let _ = child.reap_until(Instant::now() + KILLED_GRACE);
            Err(Error::new(Kind::Sandbox(why)))
        }
    }
}

/// Shares a pair of rings with the worker at the other end of `link`: from now on, calls and
/// answers go through shared memory (`wire/ring`), and the socket carries only descriptors,
/// large messages and wake-ups. Where no memory file can be made, the link goes on with the
/// socket alone.
pub(crate) fn share_rings(link: &mut Link) {
    let Ok((rings, file)) = Rings::create() else {
        return;
    };
    let Ok(request) = codec::encode(&Request::Rings) else {
        return;
    };
    // A worker that cannot take them is gone, which the next call finds.
    if link.send_with_fds(&request, &[file.as_fd()]).is_ok() {
        link.use_rings(rings, Side::Parent);
    }
}

/// How long a reader that found a frame coming waits for the rest of it before it looks again
/// at whether the child exited (a grandchild may hold the channel open after a partial frame).
const FRAME_SLICE: Duration = Duration::from_millis(20);

/// How long a killed child may take to be reported gone before it is left to a background
/// reaper: SIGKILL cannot be caught, so this is only ever reached under extreme load.
const KILLED_GRACE: Duration = Duration::from_secs(5);

/// What [`ChildProcess::recv`] found on a child's channel.
pub(crate) enum Received {
    /// The next frame.
    Frame(Frame),
    /// The child is gone (it exited, or closed its end) without a whole frame.
    Gone,
    /// Receiving failed on this side (out of descriptors, say): the channel may be out of
    /// step, so the child must be ended.
    Failed(io::Error),
    /// Nothing came before the deadline.
    TimedOut,
}

/// A child process, whichever way it was started: re-executed, or forked by the fork server
/// (as our child too, so reaped by us alike).
pub(crate) struct ChildProcess {
    inner: Inner,
    /// The child's process descriptor, when the kernel gave one: readable once it exits, and a
    /// way to signal it that cannot reach a reused pid.
    pidfd: Option<Arc<OwnedFd>>,
    /// How it ended, once known.
    status: Option<ExitStatus>,
    /// Whether a background thread reaps it (see [`reap_in_background`]).
    ///
    /// [`reap_in_background`]: ChildProcess::reap_in_background
    reaping: bool,
    /// Why it exited, as it said in its farewell frame (a worker that cannot start, or
    /// cannot go on, says why before it exits).
    said: Option<String>,
}

enum Inner {
    Spawned(Child),
    /// Forked by the fork server, by pid: there is no `std::process::Child` for it.
    Forked(Pid),
}

impl ChildProcess {
    /// The child's pid, as the public API shows it.
    pub(crate) fn pid(&self) -> u32 {
        self.id().as_raw()
    }

    fn id(&self) -> Pid {
        match &self.inner {
            Inner::Spawned(child) => Pid::of(child),
            Inner::Forked(pid) => *pid,
        }
    }

    /// How the child ended, without waiting; `None` while it runs.
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.reaping {
            return Err(io::Error::other(
                "the process is reaped in the background; its status is not kept",
            ));
        }
        if self.status.is_none() {
            let status = match &mut self.inner {
                Inner::Spawned(child) => child.try_wait()?,
                Inner::Forked(pid) => pidfd::reap(*pid, false)?.map(ExitStatus::from_raw),
            };
            self.record(status);
        }
        Ok(self.status)
    }

    fn record(&mut self, status: Option<ExitStatus>) {
        if status.is_some() && self.status.is_none() {
            self.status = status;
            crate::base::child_ended(self.pid());
            logs::worker_ended(self.pid());
        }
    }

    /// Whether the child has exited, as far as can be told without waiting. Also true of a child
    /// that someone else reaped (a parent that ignores SIGCHLD), whose status is lost.
    pub(crate) fn has_exited(&mut self) -> bool {
        if self.status.is_some() {
            return true;
        }
        match &self.pidfd {
            Some(pidfd) => pidfd::has_exited(pidfd),
            None => !matches!(self.try_wait(), Ok(None)),
        }
    }

    /// Waits until the child ends or `deadline` passes (`None`: no deadline; for a child that
    /// was not killed, callers give one). `Ok(None)` when it still runs at the deadline; an
    /// error when its status cannot be known (reaped elsewhere).
    pub(crate) fn wait_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.try_wait()? {
            return Ok(Some(status));
        }
        let exited = match &self.pidfd {
            Some(pidfd) => {
                let [exited] = pidfd::wait_readable([pidfd.as_fd()], deadline)?;
                if !exited {
                    return Ok(None);
                }
                true
            }
            None => false,
        };
        if exited || deadline.is_none() {
            // It has exited (its status is there at once), or the caller killed it.
            let status = match &mut self.inner {
                Inner::Spawned(child) => child.wait()?,
                Inner::Forked(pid) => pidfd::reap(*pid, true)?
                    .map(ExitStatus::from_raw)
                    .ok_or_else(|| Cause::NotAChild.error())?,
            };
            self.record(Some(status));
            return Ok(self.status);
        }
        // A kernel without pidfds: poll until the deadline.
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// What other threads use to kill this child.
    pub(crate) fn killer(&self) -> Killer {
        Killer {
            pid: self.id(),
            pidfd: self.pidfd.clone(),
        }
    }

    /// Sends SIGKILL, unless the child has already been reaped; does not wait.
    pub(crate) fn kill(&mut self) -> io::Result<()> {
        self.signal(Signal::KILL)
    }

    /// Sends `signal`, unless the child has already been reaped.
    pub(crate) fn signal(&mut self, signal: Signal) -> io::Result<()> {
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        let sent = match &self.pidfd {
            Some(pidfd) => pidfd::send_signal(pidfd.as_fd(), signal),
            // Without a pidfd, the pid: the child is not reaped until this handle waits, so its
            // pid is ours.
            None => pidfd::kill_pid(self.id(), signal),
        };
        match sent {
            // Already reaped (by the kernel, under SIGCHLD ignored).
            Err(e) if Cause::NoSuchProcess.is(&e) => Ok(()),
            sent => sent,
        }
    }

    /// Reaps a child that is ending (its channel closed, or it was asked to exit): waits until
    /// `deadline`, then kills it, so that no wait on a live process is without a bound. A
    /// status reaped by someone else (SIGCHLD ignored) is `Unknown`; an error when how the
    /// child ended cannot be known for another reason.
    pub(crate) fn reap_until(&mut self, deadline: Instant) -> io::Result<ExitReason> {
        let waited = match self.wait_until(Some(deadline)) {
            Ok(None) => {
                // Should the kill fail, the wait below says how things stand.
                let _ = self.kill();
                match self.wait_until(Some(Instant::now() + KILLED_GRACE)) {
                    Ok(None) => {
                        self.reap_in_background();
                        return Ok(ExitReason::Unknown);
                    }
                    waited => waited,
                }
            }
            waited => waited,
        };
        match waited {
            Ok(status) => Ok(status.map_or(ExitReason::Unknown, ExitReason::from_status)),
            Err(e) if Cause::NotAChild.is(&e) => Ok(ExitReason::Unknown),
            Err(e) => Err(e),
        }
    }

    /// Receives the child's next frame from `channel`, watching its exit too: a grandchild may
    /// hold the channel open after the child is gone, so end-of-file alone is not enough.
    ///
    /// What the child logged before it sent the frame (or died) has been passed on to this
    /// process's logger by then, unless that logger is too slow ([`logs::settle`]).
    ///
    /// A farewell frame is not handed on: the child is exiting, and [`said`](Self::said) then
    /// tells why.
    pub(crate) fn recv(&mut self, channel: &mut Channel, deadline: Option<Instant>) -> Received {
        let received = match self.recv_frame(channel, deadline) {
            Received::Frame(frame) => match frame.farewell() {
                Some(why) => {
                    self.said = Some(why);
                    Received::Gone
                }
                None => Received::Frame(frame),
            },
            received => received,
        };
        logs::settle(self.pid());
        received
    }

    /// Receives the child's next message on `link`, through its rings or its socket, as
    /// [`recv`](Self::recv) does on a channel. A message the child published before it died
    /// is received; the death is seen once none is left.
    pub(crate) fn recv_on(&mut self, link: &mut Link, deadline: Option<Instant>) -> Received {
        if !link.has_rings() {
            return self.recv(link.channel_mut(), deadline);
        }
        let received = link.recv(|channel| {
            // Looked at before each wait, not only in it: a worker that sends nothing but
            // wake-ups, which the link skips, must not hold its task past its time limit.
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Err(Received::TimedOut);
            }
            match self.recv(channel, deadline) {
                Received::Frame(frame) => Ok(frame),
                other => Err(other),
            }
        });
        match received {
            Ok(frame) => {
                logs::settle(self.pid());
                Received::Frame(frame)
            }
            Err(received) => received,
        }
    }

    /// Why the child exited, as it said before it did (see [`recv`](Self::recv)).
    pub(crate) fn said(&self) -> Option<&str> {
        self.said.as_deref()
    }

    fn recv_frame(&mut self, channel: &mut Channel, deadline: Option<Instant>) -> Received {
        loop {
            if channel.has_frame() {
                return received(channel.recv());
            }
            let Some(pidfd) = &self.pidfd else {
                return match channel.recv_until(deadline) {
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => Received::TimedOut,
                    got => received(got),
                };
            };
            let ready = pidfd::wait_readable([channel.stream().as_fd(), pidfd.as_fd()], deadline);
            let [data, exited] = match ready {
                Ok(ready) => ready,
                Err(e) => return Received::Failed(e),
            };
            if data {
                let slice = Instant::now() + FRAME_SLICE;
                match channel.recv_until(Some(deadline.map_or(slice, |at| at.min(slice)))) {
                    // A part of a frame: look at the child's exit again before reading on.
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => continue,
                    got => return received(got),
                }
            }
            if exited {
                // Everything it sent before it exited was readable by now.
                return Received::Gone;
            }
            return Received::TimedOut;
        }
    }

    /// For a child no one will wait for any more (its handle is being dropped, or it outlived
    /// a bounded wait): make sure it is reaped when it ends. Its status is then lost to this
    /// handle, which waits no more.
    pub(crate) fn reap_in_background(&mut self) {
        if self.status.is_some() || self.reaping {
            return;
        }
        let pid = self.id();
        let reaper = std::thread::Builder::new().name(format!("mp-reap-{pid}"));
        let reaping = reaper.spawn(move || {
            // Nothing else waits for it: this handle stops at `reaping`.
            let _ = pidfd::reap(pid, true);
            crate::base::child_ended(pid.as_raw());
            logs::worker_ended(pid.as_raw());
        });
        match reaping {
            Ok(_) => self.reaping = true,
            Err(e) => eprintln!("mp: cannot start a thread to reap process {pid}: {e}"),
        }
    }
}

impl From<io::Error> for Received {
    /// The rings' memory was not as a worker leaves it: the worker broke them.
    fn from(error: io::Error) -> Received {
        Received::Failed(error)
    }
}

impl Interrupted for Received {
    fn lasts(&self) -> bool {
        matches!(self, Received::Gone | Received::TimedOut)
    }
}

/// What a receive came to.
fn received(got: io::Result<Option<Frame>>) -> Received {
    match got {
        Ok(Some(frame)) => Received::Frame(frame),
        Ok(None) => Received::Gone,
        // A frame torn by a crash, or a reset by a child that died with requests unread.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
            ) =>
        {
            Received::Gone
        }
        // The child may well have answered (and exited); this side could not take the
        // answer.
        Err(e) => Received::Failed(e),
    }
}

/// Kills a child from another thread than the one that owns its [`ChildProcess`].
#[derive(Clone)]
pub(crate) struct Killer {
    pid: Pid,
    pidfd: Option<Arc<OwnedFd>>,
}

impl Killer {
    /// Sends SIGKILL; see [`signal`](Killer::signal).
    pub(crate) fn kill(&self) {
        self.signal(Signal::KILL);
    }

    /// Sends `signal`. Through the pidfd this can never reach another process; without one,
    /// the caller must make sure the child was not reaped yet (see the pool's `Slot`).
    pub(crate) fn signal(&self, signal: Signal) {
        let sent = match &self.pidfd {
            Some(pidfd) => pidfd::send_signal(pidfd.as_fd(), signal),
            None => pidfd::kill_pid(self.pid, signal),
        };
        match sent {
            // Already reaped: nothing to signal.
            Err(e) if Cause::NoSuchProcess.is(&e) => {}
            Err(e) => eprintln!("mp: cannot send {signal} to process {}: {e}", self.pid),
            Ok(()) => {}
        }
    }
}

/// The error for a reply that could not be received from a live process (which is then
/// ended): it names the descriptor limit when that is the cause, the usual one.
pub(crate) fn receive_failed(pid: u32, error: io::Error) -> Error {
    let out_of_descriptors = Cause::OutOfDescriptors.is(&error)
        || (error.kind() == io::ErrorKind::InvalidData && error.to_string().contains("descriptor"));
    let context = if out_of_descriptors {
        format!(
            "cannot receive the reply of process {pid}, which was ended: this process is at its \
             limit of open file descriptors (a reply of 1 MiB or more, or one holding a handle, \
             needs one); raise it with `ulimit -n` or hold fewer open"
        )
    } else {
        format!("cannot receive the reply of process {pid}, which was ended")
    };
    Error::io(context, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The table behind `active_children` must not grow with every child a long-lived program
    // starts: a reaped child leaves it.
    #[test]
    fn a_reaped_child_leaves_the_table_of_children() {
        let Started {
            mut child, channel, ..
        } = start_worker(StartMethod::Spawn, "Process-table", &[]).unwrap();
        let pid = child.pid();
        assert!(crate::base::is_known_child(pid));
        // A worker whose channel closes before any request exits.
        drop(channel);
        let exit = child.reap_until(Instant::now() + Duration::from_secs(20));
        assert!(exit.is_ok(), "{exit:?}");
        assert!(!crate::base::is_known_child(pid));
    }

    // A worker that exits for a reason of its own says why, and the parent's
    // error for it says it too, in its `Display`.
    #[test]
    fn a_worker_that_exits_says_why() {
        let Started {
            mut child,
            mut channel,
            ..
        } = start_worker(StartMethod::Spawn, "Process-farewell", &[]).unwrap();
        // A worker that exited before this arrived has said why all the same.
        let sent = channel.send(b"not a request");
        let received = child.recv(&mut channel, Some(Instant::now() + Duration::from_secs(20)));
        assert!(matches!(received, Received::Gone));
        let said = child.said().unwrap_or_default().to_string();
        // A worker that reads the bytes says it cannot read them; one still starting may
        // take them for another build's: either way, it says why.
        assert!(
            said.contains("cannot read") || said.contains("not the build"),
            "{said} (sent: {sent:?})"
        );
        let said_again = said.clone();
        let exit = child.reap_until(Instant::now() + Duration::from_secs(20));
        let error = Error::new(crate::base::Kind::Died {
            function: "f".to_string(),
            pid: child.pid(),
            exit: exit.unwrap(),
            said: Some(said),
        });
        assert!(error.to_string().contains(&said_again), "{error}");
    }
}
