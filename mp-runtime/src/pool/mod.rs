//! [`Pool`]: a set of worker processes that run `#[process_fn]` calls, with Python's pool API.
//!
//! A public room: uses every tier below and `process`; used by users, `macros` and `entry`.

mod async_result;
mod callbacks;
mod imap;
mod options;
#[cfg(feature = "mpi")]
pub(crate) mod rank;
#[cfg(feature = "mpi")]
mod remote;
mod scheduler;
mod task_queue;
mod wait;
/// Refuses a memory limit that no worker could set: above the hard RLIMIT_DATA, which a
/// worker without CAP_SYS_RESOURCE cannot raise (it would exit at start, and every task fail).
fn check_memory_limit(bytes: u64) -> Result<()> {
    match crate::sys::process::data_limit_hard() {
        Some(hard) if bytes > hard && !crate::sys::process::may_raise_hard_limits() => {
            Err(Error::usage(format!(
                "`memory_limit` of {} MiB is above this process's hard limit on private memory \
                 (RLIMIT_DATA) of {} MiB, which its workers cannot raise; give at most {hard} \
                 bytes, or raise the hard limit (`ulimit -Hd`, as root)",
                bytes >> 20,
                hard >> 20
            )))
        }
        _ => Ok(()),
    }
}

use std::borrow::Borrow;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use async_result::AsyncResult;
pub use imap::IMap;
pub use options::{CallOptions, Calls};
pub use wait::{Waitable, wait};

use async_result::{Completion, Gather, Progress};
use callbacks::CallbackThread;
use scheduler::{Control, Placement, Shared, Task, WorkerConfig, lock, wait_started};

use crate::base::{Error, Handle, Kind, Result};
use crate::runtime::registry::{self, Entry, ProcessFn};
use crate::runtime::sandbox::{Sandbox, SandboxReport, Sandboxing};
use crate::wire::protocol;

use crate::runtime::spawn::{Owner, StartMethod};
use crate::sys::Signal;

/// A pool of worker processes.
///
/// Workers are started when the pool is built and live until it is closed, terminated or
/// dropped. Work is handed to them in chunks; each chunk's result comes back to the caller.
/// A worker that dies (a crash, a signal, `exit`) fails only the call it was running, with an
/// error that says how it died, and is replaced: the pool goes on.
///
/// `Pool` is `Send + Sync`: share it between threads (behind `&` or an `Arc`), and maps from
/// several threads run side by side. Dropping it kills its workers and reaps them, as
/// Python's `with Pool() as pool:` does; call [`close`](Pool::close) and [`join`](Pool::join)
/// first to let queued work finish.
///
/// A pool belongs to the process that built it. A copy of that process made by `fork()` (a
/// daemonising library, `nix::unistd::fork`) holds the pool too, but not its threads, and its
/// workers are the original's: there every call fails at once with an error whose
/// [`is_foreign_process`](Error::is_foreign_process) is true, and dropping it leaves the
/// original's workers alone. Build a new pool in the copy.
///
/// # Examples
///
/// ```
/// use mp_runtime::{process_fn, Pool};
///
/// #[process_fn]
/// fn cubes(n: u64) -> u64 {
///     n * n * n
/// }
///
/// let pool = Pool::new(2).unwrap();
/// assert_eq!(pool.map(cubes, vec![3, 4, 5]).unwrap(), vec![27, 64, 125]);
/// ```
///
/// # Nested pools
///
/// A task may build a pool of its own (or [`spawn!`](crate::spawn) a process), whose tasks may
/// build pools too, up to a depth: a process 10 levels below the main process (its workers
/// are level 1) starts no child, and building the pool fails with an error that says so, so
/// that a recursion without end fails instead of going on forking (loky's `LOKY_MAX_DEPTH`).
/// The environment variable `MP_MAX_DEPTH` sets the depth, in the main process's environment
/// or in a pool's ([`PoolBuilder::env`]).
///
/// The limit bounds depth, not breadth: a recursion whose every task builds a pool of `n`
/// workers that all recurse can have `n + n² + ...` processes at once, far more than a
/// machine has room for at 10 levels. For recursion that branches, lower `MP_MAX_DEPTH` so that
/// the sum fits, or give the inner pools 1 process.
///
/// ```
/// use mp_runtime::{process_fn, Pool};
///
/// /// Builds a pool that runs itself again, `levels` times.
/// #[process_fn]
/// fn nest(levels: u32) -> Result<u32, String> {
///     if levels == 0 {
///         return Ok(0);
///     }
///     let pool = Pool::new(1).map_err(|e| e.to_string())?;
///     Ok(1 + pool.apply(nest, (levels - 1,)).map_err(|e| e.to_string())??)
/// }
///
/// let pool = Pool::builder().processes(1).env("MP_MAX_DEPTH", "3").build().unwrap();
/// assert_eq!(pool.apply(nest, (2,)).unwrap(), Ok(2)); // levels 2 and 3
/// let too_deep = pool.apply(nest, (3,)).unwrap().unwrap_err();
/// assert!(too_deep.contains("MP_MAX_DEPTH=3"));
/// ```
pub struct Pool {
    shared: Arc<Shared>,
    /// The process that built it: the only one its threads run in.
    owner: Owner,
    drivers: Mutex<Vec<JoinHandle<()>>>,
    /// Worker processes in all (on every rank still in the job, for a pool over MPI ranks).
    processes: Arc<AtomicUsize>,
    /// Runs the callbacks of its results.
    callbacks: Arc<CallbackThread>,
    /// Whether its workers are this process's children (not an MPI pool's ranks).
    local: bool,
    /// Held by a [`resize`](Pool::resize), so that two resizes do not interleave.
    resizing: Mutex<()>,
    /// How many of its threads panicked (a bug in mp), counted as they are joined.
    panicked: AtomicUsize,
}

