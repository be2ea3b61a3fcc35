//! The fork server: one re-executed, single-threaded zygote per parent that forks children on
//! request. A child then starts in the time of a `fork` of a small process (no exec, no dynamic
//! loading, no constructors), and still inherits none of the parent's threads, locks or
//! descriptors: the zygote has none of them.
//!
//! The parent starts the zygote lazily, on the first [`start_child`], like any worker (same
//! early entry, role `forkserver:<pid>`). The zygote forks each child ahead of time, as a spare,
//! with `CLONE_PARENT` ([`sys::process::fork_sibling`]): the spare is the *parent's* child, not
//! the zygote's, so the parent waits for it, kills it and learns how it ended exactly as for a
//! re-executed child (`waitpid`, its pidfd), its pid cannot be reused before the parent reaps
//! it, and its parent-death signal follows the parent. Before forking, the zygote sends the
//! parent its end of the spare's socket (SCM_RIGHTS); the spare's first frame on it is its pid.
//! A start takes the spare the parent already holds, sends it its name (it then serves calls on
//! that socket as any worker does) and asks the zygote for the next spare, which is forked while
//! the parent goes on: a start costs no fork and waits for no answer. A join waits for the
//! child's exit alone; nothing passes through the zygote.
//!
//! If the zygote dies, its children live on (they are the parent's). A thread of the parent
//! that waits for the zygote's exit, and does nothing else, reaps it and ends the spares it
//! left, so none stays behind as a zombie; the next start makes a new zygote.
//!
//! Messages on the control socket, zygote to parent: `S` with the parent's end of a spare's
//! socket beside it (sent before the fork: a spare that exists is always one the parent can
//! find), `E` errno (the fork failed, or the socket pair for it), `R` text (the zygote refuses
//! to fork, and why; then it exits), or a farewell frame (it could not start, and why; see
//! [`crate::wire::frame`]). Parent to zygote: `N`, fork the next spare. The zygote
//! forks one spare at start and one per `N`.
//!
//! The zygote forks only while it has one thread (`fork_sibling` counts them): a user
//! constructor that started a thread before it served makes it refuse, with an error that says
//! so, instead of forking children that could deadlock.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::process::Child;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::Owner;
use super::reexec::{self, Role};
use crate::base::{Error, ExitReason, Result};
use crate::sys::{self, Pid, Signal, pidfd, process::Forked};
use crate::wire::codec;
use crate::wire::frame::{Channel, Frame};

/// The zygote this process uses now, if one was started.
static SERVER: Mutex<Option<Arc<Server>>> = Mutex::new(None);

/// How long a spare may take to send its pid, which it does first thing: reached only when it
/// never started (the fork failed) or the machine is stalled.
const SPARE_GRACE: Duration = Duration::from_secs(5);

/// The parent's side of one zygote.
struct Server {
    pid: Pid,
    /// The process that started it: a zygote forks its children as that process's.
    owner: Owner,
    control: Mutex<Control>,
}

struct Control {
    channel: Channel,
    /// A spare's `S` message read from the control socket and not used yet.
    held: Option<Frame>,
    /// Why the zygote is gone or useless, once it is: no spare will come any more.
    dead: Option<String>,
}

/// Forks a worker called `name` from this process's zygote (starting it if there is none, or
/// the last one died); returns the child's pid (a child of this process) and the parent's end
/// of its channel.
pub(crate) fn start_child(name: &str, env: &super::Env) -> Result<(Pid, Channel)> {
    let mut last = None;
    // One more try after a failure: a zygote found dead only when asked is replaced, and a
    // spare that died before it was used is replaced by the next.
    for _ in 0..2 {
        match server()?.start_child(name, env) {
            Ok(started) => return Ok(started),
            Err(error) => last = Some(error),
        }
    }
    Err(last.expect("tried at least once"))
}

/// The live zygote, started now if needed.
fn server() -> Result<Arc<Server>> {
    let mut current = lock(&SERVER);
    // In a forked copy, the original's zygote is left to it (and its control lock, which a
    // thread of the original may have held at the fork, is never taken): its children would
    // be the original's, not this process's. The copy starts one of its own.
    if let Some(server) = current.as_ref().filter(|server| server.owner.is_here()) {
        if lock(&server.control).dead.is_none() {
            return Ok(server.clone());
        }
    }
    let server = Server::start()?;
    *current = Some(server.clone());
    Ok(server)
}

