//! The parent's side: the socket workers send records on, the reader thread that queues them
//! marked with their sender, and the logger thread that passes them to the parent's logger or
//! subscriber. The lock here is mp's alone: no user code runs while it is held.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use super::{MAX_RECORD, ORDER_WAIT, Origin, Record, SEND_WAIT};
use crate::sys;
use crate::sys::fd::{Datagram, Interest};
use crate::wire::codec;

/// The most records queued for the logger; more are dropped, and counted.
const QUEUE_RECORDS: usize = 4096;

/// The most bytes of messages queued for the logger; more are dropped, and counted.
const QUEUE_BYTES: usize = 8 << 20;

/// The most datagrams one look at the socket reads while holding the lock, so that a flood
/// keeps no reply waiting on it for long.
const READ_BATCH: usize = 64;

/// How many ended workers keep their names, for records read after they were reaped.
const ENDED_KEPT: usize = 256;

/// The parent's log socket and what its two threads share.
struct Relay {
    incoming: OwnedFd,
    outgoing: OwnedFd,
    /// The process that made it: in a forked copy, which has neither thread, it is not used.
    owner: u32,
    state: Mutex<State>,
    /// The logger thread waits on it for records.
    queued: Condvar,
    /// [`settle`] waits on it for the logger thread to pass records on.
    passed: Condvar,
}

/// What the relay knows, under its lock.
struct State {
    /// The buffer datagrams are read into.
    buf: Vec<u8>,
    /// Records read and not yet passed on, oldest first, each with its number.
    queue: VecDeque<(u64, Marked)>,
    /// Bytes of messages in `queue`.
    queued_bytes: usize,
    /// The number of the last record queued; records are numbered from 1 as they are read.
    read: u64,
    /// The number of the last record passed on: every record up to it has been.
    passed: u64,
    /// The logger took longer than [`ORDER_WAIT`]: no reply waits for it until it catches up.
    behind: bool,
    /// Records lost since the logger last said so.
    lost: Lost,
    /// The workers this process started, by pid.
    workers: HashMap<u32, Worker>,
    /// Ended workers, oldest first, with the start each name is for.
    ended: VecDeque<(u32, u64)>,
    /// Workers started so far: each start's number.
    starts: u64,
    /// The number of the last record queued of each MPI rank (on rank 0).
    #[cfg(feature = "mpi")]
    ranks: HashMap<i32, u64>,
}

/// A worker's name, and the number of the last record of it queued.
struct Worker {
    name: String,
    start: u64,
    last: u64,
}

/// A record as read, with the mark that says who sent it.
struct Marked {
    record: Record,
    mark: String,
}

#[derive(Default)]
struct Lost {
    /// Dropped for want of room, here or in the worker.
    dropped: u64,
    /// Datagrams that were no record of this build (a task wrote to the socket itself).
    unreadable: u64,
}

static RELAY: OnceLock<&'static Relay> = OnceLock::new();

/// What a new worker is given, when this process's logging is set up: the level filter (1
/// error to 5 trace) and a copy of the socket to send records on. `None` when no logger or
/// subscriber would take its records, so a program that logs nothing pays nothing.
pub(crate) fn for_child() -> Option<(u8, OwnedFd)> {
    let level = level();
    if level == 0 {
        return None;
    }
    let relay = relay()?;
    let socket = relay.outgoing.try_clone().ok()?;
    Some((level, socket))
}

/// Notes that this process started worker `pid`, called `name`: its records are marked so.
pub(crate) fn worker_started(pid: u32, name: &str) {
    let Some(relay) = ours() else { return };
    let mut state = relay.lock();
    state.starts += 1;
    let start = state.starts;
    let worker = Worker {
        name: name.to_string(),
        start,
        last: 0,
    };
    state.workers.insert(pid, worker);
}

/// Notes that worker `pid` was reaped. Its name is kept for a while, for records of it still
/// to be read.
pub(crate) fn worker_ended(pid: u32) {
    let Some(relay) = ours() else { return };
    let mut state = relay.lock();
    let Some(start) = state.workers.get(&pid).map(|worker| worker.start) else {
        return;
    };
    state.ended.push_back((pid, start));
    if state.ended.len() > ENDED_KEPT {
        if let Some((pid, start)) = state.ended.pop_front() {
            // Unless the pid was reused by a later worker.
            if state
                .workers
                .get(&pid)
                .is_some_and(|worker| worker.start == start)
            {
                state.workers.remove(&pid);
            }
        }
    }
}

