//! Re-executing this binary as a child, and the child's side of it: the role marker that tells
//! a re-executed child what it is and who started it.
//!
//! The parent starts `/proc/self/exe` (the very file it runs from, even if it was rebuilt on disk
//! since) with [`ROLE_VAR`] in its environment and one end of a socket pair as its standard input.
//! In the child, a constructor in `.init_array` sees the variable, removes it (so the worker's own
//! children start as parents), moves the socket off standard input, serves calls, and exits: the
//! user's `main` never runs there. With the role `forkserver:<pid>` the child becomes the fork
//! server's zygote instead (see [`crate::spawn::forkserver`]).
//!
//! # Parent death
//!
//! Every child arms `PR_SET_PDEATHSIG(SIGKILL)` first thing in its early entry, then checks
//! that its parent is still the process that started it (the parent may have died before the
//! signal was armed). So when a parent dies, however it dies, its children die with it, and
//! theirs with them. The kernel's "parent" here is the *thread* that started the child: the
//! signal fires when that thread ends. So children are started only from threads that last as
//! long as the process: the main thread, or one long-lived spawner thread that every other
//! thread hands its `Command` to (a user thread that starts a child and ends must not take the
//! child with it). Fork-server children are the zygote's, whose only thread is its main one.
//!
//! Why it runs after the `#[process_fn]` registrations: constructors run in link order, and every
//! crate that registers functions depends on this one, so the linker places it (and its
//! registrations) before this crate.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{OnceLock, mpsc};

use crate::error::{Error, Result};
use crate::registry;

/// The environment variable that tells a child it is a worker, and of which parent.
pub(crate) const ROLE_VAR: &str = "MP_RUNTIME_ROLE";

/// The child's name, then a newline and its parent's name: for `current_process` and
/// `parent_process`.
const NAMES_VAR: &str = "MP_RUNTIME_NAMES";

/// The path that always names this process's own executable file.
const SELF_EXE: &str = "/proc/self/exe";

/// What a re-executed child becomes.
#[derive(Clone, Copy)]
pub(crate) enum Role {
    Worker,
    ForkServer,
}

impl Role {
    fn prefix(self) -> &'static str {
        match self {
            Role::Worker => "worker:",
            Role::ForkServer => "forkserver:",
        }
    }
}

/// Arms SIGKILL for when this process's parent dies; false if `parent` already died (then
/// this process has been handed to another and will never get the signal).
pub(crate) fn die_with_parent(parent: u32) -> bool {
    // SAFETY: plain system call with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    std::os::unix::process::parent_id() == parent
}

/// What this process was started as: its role, the channel to the parent that started it, and
/// the names of both (for `current_process` and `parent_process`).
pub(crate) struct Assignment {
    pub role: Role,
    pub stream: UnixStream,
    pub name: String,
    pub parent_name: String,
    pub parent: u32,
}

/// Reads and removes the role marker: `None` when mp did not start this process; otherwise
/// the assignment, or why this process cannot take it up. Runs before `main`, on the main
/// thread.
pub(crate) fn take_role() -> Option<std::result::Result<Assignment, String>> {
    let role = std::env::var_os(ROLE_VAR)?;
    let names = std::env::var(NAMES_VAR).unwrap_or_default();
    // SAFETY: constructors run on the main thread before `main`, when no other thread of ours
    // exists to read the environment concurrently.
    unsafe {
        std::env::remove_var(ROLE_VAR);
        std::env::remove_var(NAMES_VAR);
    }
    let (name, parent_name) = names.split_once('\n').unwrap_or(("Process", "MainProcess"));
    let parent = std::os::unix::process::parent_id();
    Some(take_channel(&role).map(|(role, stream)| Assignment {
        role,
        stream,
        name: name.to_string(),
        parent_name: parent_name.to_string(),
        parent,
    }))
}

