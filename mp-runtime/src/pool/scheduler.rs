//! The pool's engine: a queue of tasks (`task_queue`) and one driver thread per worker
//! process.
//!
//! A task is a chunk of encoded argument tuples for one function. Each driver owns one worker
//! process: it starts it (and runs the initializer), sends it up to [`IN_FLIGHT`] tasks at a
//! time (more than one only while its tasks are short and no other worker is idle), hands each
//! reply to the task's [`Sink`], and replaces the worker when it dies or has done its
//! `max_tasks_per_child`. A worker that dies fails the one task it was running; the
//! tasks queued behind it go back to the front of the queue, so every task runs once. A task
//! with a time limit that runs past it has its worker killed the same way, and fails with a
//! timeout.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub(super) use super::task_queue::Next;
use super::task_queue::TaskQueue;
use crate::base::{Error, ExitReason, Kind, Result};
use crate::runtime::registry::Entry;
use crate::runtime::sandbox::Sandboxing;
use crate::runtime::spawn::{self, ChildProcess, Killer, Received, StartMethod};
use crate::sys::{self, Signal};
use crate::wire::codec;
use crate::wire::frame::Frame;
use crate::wire::panics;
use crate::wire::protocol::{Args, Outcomes, Request};
use crate::wire::ring::link::Link;

/// Tasks sent to one worker before its first reply: enough to hide the round trip, few enough
/// that a worker's death sends little back to the queue.
const IN_FLIGHT: usize = 8;
// The rings keep room for this many answers' markers (`wire/ring/README.md`, "Sending"); under
// loom they are a model of a few bytes, and no pool uses them.
#[cfg(not(loom))]
const _: () = assert!(IN_FLIGHT as u64 <= crate::wire::ring::MAX_UNREAD);

/// A worker is sent a second task before the first is done only when its tasks take less than
/// this: then the saved round trip matters, and a task stuck behind another waits little.
const PREFETCH_BELOW: Duration = Duration::from_millis(1);

/// What a task produced: one outcome per item, or why there are none.
pub(crate) type Raw = Result<Outcomes>;

/// Where the result of a task goes.
pub(crate) trait Sink: Send + Sync {
    /// Called once per task with its index in the submission.
    fn deliver(&self, index: usize, result: Raw);
}

/// A chunk of calls of one function.
///
/// Its outcome is delivered exactly once: by [`finish`](Task::finish), or, if the task is
/// dropped unfinished (its pool went away, or a bug unwound the thread that held it), by its
/// drop, as the pool's closing error.
pub(crate) struct Task {
    pub function: &'static Entry,
    /// Kept until the task is done, so that it can be sent again after its worker died.
    pub args: Args,
    /// How many workers died running this task so far.
    pub deaths: u32,
    pub index: usize,
    /// How long the worker may run it; past that the worker is killed and the task fails.
    pub timeout: Option<Duration>,
    /// Where the outcome goes; taken when it is delivered.
    sink: Option<Arc<dyn Sink>>,
    pub control: Arc<Control>,
}

impl Task {
    pub(crate) fn new(
        function: &'static Entry,
        args: Args,
        index: usize,
        sink: Arc<dyn Sink>,
        control: Arc<Control>,
        timeout: Option<Duration>,
    ) -> Task {
        Task {
            function,
            args,
            deaths: 0,
            index,
            timeout,
            sink: Some(sink),
            control,
        }
    }

    pub(super) fn finish(mut self, result: Raw) {
        self.deliver(result);
    }

