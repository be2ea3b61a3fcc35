//! The parent's side: a socket for each worker to send records on, the reader thread that
//! queues them marked with their sender, and the logger thread that passes them to the
//! parent's logger or subscriber. The lock here is mp's alone: no user code runs while it is
//! held.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use super::{MAX_RECORD, ORDER_WAIT, Origin, SEND_WAIT, Sent};
use crate::sys;
use crate::sys::fd::{Packet, ReadableSet};
use crate::wire::codec;

/// The most records queued for the logger; more are dropped, and counted.
const QUEUE_RECORDS: usize = 4096;

/// The most bytes of messages queued for the logger; more are dropped, and counted.
const QUEUE_BYTES: usize = 8 << 20;

/// The most packets the reader takes from one socket while it holds the lock, so that a
/// flood keeps no reply waiting on the lock for long.
const READ_BATCH: usize = 16;

/// How often, at most, a logger that cannot catch up is told how many records were dropped.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The relays of this process and of the processes it is a `fork()` copy of, in the order they
/// were made: a copy has its original's relay in memory but not its threads, so it makes its
/// own in the next free place. A copy of a copy deeper than this relays nothing.
static RELAYS: [OnceLock<Relay>; 8] = [const { OnceLock::new() }; 8];

/// One process's relay.
struct Relay {
    /// The process that made it.
    owner: u32,
    /// What its threads share; `None` when they could not start.
    shared: Option<Arc<Shared>>,
}

/// What the reader and the logger thread share.
struct Shared {
    /// The workers' sockets, for the reader to wait on.
    sockets: ReadableSet,
    state: Mutex<State>,
    /// The logger thread waits on it for records.
    queued: Condvar,
    /// [`settle`] waits on it for the logger thread to pass records on.
    passed: Condvar,
}

/// What reading a worker's socket came to.
enum Read {
    /// All that was there (or the most asked for) was read.
    Drained,
    /// Every sender is gone or shut its end down: the socket would be readable for ever, with
    /// nothing to read.
    Ended,
}

/// What the relay knows, under its lock.
struct State {
    /// The buffer packets are read into.
    buf: Vec<u8>,
    /// Items read and not yet passed on, oldest first, each with its number.
    queue: VecDeque<(u64, Marked)>,
    /// Bytes of messages in `queue`.
    queued_bytes: usize,
    /// The number of the last item queued; items are numbered from 1 as they are read.
    read: u64,
    /// The number of the last item passed on: every one up to it has been.
    passed: u64,
    /// The logger took longer than [`ORDER_WAIT`]: no reply waits for it until it catches up.
    behind: bool,
    /// Records lost here since the logger last said so.
    lost: Lost,
    /// When the logger last said so.
    reported: Instant,
    /// The workers this process started and that have not ended, by pid.
    workers: HashMap<u32, Worker>,
    /// The number of the last item queued of each MPI rank (on rank 0).
    #[cfg(feature = "mpi")]
    ranks: HashMap<i32, u64>,
}

/// A worker: its name, the end of its log socket that this process reads, and the number of
/// the last item of it queued.
struct Worker {
    name: String,
    socket: OwnedFd,
    last: u64,
}

/// What the logger thread passes on, with the mark that says who sent it.
struct Marked {
    sent: Sent,
    mark: String,
}

#[derive(Default)]
struct Lost {
    /// Dropped for want of room in the queue.
    dropped: u64,
    /// Packets that were no record of this build (a task wrote to its socket itself).
    unreadable: u64,
}

