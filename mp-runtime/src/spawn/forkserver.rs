//! The fork server: one re-executed, single-threaded zygote per parent that forks children on
//! request. A child then starts in the time of a `fork` of a small process (no exec, no dynamic
//! loading, no constructors), and still inherits none of the parent's threads, locks or
//! descriptors: the zygote has none of them.
//!
//! The parent starts the zygote lazily, on the first [`start_child`], like any worker (same
//! early entry, role `forkserver:<pid>`). For each child it makes a socket pair and sends the
//! child's end, with the child's name, over a control socket (SCM_RIGHTS); the zygote hands
//! them to a child it forked ahead of time (which has closed the zygote's descriptors), answers
//! with its pid, and forks the next spare while the parent goes on; the child serves calls on
//! its socket as any worker does. So a start costs two socket messages, not a fork. The child is the zygote's, not the parent's, so the parent cannot
//! `waitpid` it: the zygote reaps its children and reports each `(pid, wait status)`, a thread
//! of the parent reads the reports, and [`ForkedChild`] waits on them.
//!
//! If the zygote dies, every wait on one of its children that has not been answered fails (its
//! children are killed by their parent-death signal), and the next start makes a new zygote.
//!
//! Messages, zygote to parent, little-endian: `F` pid (forked), `E` errno (fork failed), `X` pid
//! status (a child ended), `R` text (the zygote refuses to fork, and why; then it exits).
//! Parent to zygote: the child's name, with its socket beside.
//!
//! The zygote forks only while it has one thread (`sys::process::fork` counts them): a user
//! constructor that started a thread before it served makes it refuse, with an error that says
//! so, instead of forking children that could deadlock.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::reexec::{self, Role};
use crate::error::{Error, Result};
use crate::sys::{self, fd::Interest, process::Forked, signal::ChildSignals};
use crate::wire::frame::Channel;

/// The zygote this process uses now, if one was started.
static SERVER: Mutex<Option<Arc<Server>>> = Mutex::new(None);

/// The parent's side of one zygote.
struct Server {
    pid: u32,
    /// The sending half of the control socket. Held while a fork request waits for its answer,
    /// so requests take turns and each answer is its request's.
    requests: Mutex<Channel>,
    state: Mutex<State>,
    /// Signalled when `state` changes.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// The answer to the fork request in flight: the pid and its serial, or an errno.
    answers: VecDeque<std::result::Result<(u32, u64), i32>>,
    /// Children forked whose end is not reported yet: pid to serial. Serials, not pids, key the
    /// handles, so a pid reused after a reap can never be mistaken for an earlier child.
    running: HashMap<u32, u64>,
    /// Per child whose handle exists: its raw wait status, once reported.
    handles: HashMap<u64, Option<i32>>,
    next_serial: u64,
    /// Why the zygote is gone, once it is: no answer or report will come any more.
    dead: Option<String>,
}

/// A child forked by the zygote, from the parent's side.
pub(crate) struct ForkedChild {
    server: Arc<Server>,
    pid: u32,
    serial: u64,
}

/// Forks a worker called `name` from this process's zygote (starting it if there is none, or
/// the last one died); returns the child and the parent's end of its channel.
pub(crate) fn start_child(name: &str) -> Result<(ForkedChild, UnixStream)> {
    let mut last = None;
    // One more try after a failure: a zygote found dead only when asked is replaced, and a
    // spare child that died before its handoff is forked again.
    for _ in 0..2 {
        let (parent_end, child_end) = UnixStream::pair()
            .map_err(|e| Error::io("cannot create the socket pair for a child", e))?;
        let server = server()?;
        match server.fork(name, child_end) {
            Ok(child) => return Ok((child, parent_end)),
            Err(error) => last = Some(error),
        }
    }
    Err(last.expect("tried at least once"))
}