    fn deliver(&mut self, result: Raw) {
        if let Some(sink) = self.sink.take() {
            // The handles' descriptors are closed before anyone hears that the task is done.
            self.args.close_fds();
            // The sink may hold the last handle on a result nobody waits for: dropping it runs
            // the result's `Drop`, user code, whose panic must not end a pool thread.
            let index = self.index;
            if let Err(panic) = panics::catch(move || sink.deliver(index, result)) {
                let location = panic.location.as_deref().unwrap_or("an unknown place");
                eprintln!(
                    "mp: dropping a pool's result panicked at {location}: {}; the pool goes on",
                    panic.message
                );
            }
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.deliver(Err(Error::new(Kind::Closed)));
    }
}

/// Lets the owner of a submission cancel its tasks: queued ones never run, running ones have
/// their worker killed (and replaced).
#[derive(Default)]
pub(crate) struct Control {
    state: Mutex<ControlState>,
}

#[derive(Default)]
struct ControlState {
    cancelled: bool,
    /// The workers running tasks of this submission now.
    running: Vec<Arc<Slot>>,
}

impl Control {
    /// Queued tasks of this submission will not run; running ones finish, their results
    /// unused. For a failed map, whose other results no one will read.
    pub(crate) fn skip_queued(&self) {
        lock(&self.state).cancelled = true;
    }

    /// Like [`skip_queued`](Control::skip_queued), and the workers running tasks of this
    /// submission are killed (and replaced). For an explicit cancel.
    pub(crate) fn cancel(&self) {
        let mut state = lock(&self.state);
        state.cancelled = true;
        for slot in state.running.drain(..) {
            slot.kill_for_cancel();
        }
    }

    /// Records that `slot` runs a task of this submission; false if it was cancelled.
    pub(super) fn start(&self, slot: &Arc<Slot>) -> bool {
        let mut state = lock(&self.state);
        if !state.cancelled {
            state.running.push(slot.clone());
        }
        !state.cancelled
    }

    /// Records that the task on `slot` is over; false if it was cancelled meanwhile.
    pub(super) fn stop(&self, slot: &Arc<Slot>) -> bool {
        let mut state = lock(&self.state);
        if let Some(at) = state.running.iter().position(|s| Arc::ptr_eq(s, slot)) {
            state.running.swap_remove(at);
        }
        !state.cancelled
    }
}

/// What other threads may know of one driver's worker.
#[derive(Default)]
pub(crate) struct Slot {
    /// Kills the worker, while it is alive and not yet reaped.
    worker: Mutex<Option<Killer>>,
    /// Set when the worker was killed to cancel a task, so its death fails no one else.
    killed_for_cancel: AtomicBool,
}

impl Slot {
    fn kill_for_cancel(&self) {
        let worker = lock(&self.worker);
        if let Some(worker) = &*worker {
            self.killed_for_cancel.store(true, Ordering::SeqCst);
            worker.kill();
        }
    }

    /// Sends the worker `signal`. Under the lock: the driver clears the killer under it before
    /// it reaps the worker, so even without a pidfd the pid still names our child.
    fn signal(&self, signal: Signal) {
        if let Some(worker) = &*lock(&self.worker) {
            worker.signal(signal);
        }
    }
}

/// Where a pool's workers run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// On the other ranks when this is rank 0 of an MPI job of two or more, else here.
    Auto,
    Local,
    Mpi,
}

/// How workers are made.
pub(crate) struct WorkerConfig {
    pub max_tasks_per_child: Option<usize>,
    /// How many times a task whose worker died is run again before its error is reported.
    pub retries: u32,
    /// The cap on each worker's private memory, in bytes.
    pub memory_limit: Option<u64>,
    /// The time limit of each task submitted without one of its own.
    pub task_timeout: Option<Duration>,
    pub initializer: Option<(&'static Entry, Args)>,
    pub start_method: StartMethod,
    /// Variables set in each worker's environment.
    pub env: Vec<(OsString, OsString)>,
    /// How far a worker's memory may grow above its size after its first task before it is
    /// replaced, in bytes.
    pub max_memory_growth: Option<u64>,
    /// The sandbox each worker enters as it starts, and what the first one's kernel enforces.
    pub sandbox: Option<Sandboxing>,
}

/// The state every driver and the pool share.
pub(crate) struct Shared {
    tasks: TaskQueue<Task>,
    /// The slots of the drivers serving now.
    slots: Mutex<Vec<Arc<Slot>>>,
    pub(super) config: WorkerConfig,
    /// Drivers still serving; a driver whose worker cannot be replaced (a lost MPI rank)
    /// leaves.
    #[cfg(feature = "mpi")]
    live: std::sync::atomic::AtomicUsize,
}

impl Shared {
    /// The state of a pool whose `processes` drivers start now (the count matters to a pool
    /// over MPI ranks, whose drivers leave as ranks are lost).
    pub(crate) fn new(
        #[cfg_attr(not(feature = "mpi"), expect(unused_variables))] processes: usize,
        config: WorkerConfig,
    ) -> Self {
        Shared {
            tasks: TaskQueue::new(),
            slots: Mutex::default(),
            config,
            #[cfg(feature = "mpi")]
            live: std::sync::atomic::AtomicUsize::new(processes),
        }
    }