/// Settings for a [`Pool`], from [`Pool::builder`].
///
/// # Examples
///
/// ```
/// use mp_runtime::{process_fn, Pool};
///
/// #[process_fn]
/// fn pid() -> u32 {
///     std::process::id()
/// }
///
/// let pool = Pool::builder().processes(1).max_tasks_per_child(1).build().unwrap();
/// let first = pool.apply(pid, ()).unwrap();
/// let second = pool.apply(pid, ()).unwrap();
/// assert_ne!(first, second); // each task got a fresh worker
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct PoolBuilder {
    processes: Option<usize>,
    max_tasks_per_child: Option<usize>,
    retries: u32,
    memory_limit: Option<u64>,
    task_timeout: Option<Duration>,
    initializer: Option<Result<(&'static Entry, protocol::Args)>>,
    start_method: Option<StartMethod>,
    placement: Placement,
    env: Vec<(OsString, OsString)>,
    max_memory_growth: Option<u64>,
    sandbox: Option<Sandbox>,
}

impl PoolBuilder {
    /// How many worker processes; by default one per CPU this process may run on (see
    /// [`cpu_count`](crate::base::cpu_count)).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = mp_runtime::Pool::builder().processes(3).build().unwrap();
    /// assert_eq!(pool.processes(), 3);
    /// ```
    pub fn processes(mut self, processes: usize) -> Self {
        self.processes = Some(processes);
        self
    }

    /// Runs a task again, up to `retries` more times, when the worker running it dies (a
    /// crash, a signal, the out-of-memory killer), before its error is reported — Dask's
    /// "allowed failures". A task that panics is not retried: a panic is an answer. Off (0) by
    /// default, as in Python, since a task that kills its worker every time then costs
    /// `retries + 1` worker restarts.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// /// Crashes its worker the first time it runs in this pool (a marker file remembers).
    /// #[process_fn]
    /// fn flaky(marker: std::path::PathBuf) -> String {
    ///     if std::fs::File::create_new(&marker).is_ok() {
    ///         std::process::abort();
    ///     }
    ///     "second time lucky".to_string()
    /// }
    ///
    /// let marker = std::env::temp_dir().join(format!("mp-retry-doc-{}", std::process::id()));
    /// let pool = Pool::builder().processes(1).retries(1).build().unwrap();
    /// assert_eq!(pool.apply(flaky, (marker.clone(),)).unwrap(), "second time lucky");
    /// std::fs::remove_file(marker).unwrap();
    /// ```
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Caps each worker's private memory (heap and anonymous maps) at `bytes`, so a task that
    /// asks for too much fails alone instead of pushing the machine into swap or waking the
    /// out-of-memory killer. An allocation past the cap ends the worker (Rust aborts when an
    /// allocation fails); the task's error then says
    /// [`is_out_of_memory`](Error::is_out_of_memory), and a fresh worker takes over. Linux's
    /// RLIMIT_DATA; shared memory (`SharedMemory`, `Array`) is not counted. A limit above this
    /// process's hard RLIMIT_DATA, which its workers could not raise (they lack
    /// CAP_SYS_RESOURCE), makes [`build`](PoolBuilder::build) fail with an error that says so.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn allocate(mib: usize) -> usize {
    ///     let block = vec![1u8; mib << 20];
    ///     block.iter().map(|&b| b as usize).sum::<usize>() >> 20
    /// }
    ///
    /// let pool = Pool::builder()
    ///     .processes(1)
    ///     .start_method(mp_runtime::StartMethod::Spawn)
    ///     .memory_limit(256 << 20)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(pool.apply(allocate, (16,)).unwrap(), 16);
    /// let err = pool.apply(allocate, (1024,)).unwrap_err();
    /// assert!(err.is_out_of_memory(), "{err}");
    /// assert_eq!(pool.apply(allocate, (16,)).unwrap(), 16); // a fresh worker
    /// ```
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Replaces a worker whose memory keeps growing, as loky's leak guard does: a worker whose
    /// own resident memory (heap and other anonymous pages) is more than `bytes` above what it
    /// was after its first task exits once the tasks it has are answered, and a fresh worker
    /// takes its place. No task fails: this is for a task that leaks (a cache that is never
    /// emptied, a C library that forgets to free), where [`memory_limit`](PoolBuilder::memory_limit)
    /// is the hard cap that fails the task that crosses it. The size is measured after the first
    /// task, after each task that leaves the worker idle, and, while tasks follow each other
    /// without a pause, at most every 100 ms (a read of `/proc`, a few microseconds): such a
    /// worker may grow by what its tasks allocate in that time before it is replaced. Off by
    /// default.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// /// Leaks `mib` MiB (kept, touched) and says which worker it ran on.
    /// #[process_fn]
    /// fn leak(mib: usize) -> u32 {
    ///     std::mem::forget(vec![1u8; mib << 20]);
    ///     std::process::id()
    /// }
    ///
    /// let pool = Pool::builder().processes(1).max_memory_growth(32 << 20).build().unwrap();
    /// let first = pool.apply(leak, (0,)).unwrap(); // its size is taken after this task
    /// std::thread::sleep(std::time::Duration::from_millis(150));
    /// assert_eq!(pool.apply(leak, (64,)).unwrap(), first); // leaks 64 MiB: retired after it
    /// assert_ne!(pool.apply(leak, (0,)).unwrap(), first); // a fresh worker
    /// ```
    pub fn max_memory_growth(mut self, bytes: u64) -> Self {
        self.max_memory_growth = Some(bytes);
        self
    }

    /// Gives each task at most `limit` to run, like pebble's `schedule(timeout=)`: a task still
    /// running after that has its worker killed and replaced, and fails with an error whose
    /// [`is_timeout`](Error::is_timeout) is true and that names the limit. Other tasks are not
    /// disturbed: those queued behind it on that worker run on another.
    ///
    /// The limit is per call: with it, maps send each input as a task of its own (a chunk size
    /// given with [`CallOptions::chunksize`] is then taken as 1), so a slow input fails alone.
    /// [`CallOptions::timeout`] gives one call a limit of its own. Not for pools over MPI
    /// ranks: [`build`](PoolBuilder::build) then fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// let pool = Pool::builder()
    ///     .processes(2)
    ///     .task_timeout(Duration::from_secs(2))
    ///     .build()
    ///     .unwrap();
    /// let naps: Vec<_> = pool.imap(nap, [1, 60_000, 2]).collect();
    /// assert_eq!(naps[0].as_ref().unwrap(), &1);
    /// assert!(naps[1].as_ref().unwrap_err().is_timeout());
    /// assert_eq!(naps[2].as_ref().unwrap(), &2);
    /// ```
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.task_timeout = Some(limit);
        self
    }

    /// Replaces each worker with a fresh process after it has run `tasks` tasks (a chunk of a
    /// map counts as one task, as in Python). Useful when tasks leak memory.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, CallOptions, Pool};
    ///
    /// #[process_fn]
    /// fn pid(_: u32) -> u32 {
    ///     std::process::id()
    /// }
    ///
    /// let pool = Pool::builder().processes(1).max_tasks_per_child(2).build().unwrap();
    /// let pids = pool.with(&CallOptions::new().chunksize(1)).map(pid, 0..4).unwrap();
    /// assert_eq!(pids[0], pids[1]);
    /// assert_ne!(pids[1], pids[2]);
    /// ```
    pub fn max_tasks_per_child(mut self, tasks: usize) -> Self {
        self.max_tasks_per_child = Some(tasks);
        self
    }

    /// Runs `f(args..)` once in each worker before its first task, to set up state that tasks
    /// then share (a connection, a cache in a `static`). If it panics or fails, [`build`]
    /// returns that error; if it fails in a replacement worker later, the task that was to run
    /// there gets the error.
    ///
    /// [`build`]: PoolBuilder::build
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::OnceLock;
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// static GREETING: OnceLock<String> = OnceLock::new();
    ///
    /// #[process_fn]
    /// fn set_greeting(greeting: String) {
    ///     GREETING.set(greeting).unwrap();
    /// }
    ///
    /// #[process_fn]
    /// fn greet(name: String) -> String {
    ///     format!("{} {name}", GREETING.get().unwrap())
    /// }
    ///
    /// let pool = Pool::builder()
    ///     .processes(1)
    ///     .initializer(set_greeting, ("hello".to_string(),))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(pool.apply(greet, ("ann".to_string(),)).unwrap(), "hello ann");
    /// ```
    pub fn initializer<F, Args>(mut self, f: F, args: Args) -> Self
    where
        F: ProcessFn<Args>,
        Args: Serialize,
    {
        let initializer = registry::lookup(&f)
            .and_then(|entry| Ok((entry, protocol::Args::encode(entry.id, [args])?)));
        self.initializer = Some(initializer);
        self
    }

    /// How workers are started; by default, as [`get_start_method`](crate::runtime::spawn::get_start_method)
    /// says when the pool is built ([`StartMethod::Spawn`] unless set otherwise).
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{Pool, StartMethod};
    ///
    /// let pool = Pool::builder().start_method(StartMethod::ForkServer).processes(1).build().unwrap();
    /// assert_eq!(pool.processes(), 1);
    /// ```
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.start_method = Some(method);
        self
    }

    /// Runs each worker in `sandbox`: it reaches only the paths given, no network (unless
    /// allowed), no other process, and starts no program (see [`Sandbox`]). A worker enters it
    /// as it starts, after the [`memory_limit`](PoolBuilder::memory_limit) is set and before
    /// the [`initializer`](PoolBuilder::initializer) runs, so the initializer runs inside too:
    /// what it opens must be allowed. The parent is never sandboxed.
    ///
    /// [`build`](PoolBuilder::build) fails, with an error whose
    /// [`is_sandbox`](Error::is_sandbox) is true and that names what is missing, where the
    /// kernel cannot enforce it all, unless the sandbox was made with
    /// [`best_effort`](Sandbox::best_effort); [`Pool::sandbox_report`] says what holds. For a
    /// pool over MPI ranks, each rank's workers enter it (the ranks themselves are not
    /// sandboxed).
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool, Sandbox};
    ///
    /// #[process_fn]
    /// fn peek() -> bool {
    ///     std::fs::read("/etc/hostname").is_ok() || std::fs::read("/etc/passwd").is_ok()
    /// }
    ///
    /// let pool = Pool::builder().processes(1).sandbox(Sandbox::new()).build().unwrap();
    /// assert!(!pool.apply(peek, ()).unwrap());
    /// ```
    pub fn sandbox(mut self, sandbox: Sandbox) -> Self {
        self.sandbox = Some(sandbox);
        self
    }

    /// Sets the environment variable `name` to `value` in this pool's workers only, as loky's
    /// `env=`: for what a library reads from the environment (`OMP_NUM_THREADS=1`, so that
    /// each worker's numeric library does not start a thread per core). Call it once per
    /// variable; the workers inherit the rest of this process's environment. Workers started
    /// with [`StartMethod::Spawn`] have the variables from their first instruction;
    /// [`StartMethod::ForkServer`] workers get them when forked, before the initializer, so a
    /// library the fork server loaded before does not see them. [`MP_MAX_DEPTH`](Pool#nested-pools)
    /// set here limits how deep pools built by this pool's tasks may nest.
    ///
    /// `build` fails if a name is empty or holds `=` or a NUL byte, if a value holds a NUL
    /// byte, or if a name starts with `MP_RUNTIME_` (mp's own).
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn threads() -> Option<String> {
    ///     std::env::var("OMP_NUM_THREADS").ok()
    /// }
    ///
    /// let pool = Pool::builder().processes(1).env("OMP_NUM_THREADS", "1").build().unwrap();
    /// assert_eq!(pool.apply(threads, ()).unwrap().as_deref(), Some("1"));
    /// ```
    pub fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        let name = name.as_ref().to_os_string();
        self.env.retain(|(set, _)| *set != name);
        self.env.push((name, value.as_ref().to_os_string()));
        self
    }

    /// Runs the workers on the other ranks of the MPI job this program was started in (`mpirun
    /// -n N ./app`, `srun`), like mpi4py's `MPIPoolExecutor`: rank 0 runs `main` and this pool;
    /// every other rank runs the tasks it is sent in a local pool of its own, of
    /// [`processes`](PoolBuilder::processes) workers (by default, one per core the rank may
    /// run on). Without this call a pool built on rank 0 of such a job uses the other ranks
    /// anyway; call [`local`](PoolBuilder::local) to keep it on this machine.
    ///
    /// Needs the `mpi` feature; [`build`](PoolBuilder::build) fails with a message that says
    /// what to do when the feature is off, no launcher started the program, or the job has no
    /// rank but 0. Arguments and results cross as bytes: handles (pipes, queues, locks, shared
    /// memory) cannot go to another machine and fail their task with a clear error. Run the
    /// program under the launcher: `mpirun -n 3 ./app` (rank 0 runs `main`, ranks 1 and 2
    /// serve its pools), or `srun` under Slurm.
    ///
    /// # Examples
    ///
    /// ```
    /// // Started without `mpirun`, so there are no other ranks to use:
    /// let err = mp_runtime::Pool::builder().mpi().build().unwrap_err();
    /// assert!(err.is_usage(), "{err}");
    /// ```
    pub fn mpi(mut self) -> Self {
        self.placement = Placement::Mpi;
        self
    }

    /// Runs the workers as processes on this machine, even on rank 0 of an MPI job (where a
    /// pool uses the other ranks by default; see [`mpi`](PoolBuilder::mpi)).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = mp_runtime::Pool::builder().local().processes(2).build().unwrap();
    /// assert_eq!(pool.processes(), 2);
    /// ```
    pub fn local(mut self) -> Self {
        self.placement = Placement::Local;
        self
    }

    /// Starts the workers (and runs the initializer in each); fails if any cannot start.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = mp_runtime::Pool::builder().processes(0).build().unwrap_err();
    /// assert!(err.to_string().contains("at least one"));
    /// ```
    pub fn build(mut self) -> Result<Pool> {
        let processes = self.processes.unwrap_or_else(crate::base::cpu_count);
        if processes == 0 {
            return Err(Error::usage(
                "a pool needs at least one process; pass 1 or more to `processes`",
            ));
        }
        if self.max_tasks_per_child == Some(0) {
            return Err(Error::usage("`max_tasks_per_child` must be at least 1"));
        }
        check_env(&self.env)?;
        let initializer = self.initializer.take().transpose()?;
        let remote = on_other_ranks(self.placement)?;
        if let (false, Some(bytes)) = (remote, self.memory_limit) {
            check_memory_limit(bytes)?;
        }
        let sandbox = self.sandbox.as_ref().map(Sandbox::resolved).transpose()?;
        if remote && self.task_timeout.is_some() {
            return Err(Error::usage(
                "`task_timeout` works on local pools only: the workers of an MPI pool are on \
                 other ranks; call `local()` or leave the timeout out",
            ));
        }
        let shared = Arc::new(Shared::new(
            if remote {
                mpi_worker_ranks()
            } else {
                processes
            },
            WorkerConfig {
                max_tasks_per_child: self.max_tasks_per_child,
                retries: self.retries,
                memory_limit: self.memory_limit,
                task_timeout: self.task_timeout,
                initializer,
                start_method: self
                    .start_method
                    .unwrap_or_else(crate::runtime::spawn::get_start_method),
                env: std::mem::take(&mut self.env),
                max_memory_growth: self.max_memory_growth,
                sandbox: sandbox.map(Sandboxing::new),
            },
        ));
        #[cfg(feature = "mpi")]
        if remote {
            let started = remote::start(self.processes, &shared)?;
            let pool = Pool {
                shared,
                owner: Owner::this_process(),
                drivers: Mutex::new(started.drivers),
                processes: started.processes,
                callbacks: CallbackThread::new(),
                local: false,
                resizing: Mutex::new(()),
                panicked: AtomicUsize::new(0),
            };
            return match started.failure {
                // Dropping the pool stops the drivers that did start.
                Some(error) => Err(error),
                None => Ok(pool),
            };
        }
        let mut drivers = Vec::with_capacity(processes);
        let (_, failure) = spawn_drivers(&shared, processes, &mut drivers).wait();
        let pool = Pool {
            shared,
            owner: Owner::this_process(),
            drivers: Mutex::new(drivers),
            processes: Arc::new(AtomicUsize::new(processes)),
            callbacks: CallbackThread::new(),
            local: true,
            resizing: Mutex::new(()),
            panicked: AtomicUsize::new(0),
        };
        match failure {
            // Dropping the pool terminates and reaps the workers that did start.
            Some(error) => Err(error),
            None => Ok(pool),
        }
    }
}