/// Called before a reply from worker `pid` is delivered: waits until the records that worker
/// sent before it are passed on to this process's logger, for at most [`ORDER_WAIT`] (and not
/// at all while the logger is behind).
pub(crate) fn settle(pid: u32) {
    if let Some(relay) = ours() {
        relay.settle(pid);
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
    let Some(relay) = ours() else { return };
    let mut state = relay.lock();
    match codec::decode::<super::FromRank>(message) {
        Ok(relayed) => {
            // The rank's own word goes only after the rank that MPI names.
            let mark = match relayed.worker {
                Some(worker) => format!("rank {rank} {worker}"),
                None => format!("rank {rank}"),
            };
            if let Some(number) = state.admit(relayed.record, mark) {
                state.ranks.insert(rank, number);
            }
        }
        Err(_) => state.lost.unreadable += 1,
    }
    relay.queued.notify_one();
}

/// On rank 0, before a reply from rank `rank` is delivered (and after its records that came
/// before it were queued): waits until those are passed on, as [`settle`] does for a worker.
#[cfg(feature = "mpi")]
pub(crate) fn settle_rank(rank: i32) {
    let Some(relay) = ours() else { return };
    let state = relay.lock();
    let Some(&last) = state.ranks.get(&rank) else {
        return;
    };
    relay.wait_passed(state, last);
}

/// At the end of an MPI job: waits up to `limit` for every record queued to be passed on (on
/// a worker rank, sent to rank 0), and says on standard error how many were not.
#[cfg(feature = "mpi")]
pub(crate) fn flush(limit: std::time::Duration) {
    let Some(relay) = ours() else { return };
    let mut state = relay.lock();
    // Records the workers sent before they ended may not be read yet.
    relay.read_queued(&mut state, QUEUE_RECORDS);
    let deadline = Instant::now() + limit;
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
        state = relay
            .passed
            .wait_timeout(state, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// The relay, when this process made it (a forked copy has its memory but not its threads).
fn ours() -> Option<&'static Relay> {
    RELAY
        .get()
        .copied()
        .filter(|relay| relay.owner == std::process::id())
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

/// The relay, started on first use. A relay that cannot start (no descriptor or thread to
/// spare) is said once on standard error, and tried again at the next worker's start.
fn relay() -> Option<&'static Relay> {
    static STARTING: Mutex<()> = Mutex::new(());
    if RELAY.get().is_some() {
        return ours();
    }
    let _starting = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
    if RELAY.get().is_some() {
        return ours();
    }
    match start() {
        Ok(relay) => Some(relay),
        Err(error) => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                eprintln!(
                    "mp: the logs of worker processes cannot reach this process's logger: {error}"
                );
            });
            None
        }
    }
}

/// Makes the socket and starts both threads; the relay is set only once both run.
fn start() -> std::io::Result<&'static Relay> {
    let (incoming, outgoing) = sys::fd::datagram_pair(SEND_WAIT)?;
    // Leaked until both threads have started, so that each has a `'static` relay to use: a
    // failed start frees nothing, which is at most one relay for each failure said above.
    let relay: &'static Relay = Box::leak(Box::new(Relay {
        incoming,
        outgoing,
        owner: std::process::id(),
        state: Mutex::new(State {
            // Room for one more byte than a record may take, to tell one that is longer.
            buf: vec![0; MAX_RECORD + 1],
            queue: VecDeque::new(),
            queued_bytes: 0,
            read: 0,
            passed: 0,
            behind: false,
            lost: Lost::default(),
            workers: HashMap::new(),
            ended: VecDeque::new(),
            starts: 0,
            #[cfg(feature = "mpi")]
            ranks: HashMap::new(),
        }),
        queued: Condvar::new(),
        passed: Condvar::new(),
    }));
    std::thread::Builder::new()
        .name("mp-log-reader".into())
        .spawn(move || relay.read_forever())?;
    std::thread::Builder::new()
        .name("mp-log-writer".into())
        .spawn(move || relay.log_forever())?;
    Ok(*RELAY.get_or_init(|| relay))
}

impl Relay {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The reader thread: queues records as they come, for as long as the process lives (a
    /// later worker may log again). It runs none of the user's code.
    fn read_forever(&self) {
        loop {
            match sys::fd::poll([(self.incoming.as_fd(), Interest::Read)], None) {
                Ok(_) => {
                    let mut state = self.lock();
                    self.read_queued(&mut state, READ_BATCH);
                }
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    eprintln!("mp: the log relay stopped: {error}");
                    return;
                }
            }
        }
    }