    /// Queues tasks; fails if the pool no longer takes work.
    pub(crate) fn submit(&self, tasks: impl IntoIterator<Item = Task>) -> Result<()> {
        self.tasks.submit(tasks)
    }

    /// No more submissions; workers exit once the queue is done.
    pub(crate) fn close(&self) {
        self.tasks.close();
    }

    /// Stops everything now: queued tasks fail as closed, workers are killed.
    pub(crate) fn terminate(&self) {
        self.terminate_with(Signal::KILL);
    }

    /// [`terminate`](Shared::terminate), sending the workers `signal` instead (a worker that
    /// handles it may first finish its task).
    pub(crate) fn terminate_with(&self, signal: Signal) {
        for task in self.tasks.terminate() {
            task.finish(Err(Error::new(Kind::Closed)));
        }
        for slot in lock(&self.slots).iter() {
            slot.signal(signal);
        }
    }

    /// A slot for a new driver, which [`remove_slot`](Shared::remove_slot) gives back when it
    /// leaves.
    pub(crate) fn add_slot(&self) -> Arc<Slot> {
        let slot = Arc::<Slot>::default();
        lock(&self.slots).push(slot.clone());
        slot
    }

    pub(crate) fn remove_slot(&self, slot: &Arc<Slot>) {
        lock(&self.slots).retain(|other| !Arc::ptr_eq(other, slot));
    }

    /// `drivers` drivers retire their workers and leave, each when it is next idle: those idle
    /// now first.
    pub(crate) fn shrink(&self, drivers: usize) {
        self.tasks.shrink(drivers);
    }

    /// Whether a driver about to start a worker should leave instead (the pool shrinks).
    fn take_leave(&self) -> bool {
        self.tasks.take_leave()
    }

    /// Takes back up to `drivers` leaves of [`shrink`](Shared::shrink) that no driver took yet;
    /// returns how many.
    pub(crate) fn unshrink(&self, drivers: usize) -> usize {
        self.tasks.unshrink(drivers)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.tasks.is_closed()
    }

    /// A driver leaves for good; true if it was the last, so that no one would run the
    /// queue.
    #[cfg(feature = "mpi")]
    pub(super) fn lose_driver(&self) -> bool {
        self.live.fetch_sub(1, Ordering::SeqCst) == 1
    }

    pub(super) fn is_terminated(&self) -> bool {
        self.tasks.is_terminated()
    }

    pub(super) fn next(&self, wait: bool) -> Next<Task> {
        self.tasks.take(wait, |_| true)
    }

    /// The next task for a busy worker's pipeline: only one of `quick` (a function whose
    /// tasks it was timed to run quickly), and only while no driver is idle. Any other task
    /// waits for an idle worker: it may be long, or need to run beside the task in flight (a
    /// barrier that tasks meet at).
    fn next_quick(&self, quick: &'static Entry) -> Next<Task> {
        self.tasks
            .take(false, |task| std::ptr::eq(quick, task.function))
    }

