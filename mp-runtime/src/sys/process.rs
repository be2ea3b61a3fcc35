//! This process and its children: parent-death signal, resource limits, thread identity,
//! fork, and whether this is a secure-execution (setuid) process.

use std::io;

use rustix::process::{Pid, Resource, Rlimit, Signal, WaitOptions};

/// Arms SIGKILL for when this process's parent (the thread that started it) ends.
pub(crate) fn die_with_parent() -> io::Result<()> {
    Ok(rustix::process::set_parent_process_death_signal(Some(
        Signal::KILL,
    ))?)
}

/// Whether a process with this pid exists (a zombie counts), as far as a signal 0 can tell.
pub(crate) fn exists(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        // It exists, and is not ours to signal.
        Err(errno) => errno != rustix::io::Errno::SRCH,
    }
}

/// Whether the calling thread is the process's main thread (the one whose end ends it).
pub(crate) fn is_main_thread() -> bool {
    rustix::thread::gettid() == rustix::process::getpid()
}

/// Whether this process runs with privileges its starter does not have (setuid, setgid or
/// file capabilities): the kernel's AT_SECURE, as the dynamic loader sees it.
pub(crate) fn is_secure_execution() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector the kernel gave this process, which
    // lives as long as it; an unknown type is 0, which here means "not secure".
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// Caps the process's data segment (RLIMIT_DATA: heap and private anonymous maps).
pub(crate) fn limit_data(bytes: u64) -> io::Result<()> {
    let limit = Rlimit {
        current: Some(bytes),
        maximum: Some(bytes),
    };
    Ok(rustix::process::setrlimit(Resource::Data, limit)?)
}

/// The raw wait status of a child of this process that has ended, reaping it; `None` when
/// none has ended (or there are none).
pub(crate) fn reap_any() -> Option<(u32, i32)> {
    match rustix::process::waitpid(None, WaitOptions::NOHANG) {
        Ok(Some((pid, status))) => Some((pid.as_raw_nonzero().get() as u32, status.as_raw())),
        _ => None,
    }
}

/// Which side of a [`fork`] this is, or why there was none.
pub(crate) enum Forked {
    Child,
    Parent(u32),
    /// This process has this many threads: a child would inherit locks held by threads it
    /// does not have, and could deadlock on the first allocation.
    Refused {
        threads: usize,
    },
}

/// Forks this process if it has one thread: then the child is a full copy that may run
/// anything.
pub(crate) fn fork() -> io::Result<Forked> {
    let threads = thread_count()?;
    if threads != 1 {
        return Ok(Forked::Refused { threads });
    }
    // SAFETY: this process has one thread, the caller (counted above; no other thread can
    // have started since, for there is none to start it), so no lock is held by a thread the
    // child lacks, and the child may run any code.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as u32)),
    }
}

/// How many threads this process has, from /proc/self/task.
fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// This process's effective user id.
pub(crate) fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Reads and removes the environment variable `name`, so that processes this one starts do
/// not inherit it. Only for the early entry, before `main`.
pub(crate) fn take_var_before_main(name: &str) -> Option<std::ffi::OsString> {
    let value = std::env::var_os(name)?;
    // SAFETY: constructors run on the main thread before `main`: no thread of this crate or of
    // std exists to read the environment concurrently (a thread a user constructor started is
    // the documented exception of `std::env::remove_var`, and its reads through std take the
    // same lock as this write).
    unsafe { std::env::remove_var(name) };
    Some(value)
}

/// Sets the environment variable `name` for this process and those it starts. Only for the
/// early entry, before `main`.
#[cfg(feature = "mpi")]
pub(crate) fn set_var_before_main(name: &str, value: &str) {
    // SAFETY: as in `take_var_before_main`: before `main`, on the main thread, no thread of
    // this crate or of std reads the environment concurrently (MPI starts none that does).
    unsafe { std::env::set_var(name, value) };
}

/// Has `run` called once when this process exits, with the status given to `exit` where the C
/// library tells it (glibc's `on_exit`), else 0. One function per process: a second is refused.
#[cfg(feature = "mpi")]
pub(crate) fn at_exit(run: fn(i32)) -> io::Result<()> {
    static RUN: std::sync::OnceLock<fn(i32)> = std::sync::OnceLock::new();
    RUN.set(run)
        .map_err(|_| io::Error::other("an exit handler is registered already"))?;
    #[cfg(target_env = "gnu")]
    {
        unsafe extern "C" {
            fn on_exit(
                function: extern "C" fn(libc::c_int, *mut libc::c_void),
                argument: *mut libc::c_void,
            ) -> libc::c_int;
        }
        extern "C" fn handler(status: libc::c_int, _: *mut libc::c_void) {
            if let Some(run) = RUN.get() {
                run(status);
            }
        }
        // SAFETY: `on_exit` is glibc's, with this signature; it registers a plain C function
        // that the C runtime calls once, at exit, with the status; the argument is unused.
        if unsafe { on_exit(handler, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::other(
                "the C library has no room for an exit handler",
            ));
        }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        extern "C" fn handler() {
            if let Some(run) = RUN.get() {
                run(0);
            }
        }
        // SAFETY: registers a plain `extern "C" fn()` that the C runtime calls once, at exit.
        if unsafe { libc::atexit(handler) } != 0 {
            return Err(io::Error::other(
                "the C library has no room for an exit handler",
            ));
        }
    }
    Ok(())
}

/// Ends this process at once with `status`, running no exit handler and flushing nothing: for a
/// process whose work is done but which is stuck where an ordinary exit would be stuck too.
#[cfg(feature = "mpi")]
pub(crate) fn exit_now(status: i32) -> ! {
    // SAFETY: `_exit` takes any status and never returns; it touches no memory of this process.
    unsafe { libc::_exit(status) }
}

/// When the process `pid` started (in clock ticks since boot), or `None` if it is gone or a
/// zombie: with the pid, this names a process even after its pid is reused.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything: parse after the last ')'.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // Field 22 of the line is the start time; `fields` began at field 3.
    fields.nth(18)?.parse().ok()
}
