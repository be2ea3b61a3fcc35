//! Sandboxed workers: [`Sandbox`], what a worker may reach, and [`SandboxReport`], what its
//! kernel enforces; [`enter`], the worker's side, which puts it under Landlock, a seccomp filter
//! and no privileges before it serves any call.
//!
//! Uses `sys` and `wire`; used by `worker` (the worker's side) and `spawn` (the parent's side:
//! the request, and the wait for its answer).

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::base::{Error, Kind, Result};
use crate::sys;
use crate::sys::error::Cause;
use crate::sys::landlock::{Access, Ruleset};
use crate::wire::protocol::SandboxRules;

/// What a sandboxed worker may reach: the paths given, and nothing else of the file system, the
/// network, or the processes around it.
///
/// Give it to [`PoolBuilder::sandbox`](crate::PoolBuilder::sandbox) or
/// [`ProcessBuilder::sandbox`](crate::ProcessBuilder::sandbox). Each worker enters it as it
/// starts, before it runs the pool's initializer or any task; the parent never does. Inside, a
/// worker:
///
/// - reads and writes only below the paths given ([`read_only`](Sandbox::read_only),
///   [`read_write`](Sandbox::read_write)), and reads the files of its own program and
///   libraries (for backtraces); `/proc`, `/dev`, the home directory and the rest are closed;
/// - makes no socket, connects none and binds no TCP port, unless
///   [`allow_network`](Sandbox::allow_network);
/// - starts no program (`execve`), and can neither signal, trace, nor read the memory or
///   environment of a process outside it, nor connect to an abstract Unix socket made
///   outside it;
/// - keeps no capability, even when run as root, and gains none (no-new-privileges);
/// - passes all of it on to every process it forks.
///
/// Everything mp does keeps working inside: arguments and results of any size, handles passed
/// as arguments (pipes, queues, locks, shared values, arrays and memory), logs, time limits,
/// retries, `max_tasks_per_child`, panics, the fork server and MPI ranks' pools. A task inside
/// cannot start processes of its own ([`spawn!`](crate::spawn), a `Pool`): those execute the
/// program again.
///
/// A kernel that cannot enforce all of it (Landlock ABI 6, Linux 6.12, and seccomp are needed)
/// makes the pool's `build` fail with an error whose [`is_sandbox`](crate::Error::is_sandbox)
/// is true and that names what is missing, unless [`best_effort`](Sandbox::best_effort) was
/// asked for; [`Pool::sandbox_report`](crate::Pool::sandbox_report) then says what holds. The
/// README's "Sandboxing" section has the threat model.
///
/// # Examples
///
/// ```
/// use mp_runtime::{process_fn, Pool, Sandbox};
///
/// #[process_fn]
/// fn read(path: String) -> Result<String, String> {
///     std::fs::read_to_string(&path).map_err(|e| e.to_string())
/// }
///
/// let inputs = std::env::temp_dir().join(format!("mp-doc-sandbox-{}", std::process::id()));
/// std::fs::create_dir_all(&inputs).unwrap();
/// std::fs::write(inputs.join("a.txt"), "allowed").unwrap();
///
/// let pool = Pool::builder()
///     .processes(1)
///     .sandbox(Sandbox::new().read_only(&inputs))
///     .build()
///     .unwrap();
/// let a = inputs.join("a.txt").to_string_lossy().into_owned();
/// assert_eq!(pool.apply(read, (a,)).unwrap(), Ok("allowed".to_string()));
/// // Outside the paths given, even a file everyone may read is closed.
/// assert!(pool.apply(read, ("/etc/passwd".to_string(),)).unwrap().is_err());
/// std::fs::remove_dir_all(&inputs).unwrap();
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sandbox {
    read_only: Vec<PathBuf>,
    read_write: Vec<PathBuf>,
    network: bool,
    best_effort: bool,
}