    /// Puts tasks back at the front of the queue, keeping their order.
    pub(super) fn requeue(&self, tasks: impl DoubleEndedIterator<Item = Task>) {
        if let Err(tasks) = self.tasks.requeue(tasks) {
            for task in tasks {
                task.finish(Err(Error::new(Kind::Closed)));
            }
        }
    }
}

/// How often at most a worker's memory is measured for `max_memory_growth` (loky: every second).
const GROWTH_CHECK_EVERY: Duration = Duration::from_millis(100);

/// How long a worker asked to exit, or whose channel closed, may take to exit before it is
/// killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// A live worker process, from its driver's side.
struct Worker {
    child: ChildProcess,
    /// Its socket and, once shared, the rings that calls and answers go through.
    channel: Link,
    /// Tasks sent to it so far, for `max_tasks_per_child`.
    sent: usize,
    /// Its memory after its first task, and when it was last compared with that, for
    /// `max_memory_growth`.
    first_size: Option<u64>,
    measured: Instant,
    /// Takes no more tasks: it exits once those it has are answered.
    retiring: bool,
}

impl Worker {
    fn start(shared: &Shared, slot: &Slot) -> Result<Worker> {
        static WORKERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        let number = WORKERS.fetch_add(1, Ordering::Relaxed);
        let method = shared.config.start_method;
        let kind = match method {
            StartMethod::ForkServer => "ForkServer",
            _ => "Spawn",
        };
        let started = spawn::start_worker(
            method,
            &format!("{kind}PoolWorker-{number}"),
            &shared.config.env,
        )?;
        *lock(&slot.worker) = Some(started.child.killer());
        slot.killed_for_cancel.store(false, Ordering::SeqCst);
        let mut worker = Worker {
            child: started.child,
            channel: Link::new(started.channel),
            sent: 0,
            first_size: None,
            measured: Instant::now(),
            retiring: false,
        };
        if let Some(bytes) = shared.config.memory_limit {
            let request = codec::encode(&Request::LimitMemory { bytes })?;
            // A worker that cannot take the limit exits; the call below then reports it.
            let _ = worker.channel.send(&request);
        }
        // After the memory limit, which a worker run as root may need its capabilities for;
        // before the initializer, user code too.
        if let Some(sandboxing) = &shared.config.sandbox {
            let sandbox = &sandboxing.sandbox;
            match spawn::enter_sandbox(&mut worker.child, worker.channel.channel_mut(), sandbox) {
                Ok(report) => sandboxing.record(report),
                Err(error) => {
                    worker.reap(slot, Instant::now());
                    return Err(error);
                }
            }
        }
        if let Some((entry, args)) = &shared.config.initializer {
            if let Err(error) = worker.initialize(entry, args) {
                worker.reap(slot, Instant::now());
                return Err(error);
            }
        }
        // After the initializer: a logger it set up in the worker is kept.
        spawn::forward_logs(worker.channel.channel_mut(), started.logs);
        spawn::share_rings(&mut worker.channel);
        Ok(worker)
    }

    fn initialize(&mut self, entry: &'static Entry, args: &Args) -> Result<()> {
        args.send_on(&mut self.channel)?;
        let failed = |why: String| {
            Error::protocol(format!(
                "the pool's initializer `{}` failed, so no worker can start: {why}",
                entry.path
            ))
        };
        let frame = match self.child.recv_on(&mut self.channel, None) {
            Received::Frame(frame) => frame,
            Received::Failed(error) => return Err(spawn::receive_failed(self.child.pid(), error)),
            Received::Gone | Received::TimedOut => {
                let exit = self.child.reap_until(Instant::now() + EXIT_GRACE);
                let exit = exit.unwrap_or(ExitReason::Unknown);
                return Err(failed(match self.child.said() {
                    Some(said) => format!("its process {exit}: {said}"),
                    None => format!("its process {exit}"),
                }));
            }
        };
        match Outcomes::new(frame, args.len()).first_error(entry.path) {
            // The user's own panic stays one, with its message and location, as
            // `PoolBuilder::initializer` promises; it names the initializer already.
            Some(error) if error.is_panic() => Err(error),
            Some(error) => Err(failed(error.to_string())),
            None => Ok(()),
        }
    }