/// What worker `pid`, called `name`, is given when this process's logging is set up: the level
/// filter (1 error to 5 trace) and the sending end of a log socket of its own. `None` when no
/// logger or subscriber would take its records, so a program that logs nothing pays nothing.
pub(crate) fn for_child(pid: u32, name: &str) -> Option<(u8, OwnedFd)> {
    let level = level();
    if level == 0 {
        return None;
    }
    let shared = relay()?;
    let made = sys::fd::packet_pair(SEND_WAIT).and_then(|(incoming, outgoing)| {
        shared.sockets.add(incoming.as_fd(), u64::from(pid))?;
        Ok((incoming, outgoing))
    });
    let (incoming, outgoing) = match made {
        Ok(made) => made,
        Err(error) => {
            eprintln!("mp: the logs of {name} cannot reach this process's logger: {error}");
            return None;
        }
    };
    let worker = Worker {
        name: name.to_string(),
        socket: incoming,
        last: 0,
    };
    shared.lock().workers.insert(pid, worker);
    Some((level, outgoing))
}

/// Worker `pid` was reaped: what it sent is queued, and its socket closed. (A process it
/// started that still holds the socket can log no more.)
pub(crate) fn worker_ended(pid: u32) {
    let Some(shared) = ours() else { return };
    let mut state = shared.lock();
    state.read_from(pid, QUEUE_RECORDS);
    state.workers.remove(&pid);
    drop(state);
    shared.queued.notify_one();
}

/// Called before a reply from worker `pid` is delivered: waits until the records that worker
/// sent before it are passed on to this process's logger, for at most [`ORDER_WAIT`] in all
/// (and not at all while the logger is behind).
pub(crate) fn settle(pid: u32) {
    if let Some(shared) = ours() {
        shared.settle(pid);
    }
}

/// The level to tell worker ranks, when rank 0's logging is set up and its relay runs to take
/// their records: 0 (none) to 5 (trace).
#[cfg(feature = "mpi")]
pub(crate) fn for_ranks() -> u8 {
    let level = level();
    if level == 0 || relay().is_none() {
        return 0;
    }
    level
}

/// On rank 0: queues `message`, a record MPI says rank `rank` sent, marked with that rank.
#[cfg(feature = "mpi")]
pub(crate) fn from_rank(rank: i32, message: &[u8]) {
    let Some(shared) = ours() else { return };
    let mut state = shared.lock();
    match codec::decode::<super::FromRank>(message) {
        Ok(relayed) if relayed.sent.is_well_formed() => {
            if !state.full(relayed.sent.len()) {
                // The rank's own word goes only after the rank that MPI names.
                let mark = match relayed.worker {
                    Some(worker) => format!("rank {rank} {worker}"),
                    None => format!("rank {rank}"),
                };
                let number = state.admit(relayed.sent, mark);
                state.ranks.insert(rank, number);
            }
        }
        _ => state.lost.unreadable += 1,
    }
    drop(state);
    shared.queued.notify_one();
}

/// On rank 0, before a reply from rank `rank` is delivered (and after its records that came
/// before it were queued): waits until those are passed on, as [`settle`] does for a worker.
#[cfg(feature = "mpi")]
pub(crate) fn settle_rank(rank: i32) {
    let Some(shared) = ours() else { return };
    let deadline = Instant::now() + ORDER_WAIT;
    let state = shared.lock();
    let Some(&last) = state.ranks.get(&rank) else {
        return;
    };
    shared.wait_passed(state, last, deadline);
}

/// At the end of an MPI job: waits up to `limit` for every record queued to be passed on (on
/// a worker rank, sent to rank 0), and says on standard error how many were not.
#[cfg(feature = "mpi")]
pub(crate) fn flush(limit: Duration) {
    let Some(shared) = ours() else { return };
    let deadline = Instant::now() + limit;
    let mut state = shared.lock();
    // Records the workers sent before they ended may not be read yet.
    let pids: Vec<u32> = state.workers.keys().copied().collect();
    for pid in pids {
        state.read_from(pid, QUEUE_RECORDS);
    }
    shared.queued.notify_one();
    while state.passed < state.read || state.lost.any() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let left = state.read - state.passed + state.lost.dropped;
            eprintln!(
                "mp: {left} log records of worker processes were not logged: this process's \
                 logger did not take them within {limit:?} of the job's end"
            );
            return;
        }
        state = shared
            .passed
            .wait_timeout(state, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// This process's relay, if it has one running.
fn ours() -> Option<&'static Shared> {
    let pid = sys::process::pid();
    RELAYS
        .iter()
        .map_while(OnceLock::get)
        .find(|relay| relay.owner == pid)
        .and_then(|relay| relay.shared.as_deref())
}