impl Sandbox {
    /// A sandbox that allows nothing beyond what a worker needs to run and to talk to its
    /// parent: no file, no network.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool, Sandbox};
    ///
    /// #[process_fn]
    /// fn double(x: u32) -> u32 {
    ///     2 * x
    /// }
    ///
    /// let pool = Pool::builder().processes(1).sandbox(Sandbox::new()).build().unwrap();
    /// assert_eq!(pool.map(double, 1..4).unwrap(), vec![2, 4, 6]);
    /// ```
    pub fn new() -> Sandbox {
        Sandbox::default()
    }

    /// Lets workers read files and list directories below `path` (or read `path`, a file). A
    /// relative path is taken from the current directory now. The path must exist when the
    /// pool is built, or `build` fails naming it; its links are followed then, once, and a
    /// worker follows none planted there later. It may not lie at or below a
    /// [`read_write`](Sandbox::read_write) path (it would be writable): `build` refuses that.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool, Sandbox};
    ///
    /// #[process_fn]
    /// fn list(dir: String) -> Result<usize, String> {
    ///     Ok(std::fs::read_dir(dir).map_err(|e| e.to_string())?.count())
    /// }
    ///
    /// let dir = std::env::temp_dir().join(format!("mp-doc-read-only-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// std::fs::write(dir.join("one"), "1").unwrap();
    /// let pool = Pool::builder()
    ///     .processes(1)
    ///     .sandbox(Sandbox::new().read_only(&dir))
    ///     .build()
    ///     .unwrap();
    /// let name = dir.to_string_lossy().into_owned();
    /// assert_eq!(pool.apply(list, (name,)).unwrap(), Ok(1));
    /// std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    #[must_use]
    pub fn read_only(mut self, path: impl AsRef<Path>) -> Sandbox {
        self.read_only.push(absolute(path.as_ref()));
        self
    }

    /// Lets workers read, write, create, rename and remove files and directories below `path`
    /// (or read and write `path`, a file). A relative path is taken from the current directory
    /// now. The path must exist when the pool is built, or `build` fails naming it; its links
    /// are followed then, once, and a worker follows none planted there later.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool, Sandbox};
    ///
    /// #[process_fn]
    /// fn save(path: String, text: String) -> Result<(), String> {
    ///     std::fs::write(path, text).map_err(|e| e.to_string())
    /// }
    ///
    /// let out = std::env::temp_dir().join(format!("mp-doc-read-write-{}", std::process::id()));
    /// std::fs::create_dir_all(&out).unwrap();
    /// let pool = Pool::builder()
    ///     .processes(1)
    ///     .sandbox(Sandbox::new().read_write(&out))
    ///     .build()
    ///     .unwrap();
    /// let file = out.join("result.txt").to_string_lossy().into_owned();
    /// pool.apply(save, (file.clone(), "done".to_string())).unwrap().unwrap();
    /// assert_eq!(std::fs::read_to_string(&file).unwrap(), "done");
    /// std::fs::remove_dir_all(&out).unwrap();
    /// ```
    #[must_use]
    pub fn read_write(mut self, path: impl AsRef<Path>) -> Sandbox {
        self.read_write.push(absolute(path.as_ref()));
        self
    }

    /// Lets workers use the network: make sockets of any kind, connect them and bind them.
    /// With it, a worker can also reach local services on Unix sockets named by a path; it
    /// still cannot connect to an abstract Unix socket made outside it.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool, Sandbox};
    ///
    /// #[process_fn]
    /// fn bind() -> bool {
    ///     std::net::TcpListener::bind("127.0.0.1:0").is_ok()
    /// }
    ///
    /// let closed = Pool::builder().processes(1).sandbox(Sandbox::new()).build().unwrap();
    /// assert!(!closed.apply(bind, ()).unwrap());
    /// let open = Sandbox::new().allow_network();
    /// let open = Pool::builder().processes(1).sandbox(open).build().unwrap();
    /// assert!(open.apply(bind, ()).unwrap());
    /// ```
    #[must_use]
    pub fn allow_network(mut self) -> Sandbox {
        self.network = true;
        self
    }