    /// Asks the worker to exit after its last reply and reaps it, killing it if it does not
    /// exit in time.
    fn retire(mut self, slot: &Slot) {
        let asked =
            codec::encode(&Request::Exit).is_ok_and(|exit| self.channel.send(&exit).is_ok());
        // A worker that cannot be asked has closed its channel: it is gone or going, and is
        // killed if it lingers.
        let grace = if asked { EXIT_GRACE } else { Duration::ZERO };
        self.reap(slot, Instant::now() + grace);
    }

    /// Reaps the worker, killing it if it has not ended by `deadline`. Clears the slot's
    /// killer first, so that nobody signals a reaped pid.
    fn reap(mut self, slot: &Slot, deadline: Instant) -> ExitReason {
        *lock(&slot.worker) = None;
        // A status that cannot be known (reaped by the kernel, under SIGCHLD ignored) leaves
        // the task's error a death of unknown cause.
        self.child
            .reap_until(deadline)
            .unwrap_or(ExitReason::Unknown)
    }

    /// Retires it after the tasks it has if its memory grew more than `limit` above its size
    /// after its first task (loky's leak guard). Measured after the first task, after a task
    /// that leaves it `idle`, so that it does not sit idle with what it leaked, and otherwise at
    /// most every [`GROWTH_CHECK_EVERY`], so that a stream of quick tasks does not pay a read
    /// of `/proc` each.
    fn check_growth(&mut self, limit: u64, idle: bool) {
        let now = Instant::now();
        if self.first_size.is_some() && !idle && now - self.measured < GROWTH_CHECK_EVERY {
            return;
        }
        self.measured = now;
        let Some(size) =
            sys::Pid::from_raw(self.child.pid()).and_then(sys::process::anonymous_resident_bytes)
        else {
            // Gone: the receive of its next reply says how.
            return;
        };
        match self.first_size {
            None => self.first_size = Some(size),
            Some(first) => self.retiring |= size.saturating_sub(first) > limit,
        }
    }

    /// Whether the worker is gone (or broken): an idle worker owes us nothing, so anything to
    /// read means it closed its channel or died.
    fn is_gone(&mut self) -> bool {
        self.channel.readable_now() || self.child.has_exited()
    }
}

impl Drop for Worker {
    /// Only reached with a live worker if the driver thread unwinds (a bug): the worker is
    /// ended rather than left behind.
    fn drop(&mut self) {
        if !self.child.has_exited() {
            let _ = self.child.kill();
        }
        self.child.reap_in_background();
    }
}

/// One driver's state: its slot, the tasks its worker runs, and how quick they are.
struct Driver {
    shared: Arc<Shared>,
    slot: Arc<Slot>,
    /// Sent to the worker and not answered yet, oldest first.
    in_flight: VecDeque<Task>,
    max_tasks: usize,
    /// How long the worker's last task took, and of which function.
    service: Duration,
    timed: Option<&'static Entry>,
    /// Since when the worker has been busy with its current task.
    busy_since: Instant,
    /// Since when the worker has run the oldest task in flight (it runs them in turn): the
    /// start of that task's time limit.
    running_since: Instant,
}

/// What filling a worker's pipeline came to.
enum Filled {
    /// Tasks are in flight: wait for a reply.
    Working,
    /// The pool is closed and drained, or terminated, and nothing is in flight.
    Exit,
    /// The worker died while idle (killed from outside); the task it was to get was put back.
    IdleDeath,
}

/// Runs one driver on `slot` (from [`Shared::add_slot`]): serves tasks with one worker process
/// (replacing it as needed) until the pool closes or shrinks without it. `ready` hears how the
/// first worker started.
pub(crate) fn drive(
    shared: Arc<Shared>,
    slot: Arc<Slot>,
    ready: std::sync::mpsc::Sender<Result<()>>,
) {
    serve(shared.clone(), slot.clone(), ready);
    shared.remove_slot(&slot);
}

fn serve(shared: Arc<Shared>, slot: Arc<Slot>, ready: std::sync::mpsc::Sender<Result<()>>) {
    let mut driver = Driver {
        slot,
        max_tasks: shared.config.max_tasks_per_child.unwrap_or(usize::MAX),
        shared,
        in_flight: VecDeque::new(),
        service: Duration::MAX,
        timed: None,
        busy_since: Instant::now(),
        running_since: Instant::now(),
    };
    let mut ready = Some(ready);
    let mut worker: Option<Worker> = None;
    loop {
        let mut current = match worker.take() {
            Some(current) => current,
            None => match driver.start(&mut ready) {
                Some(started) => started,
                None => return,
            },
        };
        match driver.fill(&mut current) {
            Filled::Working => worker = driver.receive(current),
            Filled::Exit => {
                current.retire(&driver.slot);
                return;
            }
            Filled::IdleDeath => {
                current.reap(&driver.slot, Instant::now());
            }
        }
    }
}

impl Driver {
    /// Starts a worker; `None` when the driver should leave (its first worker failed to start,
    /// or the pool is over). A replacement that fails to start fails the next task with why,
    /// so the cause is seen and no loop respawns forever.
    fn start(&mut self, ready: &mut Option<std::sync::mpsc::Sender<Result<()>>>) -> Option<Worker> {
        loop {
            if self.shared.is_terminated() {
                return None;
            }
            if ready.is_none() && self.shared.take_leave() {
                // A replacement the pool, shrinking, would retire at once: none is started (its
                // initializer would run for nothing).
                return None;
            }
            let error = match Worker::start(&self.shared, &self.slot) {
                Ok(worker) => {
                    if let Some(ready) = ready.take() {
                        // The pool's builder waits for this; if it gave up, no one needs it.
                        let _ = ready.send(Ok(()));
                    }
                    return Some(worker);
                }
                Err(error) => error,
            };
            if let Some(ready) = ready.take() {
                let _ = ready.send(Err(error));
                return None;
            }
            match self.shared.next(true) {
                Next::Task(task) => task.finish(Err(error)),
                Next::Idle | Next::Exit => return None,
            }
        }
    }