impl Server {
    fn start() -> Result<Arc<Server>> {
        let (ours, theirs) = UnixStream::pair()
            .map_err(|e| Error::io("cannot create the fork server's control socket", e))?;
        let zygote = reexec::spawn_self(Role::ForkServer, "ForkServer", &[], theirs.into())?;
        let pid = Pid::of(&zygote);
        let server = Arc::new(Server {
            pid,
            owner: Owner::this_process(),
            control: Mutex::new(Control {
                channel: Channel::new(ours),
                held: None,
                dead: None,
            }),
        });
        let watching = server.clone();
        let watcher = std::thread::Builder::new()
            .name("mp-forkserver".into())
            .spawn(move || watching.watch(zygote));
        if let Err(e) = watcher {
            // The zygote's `Child` went with the closure, unreaped: its pid is still ours.
            let _ = pidfd::kill_pid(pid, Signal::KILL);
            let _ = pidfd::reap(pid, true);
            server.end("could not be watched".to_string());
            return Err(Error::io(
                "cannot start the thread that waits for the fork server",
                e,
            ));
        }
        Ok(server)
    }

    fn start_child(&self, name: &str, env: &super::Env) -> Result<(Pid, Channel)> {
        let env: Vec<(&[u8], &[u8])> = (env.iter())
            .map(|(name, value)| (name.as_bytes(), value.as_bytes()))
            .collect();
        let start = codec::encode(&(name, env))?;
        let mut control = lock(&self.control);
        if let Some(why) = &control.dead {
            return Err(gone(self.pid, why));
        }
        let socket = control.next_spare(self.pid)?;
        let mut channel = Channel::new(UnixStream::from(socket));
        let Some(pid) = spare_pid(&mut channel) else {
            // It was never forked; the zygote's next message says why.
            return Err(control.why_no_spare(self.pid));
        };
        drop(control);
        // Its first frame is its name and environment; then it serves calls on the same
        // socket.
        if let Err(e) = channel.send(&start) {
            // Killed while it waited: it is ours to reap.
            end_spare(pid);
            return Err(Error::io(
                format!("the child {pid} forked ahead of time died before it was used"),
                e,
            ));
        }
        Ok((pid, channel))
    }

    /// Waits for the zygote to end (and wakes for nothing else), reaps it, and ends the spares
    /// it left.
    fn watch(&self, mut zygote: Child) {
        let why = match zygote.wait() {
            Ok(status) => format!("ended: it {}", ExitReason::from_status(status)),
            Err(e) => format!("ended ({e})"),
        };
        self.end(why);
    }

    /// Records that the (reaped) zygote is gone, for `why`, and ends and reaps the spares it
    /// left, which are this process's children: none is left behind as a zombie.
    fn end(&self, why: String) {
        let mut control = lock(&self.control);
        let mut sockets: Vec<OwnedFd> = control.held.take().map(|s| s.fds).unwrap_or_default();
        // All it sent is there now, then end-of-file: the bound is only a backstop. What it
        // said before it exited (a refusal, its last words) is read here when this thread
        // gets there before a start does, and is kept in the reason.
        let deadline = Instant::now() + SPARE_GRACE;
        let mut said = None;
        while let Ok(Some(mut frame)) = control.channel.recv_until(Some(deadline)) {
            if let Some(words) = frame.farewell() {
                said = Some(words);
            } else if frame.first() == Some(&b'R') {
                said = Some(String::from_utf8_lossy(&frame[1..]).into_owned());
            }
            sockets.append(&mut frame.fds);
        }
        let why = match said {
            Some(said) => format!("{why}; it said: {said}"),
            None => why,
        };
        control.dead.get_or_insert(why);
        drop(control);
        for socket in sockets {
            if let Some(pid) = spare_pid(&mut Channel::new(UnixStream::from(socket))) {
                end_spare(pid);
            }
        }
    }
}