    /// Enters with what the kernel can enforce instead of refusing what it cannot (an older
    /// kernel, Landlock not enabled, seccomp refused):
    /// [`Pool::sandbox_report`](crate::Pool::sandbox_report) then says what holds.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{Pool, Sandbox};
    ///
    /// let pool = Pool::builder()
    ///     .processes(1)
    ///     .sandbox(Sandbox::new().best_effort())
    ///     .build()
    ///     .unwrap();
    /// let report = pool.sandbox_report().unwrap();
    /// // Whatever this kernel enforces is listed; on Linux 6.12 or later, everything.
    /// assert_eq!(report.is_complete(), report.not_enforced().next().is_none());
    /// ```
    #[must_use]
    pub fn best_effort(mut self) -> Sandbox {
        self.best_effort = true;
        self
    }

    /// The rules as they cross to a worker.
    /// This sandbox with each path made canonical (absolute, without links or `..`), once, in
    /// the parent: each worker then opens exactly these paths and refuses to follow a link
    /// planted there later (by a worker that may write above one), which would widen its
    /// sandbox. Fails on a path that does not exist, and on a `read_only` path at or below a
    /// `read_write` one: Landlock only adds rights down a tree, so it would be writable.
    pub(crate) fn resolved(&self) -> Result<Sandbox> {
        let canonical = |paths: &[PathBuf], setter: &str| -> Result<Vec<PathBuf>> {
            (paths.iter())
                .map(|path| {
                    std::fs::canonicalize(path).map_err(|e| {
                        Error::new(Kind::Sandbox(format!(
                            "the sandbox cannot allow {}, given to `Sandbox::{setter}`: {e}; give \
                             a path that exists",
                            path.display()
                        )))
                    })
                })
                .collect()
        };
        let read_only = canonical(&self.read_only, "read_only")?;
        let read_write = canonical(&self.read_write, "read_write")?;
        for inner in &read_only {
            if let Some(outer) = read_write.iter().find(|outer| inner.starts_with(outer)) {
                return Err(Error::new(Kind::Sandbox(format!(
                    "the sandbox cannot keep {} read-only: it is at or below {}, given to \
                     `Sandbox::read_write`, and a worker may write everything below that; give \
                     read_write only the folders that may be written, beside the read-only ones",
                    inner.display(),
                    outer.display()
                ))));
            }
        }
        Ok(Sandbox {
            read_only,
            read_write,
            ..self.clone()
        })
    }

    pub(crate) fn rules(&self) -> SandboxRules {
        let bytes = |paths: &[PathBuf]| -> Vec<Vec<u8>> {
            paths
                .iter()
                .map(|path| path.as_os_str().as_bytes().to_vec())
                .collect()
        };
        SandboxRules {
            read_only: bytes(&self.read_only),
            read_write: bytes(&self.read_write),
            network: self.network,
            best_effort: self.best_effort,
        }
    }

    /// The sandbox that `rules` describe (as an MPI rank received them).
    #[cfg(feature = "mpi")]
    pub(crate) fn from_rules(rules: &SandboxRules) -> Sandbox {
        Sandbox {
            read_only: rules.read_only.iter().map(|p| path_of(p).into()).collect(),
            read_write: rules.read_write.iter().map(|p| path_of(p).into()).collect(),
            network: rules.network,
            best_effort: rules.best_effort,
        }
    }
}

/// `path` from the current directory, as it is now; as it is where that cannot be told.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn path_of(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

/// One thing a sandbox keeps a worker from, which a kernel may or may not enforce (see
/// [`SandboxReport`]).
///
/// # Examples
///
/// ```
/// use mp_runtime::Restriction;
///
/// assert_eq!(Restriction::FileSystem.to_string(), "file system");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Restriction {
    /// Files and directories outside the paths given (Landlock ABI 3, Linux 6.2: earlier ABIs
    /// cannot keep a read-only file from being truncated).
    FileSystem,
    /// Sockets: none made, connected or bound, unless allowed (Landlock ABI 4, Linux 6.7,
    /// for TCP, and seccomp for the rest).
    Network,
    /// Signals to processes outside the worker (Landlock ABI 6, Linux 6.12).
    Signals,
    /// Abstract Unix sockets made outside the worker (Landlock ABI 6, Linux 6.12).
    AbstractSockets,
    /// `execve`, `ptrace`, reading other processes' memory, io_uring and the key rings
    /// (seccomp).
    SystemCalls,
}