    /// Fills the worker's pipeline: waits for work only when nothing is in flight, and sends
    /// more only to a worker whose tasks are short.
    fn fill(&mut self, worker: &mut Worker) -> Filled {
        let mut depth = if self.service < PREFETCH_BELOW {
            IN_FLIGHT
        } else {
            1
        };
        while self.in_flight.len() < depth && worker.sent < self.max_tasks && !worker.retiring {
            let idle = self.in_flight.is_empty();
            if idle {
                self.busy_since = Instant::now();
            }
            let next = if idle {
                self.shared.next(true)
            } else if let Some(quick) = self.timed {
                self.shared.next_quick(quick)
            } else {
                Next::Idle
            };
            match next {
                Next::Task(task) if idle && worker.is_gone() => {
                    // The task never reached it: put it back rather than fail it.
                    self.shared.requeue(std::iter::once(task));
                    return Filled::IdleDeath;
                }
                Next::Task(task) => {
                    if !task.control.start(&self.slot) {
                        task.finish(Err(Error::new(Kind::Cancelled)));
                        continue;
                    }
                    if !self.timed.is_some_and(|f| std::ptr::eq(f, task.function)) {
                        // Another function's tasks may be long: this one goes alone until a
                        // reply times it, or a worker would queue long tasks that idle workers
                        // could run (a map of slow tasks right after one of quick tasks).
                        depth = 1;
                    }
                    if idle {
                        self.running_since = Instant::now();
                    }
                    let sent = task.args.send_on(&mut worker.channel);
                    worker.sent += 1;
                    self.in_flight.push_back(task);
                    if sent.is_err() {
                        // A worker whose channel takes no more is gone, or out of step after
                        // a partial frame: it is ended, and the receive below tells how.
                        if !worker.child.has_exited() {
                            let _ = worker.child.kill();
                        }
                        break;
                    }
                }
                Next::Idle => break,
                Next::Exit if self.in_flight.is_empty() => return Filled::Exit,
                Next::Exit => break,
            }
        }
        Filled::Working
    }

