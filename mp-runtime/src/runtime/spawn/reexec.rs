//! Re-executing this binary as a child, and the child's side of it: the role marker that tells
//! a re-executed child what it is and who started it.
//!
//! The parent starts its own executable ([`sys::process::exe_path`]: `/proc/self/exe`, the very
//! file it runs from, even if it was rebuilt on disk since) with [`ROLE_VAR`] in its environment and one end of a socket pair as its standard input.
//! In the child, a constructor in `.init_array` sees the variable, removes it (so the worker's own
//! children start as parents), moves the socket off standard input, serves calls, and exits: the
//! user's `main` never runs there. With the role `forkserver:<pid>` the child becomes the fork
//! server's zygote instead (see [`crate::runtime::spawn::forkserver`]).
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
//! child with it). Fork-server children are this process's too (the zygote forks them with
//! `CLONE_PARENT`), so their parent is the thread that started the zygote.
//!
//! Why it runs after the `#[process_fn]` registrations: constructors run in link order, and every
//! crate that registers functions depends on this one, so the linker places it (and its
//! registrations) before this crate.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError, mpsc};

use super::Owner;
use crate::base::{Error, Result};
use crate::runtime::registry;
use crate::sys::{self, Pid, error::Cause};

/// The environment variable that tells a child it is a worker, and of which parent.
pub(crate) const ROLE_VAR: &str = "MP_RUNTIME_ROLE";

/// The child's name, its parent's name and its depth (see [`max_depth`](super::max_depth)), a
/// line each: for `current_process`, `parent_process` and the depth limit.
const NAMES_VAR: &str = "MP_RUNTIME_NAMES";

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
    sys::process::die_with_parent().is_ok() && std::os::unix::process::parent_id() == parent
}

/// What this process was started as: its role, the channel to the parent that started it, and
/// the names of both (for `current_process` and `parent_process`).
pub(crate) struct Assignment {
    pub role: Role,
    pub stream: UnixStream,
    pub name: String,
    pub parent_name: String,
    pub parent: u32,
    /// How many mp processes are above this one.
    pub depth: usize,
}

/// Why this process cannot take up the role it was given, and the channel to the parent that
/// gave it, when the parent is proven (then the refusal goes to it as well as to standard
/// error, so that the caller's error says why).
pub(crate) struct Refused {
    pub why: String,
    pub channel: Option<UnixStream>,
}

impl From<String> for Refused {
    fn from(why: String) -> Self {
        Refused { why, channel: None }
    }
}

/// Reads and removes the role marker: `None` when mp did not start this process; otherwise
/// the assignment, or why this process cannot take it up. Runs before `main`, on the main
/// thread.
pub(crate) fn take_role() -> Option<std::result::Result<Assignment, Refused>> {
    let role = sys::process::take_var_before_main(ROLE_VAR)?;
    let names = sys::process::take_var_before_main(NAMES_VAR).unwrap_or_default();
    if sys::process::is_secure_execution() {
        // A setuid, setgid or file-capability binary: whoever started it may not have its
        // privileges, so nothing it sends may run with them.
        return Some(Err(format!(
            "{ROLE_VAR} is set, but this program runs with privileges that whoever started it \
             may not have (setuid, setgid or file capabilities): it never serves as a worker"
        )
        .into()));
    }
    let names = names.to_string_lossy();
    // The depth is the last line, whatever the names hold.
    let (names, depth) = names.rsplit_once('\n').unwrap_or((&names, "1"));
    let depth = depth.parse().unwrap_or(1);
    let (name, parent_name) = names.split_once('\n').unwrap_or(("Process", "MainProcess"));
    let parent = std::os::unix::process::parent_id();
    Some(take_channel(&role).map(|(role, stream)| Assignment {
        role,
        stream,
        name: name.to_string(),
        parent_name: parent_name.to_string(),
        parent,
        depth,
    }))
}