/// Starts `count` driver threads, which start their workers, and adds them to `drivers`; the
/// caller then waits for the workers with [`Starting::wait`], without holding `drivers`.
fn spawn_drivers(
    shared: &Arc<Shared>,
    count: usize,
    drivers: &mut Vec<JoinHandle<()>>,
) -> Starting {
    let (ready, started) = mpsc::channel();
    let mut failure = None;
    let mut spawned = 0;
    for _ in 0..count {
        let slot = shared.add_slot();
        let (driver_shared, driver_slot, ready) = (shared.clone(), slot.clone(), ready.clone());
        match std::thread::Builder::new()
            .name(format!("mp-pool-worker-{}", drivers.len()))
            .spawn(move || scheduler::drive(driver_shared, driver_slot, ready))
        {
            Ok(driver) => {
                drivers.push(driver);
                spawned += 1;
            }
            Err(e) => {
                shared.remove_slot(&slot);
                failure = Some(Error::io("cannot start a pool thread", e));
                break;
            }
        }
    }
    Starting {
        started,
        spawned,
        failure,
    }
}

/// Driver threads starting their workers, from [`spawn_drivers`].
struct Starting {
    started: mpsc::Receiver<Result<()>>,
    spawned: usize,
    failure: Option<Error>,
}

impl Starting {
    /// Waits until each driver has started its worker or failed to; returns how many started,
    /// and the first error.
    fn wait(mut self) -> (usize, Option<Error>) {
        let started = wait_started(&self.started, self.spawned, &mut self.failure);
        (started, self.failure)
    }
}