/// This process's relay, started on first use. One whose threads cannot start (no descriptor
/// or thread to spare) is said on standard error, and another is tried at the next worker's
/// start.
fn relay() -> Option<&'static Shared> {
    let pid = sys::process::pid();
    for place in &RELAYS {
        // Made at most once, however many threads ask at once.
        let relay = place.get_or_init(start);
        // One made by the process this one is a copy of has no threads here; one of ours
        // whose threads could not start is passed over.
        if relay.owner == pid
            && let Some(shared) = &relay.shared
        {
            return Some(shared);
        }
    }
    eprintln!("mp: the logs of worker processes cannot reach this process's logger");
    None
}

/// Makes a relay and starts its threads.
fn start() -> Relay {
    let owner = sys::process::pid();
    let shared = match Shared::start() {
        Ok(shared) => Some(shared),
        Err(error) => {
            eprintln!(
                "mp: the logs of worker processes cannot reach this process's logger: {error}"
            );
            None
        }
    };
    Relay { owner, shared }
}

/// The most verbose level the parent's logger or subscriber takes: 0 (none) to 5 (trace).
fn level() -> u8 {
    // `log`'s filter counts in both builds: the parent passes records to its logger.
    let log = log::max_level() as u8;
    #[cfg(feature = "tracing")]
    if tracing_core::dispatcher::has_been_set() {
        use tracing_core::LevelFilter;
        let tracing = match LevelFilter::current() {
            LevelFilter::ERROR => 1,
            LevelFilter::WARN => 2,
            LevelFilter::INFO => 3,
            LevelFilter::DEBUG => 4,
            LevelFilter::TRACE => 5,
            _ => 0,
        };
        return log.max(tracing);
    }
    log
}