/// Checks the role, arms the parent-death signal, proves that standard input is the parent's
/// channel, and moves it from standard input to a fresh descriptor.
///
/// The proof: standard input must be a Unix socket made by the parent process itself, under
/// this process's user (SO_PEERCRED of a socket pair names the process that made it). The
/// variable alone can be set by anyone; a socket made by the parent cannot be forged by
/// another process, so a program that starts us on a socket it got elsewhere (a network
/// client's, inetd-style) is refused. A parent of our own user that forges the channel gains
/// nothing it could not do by debugging us; one of another user is refused here, and a
/// privileged (setuid) us is refused before (AT_SECURE). Costs one `getsockopt`, no round trip.
fn take_channel(role: &OsString) -> std::result::Result<(Role, UnixStream), Refused> {
    // Says nothing of what was expected: a forger learns nothing from the refusal.
    let forged = || {
        format!(
            "{ROLE_VAR} is set, but this process was not started by mp; unset {ROLE_VAR} and run \
             the program again"
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
        if !Pid::from_raw(parent).is_some_and(sys::process::exists) {
            return Err(format!(
                "the parent process {parent} ended before this worker started; exiting"
            )
            .into());
        }
        // Started by hand with a copied variable.
        return Err(forged().into());
    }
    // The dup is close-on-exec, so the socket does not leak into processes the task starts.
    let socket = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("cannot duplicate standard input: {e}"))?;
    match sys::fd::socket_peer(socket.as_fd()) {
        Ok((pid, uid)) if pid == parent && uid == sys::process::effective_uid() => {}
        _ => return Err(forged().into()),
    }
    // From here on the parent is proven: it hears why, if this process cannot serve it.
    if build != registry::build_id() {
        return Err(Refused {
            why: "this binary is not the build of the process that started it: parent and \
                  worker must be the same build of the same program"
                .to_string(),
            channel: Some(UnixStream::from(socket)),
        });
    }
    if let Err(e) = sys::fd::stdin_to_null() {
        return Err(Refused {
            why: format!("cannot replace standard input: {e}"),
            channel: Some(UnixStream::from(socket)),
        });
    }
    sys::fd::close_inherited_descriptors(socket.as_fd());
    Ok((kind, UnixStream::from(socket)))
}

/// Starts this binary again in `role`, called `name`, with `env` added to its environment and
/// `socket` as its standard input.
pub(crate) fn spawn_self(
    role: Role,
    name: &str,
    env: &super::Env,
    socket: OwnedFd,
) -> Result<Child> {
    let mut command = Command::new(sys::process::exe_path());
    match through_loader() {
        Ok(None) => {
            command.arg0(argv0());
        }
        // /proc/self/exe is the dynamic loader: it starts the program as it did for us.
        Ok(Some(words)) => {
            command.arg0(&words[0]).args(&words[1..]);
        }
        Err(why) => return Err(Error::usage(why.clone())),
    }
    // The pool's variables first, so that no name of theirs replaces one of ours.
    command
        .envs(env.iter().map(|(name, value)| (name, value)))
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
            format!(
                "{name}\n{}\n{}",
                crate::base::current_process().name(),
                crate::base::depth() + 1
            ),
        )
        .stdin(Stdio::from(socket));
    // Dropping the command (in `spawn_lasting`) closes our copy of the child's end: from then
    // on, end-of-file on the parent's end means the child is gone.
    spawn_lasting(command).map_err(cannot_start)
}

/// The error of a child that could not be started, with its cause and what to do.
fn cannot_start(error: io::Error) -> Error {
    let advice = match Cause::of(&error) {
        Some(Cause::ArgumentsTooLarge) => {
            "; the environment is too large for a new program (a variable of 128 KiB or more, \
             or more than a quarter of the stack limit in all): make it smaller"
        }
        Some(Cause::NotFound) => {
            "; mount /proc if it is not (mp starts workers from /proc/self/exe), and check that \
             the program's dynamic loader is installed"
        }
        Some(Cause::AccessDenied) => {
            "; the program's file may not be executed (a `noexec` mount, or its permissions): \
             run it from where it may"
        }
        Some(Cause::ResourceLimit) => {
            "; this user has as many processes as it may (`ulimit -u`): end some, or raise the \
             limit"
        }
        Some(Cause::OutOfMemory) => "; the machine is out of memory",
        _ => "",
    };
    Error::io(
        format!(
            "cannot start a child process from {}: {error}{advice}",
            sys::process::exe_path().display()
        ),
        error,
    )
}

/// How to run this program again when /proc/self/exe is the dynamic loader, which started it
/// (`/lib64/ld-linux-x86-64.so.2 ./prog`): the loader's `argv[0]`, the options it was given,
/// and the program's absolute path. `None` when /proc/self/exe is the program itself; an error
/// that says what to do when the program's file cannot be found. Worked out once.
fn through_loader() -> &'static std::result::Result<Option<Vec<OsString>>, String> {
    static HOW: OnceLock<std::result::Result<Option<Vec<OsString>>, String>> = OnceLock::new();
    HOW.get_or_init(|| {
        let program = match sys::process::program_behind_loader() {
            Ok(None) => return Ok(None),
            Ok(Some(program)) => program,
            Err(e) => {
                return Err(format!(
                    "this program was started through the dynamic loader, so /proc/self/exe \
                     is the loader, and the program to start workers from cannot be found \
                     ({e}); run the program directly, not through the loader"
                ));
            }
        };
        // The kernel's command line is the loader's: its name, its options, the program as
        // given, then the program's arguments, which alone are left in ours.
        let line = sys::process::original_command_line().unwrap_or_default();
        let ours = std::env::args_os().count();
        let mut words = match line.len().checked_sub(ours) {
            Some(loader) if loader >= 1 => line[..loader].to_vec(),
            _ => vec![sys::process::exe_path().into()],
        };
        words.push(program.into_os_string());
        Ok(Some(words))
    })
}