impl fmt::Display for Restriction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Restriction::FileSystem => "file system",
            Restriction::Network => "network",
            Restriction::Signals => "signals",
            Restriction::AbstractSockets => "abstract sockets",
            Restriction::SystemCalls => "system calls",
        })
    }
}

/// What a sandboxed worker's kernel enforces, from
/// [`Pool::sandbox_report`](crate::Pool::sandbox_report) or
/// [`Process::sandbox_report`](crate::Process::sandbox_report): each [`Restriction`] is
/// enforced or not, with why not. The network is in neither list under
/// [`allow_network`](Sandbox::allow_network). Its `Display` says it all in one line.
///
/// # Examples
///
/// ```
/// use mp_runtime::{Pool, Restriction, Sandbox};
///
/// let pool = Pool::builder().processes(1).sandbox(Sandbox::new()).build().unwrap();
/// let report = pool.sandbox_report().unwrap();
/// // Without `best_effort`, a pool is built only where everything holds.
/// assert!(report.is_complete());
/// assert!(report.enforces(Restriction::FileSystem));
/// assert!(report.to_string().starts_with("enforced: file system"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxReport {
    landlock_abi: Option<u32>,
    enforced: Vec<Restriction>,
    not_enforced: Vec<(Restriction, String)>,
}

impl SandboxReport {
    /// What is enforced.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{Pool, Restriction, Sandbox};
    ///
    /// let open = Sandbox::new().allow_network();
    /// let pool = Pool::builder().processes(1).sandbox(open).build().unwrap();
    /// let enforced = pool.sandbox_report().unwrap().enforced().to_vec();
    /// assert!(enforced.contains(&Restriction::SystemCalls));
    /// assert!(!enforced.contains(&Restriction::Network)); // allowed, so not enforced
    /// ```
    pub fn enforced(&self) -> &[Restriction] {
        &self.enforced
    }

    /// Whether `restriction` is enforced.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{Pool, Restriction, Sandbox};
    ///
    /// let pool = Pool::builder().processes(1).sandbox(Sandbox::new()).build().unwrap();
    /// assert!(pool.sandbox_report().unwrap().enforces(Restriction::Signals));
    /// ```
    pub fn enforces(&self, restriction: Restriction) -> bool {
        self.enforced.contains(&restriction)
    }