impl Control {
    /// Reads the next spare's socket from the zygote, and asks for the one after it at once,
    /// so that it is forked while this one starts.
    fn next_spare(&mut self, zygote: Pid) -> Result<OwnedFd> {
        let mut frame = match self.held.take() {
            Some(frame) => frame,
            None => self.recv(zygote)?,
        };
        if self.channel.send(b"N").is_err() {
            // The zygote is gone; the spare it sent, if it sent one, is still good.
            self.die("closed its control socket");
        }
        match frame.first() {
            Some(b'S') => frame
                .fds
                .pop()
                .ok_or_else(|| self.fail(zygote, "sent a spare without its socket")),
            Some(b'E') => Err(cannot_fork(zygote, &frame)),
            Some(b'R') => Err(self.fail(zygote, &String::from_utf8_lossy(&frame[1..]))),
            _ => Err(self.fail(zygote, "sent an unknown message")),
        }
    }

    /// The error for a spare that never sent its pid: the zygote says why next (or, when the
    /// spare itself died first, sends the next spare, which is kept).
    fn why_no_spare(&mut self, zygote: Pid) -> Error {
        let frame = match self.recv(zygote) {
            Ok(frame) => frame,
            Err(error) => return error,
        };
        match frame.first() {
            Some(b'E') => cannot_fork(zygote, &frame),
            Some(b'R') => self.fail(zygote, &String::from_utf8_lossy(&frame[1..])),
            Some(b'S') => {
                self.held = Some(frame);
                Error::io(
                    format!("a child that the fork server (process {zygote}) forked died at once"),
                    io::Error::from(io::ErrorKind::BrokenPipe),
                )
            }
            _ => self.fail(zygote, "sent an unknown message"),
        }
    }

    fn recv(&mut self, zygote: Pid) -> Result<Frame> {
        match self.channel.recv() {
            Ok(Some(frame)) if !frame.is_empty() => match frame.farewell() {
                // It could not start, and said why before it exited.
                Some(why) => Err(self.fail(zygote, &format!("could not start: {why}"))),
                None => Ok(frame),
            },
            Ok(Some(_)) => Err(self.fail(zygote, "sent an empty message")),
            Ok(None) => Err(self.fail(zygote, "ended")),
            Err(e) => Err(self.fail(zygote, &format!("sent something unreadable ({e})"))),
        }
    }

    /// Gives up on the zygote for `why`, and returns the error for the start that found it.
    fn fail(&mut self, zygote: Pid, why: &str) -> Error {
        self.die(why);
        gone(zygote, why)
    }

    /// Records that the zygote is of no more use, and makes it exit if it has not: it exits at
    /// end-of-file on its control socket, and the watcher reaps it.
    fn die(&mut self, why: &str) {
        self.dead.get_or_insert_with(|| why.to_string());
        let _ = self.channel.stream().shutdown(std::net::Shutdown::Write);
    }
}

/// The error of a start that finds the zygote `zygote` gone or useless, for `why`.
fn gone(zygote: Pid, why: &str) -> Error {
    Error::io(
        format!("the fork server (process {zygote}) {why}"),
        io::Error::from(io::ErrorKind::BrokenPipe),
    )
}

fn cannot_fork(zygote: Pid, frame: &[u8]) -> Error {
    let errno = frame.get(1..5).map_or(0, |bytes| {
        i32::from_le_bytes(bytes.try_into().expect("4 bytes"))
    });
    Error::io(
        format!("the fork server (process {zygote}) cannot fork"),
        io::Error::from_raw_os_error(errno),
    )
}

/// The pid a spare sends first on its socket; `None` if none comes (it was never forked).
fn spare_pid(channel: &mut Channel) -> Option<Pid> {
    let frame = channel
        .recv_until(Some(Instant::now() + SPARE_GRACE))
        .ok()??;
    Pid::from_raw(u32::from_le_bytes(frame.get(..4)?.try_into().ok()?))
}

/// Ends and reaps a spare, a child of this process that nobody will use.
fn end_spare(pid: Pid) {
    // Not reaped yet, so the pid is surely the spare's.
    let _ = pidfd::kill_pid(pid, Signal::KILL);
    let _ = pidfd::reap(pid, true);
}