/// Refuses a variable that no process could be given, or one of mp's own.
fn check_env(env: &[(OsString, OsString)]) -> Result<()> {
    for (name, value) in env {
        let bytes = name.as_bytes();
        let why = if bytes.is_empty() {
            "is empty"
        } else if bytes.contains(&b'=') {
            "holds `=`"
        } else if bytes.contains(&0) || value.as_bytes().contains(&0) {
            "or its value holds a NUL byte"
        } else if bytes.starts_with(b"MP_RUNTIME_") {
            "is one of mp's own (MP_RUNTIME_*)"
        } else {
            continue;
        };
        return Err(Error::usage(format!(
            "the pool's environment variable {name:?} {why}: no worker can be given it; pass \
             another name or value to `env`"
        )));
    }
    Ok(())
}

/// Whether a pool built with `placement` runs on the other ranks of an MPI job.
#[cfg(feature = "mpi")]
fn on_other_ranks(placement: Placement) -> Result<bool> {
    remote::wanted(placement)
}

#[cfg(not(feature = "mpi"))]
fn on_other_ranks(placement: Placement) -> Result<bool> {
    match placement {
        Placement::Mpi => Err(Error::usage(
            "MPI pools need mp-runtime's `mpi` feature: build with `--features mpi` (and an MPI \
             library installed), or use a local pool",
        )),
        Placement::Auto | Placement::Local => Ok(false),
    }
}

/// The worker ranks of this MPI job that were lost, in the order they were lost: ranks whose
/// process died while the job went on, which is possible under Open MPI 5 with fault
/// tolerance (`mpiexec --with-ft ulfm`; other launchers end the whole job when a rank dies).
/// A lost rank is left out of every pool built after, and its tasks ran again elsewhere where
/// `retries` allowed. Empty when none was lost, or without the `mpi` feature.
///
/// # Examples
///
/// ```
/// // Not started by an MPI launcher: no rank to lose.
/// assert!(mp_runtime::lost_mpi_ranks().is_empty());
/// ```
pub fn lost_mpi_ranks() -> Vec<u32> {
    #[cfg(feature = "mpi")]
    return crate::runtime::cluster::lost_ranks()
        .into_iter()
        .map(|rank| rank as u32)
        .collect();
    #[cfg(not(feature = "mpi"))]
    Vec::new()
}

/// The worker ranks a new MPI pool can use: all but rank 0 and the lost ones.
fn mpi_worker_ranks() -> usize {
    #[cfg(feature = "mpi")]
    if crate::runtime::cluster::world().is_some() {
        return crate::runtime::cluster::live_worker_ranks().len();
    }
    0
}

/// The most inputs a chunk of the default size holds. Past it, a larger chunk only delays the
/// workers' start (the first chunk must be encoded first) and the last results (decoded after
/// the workers are done), and no longer fits in the CPU's cache.
const MAX_AUTO_CHUNK: usize = 16 * 1024;

/// Python's default chunk size, about four chunks per worker, but at most [`MAX_AUTO_CHUNK`].
fn auto_chunksize(items: usize, processes: usize) -> usize {
    items.div_ceil(processes * 4).clamp(1, MAX_AUTO_CHUNK)
}

