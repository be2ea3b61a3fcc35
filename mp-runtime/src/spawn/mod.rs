//! Starting a child: [`StartMethod`], [`start_worker`], and [`ChildProcess`], the handle to a
//! child whichever way it started, re-executed ([`reexec`]) or forked by the fork server
//! ([`forkserver`]).

pub(crate) mod forkserver;
pub(crate) mod reexec;

use std::io;
use std::os::unix::net::UnixStream;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicU8, Ordering};

use crate::error::{Error, Result};
use forkserver::ForkedChild;
use reexec::Role;

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
    pub stream: UnixStream,
}

/// Starts a worker called `name` the way `method` says.
pub(crate) fn start_worker(method: StartMethod, name: &str) -> Result<Started> {
    let (child, stream, parent) = match method {
        StartMethod::Spawn => {
            let (parent_end, child_end) = UnixStream::pair()
                .map_err(|e| Error::io("cannot create the socket pair for a child", e))?;
            let child = reexec::spawn_self(Role::Worker, name, child_end.into())?;
            (Inner::Spawned(child), parent_end, std::process::id())
        }
        StartMethod::ForkServer => {
            let (child, stream) = forkserver::start_child(name)?;
            let zygote = child.parent();
            (Inner::Forked(child), stream, zygote)
        }
    };
    let child = ChildProcess {
        inner: child,
        status: None,
    };
    crate::context::child_started(child.pid(), name, parent);
    Ok(Started { child, stream })
}

/// A child process, whichever way it was started: re-executed (our child, reaped by us) or
/// forked by the fork server (its child, reaped there and reported to us).
pub(crate) struct ChildProcess {
    inner: Inner,
    /// How it ended, once known.
    status: Option<ExitStatus>,
}

enum Inner {
    Spawned(Child),
    Forked(ForkedChild),
}

impl ChildProcess {
    pub(crate) fn pid(&self) -> u32 {
        match &self.inner {
            Inner::Spawned(child) => child.id(),
            Inner::Forked(child) => child.pid(),
        }
    }

    /// How the child ended, without waiting; `None` while it runs.
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = match &mut self.inner {
                Inner::Spawned(child) => child.try_wait()?,
                Inner::Forked(child) => child.try_wait()?,
            };
        }
        Ok(self.status)
    }

    /// Waits for the child to end. For a forked child whose fork server died, an error (its
    /// status can never be known).
    pub(crate) fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let status = match &mut self.inner {
            Inner::Spawned(child) => child.wait()?,
            Inner::Forked(child) => child.wait()?,
        };
        self.status = Some(status);
        Ok(status)
    }

    /// Sends SIGKILL, unless the child has already been reaped; does not wait.
    pub(crate) fn kill(&mut self) -> io::Result<()> {
        self.signal(libc::SIGKILL)
    }

    /// Sends `signal`, unless the child has already been reaped.
    pub(crate) fn signal(&mut self, signal: i32) -> io::Result<()> {
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        // SAFETY: plain system call. A spawned child is not reaped until this handle waits, so
        // its pid is ours. A forked child is reaped by the zygote the moment it ends; its pid
        // could be reused only in the instant before the zygote's report arrives, after a whole
        // cycle of the pid space.
        if unsafe { libc::kill(self.pid() as libc::pid_t, signal) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// For a handle dropped while the child runs: make sure the child is reaped when it ends.
    pub(crate) fn reap_in_background(&mut self) {
        let Inner::Spawned(child) = &self.inner else {
            // The zygote reaps its children itself.
            return;
        };
        if self.status.is_some() {
            return;
        }
        let pid = child.id() as libc::pid_t;
        let reaper = std::thread::Builder::new().name(format!("mp-reap-{pid}"));
        let reaping = reaper.spawn(move || {
            let mut status = 0;
            // SAFETY: plain system call with a valid out-pointer; the `Child` this pid came
            // from is being dropped and never waits, so nothing else reaps it.
            while unsafe { libc::waitpid(pid, &mut status, 0) } == -1
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
            }
        });
        if let Err(e) = reaping {
            eprintln!("mp: cannot start a thread to reap process {pid}: {e}");
        }
    }
}