    /// What is not enforced, each with why (what the kernel lacks).
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{Pool, Sandbox};
    ///
    /// let sandbox = Sandbox::new().best_effort();
    /// let pool = Pool::builder().processes(1).sandbox(sandbox).build().unwrap();
    /// for (restriction, why) in pool.sandbox_report().unwrap().not_enforced() {
    ///     eprintln!("not enforced: {restriction}: {why}");
    /// }
    /// ```
    pub fn not_enforced(&self) -> impl Iterator<Item = (Restriction, &str)> + '_ {
        self.not_enforced
            .iter()
            .map(|(restriction, why)| (*restriction, why.as_str()))
    }

    /// Whether everything asked for is enforced.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{Pool, Sandbox};
    ///
    /// let pool = Pool::builder().processes(1).sandbox(Sandbox::new()).build().unwrap();
    /// assert!(pool.sandbox_report().unwrap().is_complete());
    /// ```
    pub fn is_complete(&self) -> bool {
        self.not_enforced.is_empty()
    }

    /// The Landlock ABI of the worker's kernel (1 on Linux 5.13 up to 7 on 6.15), `None`
    /// where it has no Landlock.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{Pool, Sandbox};
    ///
    /// let pool = Pool::builder().processes(1).sandbox(Sandbox::new()).build().unwrap();
    /// assert!(pool.sandbox_report().unwrap().landlock_abi().unwrap() >= 6);
    /// ```
    pub fn landlock_abi(&self) -> Option<u32> {
        self.landlock_abi
    }

    /// What the kernel can enforce of a sandbox that allows the network or not.
    fn of(kernel: &Kernel, network: bool) -> SandboxReport {
        let mut report = SandboxReport {
            landlock_abi: kernel.landlock.as_ref().ok().copied(),
            enforced: Vec::new(),
            not_enforced: Vec::new(),
        };
        let has = |since: u32, what: &str, linux: &str| -> Result<(), String> {
            match &kernel.landlock {
                Ok(abi) if *abi >= since => Ok(()),
                Ok(abi) => Err(format!(
                    "{what} needs Landlock ABI {since} (Linux {linux}); this kernel has ABI {abi}"
                )),
                Err(why) => Err(why.clone()),
            }
        };
        report.note(
            Restriction::FileSystem,
            has(3, "keeping read-only files from being truncated", "6.2"),
        );
        if !network {
            let sockets = match &kernel.seccomp {
                Ok(()) => Ok(()),
                Err(why) => Err(format!("{why}, so sockets cannot be refused")),
            };
            report.note(
                Restriction::Network,
                sockets.and(has(4, "refusing TCP connections", "6.7")),
            );
        }
        report.note(Restriction::Signals, has(6, "scoping signals", "6.12"));
        report.note(
            Restriction::AbstractSockets,
            has(6, "scoping abstract Unix sockets", "6.12"),
        );
        report.note(Restriction::SystemCalls, kernel.seccomp.clone());
        report
    }

    fn note(&mut self, restriction: Restriction, held: Result<(), String>) {
        match held {
            Ok(()) => self.enforced.push(restriction),
            Err(why) => self.not_enforced.push((restriction, why)),
        }
    }

    /// Why a sandbox that must be whole is refused.
    fn refusal(&self) -> String {
        let missing: Vec<String> = self
            .not_enforced()
            .map(|(restriction, why)| format!("{restriction} ({why})"))
            .collect();
        format!(
            "this kernel cannot enforce the sandbox: {}; run on a kernel that can (Linux 6.12 or \
             later, with Landlock enabled and seccomp), or call `Sandbox::best_effort()` to run \
             with what it can enforce",
            missing.join("; ")
        )
    }
}

impl fmt::Display for SandboxReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("enforced: ")?;
        if self.enforced.is_empty() {
            f.write_str("nothing")?;
        }
        for (at, restriction) in self.enforced.iter().enumerate() {
            let comma = if at == 0 { "" } else { ", " };
            write!(f, "{comma}{restriction}")?;
        }
        if !self.not_enforced.is_empty() {
            f.write_str("; not enforced: ")?;
            for (at, (restriction, why)) in self.not_enforced.iter().enumerate() {
                let comma = if at == 0 { "" } else { "; " };
                write!(f, "{comma}{restriction} ({why})")?;
            }
        }
        Ok(())
    }
}

/// A pool's sandbox, and the report of the first of its workers that entered it.
pub(crate) struct Sandboxing {
    pub sandbox: Sandbox,
    report: OnceLock<SandboxReport>,
}

impl Sandboxing {
    pub(crate) fn new(sandbox: Sandbox) -> Sandboxing {
        Sandboxing {
            sandbox,
            report: OnceLock::new(),
        }
    }

    /// Keeps a worker's report, if none is kept yet: every worker of a pool runs on one kernel
    /// (or, over MPI ranks, on kernels the first one stands for).
    pub(crate) fn record(&self, report: SandboxReport) {
        let _ = self.report.set(report);
    }

    pub(crate) fn report(&self) -> Option<&SandboxReport> {
        self.report.get()
    }
}

/// What this kernel offers, or why not.
struct Kernel {
    landlock: Result<u32, String>,
    seccomp: Result<(), String>,
}