/// Waits until chunk `index` may be encoded: when at most `ahead` chunks before it are not
/// done yet. False if the submission completes first (it failed: the rest need not run).
/// Every chunk submitted is finished exactly once, so the wait ends. It polls, since only a
/// map of more chunks than the bound waits here, and then for chunks that take a while.
fn room_for<T>(
    index: usize,
    ahead: usize,
    chunksize: usize,
    progress: &Progress,
    completion: &Completion<T>,
) -> bool {
    let Some(chunks_done) = (index + 1).checked_sub(ahead) else {
        return true;
    };
    let items_done = chunks_done.saturating_mul(chunksize);
    let mut pause = Duration::from_micros(20);
    loop {
        if completion.is_complete() {
            return false;
        }
        if progress.done() >= items_done {
            return true;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(2));
    }
}

/// The result of a map: every value, in input order.
fn all<R>(values: Vec<R>) -> Result<Vec<R>> {
    Ok(values)
}

/// The result of an apply: its one value.
fn only<R>(mut values: Vec<R>) -> Result<R> {
    values
        .pop()
        .ok_or_else(|| Error::protocol("a worker answered a call with no outcome"))
}

/// How a submission is cut into tasks and encoded: a call's [`CallOptions`], and what its kind
/// of call adds.
struct Submission<X> {
    /// Inputs per task; `None` for [`auto_chunksize`].
    chunksize: Option<usize>,
    /// The time limit of each task; `None` for the pool's.
    timeout: Option<Duration>,
    /// For a caller that waits for the result anyway: at most this many chunks are encoded
    /// and not yet done at a time. `None`: all are encoded before `submit` returns.
    ahead: Option<usize>,
    /// With `ahead`: at most this many inputs encoded and not yet done (and no larger default
    /// chunk).
    buffersize: Option<usize>,
    /// Encodes a chunk of inputs as calls of the function with the given id.
    encode: fn(&str, &[X]) -> Result<protocol::Args>,
}

/// Encodes inputs of a one-argument function, each owned or borrowed, as its argument tuples:
/// a reference encodes as the value it points to.
fn single_arguments<A: Serialize, X: Borrow<A>>(
    function: &str,
    chunk: &[X],
) -> Result<protocol::Args> {
    protocol::Args::encode(function, chunk.iter().map(|x| (x.borrow(),)))
}

/// Encodes argument tuples, each owned or borrowed.
fn argument_tuples<Args: Serialize, X: Borrow<Args>>(
    function: &str,
    chunk: &[X],
) -> Result<protocol::Args> {
    protocol::Args::encode(function, chunk.iter().map(Borrow::borrow))
}

