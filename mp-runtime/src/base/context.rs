//! Facts about this process and machine.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock, PoisonError};

/// The number of CPUs this process may run on: its CPU affinity and its cgroup's CPU quota
/// are respected (Python's `os.cpu_count()` counts every CPU of the machine instead). At
/// least 1.
///
/// # Examples
///
/// ```
/// assert!(mp_runtime::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Set in each rank of an MPI job, and so inherited by the workers each rank starts.
pub(crate) const RANK_VAR: &str = "MP_RUNTIME_RANK";

/// The rank of the MPI job that this process belongs to: in a program started by `mpirun`
/// (with the `mpi` feature), the rank itself and every worker process it starts know it, so a
/// task can tell where it ran. `None` outside an MPI job.
///
/// # Examples
///
/// ```
/// // This example was not started by an MPI launcher.
/// assert_eq!(mp_runtime::mpi_rank(), None);
/// ```
pub fn mpi_rank() -> Option<u32> {
    std::env::var(RANK_VAR).ok()?.parse().ok()
}

/// A process as [`current_process`], [`parent_process`] and [`active_children`] describe it.
///
/// # Examples
///
/// ```
/// use mp_runtime::{current_process, process_fn, spawn, ProcessInfo};
///
/// #[process_fn]
/// fn who_started_me() -> (String, u32) {
///     let parent: ProcessInfo = mp_runtime::parent_process().unwrap();
///     (parent.name().to_string(), parent.pid())
/// }
///
/// let me = current_process();
/// let (name, pid) = spawn!(who_started_me).unwrap().join().unwrap();
/// assert_eq!((name.as_str(), pid), (me.name(), me.pid()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    name: String,
    pid: u32,
}

impl ProcessInfo {
    /// Its name: `MainProcess` for the program's first process, `Process-N` for one started
    /// with [`spawn!`](crate::spawn), `SpawnPoolWorker-N` for a pool's worker, as in Python.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(mp_runtime::current_process().name(), "MainProcess");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(mp_runtime::current_process().pid(), std::process::id());
    /// ```
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

/// This process's name, its parent's, and its depth, set once in a worker before `main` would
/// run.
static IDENTITY: OnceLock<Identity> = OnceLock::new();

struct Identity {
    name: String,
    parent: ProcessInfo,
    /// How many mp processes are above this one: 1 for a child of the main process.
    depth: usize,
}

/// The children this process started (re-executed, or forked by its fork server as its own), by
/// pid: their names.
static CHILDREN: Mutex<BTreeMap<u32, String>> = Mutex::new(BTreeMap::new());

pub(crate) fn set_identity(name: &str, parent_name: &str, parent_pid: u32, depth: usize) {
    let parent = ProcessInfo {
        name: parent_name.to_string(),
        pid: parent_pid,
    };
    let _ = IDENTITY.set(Identity {
        name: name.to_string(),
        parent,
        depth,
    });
}

/// How many mp processes started this one, one inside the other: 0 in the main process, 1 in
/// its workers, 2 in the workers of a pool that a task of theirs built, and so on.
pub(crate) fn depth() -> usize {
    IDENTITY.get().map_or(0, |identity| identity.depth)
}

pub(crate) fn child_started(pid: u32, name: &str) {
    CHILDREN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(pid, name.to_string());
}

/// Forgets a child that has been reaped, so the table holds only children that may still run.
pub(crate) fn child_ended(pid: u32) {
    CHILDREN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&pid);
}

/// Whether `pid` is in the table of children, for tests of its pruning.
#[cfg(test)]
pub(crate) fn is_known_child(pid: u32) -> bool {
    CHILDREN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains_key(&pid)
}

/// This process, Python's `multiprocessing.current_process()`.
///
/// # Examples
///
/// ```
/// use mp_runtime::{current_process, process_fn, spawn};
///
/// #[process_fn]
/// fn whoami() -> (String, u32) {
///     let me = current_process();
///     (me.name().to_string(), me.pid())
/// }
///
/// let p = spawn!(whoami).unwrap();
/// let (name, pid) = (p.name().to_string(), p.pid());
/// assert_eq!(p.join().unwrap(), (name, pid));
/// ```
pub fn current_process() -> ProcessInfo {
    let name = IDENTITY
        .get()
        .map_or("MainProcess", |identity| identity.name.as_str());
    ProcessInfo {
        name: name.to_string(),
        pid: std::process::id(),
    }
}

/// The process that started this one, when it is an mp child; `None` in the main process,
/// Python's `multiprocessing.parent_process()`.
///
/// # Examples
///
/// ```
/// use mp_runtime::{parent_process, process_fn, spawn};
///
/// #[process_fn]
/// fn parent_pid() -> Option<u32> {
///     parent_process().map(|p| p.pid())
/// }
///
/// assert!(parent_process().is_none());
/// assert_eq!(spawn!(parent_pid).unwrap().join().unwrap(), Some(std::process::id()));
/// ```
pub fn parent_process() -> Option<ProcessInfo> {
    IDENTITY.get().map(|identity| identity.parent.clone())
}

/// The children this process started ([`spawn!`](crate::spawn) processes and pool workers)
/// that are still running, Python's `multiprocessing.active_children()`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mp_runtime::{active_children, process_fn, spawn};
///
/// #[process_fn]
/// fn nap() {
///     std::thread::sleep(Duration::from_secs(30));
/// }
///
/// let mut p = spawn!(nap).unwrap();
/// assert!(active_children().iter().any(|c| c.pid() == p.pid()));
/// p.kill().unwrap();
/// assert!(!active_children().iter().any(|c| c.pid() == p.pid()));
/// ```
pub fn active_children() -> Vec<ProcessInfo> {
    let mut children = CHILDREN.lock().unwrap_or_else(PoisonError::into_inner);
    children.retain(|&pid, _| {
        crate::sys::Pid::from_raw(pid).is_some_and(crate::sys::process::is_running_child)
    });
    children
        .iter()
        .map(|(&pid, name)| ProcessInfo {
            name: name.clone(),
            pid,
        })
        .collect()
}

/// This binary's path, for messages.
pub(crate) fn current_binary() -> String {
    std::env::current_exe()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|_| "this binary".to_string())
}