    /// Waits for the worker's next reply and delivers it; the worker, unless it is gone or
    /// retired.
    fn receive(&mut self, mut worker: Worker) -> Option<Worker> {
        let limit = self.in_flight.front().and_then(|task| task.timeout);
        // A limit too far to reach (`Duration::MAX`) is none.
        let deadline = limit.and_then(|limit| self.running_since.checked_add(limit));
        match (worker.child.recv_on(&mut worker.channel, deadline), limit) {
            (Received::Frame(frame), _) => self.answered(worker, frame),
            (Received::TimedOut, Some(limit)) => {
                // Over its limit: the worker is killed (only that ends a call for sure), the
                // task fails, and the tasks behind it, which never started, run elsewhere.
                let _ = worker.child.kill();
                let pid = worker.child.pid();
                let exit = worker.reap(&self.slot, Instant::now() + EXIT_GRACE);
                let function = self.in_flight.front().map_or("", |task| task.function.path);
                let error = Error::new(Kind::TimeLimit {
                    function: function.to_string(),
                    pid,
                    limit,
                });
                self.lost(pid, exit, None, Some(error));
                None
            }
            (Received::Gone | Received::TimedOut, _) => {
                // Gone by its exit (reaped at once), or by closing its channel (then ended
                // after a moment); it may have said why (a worker that could not start).
                let said = worker.child.said().map(str::to_string);
                let pid = worker.child.pid();
                let exit = worker.reap(&self.slot, Instant::now() + EXIT_GRACE);
                self.lost(pid, exit, said, None);
                None
            }
            (Received::Failed(error), _) => {
                // Alive but out of step with us: end it; its task gets the reason.
                let pid = worker.child.pid();
                let exit = worker.reap(&self.slot, Instant::now());
                self.lost(pid, exit, None, Some(spawn::receive_failed(pid, error)));
                None
            }
        }
    }

    fn answered(&mut self, mut worker: Worker, frame: Frame) -> Option<Worker> {
        let now = Instant::now();
        self.service = now - self.busy_since;
        self.busy_since = now;
        self.running_since = now;
        let Some(task) = self.in_flight.pop_front() else {
            // A reply to nothing: not our worker protocol. End it; a fresh one takes over.
            worker.reap(&self.slot, Instant::now());
            return None;
        };
        self.timed = Some(task.function);
        let outcomes = Outcomes::new(frame, task.args.len());
        // Under `panic = "abort"` a panic's reply is the worker's last word: it aborts once the
        // reply is out (every crate of a program has one panic strategy, so ours is its). So is
        // the reply of a call that overflowed its stack, sent from the fault handler.
        let last_reply = (cfg!(panic = "abort") && outcomes.has_panic()) || outcomes.has_death();
        if task.control.stop(&self.slot) {
            task.finish(Ok(outcomes));
        } else {
            task.finish(Err(Error::new(Kind::Cancelled)));
        }
        if last_reply {
            // The tasks sent behind the panicking one never started (a worker serves its
            // requests in order, on one thread): they run elsewhere, not fail for nothing.
            worker.reap(&self.slot, Instant::now() + EXIT_GRACE);
            let again: Vec<Task> = self.in_flight.drain(..).collect();
            for task in &again {
                task.control.stop(&self.slot);
            }
            self.shared.requeue(again.into_iter());
            return None;
        }
        if let Some(limit) = self.shared.config.max_memory_growth {
            worker.check_growth(limit, self.in_flight.is_empty());
        }
        if (worker.sent >= self.max_tasks || worker.retiring) && self.in_flight.is_empty() {
            worker.retire(&self.slot);
            return None;
        }
        Some(worker)
    }