impl Kernel {
    fn probe() -> Kernel {
        let landlock = sys::landlock::abi().map_err(|e| match Cause::of(&e) {
            Some(Cause::NoSuchCall) => "this kernel has no Landlock (Linux 5.13 or later, built \
                                        with CONFIG_SECURITY_LANDLOCK)"
                .to_string(),
            Some(Cause::TurnedOff) => "Landlock is built into this kernel but not enabled (add \
                                       `landlock` to the kernel's `lsm=` boot parameter)"
                .to_string(),
            _ => format!("Landlock is refused ({e})"),
        });
        let seccomp = sys::seccomp::probe().map_err(|e| match Cause::of(&e) {
            Some(Cause::NoSuchCall | Cause::UnknownRequest) => {
                "this kernel has no seccomp filters (Linux 4.14 or later, built with \
                 CONFIG_SECCOMP_FILTER)"
                    .to_string()
            }
            _ if e.raw_os_error().is_none() => e.to_string(),
            _ => format!("seccomp is refused ({e})"),
        });
        Kernel { landlock, seccomp }
    }
}

/// Puts this worker in the sandbox `rules` describe: called by the worker, on its one thread,
/// before it serves any call. Returns what the kernel enforces, or why the worker cannot
/// enter (then it must exit): the kernel cannot enforce everything and best effort was not
/// asked for, a path given cannot be opened, or the worker runs other threads.
pub(crate) fn enter(rules: &SandboxRules) -> Result<SandboxReport, String> {
    let kernel = Kernel::probe();
    let report = SandboxReport::of(&kernel, rules.network);
    if !report.is_complete() && !rules.best_effort {
        return Err(report.refusal());
    }
    // Landlock and the dropped capabilities hold for the calling thread only.
    match sys::process::thread_count() {
        Ok(1) => {}
        Ok(threads) => {
            return Err(format!(
                "this worker runs {threads} threads before it enters its sandbox (a constructor \
                 of the program started them), and the sandbox would not hold for the others"
            ));
        }
        Err(e) => return Err(format!("this worker cannot count its threads: {e}")),
    }
    // Read while /proc is open: a barrier's holders are told apart by it.
    sys::process::own_start_time();
    // Only for a backtrace's names: a program whose files cannot be listed runs without them.
    let program = match kernel.landlock {
        Ok(_) => sys::process::program_files().unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    sys::process::forbid_new_privileges()
        .map_err(|e| format!("this worker cannot set no-new-privileges: {e}"))?;
    sys::process::drop_capabilities()
        .map_err(|e| format!("this worker cannot drop its capabilities: {e}"))?;
    if let Ok(abi) = kernel.landlock {
        let failed = |e: std::io::Error| format!("this worker cannot enter Landlock: {e}");
        let ruleset = Ruleset::new(abi, rules.network).map_err(failed)?;
        for file in &program {
            // Only for a backtrace's names: a file that cannot be named (a path the kernel
            // writes escaped) is left closed rather than keep the worker out.
            let _ = ruleset.allow(file, Access::Read);
        }
        let given = (rules.read_only.iter().map(|p| (path_of(p), Access::Read))).chain(
            rules
                .read_write
                .iter()
                .map(|p| (path_of(p), Access::ReadWrite)),
        );
        for (path, access) in given {
            ruleset.allow(path, access).map_err(|e| match Cause::of(&e) {
                Some(Cause::Loop) => format!(
                    "the sandbox cannot allow {}: it is, or passes through, a symbolic link now \
                     (it was not when the sandbox was built; a worker may have put it there), \
                     and following it could widen the sandbox; remove the link, or build the \
                     pool again with the path it should reach",
                    path.display()
                ),
                _ => format!(
                    "the sandbox cannot allow {}: {e}; give a path that exists",
                    path.display()
                ),
            })?;
        }
        ruleset.restrict_self().map_err(failed)?;
    }
    if kernel.seccomp.is_ok() {
        sys::seccomp::restrict(rules.network)
            .map_err(|e| format!("this worker cannot install its system-call filter: {e}"))?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(landlock: Result<u32, &str>, seccomp: Result<(), &str>) -> Kernel {
        Kernel {
            landlock: landlock.map_err(str::to_string),
            seccomp: seccomp.map_err(str::to_string),
        }
    }

    // Each restriction is claimed only from the ABI that brought it; the kernels this machine
    // does not run are described here.
    #[test]
    fn each_restriction_needs_its_abi() {
        let report = SandboxReport::of(&kernel(Ok(5), Ok(())), false);
        use Restriction::*;
        assert_eq!(report.enforced(), [FileSystem, Network, SystemCalls]);
        let missing: Vec<_> = report.not_enforced().collect();
        assert_eq!(
            missing,
            [
                (
                    Signals,
                    "scoping signals needs Landlock ABI 6 (Linux 6.12); this kernel has ABI 5"
                ),
                (
                    AbstractSockets,
                    "scoping abstract Unix sockets needs Landlock ABI 6 (Linux 6.12); this \
                     kernel has ABI 5"
                )
            ]
        );
        let report = SandboxReport::of(&kernel(Ok(2), Ok(())), false);
        assert_eq!(report.enforced(), [SystemCalls]);
        assert!(report.to_string().contains(
            "file system (keeping read-only files from being truncated needs Landlock ABI 3 \
             (Linux 6.2); this kernel has ABI 2); network (refusing TCP connections needs \
             Landlock ABI 4 (Linux 6.7); this kernel has ABI 2)"
        ));
        let report = SandboxReport::of(&kernel(Ok(7), Ok(())), false);
        assert!(report.is_complete());
        assert_eq!(report.landlock_abi(), Some(7));
    }

    #[test]
    fn an_allowed_network_is_neither_enforced_nor_missing() {
        let report = SandboxReport::of(&kernel(Ok(3), Err("no seccomp")), true);
        let missing: Vec<_> = report.not_enforced().map(|(r, _)| r).collect();
        assert!(!missing.contains(&Restriction::Network), "{report}");
        assert!(!report.enforces(Restriction::Network), "{report}");
        let report = SandboxReport::of(&kernel(Ok(7), Err("no seccomp")), false);
        let why = report
            .not_enforced()
            .find(|(r, _)| *r == Restriction::Network);
        assert_eq!(
            why.map(|(_, why)| why),
            Some("no seccomp, so sockets cannot be refused")
        );
    }

    #[test]
    fn a_refusal_names_what_is_missing_and_what_to_do() {
        let report = SandboxReport::of(&kernel(Err("no Landlock here"), Ok(())), false);
        let refusal = report.refusal();
        assert!(
            refusal.starts_with(
                "this kernel cannot enforce the sandbox: file system (no Landlock here); network"
            ),
            "{refusal}"
        );
        assert!(
            refusal.ends_with("to run with what it can enforce"),
            "{refusal}"
        );
        assert_eq!(report.landlock_abi(), None);
    }

    // A path that is not UTF-8 crosses whole.
    #[test]
    fn a_read_only_path_at_or_below_a_read_write_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("mp-resolved-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("work/inputs")).unwrap();
        let refused = [
            Sandbox::new()
                .read_write(dir.join("work"))
                .read_only(dir.join("work/inputs")),
            Sandbox::new()
                .read_only(dir.join("work"))
                .read_write(dir.join("work/./inputs/..")),
        ];
        for sandbox in refused {
            let err = sandbox.resolved().unwrap_err();
            assert!(
                err.is_sandbox() && err.to_string().contains("read-only"),
                "{err}"
            );
        }
        // The other way round narrows nothing: below a read-only folder, one may be written.
        let fine = Sandbox::new()
            .read_only(dir.join("work"))
            .read_write(dir.join("work/inputs"))
            .read_write(dir.join("work/inputs/../inputs"));
        let resolved = fine.resolved().unwrap();
        assert_eq!(
            resolved.read_write[1],
            dir.join("work/inputs").canonicalize().unwrap()
        );
        let missing = Sandbox::new().read_only(dir.join("missing")).resolved();
        assert!(missing.unwrap_err().to_string().contains("missing"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn paths_cross_as_bytes() {
        let odd = Path::new(OsStr::from_bytes(b"/tmp/\xff-odd"));
        let rules = Sandbox::new().read_only(odd).rules();
        assert_eq!(path_of(&rules.read_only[0]), odd);
        let relative = Sandbox::new().read_write("here").rules();
        assert!(path_of(&relative.read_write[0]).is_absolute());
    }
}