/// Runs the zygote on its control socket; returns this process's exit code, the zygote's, or,
/// in a forked child, the child's once it has served.
pub(crate) fn serve_forks(
    control: UnixStream,
    parent_pid: u32,
    parent_name: &str,
    depth: usize,
) -> i32 {
    let mut channel = Channel::new(control);
    loop {
        match fork_spare(&mut channel) {
            Fork::Sent => {}
            Fork::Child(socket) => {
                // The child keeps only its own socket, not the control socket.
                drop(channel);
                return serve_spare(socket, parent_pid, parent_name, depth);
            }
            Fork::Done(code) => return code,
        }
        match channel.recv() {
            // `N`: the parent took the spare and wants the next.
            Ok(Some(_)) => {}
            // The parent is gone, or done with this zygote: an end-of-file, or a reset when it
            // left the spare's `S` message unread.
            Ok(None) => return 0,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return 0,
            Err(e) => {
                eprintln!("mp fork server: reading a request failed: {e}");
                return 1;
            }
        }
    }
}

/// What forking a spare came to.
enum Fork {
    /// In the zygote: the spare, or why there is none, was sent to the parent.
    Sent,
    /// In the new spare: its socket.
    Child(UnixStream),
    /// In the zygote: it must exit with this code (its parent is gone, or it refuses to fork).
    Done(i32),
}

fn fork_spare(channel: &mut Channel) -> Fork {
    let errno = |e: io::Error| [&[b'E'][..], &e.raw_os_error().unwrap_or(0).to_le_bytes()].concat();
    let (ours, theirs) = match UnixStream::pair() {
        Ok(pair) => pair,
        Err(e) => return sent(channel.send(&errno(e))),
    };
    // The parent gets its end before the fork: whatever happens to this zygote afterwards, a
    // spare never exists that the parent cannot find and reap.
    if channel.send_with_fds(b"S", &[ours.as_fd()]).is_err() {
        return Fork::Done(0);
    }
    // Nor does the spare keep the parent's end: the parent's close must reach it.
    drop(ours);
    match sys::process::fork_sibling() {
        Ok(Forked::Child) => Fork::Child(theirs),
        Ok(Forked::Parent) => Fork::Sent,
        Ok(Forked::Refused { threads }) => refuse(
            channel,
            &format!(
                "refuses to fork: it has {threads} threads, and a child forked from a process \
                 with more than one thread can deadlock (a constructor of this program started \
                 a thread before `main`); start no thread in a constructor, or use \
                 StartMethod::Spawn"
            ),
        ),
        // Out of processes or memory for now: the next start tries again.
        Err(e) if e.raw_os_error().is_some() => sent(channel.send(&errno(e))),
        // This system lacks what forking for the parent needs: no start ever would.
        Err(e) => refuse(
            channel,
            &format!("cannot fork here ({e}); use StartMethod::Spawn"),
        ),
    }
}

/// Tells the parent that this zygote forks nothing, and why; the zygote then exits.
fn refuse(channel: &mut Channel, why: &str) -> Fork {
    eprintln!("mp fork server: {why}");
    let _ = channel.send(&[b"R", why.as_bytes()].concat());
    Fork::Done(1)
}

fn sent(sent: io::Result<()>) -> Fork {
    match sent {
        Ok(()) => Fork::Sent,
        Err(_) => Fork::Done(0),
    }
}

/// The spare: says its pid, arms its death signal, waits for its name, takes its identity, and
/// serves calls on the same socket.
fn serve_spare(socket: UnixStream, parent_pid: u32, parent_name: &str, depth: usize) -> i32 {
    let mut channel = Channel::new(socket);
    if channel.send(&std::process::id().to_le_bytes()).is_err() {
        // The parent is gone, or done with this zygote's spares.
        return 0;
    }
    if !reexec::die_with_parent(parent_pid) {
        // The parent died before the signal was armed: nobody will ever use this child.
        return 1;
    }
    let Ok(Some(start)) = channel.recv() else {
        // Ended unused.
        return 0;
    };
    let Ok((name, env)) = codec::decode::<(String, Vec<(Vec<u8>, Vec<u8>)>)>(&start) else {
        // Not from the parent that forked it (the same build): nothing to serve.
        return 1;
    };
    for (name, value) in env {
        sys::process::set_var_in_fork_child(OsStr::from_bytes(&name), OsStr::from_bytes(&value));
    }
    crate::base::set_identity(&name, parent_name, parent_pid, depth);
    crate::runtime::worker::serve_calls(channel)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