impl Pool {
    /// A pool of `processes` workers: `Pool::builder().processes(processes).build()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = mp_runtime::Pool::new(2).unwrap();
    /// assert_eq!(pool.processes(), 2);
    /// ```
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// Settings beyond the number of processes.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = mp_runtime::Pool::builder().processes(1).build().unwrap();
    /// assert_eq!(pool.processes(), 1);
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            max_tasks_per_child: None,
            retries: 0,
            memory_limit: None,
            task_timeout: None,
            initializer: None,
            start_method: None,
            placement: Placement::Auto,
            env: Vec::new(),
            max_memory_growth: None,
            sandbox: None,
        }
    }

    /// How many worker processes the pool keeps (on all ranks together, for a pool over MPI
    /// ranks, less those of a rank lost since: see [`lost_mpi_ranks`]).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(mp_runtime::Pool::new(3).unwrap().processes(), 3);
    /// ```
    pub fn processes(&self) -> usize {
        self.processes.load(Ordering::SeqCst)
    }

    /// What the kernel enforces of the pool's [`Sandbox`], as its first worker found
    /// (see [`PoolBuilder::sandbox`]); `None` for a pool without one.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{Pool, Restriction, Sandbox};
    ///
    /// assert!(Pool::new(1).unwrap().sandbox_report().is_none());
    /// let pool = Pool::builder().processes(1).sandbox(Sandbox::new()).build().unwrap();
    /// assert!(pool.sandbox_report().unwrap().enforces(Restriction::SystemCalls));
    /// ```
    pub fn sandbox_report(&self) -> Option<&SandboxReport> {
        self.shared.config.sandbox.as_ref()?.report()
    }

    /// Changes how many worker processes the pool keeps, in place, as loky's
    /// `executor._resize(n)`. Growing starts the new workers and returns once they have
    /// started (or with the error of one that could not: the pool keeps those that did).
    /// Shrinking returns at once: idle workers exit first, and busy ones as they finish their
    /// current task, so no task is cut short; [`processes`](Pool::processes) says the new size
    /// at once. Work already queued or running is not affected.
    ///
    /// Fails for a pool that is closed or terminated, for 0, and for a pool over MPI ranks
    /// (its workers are the ranks' own).
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn square(x: u32) -> u32 {
    ///     x * x
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// pool.resize(3).unwrap();
    /// assert_eq!(pool.processes(), 3);
    /// assert_eq!(pool.map(square, 1..=4).unwrap(), [1, 4, 9, 16]);
    /// pool.resize(2).unwrap();
    /// assert_eq!(pool.processes(), 2);
    /// assert_eq!(pool.map(square, [5]).unwrap(), [25]);
    /// ```
    pub fn resize(&self, processes: usize) -> Result<()> {
        self.owner.check(Handle::Pool)?;
        if processes == 0 {
            return Err(Error::usage(
                "a pool needs at least one process; pass 1 or more to `resize`",
            ));
        }
        if !self.local {
            return Err(Error::usage(
                "a pool over MPI ranks has the workers its ranks start: it cannot be resized; \
                 build a pool with `local()` to resize it",
            ));
        }
        let _resizing = lock(&self.resizing);
        let starting = {
            let mut drivers = lock(&self.drivers);
            // Checked under the drivers' lock, which `join` takes to see whether they have all
            // finished: a `close` and `join` after this check find the new drivers listed.
            if self.shared.is_closed() {
                return Err(Error::new(Kind::Closed));
            }
            let current = self.processes();
            if processes <= current {
                self.shared.shrink(current - processes);
                self.processes.store(processes, Ordering::SeqCst);
                return Ok(());
            }
            // Drivers asked to leave and still here stay instead of new ones starting.
            let kept = self.shared.unshrink(processes - current);
            self.processes.fetch_add(kept, Ordering::SeqCst);
            self.forget_finished_drivers(&mut drivers);
            spawn_drivers(&self.shared, processes - current - kept, &mut drivers)
        };
        // Not under the drivers' lock: a `join_timeout` meanwhile stays bounded.
        let (started, failure) = starting.wait();
        self.processes.fetch_add(started, Ordering::SeqCst);
        match failure {
            // A worker that could not start because the pool was terminated meanwhile failed
            // for that reason, whatever it said as it was killed.
            Some(_) if self.shared.is_terminated() => Err(Error::new(Kind::Closed)),
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Joins the drivers that have left, keeping the count of those that panicked for
    /// [`join`](Pool::join), so that a pool resized often does not keep a finished thread per
    /// resize.
    fn forget_finished_drivers(&self, drivers: &mut Vec<JoinHandle<()>>) {
        let (finished, running) = std::mem::take(drivers)
            .into_iter()
            .partition(JoinHandle::is_finished);
        *drivers = running;
        self.count_panics(finished);
    }

    /// Joins `drivers`, adding those that panicked to the pool's count.
    fn count_panics(&self, drivers: Vec<JoinHandle<()>>) {
        let panicked = drivers
            .into_iter()
            .map(JoinHandle::join)
            .filter(std::result::Result::is_err)
            .count();
        self.panicked.fetch_add(panicked, Ordering::SeqCst);
    }

    /// Submits the inputs in chunks of `chunksize` (of one under a time limit) for `f`, each
    /// chunk queued as soon as it is encoded so that workers start while the rest are encoded;
    /// the result gathers the values in input order and `finish` makes them what the caller
    /// gets.
    fn submit<F, Args, X, T>(
        &self,
        f: F,
        inputs: impl IntoIterator<Item = X>,
        how: Result<Submission<X>>,
        finish: fn(Vec<F::Output>) -> Result<T>,
    ) -> AsyncResult<T>
    where
        F: ProcessFn<Args>,
        T: Send + 'static,
    {
        let completion = Arc::new(Completion::new(self.callbacks.clone()));
        let control = Arc::new(Control::default());
        let how = match self.owner.check(Handle::Pool).and(how) {
            Ok(how) => how,
            Err(error) => {
                // A forked copy, whose queue and locks are the original's, or options that
                // cannot work. The result, failed already, is this process's own.
                completion.complete(Err(error));
                let progress = Arc::new(Progress::new(0));
                let function = std::any::type_name::<F>();
                return AsyncResult::new(completion, control, progress, function);
            }
        };
        let inputs: Vec<X> = inputs.into_iter().collect();
        let progress = Arc::new(Progress::new(inputs.len()));
        let timeout = how.timeout.or(self.shared.config.task_timeout);
        let buffersize = how.buffersize.unwrap_or(usize::MAX);
        let chunksize = match timeout {
            // A time limit is per call: a call stuck in a chunk would fail the chunk's others.
            Some(_) => 1,
            None => how
                .chunksize
                .unwrap_or_else(|| auto_chunksize(inputs.len(), self.processes()).min(buffersize)),
        };
        // Checked: a chunk fits in the buffer, so at least one chunk may be ahead.
        let ahead = how
            .ahead
            .map(|chunks| chunks.min(buffersize / chunksize).max(1));
        let (function, failure) = match registry::lookup(&f) {
            Ok(entry) => {
                let sink = Arc::new(Gather::new(
                    inputs.len().div_ceil(chunksize),
                    completion.clone(),
                    control.clone(),
                    progress.clone(),
                    entry.path,
                    finish,
                ));
                let queued = inputs
                    .chunks(chunksize)
                    .enumerate()
                    .try_for_each(|(index, chunk)| {
                        if let Some(ahead) = ahead {
                            if !room_for(index, ahead, chunksize, &progress, &completion) {
                                // Failed already: the rest need not run.
                                return Ok(());
                            }
                        }
                        let args = (how.encode)(entry.id, chunk)?;
                        let task =
                            Task::new(entry, args, index, sink.clone(), control.clone(), timeout);
                        self.shared.submit([task])
                    });
                (entry.path, queued.err())
            }
            Err(error) => (std::any::type_name::<F>(), Some(error)),
        };
        if let Some(error) = failure {
            completion.complete(Err(error));
        }
        AsyncResult::new(completion, control, progress, function)
    }

    /// Calls on this pool with `options`: `pool.with(&options).map(f, xs)` is
    /// [`map`](Pool::map) with a chunk size, a time limit or a read-ahead of its own (see
    /// [`CallOptions`]). Pool's own call methods are these with no option set.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mp_runtime::{process_fn, CallOptions, Pool};
    ///
    /// #[process_fn]
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// let pool = Pool::new(2).unwrap();
    /// let limited = CallOptions::new().timeout(Duration::from_millis(300));
    /// let naps: Vec<_> = pool.with(&limited).imap(nap, [1, 60_000, 2]).collect();
    /// assert_eq!(naps[0].as_ref().unwrap(), &1);
    /// assert!(naps[1].as_ref().unwrap_err().is_timeout());
    /// assert_eq!(naps[2].as_ref().unwrap(), &2);
    /// ```
    pub fn with(&self, options: &CallOptions) -> Calls<'_> {
        Calls::new(self, options)
    }

    /// How many chunks a blocking map keeps encoded and not yet done: as many as an `imap`
    /// keeps in flight, enough that no worker waits for its next chunk, few enough that a
    /// map of many chunks is not held in encoded form all at once (nor a handle among its
    /// inputs duplicated once per chunk). `map_async` encodes every chunk before it
    /// returns, since its inputs may be borrowed.
    fn chunks_ahead(&self) -> usize {
        32 * self.processes()
    }

    /// Calls `f(x)` for each input `x` and returns the results in input order, like Python's
    /// `Pool.map`. Inputs go to the workers in chunks of about `len / (4 * processes)`, at most
    /// 16,384 each.
    ///
    /// The inputs may be owned or borrowed: `pool.map(f, &v)` and `pool.map(f, v.iter())` pass
    /// `&T` where `f` takes a `T`, since only their encoding crosses to the workers. So may
    /// those of every other map, `starmap` and [`pool_map!`](crate::pool_map).
    ///
    /// If a call panics or its worker dies, `map` returns that error as soon as it is known and
    /// the rest of this map's queued chunks do not run; the pool stays usable.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn check(x: i32) -> i32 {
    ///     assert!(x != 3, "three is not allowed");
    ///     x
    /// }
    ///
    /// #[process_fn]
    /// fn count_words(text: String) -> usize {
    ///     text.split_whitespace().count()
    /// }
    ///
    /// let pool = Pool::new(2).unwrap();
    /// assert_eq!(pool.map(check, 0..3).unwrap(), vec![0, 1, 2]);
    /// let err = pool.map(check, 0..5).unwrap_err();
    /// assert_eq!(err.panic_message(), Some("three is not allowed"));
    /// assert_eq!(pool.map(check, vec![7]).unwrap(), vec![7]); // still usable
    ///
    /// let texts = vec!["a b c".to_string(), "d e".to_string()];
    /// assert_eq!(pool.map(count_words, &texts).unwrap(), vec![3, 2]); // borrowed
    /// assert_eq!(texts.len(), 2); // still ours
    /// ```
    pub fn map<F, A, I>(&self, f: F, inputs: I) -> Result<Vec<F::Output>>
    where
        F: ProcessFn<(A,)>,
        I: IntoIterator,
        I::Item: Borrow<A>,
        A: Serialize,
    {
        self.with(&CallOptions::default()).map(f, inputs)
    }

    /// [`map`](Pool::map) without waiting: returns an [`AsyncResult`] for the whole list.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn inc(x: u8) -> u8 {
    ///     x + 1
    /// }
    ///
    /// let pool = Pool::new(2).unwrap();
    /// let pending = pool.map_async(inc, vec![1, 2, 3]);
    /// assert_eq!(pending.get().unwrap(), vec![2, 3, 4]);
    /// ```
    pub fn map_async<F, A, I>(&self, f: F, inputs: I) -> AsyncResult<Vec<F::Output>>
    where
        F: ProcessFn<(A,)>,
        I: IntoIterator,
        I::Item: Borrow<A>,
        A: Serialize,
    {
        self.with(&CallOptions::default()).map_async(f, inputs)
    }

    /// Calls `f(a, b, ..)` for each tuple of arguments, results in input order, like Python's
    /// `Pool.starmap`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn add(a: i32, b: i32) -> i32 {
    ///     a + b
    /// }
    ///
    /// let pool = Pool::new(2).unwrap();
    /// assert_eq!(pool.starmap(add, vec![(1, 2), (3, 4)]).unwrap(), vec![3, 7]);
    /// ```
    pub fn starmap<F, Args, I>(&self, f: F, inputs: I) -> Result<Vec<F::Output>>
    where
        F: ProcessFn<Args>,
        I: IntoIterator,
        I::Item: Borrow<Args>,
        Args: Serialize,
    {
        self.with(&CallOptions::default()).starmap(f, inputs)
    }

    /// [`starmap`](Pool::starmap) without waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn add(a: i32, b: i32) -> i32 {
    ///     a + b
    /// }
    ///
    /// let pool = Pool::new(2).unwrap();
    /// assert_eq!(pool.starmap_async(add, vec![(1, 1)]).get().unwrap(), vec![2]);
    /// ```
    pub fn starmap_async<F, Args, I>(&self, f: F, inputs: I) -> AsyncResult<Vec<F::Output>>
    where
        F: ProcessFn<Args>,
        I: IntoIterator,
        I::Item: Borrow<Args>,
        Args: Serialize,
    {
        self.with(&CallOptions::default()).starmap_async(f, inputs)
    }

    /// Calls `f(args..)` once in a worker and waits for the result, like Python's
    /// `Pool.apply`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn add(a: i32, b: i32) -> i32 {
    ///     a + b
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// assert_eq!(pool.apply(add, (1, 2)).unwrap(), 3);
    /// ```
    pub fn apply<F, Args>(&self, f: F, args: Args) -> Result<F::Output>
    where
        F: ProcessFn<Args>,
        Args: Serialize,
    {
        self.with(&CallOptions::default()).apply(f, args)
    }

    /// Calls `f(args..)` once in a worker without waiting: returns an [`AsyncResult`].
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn add(a: i32, b: i32) -> i32 {
    ///     a + b
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let pending = pool.apply_async(add, (1, 2));
    /// assert_eq!(pending.get().unwrap(), 3);
    /// ```
    pub fn apply_async<F, Args>(&self, f: F, args: Args) -> AsyncResult<F::Output>
    where
        F: ProcessFn<Args>,
        Args: Serialize,
    {
        self.with(&CallOptions::default()).apply_async(f, args)
    }

    /// A lazy iterator of `f(x)` for each input, in input order, like Python's `Pool.imap`:
    /// results arrive while later ones compute, and the input is read only as workers need
    /// it, so it may be endless. Chunks of one input, as in Python.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let pool = Pool::new(2).unwrap();
    /// let squares: Vec<u64> = pool.imap(square, 0..5).collect::<Result<_, _>>().unwrap();
    /// assert_eq!(squares, [0, 1, 4, 9, 16]);
    /// ```
    pub fn imap<F, A, I>(&self, f: F, inputs: I) -> IMap<'_, I::IntoIter, F::Output>
    where
        F: ProcessFn<(A,)>,
        I: IntoIterator,
        I::Item: Borrow<A>,
        A: Serialize,
    {
        self.with(&CallOptions::default()).imap(f, inputs)
    }

    /// Like [`imap`](Pool::imap), but results come in the order they finish, like Python's
    /// `Pool.imap_unordered`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let pool = Pool::new(2).unwrap();
    /// let mut squares: Vec<u64> = pool.imap_unordered(square, 0..5).map(|r| r.unwrap()).collect();
    /// squares.sort();
    /// assert_eq!(squares, [0, 1, 4, 9, 16]);
    /// ```
    pub fn imap_unordered<F, A, I>(&self, f: F, inputs: I) -> IMap<'_, I::IntoIter, F::Output>
    where
        F: ProcessFn<(A,)>,
        I: IntoIterator,
        I::Item: Borrow<A>,
        A: Serialize,
    {
        self.with(&CallOptions::default()).imap_unordered(f, inputs)
    }

    /// The [`IMap`] of `f` over `inputs`, in input order if `ordered`.
    fn imap_of<F, A, I>(
        &self,
        f: F,
        inputs: I,
        options: &CallOptions,
        ordered: bool,
    ) -> IMap<'_, I::IntoIter, F::Output>
    where
        F: ProcessFn<(A,)>,
        I: IntoIterator,
        I::Item: Borrow<A>,
        A: Serialize,
    {
        // In a forked copy, or with options that cannot work, the iterator yields the error and
        // ends.
        let function = self
            .owner
            .check(Handle::Pool)
            .and_then(|()| options.check())
            .and_then(|()| registry::lookup(&f));
        IMap::new(
            &self.shared,
            self.processes(),
            function,
            inputs.into_iter(),
            options,
            ordered,
            single_arguments::<A, I::Item>,
        )
    }

    /// Takes no more work; the workers exit once the work already queued is done. Submitting
    /// afterwards fails with [`is_closed`](Error::is_closed). Does nothing in a forked copy of
    /// the process that built the pool (see [`Pool`]): the pool is the original's to close.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn one() -> u8 {
    ///     1
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let pending = pool.apply_async(one, ());
    /// pool.close();
    /// pool.join().unwrap();
    /// assert_eq!(pending.get().unwrap(), 1); // queued work finished
    /// ```
    pub fn close(&self) {
        if self.owner.is_here() {
            self.shared.close();
        }
    }

    /// Stops at once: queued work fails with [`is_closed`](Error::is_closed), running work is
    /// killed with its workers. Does nothing in a forked copy of the process that built the
    /// pool (see [`Pool`]): the workers are the original's.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn forever() {
    ///     loop {
    ///         std::thread::sleep(Duration::from_secs(1));
    ///     }
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let stuck = pool.apply_async(forever, ());
    /// pool.terminate();
    /// pool.join().unwrap();
    /// assert!(stuck.get().unwrap_err().is_closed());
    /// ```
    pub fn terminate(&self) {
        if self.owner.is_here() {
            self.shared.terminate();
        }
    }

    /// Python 3.14's `ProcessPoolExecutor.terminate_workers()`: [`terminate`](Pool::terminate),
    /// but each worker is sent SIGTERM, not SIGKILL, so a task that handles SIGTERM can clean
    /// up. As after `terminate`, the pool takes no more work ([`is_closed`](Error::is_closed)),
    /// no worker is replaced, and queued tasks fail with `is_closed`. A running task fails with
    /// `is_closed` when its worker dies of the signal (the default for a worker); one that
    /// handles SIGTERM and returns first gives its result, and its worker then exits. A worker
    /// whose task ignores SIGTERM runs on: [`join`](Pool::join) waits for it, so bound the wait
    /// with [`join_timeout`](Pool::join_timeout) and follow up with
    /// [`kill_workers`](Pool::kill_workers). On a pool over MPI ranks it is `terminate`: the
    /// ranks end their workers. Does nothing in a forked copy of the process that built the
    /// pool (see [`Pool`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn forever() {
    ///     loop {
    ///         std::thread::sleep(Duration::from_secs(1));
    ///     }
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let stuck = pool.apply_async(forever, ());
    /// std::thread::sleep(Duration::from_millis(200)); // let it start
    /// pool.terminate_workers();
    /// if pool.join_timeout(Duration::from_secs(30)).is_err() {
    ///     pool.kill_workers(); // a worker that ignored SIGTERM
    ///     pool.join().unwrap();
    /// }
    /// assert!(stuck.get().unwrap_err().is_closed());
    /// ```
    pub fn terminate_workers(&self) {
        if self.owner.is_here() {
            self.shared.terminate_with(Signal::TERM);
        }
    }

    /// Python 3.14's `ProcessPoolExecutor.kill_workers()`: the same as
    /// [`terminate`](Pool::terminate), under Python's name. Every worker is sent SIGKILL, which
    /// no task can handle: running and queued tasks fail with [`is_closed`](Error::is_closed),
    /// no worker is replaced, the pool takes no more work, and [`join`](Pool::join) returns
    /// once the workers are reaped. Also ends workers that ignored
    /// [`terminate_workers`](Pool::terminate_workers). Does nothing in a forked copy of the
    /// process that built the pool (see [`Pool`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn forever() {
    ///     loop {
    ///         std::thread::sleep(Duration::from_secs(1));
    ///     }
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let stuck = pool.apply_async(forever, ());
    /// pool.kill_workers();
    /// pool.join().unwrap();
    /// assert!(stuck.get().unwrap_err().is_closed());
    /// ```
    pub fn kill_workers(&self) {
        self.terminate();
    }

    /// Waits until every worker has exited and been reaped. Call [`close`](Pool::close) or
    /// [`terminate`](Pool::terminate) first; otherwise this returns an error at once rather
    /// than wait forever.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = mp_runtime::Pool::new(1).unwrap();
    /// assert!(pool.join().is_err()); // still open
    /// pool.close();
    /// pool.join().unwrap();
    /// ```
    pub fn join(&self) -> Result<()> {
        self.owner.check(Handle::Pool)?;
        if !self.shared.is_closed() {
            return Err(Error::usage(
                "join waits for the workers to exit: call close() or terminate() first",
            ));
        }
        self.join_drivers_within(None)
    }

    /// [`join`](Pool::join), waiting at most `timeout`: fails with
    /// [`is_timeout`](Error::is_timeout) if the workers have not all exited and been reaped
    /// by then (they go on; call again). Like `join`, it needs [`close`](Pool::close) or
    /// [`terminate`](Pool::terminate) first.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let pending = pool.apply_async(nap, (500,));
    /// pool.close();
    /// assert!(pool.join_timeout(Duration::from_millis(1)).unwrap_err().is_timeout());
    /// pool.join_timeout(Duration::from_secs(30)).unwrap();
    /// assert_eq!(pending.get().unwrap(), 500);
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.owner.check(Handle::Pool)?;
        if !self.shared.is_closed() {
            return Err(Error::usage(
                "join_timeout waits for the workers to exit: call close() or terminate() first",
            ));
        }
        self.join_drivers_within(Some(timeout))
    }

    /// Waits until every driver thread has finished, for at most `timeout` (`None`: as long
    /// as it takes), then joins them. The threads stay in the list until all have finished, so
    /// that a `join` beside this one never finds the list empty too early and returns while
    /// workers still run.
    fn join_drivers_within(&self, timeout: Option<Duration>) -> Result<()> {
        // A timeout too long to reach (`Duration::MAX`) waits as long as it takes.
        let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
        // std has no timed join: the drivers are polled, often at first (a pool ends quickly
        // once closed), then every few milliseconds.
        let mut pause = Duration::from_micros(100);
        loop {
            {
                let mut drivers = lock(&self.drivers);
                if drivers.iter().all(JoinHandle::is_finished) {
                    // Finished threads join at once, under the lock or not.
                    self.count_panics(std::mem::take(&mut *drivers));
                    return self.driver_panics();
                }
            }
            let now = Instant::now();
            if let (Some(at), Some(timeout)) = (deadline, timeout) {
                if now >= at {
                    return Err(Error::timeout(
                        "the pool's workers to exit (they go on: join again)",
                        timeout,
                    ));
                }
                std::thread::sleep(pause.min(at - now));
            } else {
                std::thread::sleep(pause);
            }
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }
}

impl Pool {
    /// The error of a pool some of whose threads panicked: each `join` says it, not only the
    /// first.
    fn driver_panics(&self) -> Result<()> {
        let panicked = self.panicked.load(Ordering::SeqCst);
        if panicked == 0 {
            return Ok(());
        }
        Err(Error::protocol(format!(
            "{panicked} pool thread(s) panicked (a bug in mp: please report it); their tasks \
             failed and their workers were ended"
        )))
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if !self.owner.is_here() {
            // A forked copy: the workers are the original's, and the threads to join are not
            // in this process. What the pool holds is left unfreed, not dropped: the queue's
            // tasks would report through locks that a thread of the original may have held at
            // the fork, so the shared state keeps one count forever, and the handles of
            // threads this process lacks are never detached.
            std::mem::forget(self.shared.clone());
            std::mem::forget(self.callbacks.clone());
            let drivers = self.drivers.get_mut().unwrap_or_else(|e| e.into_inner());
            std::mem::forget(std::mem::take(drivers));
            return;
        }
        self.terminate();
        let _ = self.join();
        // Every result is complete now, and its callbacks queued.
        self.callbacks.close();
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut pool = f.debug_struct("Pool");
        pool.field("processes", &self.processes());
        if self.owner.is_here() {
            pool.field("closed", &self.shared.is_closed());
        } else {
            pool.field("owner", &self.owner.pid());
        }
        pool.finish()
    }
}