/// The live zygote, started now if needed.
fn server() -> Result<Arc<Server>> {
    let mut current = lock(&SERVER);
    if let Some(server) = current.as_ref() {
        if lock(&server.state).dead.is_none() {
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
        let zygote = reexec::spawn_self(Role::ForkServer, "ForkServer", theirs.into())?;
        let reader = ours
            .try_clone()
            .map_err(|e| Error::io("cannot clone the fork server's control socket", e))?;
        let server = Arc::new(Server {
            pid: zygote.id(),
            requests: Mutex::new(Channel::new(ours)),
            state: Mutex::default(),
            changed: Condvar::new(),
        });
        let reporting = server.clone();
        std::thread::Builder::new()
            .name("mp-forkserver".into())
            .spawn(move || reporting.read_reports(Channel::new(reader), zygote))
            .map_err(|e| Error::io("cannot start the thread that hears the fork server", e))?;
        Ok(server)
    }

    fn fork(self: &Arc<Self>, name: &str, socket: UnixStream) -> Result<ForkedChild> {
        let mut requests = lock(&self.requests);
        if let Err(e) = requests.send_with_fds(name.as_bytes(), &[socket.as_fd()]) {
            self.die(format!("its control socket failed ({e})"));
        }
        // The zygote has its own copy now (or never will): ours must not keep the child's
        // channel open, or the parent would not see the child's end.
        drop(socket);
        let mut state = lock(&self.state);
        let answer = loop {
            if let Some(answer) = state.answers.pop_front() {
                break answer;
            }
            if let Some(why) = &state.dead {
                return Err(Error::io(
                    format!("the fork server (process {}) {why}", self.pid),
                    io::Error::from(io::ErrorKind::BrokenPipe),
                ));
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        };
        match answer {
            Ok((pid, serial)) => Ok(ForkedChild {
                server: self.clone(),
                pid,
                serial,
            }),
            Err(errno) => Err(Error::io(
                format!("the fork server (process {}) cannot fork", self.pid),
                io::Error::from_raw_os_error(errno),
            )),
        }
    }

    /// Reads the zygote's answers and reports until it is gone, then reaps it.
    fn read_reports(&self, mut channel: Channel, mut zygote: Child) {
        let why = loop {
            match channel.recv() {
                Ok(Some(frame)) => {
                    if let Err(why) = self.report(&frame) {
                        break why;
                    }
                }
                Ok(None) => break "ended".to_string(),
                Err(e) => break format!("sent something unreadable ({e})"),
            }
        };
        // One that is still there is not ours any more: end it, so the wait below returns.
        let _ = zygote.kill();
        let why = match zygote.wait() {
            Ok(status) => format!(
                "{why}: it {}",
                crate::error::ExitReason::from_status(status)
            ),
            Err(_) => why,
        };
        self.die(why);
    }

    fn report(&self, message: &[u8]) -> std::result::Result<(), String> {
        let word = |at: usize| -> std::result::Result<i32, String> {
            message
                .get(at..at + 4)
                .map(|bytes| i32::from_le_bytes(bytes.try_into().expect("4 bytes")))
                .ok_or_else(|| "sent a truncated report".to_string())
        };
        let mut state = lock(&self.state);
        match message.first() {
            Some(b'F') => {
                let pid = word(1)? as u32;
                let serial = state.next_serial;
                state.next_serial += 1;
                state.running.insert(pid, serial);
                state.handles.insert(serial, None);
                state.answers.push_back(Ok((pid, serial)));
            }
            Some(b'E') => {
                let errno = word(1)?;
                state.answers.push_back(Err(errno));
            }
            Some(b'X') => {
                let (pid, status) = (word(1)? as u32, word(5)?);
                if let Some(serial) = state.running.remove(&pid) {
                    if let Some(slot) = state.handles.get_mut(&serial) {
                        *slot = Some(status);
                    }
                }
            }
            // The zygote refuses to fork, and says why.
            Some(b'R') => return Err(String::from_utf8_lossy(&message[1..]).into_owned()),
            _ => return Err("sent an unknown report".to_string()),
        }
        drop(state);
        self.changed.notify_all();
        Ok(())
    }

    /// Records that the zygote is gone, and wakes everyone waiting on it.
    fn die(&self, why: String) {
        lock(&self.state).dead.get_or_insert(why);
        self.changed.notify_all();
    }
}

impl ForkedChild {
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The zygote's pid: this child's parent.
    pub(crate) fn parent(&self) -> u32 {
        self.server.pid
    }

    /// How the child ended, if the zygote has said so.
    pub(crate) fn try_wait(&self) -> io::Result<Option<ExitStatus>> {
        let state = lock(&self.server.state);
        self.status_in(&state)
    }

    /// Waits until the zygote reports the child's end.
    pub(crate) fn wait(&self) -> io::Result<ExitStatus> {
        let mut state = lock(&self.server.state);
        loop {
            if let Some(status) = self.status_in(&state)? {
                return Ok(status);
            }
            state = self
                .server
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn status_in(&self, state: &State) -> io::Result<Option<ExitStatus>> {
        match (state.handles.get(&self.serial), &state.dead) {
            (Some(Some(status)), _) => Ok(Some(ExitStatus::from_raw(*status))),
            (_, Some(why)) => Err(io::Error::other(format!(
                "the fork server (process {}) that started process {} {why}, so how the \
                 process ended is unknown; the next start uses a new fork server",
                self.server.pid, self.pid
            ))),
            _ => Ok(None),
        }
    }
}

impl Drop for ForkedChild {
    fn drop(&mut self) {
        // The zygote reaps the child anyway; its report is then dropped on arrival.
        lock(&self.server.state).handles.remove(&self.serial);
    }
}

/// Runs the zygote on its control socket; returns this process's exit code, the zygote's, or,
/// in a forked child, the child's once it has served.
pub(crate) fn serve(control: UnixStream, parent_pid: u32, parent_name: &str) -> i32 {
    let signals = match ChildSignals::new() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("mp fork server: cannot open a signalfd: {e}");
            return 1;
        }
    };
    let me = std::process::id();
    let mut channel = Channel::new(control);
    // The next child, forked ahead of time: a request then costs a handoff, not a fork, and
    // the fork of the one after happens while the parent is busy with this one.
    let mut spare: Option<Spare> = None;
    loop {
        if spare.is_none() {
            match fork_spare() {
                Fork::Spare(child) => spare = Some(child),
                // Out of processes or memory for now: try again on the next turn.
                Fork::Later => {}
                Fork::Child(handoff) => {
                    // The child keeps only its own socket: not the control socket, not the
                    // signalfd, and not the blocked SIGCHLD.
                    drop(channel);
                    signals.restore();
                    return serve_spare(handoff, me, parent_pid, parent_name);
                }
                Fork::Refused(why) => {
                    eprintln!("mp fork server: {why}");
                    let _ = channel.send(&[b"R", why.as_bytes()].concat());
                    return 1;
                }
            }
        }
        let requested = match wait_for_request(&channel, &signals) {
            Ok(requested) => requested,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("mp fork server: poll failed: {e}");
                return 1;
            }
        };
        // Reap on every turn: cheap, and no end can be missed between two SIGCHLDs.
        if !reap(&mut channel, &mut spare) {
            return 0;
        }
        if requested {
            if let Some(code) = hand_over(&mut channel, &mut spare) {
                return code;
            }
        }
    }
}

/// What a fork of the next spare gave.
enum Fork {
    /// In the zygote: the new spare.
    Spare(Spare),
    /// In the zygote: none now (out of processes or memory), try on the next turn.
    Later,
    /// In the new child: its end of the handoff socket.
    Child(UnixStream),
    /// The zygote must not fork, for this reason.
    Refused(String),
}

fn fork_spare() -> Fork {
    let Ok((ours, theirs)) = UnixStream::pair() else {
        return Fork::Later;
    };
    match sys::process::fork() {
        Ok(Forked::Child) => Fork::Child(theirs),
        Ok(Forked::Parent(pid)) => Fork::Spare(Spare {
            pid,
            handoff: Channel::new(ours),
        }),
        Ok(Forked::Refused { threads }) => Fork::Refused(format!(
            "refuses to fork: it has {threads} threads, and a child forked from a process with \
             more than one thread can deadlock (a constructor of this program started a thread \
             before `main`); start no thread in a constructor, or use StartMethod::Spawn"
        )),
        Err(_) => Fork::Later,
    }
}

/// Waits for a request or a child's end; whether a request is waiting.
fn wait_for_request(channel: &Channel, signals: &ChildSignals) -> io::Result<bool> {
    if channel.has_frame() {
        return Ok(true);
    }
    let [request, ended] = sys::fd::poll(
        [
            (channel.stream().as_fd(), Interest::Read),
            (signals.fd(), Interest::Read),
        ],
        None,
    )?;
    if ended.readable {
        signals.drain();
    }
    Ok(request.readable || request.broken)
}

/// Reads one request and hands its socket to the spare; `Some(exit code)` when the zygote
/// is done (its parent gone, or the request unreadable).
fn hand_over(channel: &mut Channel, spare: &mut Option<Spare>) -> Option<i32> {
    let mut frame = match channel.recv() {
        Ok(Some(frame)) => frame,
        // The parent is gone; so is this zygote, and its children by their death signal.
        Ok(None) => return Some(0),
        Err(e) => {
            eprintln!("mp fork server: reading a request failed: {e}");
            return Some(1);
        }
    };
    let Some(socket) = frame.fds.pop() else {
        eprintln!("mp fork server: a request came without its socket");
        return Some(1);
    };
    // A spare that died (its end not reaped yet) refuses the handoff: then no child was made,
    // and the next turn forks another spare.
    let answer = match spare.take() {
        Some(mut child) => match child.handoff.send_with_fds(&frame, &[socket.as_fd()]) {
            Ok(()) => [&[b'F'][..], &child.pid.to_le_bytes()].concat(),
            Err(e) => [&[b'E'][..], &e.raw_os_error().unwrap_or(0).to_le_bytes()].concat(),
        },
        None => [&[b'E'][..], &libc::EAGAIN.to_le_bytes()].concat(),
    };
    drop(socket);
    if channel.send(&answer).is_err() {
        return Some(0);
    }
    None
}

/// A child forked ahead of time, waiting on `handoff` for its name and channel.
struct Spare {
    pid: u32,
    handoff: Channel,
}

/// The spare child: arms its death signal, waits for its name and channel, takes its
/// identity, and serves calls.
fn serve_spare(handoff: UnixStream, zygote: u32, parent_pid: u32, parent_name: &str) -> i32 {
    if !reexec::die_with_parent(zygote) {
        // The zygote died before the signal was armed: nobody will ever use this child.
        return 1;
    }
    let mut handoff = Channel::new(handoff);
    let Ok(Some(mut frame)) = handoff.recv() else {
        // The zygote is gone without handing this child any work.
        return 0;
    };
    drop(handoff);
    let Some(socket) = frame.fds.pop() else {
        return 1;
    };
    // The parent the user sees is the process that asked for this child, not the zygote.
    crate::context::set_identity(&String::from_utf8_lossy(&frame), parent_name, parent_pid);
    crate::worker::serve(UnixStream::from(socket))
}

/// Reaps every child that has ended and reports it; false if the parent is gone.
fn reap(channel: &mut Channel, spare: &mut Option<Spare>) -> bool {
    // Only this loop reaps: every end is reported.
    while let Some((pid, status)) = sys::process::reap_any() {
        if spare.as_ref().is_some_and(|spare| spare.pid == pid) {
            // Killed before it was used: the parent never heard of it.
            *spare = None;
            continue;
        }
        let report = [&[b'X'][..], &pid.to_le_bytes(), &status.to_le_bytes()].concat();
        if channel.send(&report).is_err() {
            return false;
        }
    }
    true
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
