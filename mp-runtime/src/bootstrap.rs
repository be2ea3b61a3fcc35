//! Starting a child: re-executing this binary, and the early entry that makes the child a worker
//! before the user's `main` runs.
//!
//! The parent starts `/proc/self/exe` (the very file it runs from, even if it was rebuilt on disk
//! since) with [`ROLE_VAR`] in its environment and one end of a socket pair as its standard input.
//! In the child, a constructor in `.init_array` sees the variable, removes it (so the worker's own
//! children start as parents), moves the socket off standard input, serves calls, and exits: the
//! user's `main` never runs there.
//!
//! Why it runs after the `#[process_fn]` registrations: constructors run in link order, and every
//! crate that registers functions depends on this one, so the linker places it (and its
//! registrations) before this crate.

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::worker;

/// The environment variable that tells a child it is a worker, and of which parent.
pub(crate) const ROLE_VAR: &str = "MP_RUNTIME_ROLE";

/// The child's name, then a newline and its parent's name: for `current_process` and
/// `parent_process`.
const NAMES_VAR: &str = "MP_RUNTIME_NAMES";

/// The path that always names this process's own executable file.
const SELF_EXE: &str = "/proc/self/exe";

// SAFETY: `.init_array` holds pointers to functions the C runtime calls, with no arguments that
// we read, before `main`; `worker_entry` has exactly that `extern "C" fn()` shape.
#[used]
#[unsafe(link_section = ".init_array")]
static WORKER_ENTRY: extern "C" fn() = worker_entry;

extern "C" fn worker_entry() {
    let Some(role) = std::env::var_os(ROLE_VAR) else {
        return;
    };
    let names = std::env::var(NAMES_VAR).unwrap_or_default();
    // SAFETY: constructors run on the main thread before `main`, when no other thread of ours
    // exists to read the environment concurrently.
    unsafe {
        std::env::remove_var(ROLE_VAR);
        std::env::remove_var(NAMES_VAR);
    }
    let (name, parent_name) = names.split_once('\n').unwrap_or(("Process", "MainProcess"));
    crate::context::set_identity(name, parent_name, std::os::unix::process::parent_id());
    let code = match take_channel(&role) {
        Ok(stream) => {
            // A bug in the serve loop must end this process with a code, not unwind into C.
            std::panic::catch_unwind(|| worker::serve(stream)).unwrap_or(70)
        }
        Err(problem) => {
            eprintln!("mp: {problem}");
            2
        }
    };
    std::process::exit(code);
}

/// Checks the role and moves the parent's socket from standard input to a fresh descriptor.
fn take_channel(role: &OsString) -> std::result::Result<UnixStream, String> {
    let forged = || {
        format!(
            "{ROLE_VAR} is set, but this process was not started by mp (its value is {role:?}); \
             unset {ROLE_VAR} and run the program again"
        )
    };
    let role = role.to_str().ok_or_else(forged)?;
    let parent: u32 = role
        .strip_prefix("worker:")
        .and_then(|pid| pid.parse().ok())
        .ok_or_else(forged)?;
    if std::os::unix::process::parent_id() != parent {
        // Started by hand with a copied variable, or the parent died before we got here.
        return Err(forged());
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
    Ok(UnixStream::from(OwnedFd::from(socket)))
}

/// A started worker process and the parent's end of its channel.
pub(crate) struct Started {
    pub child: Child,
    pub stream: UnixStream,
}

/// Starts this binary again as a worker called `name`.
pub(crate) fn start_worker(name: &str) -> Result<Started> {
    let (parent_end, child_end) = UnixStream::pair()
        .map_err(|e| Error::io("cannot create the socket pair for a child", e))?;
    let mut command = Command::new(SELF_EXE);
    command
        .arg0(argv0())
        .env(ROLE_VAR, format!("worker:{}", std::process::id()))
        .env(
            NAMES_VAR,
            format!("{name}\n{}", crate::context::current_process().name()),
        )
        .stdin(Stdio::from(OwnedFd::from(child_end)));
    let child = command
        .spawn()
        .map_err(|e| Error::io(format!("cannot start a child process from {SELF_EXE}"), e))?;
    // Dropping the command closes our copy of the child's end: from now on, end-of-file on
    // `parent_end` means the child is gone.
    drop(command);
    crate::context::child_started(child.id(), name);
    Ok(Started {
        child,
        stream: parent_end,
    })
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

/// This binary's path, for messages.
pub(crate) fn current_binary() -> String {
    std::env::current_exe()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|_| "this binary".to_string())
}