/// Checks the role, arms the parent-death signal, and moves the parent's socket from standard
/// input to a fresh descriptor.
fn take_channel(role: &OsString) -> std::result::Result<(Role, UnixStream), String> {
    let forged = || {
        format!(
            "{ROLE_VAR} is set, but this process was not started by mp (its value is {role:?}); \
             unset {ROLE_VAR} and run the program again"
        )
    };
    let role = role.to_str().ok_or_else(forged)?;
    let (kind, parent, build) = [Role::Worker, Role::ForkServer]
        .into_iter()
        .find_map(|kind| {
            let (pid, build) = role.strip_prefix(kind.prefix())?.split_once(':')?;
            Some((kind, pid.parse::<u32>().ok()?, build))
        })
        .ok_or_else(forged)?;
    if !die_with_parent(parent) {
        // SAFETY: signal 0 only checks whether the process exists.
        let parent_alive = unsafe { libc::kill(parent as libc::pid_t, 0) } == 0
            || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
        if !parent_alive {
            return Err(format!(
                "the parent process {parent} ended before this worker started; exiting"
            ));
        }
        // Started by hand with a copied variable.
        return Err(forged());
    }
    if build != registry::build_id() {
        return Err(format!(
            "this binary (build {}) is not the build of the process that started it (build \
             {build}): parent and worker must be the same build of the same program",
            registry::build_id()
        ));
    }
    // The dup is close-on-exec, so the socket does not leak into processes the task starts.
    let socket = File::from(
        std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| format!("cannot duplicate standard input: {e}"))?,
    );
    let is_socket = socket
        .metadata()
        .map(|meta| meta.file_type().is_socket())
        .unwrap_or(false);
    if !is_socket {
        return Err(forged());
    }
    let null = File::open("/dev/null").map_err(|e| format!("cannot open /dev/null: {e}"))?;
    // SAFETY: both descriptors are open and owned for the duration of the call; dup2 replaces
    // descriptor 0, which nothing in this process holds an owning handle to.
    if unsafe { libc::dup2(null.as_raw_fd(), 0) } == -1 {
        return Err(format!(
            "cannot replace standard input: {}",
            std::io::Error::last_os_error()
        ));
    }
    drop(null);
    close_other_descriptors(socket.as_raw_fd());
    Ok((kind, UnixStream::from(OwnedFd::from(socket))))
}

/// Closes every descriptor above standard error but `keep`, so a child holds only what mp
/// gives it, not what its parent happened to leave inheritable (a build tool's jobserver pipe,
/// a file opened without close-on-exec).
fn close_other_descriptors(keep: RawFd) {
    let close_range = |first: RawFd, last: RawFd| {
        if first > last {
            return true;
        }
        // SAFETY: runs before `main`, when no object of this process owns a descriptor in the
        // range: the only one we hold, `keep`, is outside it.
        unsafe { libc::syscall(libc::SYS_close_range, first as u32, last as u32, 0) == 0 }
    };
    if close_range(3, keep - 1) && close_range(keep + 1, RawFd::MAX) {
        return;
    }
    // Kernels before 5.9 have no close_range: close what /proc lists instead.
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.flatten()
                .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in open.into_iter().filter(|&fd| fd > 2 && fd != keep) {
        // SAFETY: as above; the directory's own descriptor is closed already, so this may
        // fail with EBADF, which is harmless.
        unsafe { libc::close(fd) };
    }
}

/// Starts this binary again in `role`, called `name`, with `socket` as its standard input.
pub(crate) fn spawn_self(role: Role, name: &str, socket: OwnedFd) -> Result<Child> {
    let mut command = Command::new(SELF_EXE);
    command
        .arg0(argv0())
        .env(
            ROLE_VAR,
            format!(
                "{}{}:{}",
                role.prefix(),
                std::process::id(),
                registry::build_id()
            ),
        )
        .env(
            NAMES_VAR,
            format!("{name}\n{}", crate::context::current_process().name()),
        )
        .stdin(Stdio::from(socket));
    // Dropping the command (in `spawn_lasting`) closes our copy of the child's end: from then
    // on, end-of-file on the parent's end means the child is gone.
    spawn_lasting(command)
        .map_err(|e| Error::io(format!("cannot start a child process from {SELF_EXE}"), e))
}

/// Spawns `command` from a thread that lasts as long as this process, so that the child's
/// parent-death signal fires when the process dies, not when the calling thread ends.
fn spawn_lasting(mut command: Command) -> io::Result<Child> {
    if is_main_thread() {
        // The main thread ends only with the process.
        return command.spawn();
    }
    type Request = (Command, mpsc::SyncSender<io::Result<Child>>);
    static SPAWNER: OnceLock<Option<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("mp-spawner".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    let child = command.spawn();
                    drop(command);
                    let _ = reply.send(child);
                }
            })
            .ok()
            .map(|_| requests)
    });
    let Some(spawner) = spawner else {
        return Err(io::Error::other(
            "the mp-spawner thread could not be started",
        ));
    };
    let (reply, answer) = mpsc::sync_channel(1);
    spawner
        .send((command, reply))
        .map_err(|_| io::Error::other("the mp-spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| io::Error::other("the mp-spawner thread is gone"))?
}

fn is_main_thread() -> bool {
    // SAFETY: plain system calls without arguments.
    unsafe { libc::syscall(libc::SYS_gettid) == libc::getpid() as libc::c_long }
}

/// The name this process was started under, reused for its children (so `ps` shows them).
fn argv0() -> &'static OsString {
    static ARGV0: OnceLock<OsString> = OnceLock::new();
    ARGV0.get_or_init(|| {
        std::env::args_os()
            .next()
            .unwrap_or_else(|| SELF_EXE.into())
    })
}