/// A command for the spawner thread, and where to send the child it starts.
type Request = (Command, mpsc::SyncSender<io::Result<Child>>);

/// The spawner thread's queue, once it runs, and the process it runs in: a copy of that process
/// made by `fork()` has the queue but not the thread.
static SPAWNER: Mutex<Option<(Owner, mpsc::Sender<Request>)>> = Mutex::new(None);

/// Spawns `command` from a thread that lasts as long as this process, so that the child's
/// parent-death signal fires when the process dies, not when the calling thread ends.
fn spawn_lasting(mut command: Command) -> io::Result<Child> {
    if sys::process::is_main_thread() {
        // The main thread ends only with the process.
        return command.spawn();
    }
    let gone = || io::Error::other("the mp-spawner thread is gone");
    let (reply, answer) = mpsc::sync_channel(1);
    let mut request = (command, reply);
    // A spawner found gone is started again, once.
    for _ in 0..2 {
        let spawner = spawner(&SPAWNER, start_spawner)?;
        match spawner.send(request) {
            Ok(()) => return answer.recv().map_err(|_| gone())?,
            Err(mpsc::SendError(back)) => {
                request = back;
                SPAWNER
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
            }
        }
    }
    Err(gone())
}

/// The spawner's queue from `slot`, `start`ing it if there is none yet in this process: a
/// start that failed (EAGAIN under a low `ulimit -u`) is tried again on the next call, not
/// remembered.
fn spawner<T>(
    slot: &Mutex<Option<(Owner, mpsc::Sender<T>)>>,
    start: impl FnOnce() -> io::Result<mpsc::Sender<T>>,
) -> io::Result<mpsc::Sender<T>> {
    let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
    match slot.take() {
        Some((owner, spawner)) if owner.is_here() => {
            *slot = Some((owner, spawner.clone()));
            return Ok(spawner);
        }
        // A forked copy: no thread reads the queue here, and a request would wait for ever.
        // It is left unfreed: dropping the last sender would take a lock that the original's
        // spawner may have held at the fork.
        Some(inherited) => std::mem::forget(inherited),
        None => {}
    }
    let spawner = start().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("the mp-spawner thread could not be started: {e}"),
        )
    })?;
    *slot = Some((Owner::this_process(), spawner.clone()));
    Ok(spawner)
}

/// Starts the spawner thread; returns its queue.
fn start_spawner() -> io::Result<mpsc::Sender<Request>> {
    let (requests, incoming) = mpsc::channel::<Request>();
    std::thread::Builder::new()
        .name("mp-spawner".into())
        .spawn(move || {
            for (mut command, reply) in incoming {
                let child = command.spawn();
                drop(command);
                if let Err(mpsc::SendError(Ok(mut child))) = reply.send(child) {
                    // Nobody waits for this child any more: end and reap it, or it would stay
                    // a zombie for as long as this process lives.
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        })?;
    Ok(requests)
}

/// The name this process was started under, reused for its children (so `ps` shows them).
fn argv0() -> &'static OsString {
    static ARGV0: OnceLock<OsString> = OnceLock::new();
    ARGV0.get_or_init(|| {
        std::env::args_os()
            .next()
            .unwrap_or_else(|| sys::process::exe_path().into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // One failed start of the spawner thread (a thread limit hit once) must not fail every later
    // start: the next use tries again.
    #[test]
    fn a_failed_start_of_the_spawner_is_tried_again() {
        let slot = Mutex::new(None);
        let failed = spawner::<()>(&slot, || Err(Cause::ResourceLimit.error()));
        assert!(
            failed
                .unwrap_err()
                .to_string()
                .contains("could not be started")
        );
        let (queue, _incoming) = mpsc::channel();
        assert!(spawner(&slot, || Ok(queue)).is_ok());
        // Once started, it is kept.
        assert!(spawner(&slot, || panic!("started twice")).is_ok());
    }

    // A forked copy has the spawner's queue but not its thread, and starts
    // one of its own rather than wait for the original's for ever.
    #[test]
    fn a_forked_copy_starts_a_spawner_of_its_own() {
        let (inherited, _incoming) = mpsc::channel::<()>();
        let original = Owner {
            pid: crate::sys::process::pid() + 1,
        };
        let slot = Mutex::new(Some((original, inherited)));
        let mut started = false;
        let (own, _own_incoming) = mpsc::channel();
        assert!(
            spawner(&slot, || {
                started = true;
                Ok(own)
            })
            .is_ok()
        );
        assert!(started, "the original's spawner was used");
        assert!(spawner(&slot, || panic!("started twice")).is_ok());
    }
}