impl Shared {
    fn start() -> std::io::Result<Arc<Shared>> {
        let shared = Arc::new(Shared {
            sockets: ReadableSet::new()?,
            state: Mutex::new(State {
                // Room for one more byte than a record may take, to tell one that is longer.
                buf: vec![0; MAX_RECORD + 1],
                queue: VecDeque::new(),
                queued_bytes: 0,
                read: 0,
                passed: 0,
                behind: false,
                lost: Lost::default(),
                reported: Instant::now(),
                workers: HashMap::new(),
                #[cfg(feature = "mpi")]
                ranks: HashMap::new(),
            }),
            queued: Condvar::new(),
            passed: Condvar::new(),
        });
        let reader = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("mp-log-reader".into())
            .spawn(move || reader.read_forever())?;
        // Should this one not start, the reader waits on no socket, for ever, harmlessly.
        let logger = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("mp-log-writer".into())
            .spawn(move || logger.log_forever())?;
        Ok(shared)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The reader thread: queues records as they come, for as long as the process lives (a
    /// later worker may log again). It runs none of the user's code.
    fn read_forever(&self) {
        let mut ready = Vec::new();
        loop {
            match self.sockets.wait(&mut ready) {
                Ok(()) => {
                    let mut state = self.lock();
                    for &pid in &ready {
                        // The pid was the key the socket was added with.
                        let pid = pid as u32;
                        if let Read::Ended = state.read_from(pid, READ_BATCH) {
                            if let Some(worker) = state.workers.get(&pid) {
                                let _ = self.sockets.remove(worker.socket.as_fd());
                            }
                        }
                    }
                    drop(state);
                    self.queued.notify_one();
                }
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    eprintln!("mp: the log relay stopped: {error}");
                    return;
                }
            }
        }
    }

    /// The logger thread: passes queued records on, one at a time, with nothing locked while
    /// the user's logger runs. A logger that blocks holds up this thread only.
    fn log_forever(&self) {
        let mut state = self.lock();
        loop {
            while state.queue.is_empty() && !state.lost.any() {
                state = self
                    .queued
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            // What was lost is said once the logger has caught up, or each second while not.
            let lost = if state.queue.is_empty() || state.reported.elapsed() >= REPORT_EVERY {
                state.reported = Instant::now();
                std::mem::take(&mut state.lost)
            } else {
                Lost::default()
            };
            let next = state.queue.pop_front();
            if let Some((_, marked)) = &next {
                state.queued_bytes -= marked.len();
            }
            drop(state);
            if lost.any() {
                user_code(|| report(&lost));
            }
            if let Some((_, marked)) = &next {
                user_code(|| pass_on(marked));
            }
            state = self.lock();
            if let Some((number, _)) = next {
                state.passed = number;
            }
            if state.queue.is_empty() {
                state.behind = false;
            }
            self.passed.notify_all();
        }
    }

    fn settle(&self, pid: u32) {
        let deadline = Instant::now() + ORDER_WAIT;
        let mut state = self.lock();
        // The worker's records are on its socket by now, if not read yet: read them.
        state.read_from(pid, QUEUE_RECORDS);
        let Some(last) = state.workers.get(&pid).map(|worker| worker.last) else {
            return;
        };
        self.queued.notify_one();
        self.wait_passed(state, last, deadline);
    }

    /// Waits until item `last` is passed on, until `deadline` and not at all while the logger
    /// is behind; a wait that reaches the deadline puts the logger behind.
    fn wait_passed(&self, mut state: MutexGuard<'_, State>, last: u64, deadline: Instant) {
        while state.passed < last && !state.behind {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                state.behind = true;
                return;
            }
            state = self
                .passed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// Runs the user's logger: one that panics loses that record, not the thread; a panic whose
/// payload panics again when dropped is not dropped, but leaked.
fn user_code(f: impl FnOnce()) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(f)) {
        std::mem::forget(payload);
    }
}

impl State {
    /// Queues up to `most` packets from worker `pid`'s socket.
    fn read_from(&mut self, pid: u32, most: usize) -> Read {
        for _ in 0..most {
            let Some(worker) = self.workers.get(&pid) else {
                return Read::Drained;
            };
            let packet = match sys::fd::recv_packet(worker.socket.as_fd(), &mut self.buf) {
                Ok(Some(packet)) => packet,
                Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Read::Ended;
                }
                Ok(None) | Err(_) => return Read::Drained,
            };
            self.take(pid, &packet);
        }
        Read::Drained
    }

    /// Queues the packet in `buf`, which came on worker `pid`'s socket, marked with its
    /// sender; or counts it lost.
    fn take(&mut self, pid: u32, packet: &Packet) {
        if self.queue.len() >= QUEUE_RECORDS {
            // Dropped unread: a flood costs the reader as little as can be.
            self.lost.dropped += 1;
            return;
        }
        let sent = match codec::decode::<Sent>(&self.buf[..packet.len]) {
            Ok(sent) if !packet.cut && sent.is_well_formed() => sent,
            _ => {
                self.lost.unreadable += 1;
                return;
            }
        };
        if self.full(sent.len()) {
            return;
        }
        let Some(worker) = self.workers.get(&pid) else {
            return;
        };
        let mark = match packet.sender {
            Some(sender) if sender == pid => format!("{} {pid}", worker.name),
            // A process the worker started itself (a task's fork, say), as the kernel says.
            Some(sender) => format!("pid {sender}"),
            None => format!("a process of {} {pid}", worker.name),
        };
        let number = self.admit(sent, mark);
        if let Some(worker) = self.workers.get_mut(&pid) {
            worker.last = number;
        }
    }

    /// Queues `sent`, marked `mark`, as the next item; returns its number.
    fn admit(&mut self, sent: Sent, mark: String) -> u64 {
        self.read += 1;
        let marked = Marked { sent, mark };
        self.queued_bytes += marked.len();
        self.queue.push_back((self.read, marked));
        self.read
    }

    /// Whether an item of `len` bytes of message finds no room in the queue (and is counted
    /// dropped).
    fn full(&mut self, len: usize) -> bool {
        if self.queue.len() >= QUEUE_RECORDS || self.queued_bytes + len > QUEUE_BYTES {
            self.lost.dropped += 1;
            return true;
        }
        false
    }
}

impl Sent {
    /// The bytes of message it counts for in the queue.
    fn len(&self) -> usize {
        match self {
            Sent::Record(record) => record.message.len(),
            Sent::Unsent(_) => 0,
        }
    }