    /// Reads up to `most` datagrams queued on the socket into the queue.
    fn read_queued(&self, state: &mut State, most: usize) {
        let before = state.read;
        for _ in 0..most {
            let Ok(Some(datagram)) = sys::fd::recv_datagram(self.incoming.as_fd(), &mut state.buf)
            else {
                break;
            };
            state.take(&datagram);
        }
        if state.read != before || state.lost.any() {
            self.queued.notify_one();
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
            let lost = std::mem::take(&mut state.lost);
            let next = state.queue.pop_front();
            if let Some((_, marked)) = &next {
                state.queued_bytes -= marked.record.message.len();
            }
            drop(state);
            // A logger that panics loses that record, not this thread.
            if lost.any() {
                let _ = panic::catch_unwind(AssertUnwindSafe(|| report(&lost)));
            }
            if let Some((_, marked)) = &next {
                let _ = panic::catch_unwind(AssertUnwindSafe(|| pass_on(marked)));
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
        let mut state = self.lock();
        // The worker's records are on the socket by now, if not read yet: read them.
        self.read_queued(&mut state, QUEUE_RECORDS);
        let Some(last) = state.workers.get(&pid).map(|worker| worker.last) else {
            return;
        };
        self.wait_passed(state, last);
    }

    /// Waits until record `last` is passed on, for at most [`ORDER_WAIT`], and not at all
    /// while the logger is behind; one that takes longer puts the logger behind.
    fn wait_passed(&self, mut state: MutexGuard<'_, State>, last: u64) {
        let deadline = Instant::now() + ORDER_WAIT;
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

impl State {
    /// Queues the datagram in `buf` as a record of the process the kernel says sent it, or
    /// counts it lost.
    fn take(&mut self, datagram: &Datagram) {
        let record = match codec::decode::<Record>(&self.buf[..datagram.len]) {
            Ok(record) if !datagram.cut => record,
            _ => {
                self.lost.unreadable += 1;
                return;
            }
        };
        let mark = match datagram.sender {
            Some(pid) => match self.workers.get(&pid) {
                Some(worker) => format!("{} {pid}", worker.name),
                // A process a worker started itself (a task's fork, say).
                None => format!("pid {pid}"),
            },
            None => "unknown process".to_string(),
        };
        let Some(number) = self.admit(record, mark) else {
            return;
        };
        if let Some(worker) = datagram.sender.and_then(|pid| self.workers.get_mut(&pid)) {
            worker.last = number;
        }
    }

    /// Queues `record`, marked `mark`, and returns its number; or counts it dropped when the
    /// queue is full. Counts too what its sender could not send before it.
    fn admit(&mut self, record: Record, mark: String) -> Option<u64> {
        self.lost.dropped += u64::from(record.unsent);
        if self.queue.len() >= QUEUE_RECORDS
            || self.queued_bytes + record.message.len() > QUEUE_BYTES
        {
            self.lost.dropped += 1;
            return None;
        }
        self.read += 1;
        let number = self.read;
        self.queued_bytes += record.message.len();
        self.queue.push_back((number, Marked { record, mark }));
        Some(number)
    }
}

impl Lost {
    fn any(&self) -> bool {
        self.dropped > 0 || self.unreadable > 0
    }
}

/// Says, through the parent's logger, how many records were lost since it last said so.
fn report(lost: &Lost) {
    let say = |what: std::fmt::Arguments<'_>| {
        deliver(
            &log::Record::builder()
                .args(what)
                .level(log::Level::Warn)
                .target("mp_runtime::logs")
                .module_path_static(Some(module_path!()))
                .build(),
            Origin::Log,
        );
    };
    if lost.dropped > 0 {
        say(format_args!(
            "{} records of worker processes were dropped: this process's logger did not keep up",
            lost.dropped
        ));
    }
    if lost.unreadable > 0 {
        say(format_args!(
            "{} messages on the log socket of worker processes were not records of this build, \
             and were dropped",
            lost.unreadable
        ));
    }
}

/// Passes `marked` to the parent's subscriber or logger: to the one of the library it was
/// logged with when the parent has both, else to the one it has.
fn pass_on(marked: &Marked) {
    let record = &marked.record;
    // A worker rank forwards its workers' records to rank 0 as they are, marks apart.
    #[cfg(feature = "mpi")]
    if super::forward::to_rank_zero(record, &marked.mark) {
        return;
    }
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