    /// The worker `pid` is gone, having ended as `exit` (and said why, if it did: `said`): its
    /// first task in flight fails with `cause`, or with its death (or runs again, if retries
    /// allow); the tasks behind it never started and go back to the queue.
    fn lost(&mut self, pid: u32, exit: ExitReason, said: Option<String>, cause: Option<Error>) {
        let for_cancel = self.slot.killed_for_cancel.swap(false, Ordering::SeqCst);
        let mut again = Vec::new();
        let mut tasks = self.in_flight.drain(..);
        if let Some(mut task) = tasks.next() {
            let live = task.control.stop(&self.slot);
            if live && for_cancel {
                // Killed to cancel another submission's task: run it again.
                again.push(task);
            } else if self.shared.is_terminated() {
                task.finish(Err(Error::new(Kind::Closed)));
            } else if !live {
                task.finish(Err(Error::new(Kind::Cancelled)));
            } else if let Some(cause) = cause {
                task.finish(Err(cause));
            } else if task.deaths < self.shared.config.retries {
                // Allowed to fail again: a fresh worker runs it (a panic is never retried;
                // only a death lands here).
                task.deaths += 1;
                again.push(task);
            } else {
                let error = death(&self.shared.config, task.function, pid, exit, said);
                task.finish(Err(error));
            }
        }
        for task in tasks {
            task.control.stop(&self.slot);
            again.push(task);
        }
        self.shared.requeue(again.into_iter());
    }
}

/// The error of a task whose worker `pid` died as `exit`.
fn death(
    config: &WorkerConfig,
    function: &Entry,
    pid: u32,
    exit: ExitReason,
    said: Option<String>,
) -> Error {
    let function = function.path.to_string();
    match config.memory_limit {
        // Rust aborts when an allocation fails; the kernel's OOM killer sends SIGKILL.
        Some(limit)
            if said.is_none()
                && matches!(exit, ExitReason::Signal(Signal::ABRT | Signal::KILL)) =>
        {
            Error::new(Kind::OutOfMemory {
                function,
                pid,
                exit,
                limit,
            })
        }
        _ => Error::new(Kind::Died {
            function,
            pid,
            exit,
            said,
        }),
    }
}

/// Locks a mutex, going on if a panicking thread poisoned it: the data it guards stays valid
/// between statements.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Hears from `drivers` driver threads how their first worker started; keeps the first error.
/// Returns how many started.
pub(crate) fn wait_started(
    started: &std::sync::mpsc::Receiver<Result<()>>,
    drivers: usize,
    failure: &mut Option<Error>,
) -> usize {
    let mut ok = 0;
    for _ in 0..drivers {
        match started.recv() {
            Ok(Ok(())) => ok += 1,
            Ok(Err(error)) => {
                failure.get_or_insert(error);
            }
            Err(_) => {
                failure.get_or_insert(Error::protocol("a pool thread ended while starting"));
            }
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    static ENTRY: Entry = Entry {
        id: "tests::f",
        path: "tests::f",
        type_id: || std::any::TypeId::of::<()>(),
        invoke: |_, _| Ok(false),
    };

    /// Records each delivery: the task's index, and whether it was the pool's closing error.
    #[derive(Default)]
    struct Record(Mutex<Vec<(usize, bool)>>);

    impl Sink for Record {
        fn deliver(&self, index: usize, result: Raw) {
            lock(&self.0).push((index, result.is_err_and(|e| e.is_closed())));
        }
    }

    fn task(index: usize, sink: &Arc<Record>) -> Task {
        let args = Args::encode(ENTRY.id, [(1u8,)]).unwrap();
        Task::new(&ENTRY, args, index, sink.clone(), Arc::default(), None)
    }

    // A task's outcome is delivered exactly once, also when the task is dropped unfinished (a
    // pool thread that ends early), so that no caller waits for ever.
    #[test]
    fn a_task_is_delivered_once_finished_or_dropped() {
        let sink = Arc::new(Record::default());
        drop(task(7, &sink));
        task(8, &sink).finish(Err(Error::new(Kind::Cancelled)));
        let queued = Shared::new(
            0,
            WorkerConfig {
                max_tasks_per_child: None,
                retries: 0,
                memory_limit: None,
                task_timeout: None,
                initializer: None,
                start_method: StartMethod::Spawn,
                env: Vec::new(),
                max_memory_growth: None,
                sandbox: None,
            },
        );
        queued.submit([task(9, &sink)]).unwrap();
        // A pool whose drivers are all gone drops its queue.
        drop(queued);
        assert_eq!(*lock(&sink.0), [(7, true), (8, false), (9, true)]);
    }
}