    /// Whether the parent can pass it on as it is: a record's level is one of `log`'s.
    fn is_well_formed(&self) -> bool {
        match self {
            Sent::Record(record) => (1..=5).contains(&record.level),
            Sent::Unsent(count) => *count > 0,
        }
    }
}

impl Marked {
    /// The bytes of message it counts for in the queue.
    fn len(&self) -> usize {
        self.sent.len()
    }
}

impl Lost {
    fn any(&self) -> bool {
        self.dropped > 0 || self.unreadable > 0
    }
}

/// Says, through the parent's logger, how many records were lost here since it last said so.
fn report(lost: &Lost) {
    if lost.dropped > 0 {
        warn(format_args!(
            "{} records of worker processes were dropped: this process's logger did not keep up",
            lost.dropped
        ));
    }
    if lost.unreadable > 0 {
        warn(format_args!(
            "{} messages on the log sockets of worker processes were not records of this build, \
             and were dropped",
            lost.unreadable
        ));
    }
}

/// Logs a warning of mp's own through the parent's logger.
fn warn(message: std::fmt::Arguments<'_>) {
    deliver(
        &log::Record::builder()
            .args(message)
            .level(log::Level::Warn)
            .target("mp_runtime::logs")
            .module_path_static(Some(module_path!()))
            .build(),
        Origin::Log,
    );
}

/// Passes `marked` to the parent's subscriber or logger: a record to the one of the library it
/// was logged with when the parent has both, else to the one it has.
fn pass_on(marked: &Marked) {
    // A worker rank forwards its workers' records to rank 0 as they are, marks apart.
    #[cfg(feature = "mpi")]
    if super::forward::to_rank_zero(&marked.sent, &marked.mark) {
        return;
    }
    let record = match &marked.sent {
        Sent::Record(record) => record,
        Sent::Unsent(count) => {
            warn(format_args!(
                "[{}] {count} of its records were dropped: it could not send them in time",
                marked.mark
            ));
            return;
        }
    };
    let Some(level) = log::Level::iter().nth(usize::from(record.level).saturating_sub(1)) else {
        return;
    };
    deliver(
        &log::Record::builder()
            .args(format_args!("[{}] {}", marked.mark, record.message))
            .level(level)
            .target(&record.target)
            .module_path(record.module_path.as_deref())
            .file(record.file.as_deref())
            .line(record.line)
            .build(),
        record.origin,
    );
}

#[cfg_attr(
    not(feature = "tracing"),
    allow(unused_variables, reason = "only `tracing` has a second destination")
)]
fn deliver(record: &log::Record<'_>, origin: Origin) {
    let to_log = log::max_level() != log::LevelFilter::Off;
    #[cfg(feature = "tracing")]
    if tracing_core::dispatcher::has_been_set() && (origin == Origin::Tracing || !to_log) {
        // As `tracing_log::LogTracer` passes on a `log` record: the subscriber's filters and
        // formatting see its own target, module, file and line.
        let _ = tracing_log::format_trace(record);
        return;
    }
    let logger = log::logger();
    if to_log && record.level() <= log::max_level() && logger.enabled(record.metadata()) {
        logger.log(record);
    }
}
