//! The pool's engine: a queue of tasks and one driver thread per worker process.
//!
//! A task is a chunk of encoded argument tuples for one function. Each driver owns one worker
//! process: it starts it (and runs the initializer), sends it up to [`IN_FLIGHT`] tasks at a
//! time (more than one only while its tasks are short and no other worker is idle), hands each
//! reply to the task's [`Sink`], and replaces the worker when it dies or has done its
//! `max_tasks_per_child`. A worker that dies fails the one task it was running; the
//! tasks queued behind it go back to the front of the queue, so every task runs once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Error, ExitReason, Kind, Result};
use crate::registry::Entry;
use crate::spawn::{self, ChildProcess, StartMethod};
use crate::wire::codec;
use crate::wire::frame::Channel;
use crate::wire::protocol::{Args, Outcomes, Request};

/// Tasks sent to one worker before its first reply: enough to hide the round trip, few enough
/// that a worker's death sends little back to the queue.
const IN_FLIGHT: usize = 8;

/// A worker is sent a second task before the first is done only when its tasks take less than
/// this: then the saved round trip matters, and a task stuck behind another waits little.
const PREFETCH_BELOW: Duration = Duration::from_millis(1);

/// How long an idle driver looks for a next task before it sleeps. Tasks often come close
/// together (an `apply` loop; an MPI rank's next task), and a thread that slept costs tens of
/// microseconds to wake; one that looked costs this much of a core at most, once per idle spell.
const IDLE_SPIN: Duration = Duration::from_micros(100);

/// What a task produced: one outcome per item, or why there are none.
pub(crate) type Raw = Result<Outcomes>;

/// Where the result of a task goes.
pub(crate) trait Sink: Send + Sync {
    /// Called once per task with its index in the submission.
    fn deliver(&self, index: usize, result: Raw);
}

/// A chunk of calls of one function.
pub(crate) struct Task {
    pub function: &'static Entry,
    /// Kept until the task is done, so that it can be sent again after its worker died.
    pub args: Args,
    /// How many workers died running this task so far.
    pub deaths: u32,
    pub index: usize,
    pub sink: Arc<dyn Sink>,
    pub control: Arc<Control>,
}

impl Task {
    pub(super) fn finish(mut self, result: Raw) {
        // The handles' descriptors are closed before anyone hears that the task is done.
        self.args.close_fds();
        self.sink.deliver(self.index, result);
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
    /// The worker's pid while it is alive and not yet reaped.
    pid: Mutex<Option<u32>>,
    /// Set when the worker was killed to cancel a task, so its death fails no one else.
    killed_for_cancel: AtomicBool,
}

impl Slot {
    fn kill_for_cancel(&self) {
        let pid = lock(&self.pid);
        if let Some(pid) = *pid {
            self.killed_for_cancel.store(true, Ordering::SeqCst);
            kill(pid);
        }
    }
}

/// Sends SIGKILL to a worker.
fn kill(pid: u32) {
    // SAFETY: plain system call. Callers hold the slot's pid lock, and the driver clears the
    // pid under that lock before it reaps the process, so the pid still names our child (a
    // fork-server child is reaped by the zygote; see `ChildProcess::signal`).
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
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
    pub initializer: Option<(&'static Entry, Args)>,
    pub start_method: StartMethod,
}

/// The state every driver and the pool share.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Signalled when a task is queued or the pool closes.
    work: Condvar,
    pub(crate) slots: Vec<Arc<Slot>>,
    pub(super) config: WorkerConfig,
    /// Bumped (under the state's lock) whenever something a waiting driver waits for happens:
    /// a spinning driver watches it instead of taking the lock.
    changes: AtomicU64,
    /// Drivers still serving; a driver whose worker cannot be replaced (a lost MPI rank)
    /// leaves.
    #[cfg(feature = "mpi")]
    live: std::sync::atomic::AtomicUsize,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Task>,
    closed: bool,
    terminated: bool,
    /// Drivers whose workers have nothing to do: queued work goes to them before any busy
    /// worker is sent a second task.
    waiting: usize,
    /// Of those, the ones still looking for work rather than asleep: they need no wake-up.
    spinning: usize,
}

/// What a driver should do next.
pub(super) enum Next {
    Task(Task),
    /// Nothing queued now (only when not waiting).
    Idle,
    /// The pool is closed and drained, or terminated.
    Exit,
}

impl Shared {
    pub(crate) fn new(processes: usize, config: WorkerConfig) -> Self {
        Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            slots: (0..processes).map(|_| Arc::default()).collect(),
            config,
            changes: AtomicU64::new(0),
            #[cfg(feature = "mpi")]
            live: std::sync::atomic::AtomicUsize::new(processes),
        }
    }

    /// Queues tasks; fails if the pool no longer takes work.
    pub(crate) fn submit(&self, tasks: impl IntoIterator<Item = Task>) -> Result<()> {
        let mut state = lock(&self.state);
        if state.closed || state.terminated {
            return Err(Error::new(Kind::Closed));
        }
        let before = state.queue.len();
        state.queue.extend(tasks);
        let added = state.queue.len() - before;
        // Spinning drivers see the change by themselves, but each takes one task: a sleeping
        // driver is woken when more tasks wait than drivers spin.
        let unserved = state.queue.len() > state.spinning;
        self.changes.fetch_add(1, Ordering::Release);
        drop(state);
        // One task needs one driver: waking every idle one would only put the rest back to
        // sleep, a context switch each, which a stream of one-task submissions pays per task.
        if unserved {
            if added == 1 {
                self.work.notify_one();
            } else {
                self.work.notify_all();
            }
        }
        Ok(())
    }

    /// No more submissions; workers exit once the queue is done.
    pub(crate) fn close(&self) {
        lock(&self.state).closed = true;
        self.changes.fetch_add(1, Ordering::Release);
        self.work.notify_all();
    }

    /// Stops everything now: queued tasks fail as closed, workers are killed.
    pub(crate) fn terminate(&self) {
        let queued = {
            let mut state = lock(&self.state);
            state.closed = true;
            state.terminated = true;
            self.changes.fetch_add(1, Ordering::Release);
            std::mem::take(&mut state.queue)
        };
        self.work.notify_all();
        for task in queued {
            task.finish(Err(Error::new(Kind::Closed)));
        }
        for slot in &self.slots {
            if let Some(pid) = *lock(&slot.pid) {
                kill(pid);
            }
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    /// A driver leaves for good; true if it was the last, so that no one would run the
    /// queue.
    #[cfg(feature = "mpi")]
    pub(super) fn lose_driver(&self) -> bool {
        self.live.fetch_sub(1, Ordering::SeqCst) == 1
    }

    pub(super) fn is_terminated(&self) -> bool {
        lock(&self.state).terminated
    }

    pub(super) fn next(&self, wait: bool) -> Next {
        let mut state = lock(&self.state);
        let mut looked = false;
        loop {
            if state.terminated {
                return Next::Exit;
            }
            if !wait && state.waiting > 0 {
                return Next::Idle;
            }
            if let Some(task) = state.queue.pop_front() {
                return Next::Task(task);
            }
            if state.closed {
                return Next::Exit;
            }
            if !wait {
                return Next::Idle;
            }
            state.waiting += 1;
            if !looked {
                // Look for a while before sleeping (see IDLE_SPIN); then check again.
                looked = true;
                state.spinning += 1;
                let seen = self.changes.load(Ordering::Acquire);
                drop(state);
                let until = Instant::now() + IDLE_SPIN;
                while self.changes.load(Ordering::Acquire) == seen && Instant::now() < until {
                    std::thread::yield_now();
                }
                state = lock(&self.state);
                state.spinning -= 1;
            } else {
                state = self
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            state.waiting -= 1;
        }
    }

    /// Puts tasks back at the front of the queue, keeping their order.
    fn requeue(&self, tasks: impl DoubleEndedIterator<Item = Task>) {
        let mut state = lock(&self.state);
        if state.terminated {
            drop(state);
            for task in tasks {
                task.finish(Err(Error::new(Kind::Closed)));
            }
            return;
        }
        for task in tasks.rev() {
            state.queue.push_front(task);
        }
        self.changes.fetch_add(1, Ordering::Release);
        drop(state);
        self.work.notify_all();
    }
}

/// A live worker process, from its driver's side.
struct Worker {
    child: ChildProcess,
    channel: Channel,
    /// Tasks sent to it so far, for `max_tasks_per_child`.
    sent: usize,
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
        let started = spawn::start_worker(method, &format!("{kind}PoolWorker-{number}"))?;
        *lock(&slot.pid) = Some(started.child.pid());
        slot.killed_for_cancel.store(false, Ordering::SeqCst);
        let mut worker = Worker {
            child: started.child,
            channel: Channel::new(started.stream),
            sent: 0,
        };
        if let Some(bytes) = shared.config.memory_limit {
            let request = codec::encode(&Request::LimitMemory { bytes })?;
            // A worker that cannot take the limit exits; the call below then reports it.
            let _ = worker.channel.send(&request);
        }
        if let Some((entry, args)) = &shared.config.initializer {
            if let Err(error) = worker.initialize(entry, args) {
                worker.kill(slot);
                return Err(error);
            }
        }
        Ok(worker)
    }

    fn initialize(&mut self, entry: &'static Entry, args: &Args) -> Result<()> {
        args.send(&mut self.channel)?;
        let failed = |why: String| {
            Error::protocol(format!(
                "the pool's initializer `{}` failed, so no worker can start: {why}",
                entry.path
            ))
        };
        let frame = match self.channel.recv() {
            Ok(Some(frame)) => frame,
            _ => {
                let status = self
                    .child
                    .wait()
                    .map_err(|e| Error::io("cannot wait for a worker", e))?;
                return Err(failed(format!(
                    "its process {}",
                    ExitReason::from_status(status)
                )));
            }
        };
        match Outcomes::new(frame, args.len()).first_error(entry.path) {
            Some(error) => Err(failed(error.to_string())),
            None => Ok(()),
        }
    }

    /// Asks the worker to exit after its last reply and reaps it.
    fn retire(mut self, slot: &Slot) {
        if let Ok(exit) = codec::encode(&Request::Exit) {
            let _ = self.channel.send(&exit);
        }
        let _ = self.child.wait();
        *lock(&slot.pid) = None;
    }

    fn kill(mut self, slot: &Slot) {
        let _ = self.child.kill();
        self.reap(slot);
    }

    /// Waits for the process to end; clears the pid first, so nobody signals a reaped pid.
    fn reap(mut self, slot: &Slot) -> ExitReason {
        *lock(&slot.pid) = None;
        match self.child.wait() {
            Ok(status) => ExitReason::from_status(status),
            Err(_) => ExitReason::Unknown,
        }
    }
}

/// Runs one driver: serves tasks with one worker process (replacing it as needed) until the
/// pool closes. `ready` hears how the first worker started.
pub(crate) fn drive(
    shared: Arc<Shared>,
    slot_index: usize,
    ready: std::sync::mpsc::Sender<Result<()>>,
) {
    let slot = shared.slots[slot_index].clone();
    let mut ready = Some(ready);
    let mut worker: Option<Worker> = None;
    let mut in_flight: VecDeque<Task> = VecDeque::new();
    let max_tasks = shared.config.max_tasks_per_child.unwrap_or(usize::MAX);
    // How long the worker's last task took, of which function, and since when it has been busy
    // with the current.
    let mut service = Duration::MAX;
    let mut timed: Option<&'static Entry> = None;
    let mut busy_since = Instant::now();

    loop {
        let mut current = match worker.take() {
            Some(current) => current,
            None => match Worker::start(&shared, &slot) {
                Ok(started) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Ok(()));
                    }
                    started
                }
                Err(error) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Err(error));
                        return;
                    }
                    // A replacement failed to start (its initializer failed, say): fail the next
                    // task with why, so the cause is seen and no loop respawns forever.
                    match shared.next(true) {
                        Next::Task(task) => task.finish(Err(error)),
                        Next::Idle | Next::Exit => return,
                    }
                    continue;
                }
            },
        };

        // Fill the pipeline: wait for work only when nothing is in flight, and send more only
        // to a worker whose tasks are short.
        let mut exit = false;
        let mut idle_death = false;
        let mut depth = if service < PREFETCH_BELOW {
            IN_FLIGHT
        } else {
            1
        };
        while in_flight.len() < depth && current.sent < max_tasks {
            if in_flight.is_empty() {
                busy_since = Instant::now();
            }
            match shared.next(in_flight.is_empty()) {
                Next::Task(task) if in_flight.is_empty() && current.channel.readable_now() => {
                    // The worker died while idle (killed from outside): the task never reached
                    // it. Put the task back and start a fresh worker rather than fail the task.
                    shared.requeue(std::iter::once(task));
                    idle_death = true;
                    break;
                }
                Next::Task(task) => {
                    if !task.control.start(&slot) {
                        task.finish(Err(Error::new(Kind::Cancelled)));
                        continue;
                    }
                    if !timed.is_some_and(|f| std::ptr::eq(f, task.function)) {
                        // Another function's tasks may be long: this one goes alone until a
                        // reply times it, or a worker would queue long tasks that idle workers
                        // could run (a map of slow tasks right after one of quick tasks).
                        depth = 1;
                    }
                    let sent = task.args.send(&mut current.channel);
                    current.sent += 1;
                    in_flight.push_back(task);
                    if sent.is_err() {
                        // The worker is gone; reading its end below tells how.
                        break;
                    }
                }
                Next::Idle => break,
                Next::Exit => {
                    exit = true;
                    break;
                }
            }
        }
        if exit && in_flight.is_empty() {
            current.retire(&slot);
            return;
        }
        if idle_death {
            current.reap(&slot);
            continue;
        }

        match current.channel.recv() {
            Ok(Some(frame)) => {
                let now = Instant::now();
                service = now - busy_since;
                busy_since = now;
                let task = in_flight
                    .pop_front()
                    .expect("a reply answers a task in flight");
                timed = Some(task.function);
                let reply = Ok(Outcomes::new(frame, task.args.len()));
                if task.control.stop(&slot) {
                    task.finish(reply);
                } else {
                    task.finish(Err(Error::new(Kind::Cancelled)));
                }
                let done = current.sent >= max_tasks && in_flight.is_empty();
                if done {
                    current.retire(&slot);
                } else {
                    worker = Some(current);
                }
            }
            Ok(None) | Err(_) => {
                let exit = current.reap(&slot);
                let for_cancel = slot.killed_for_cancel.swap(false, Ordering::SeqCst);
                let mut again = Vec::new();
                for (position, task) in in_flight.drain(..).enumerate() {
                    let live = task.control.stop(&slot);
                    if position > 0 || (live && for_cancel) {
                        // Not started, or killed to cancel another submission's task: run again.
                        again.push(task);
                    } else if shared.is_terminated() {
                        task.finish(Err(Error::new(Kind::Closed)));
                    } else if !live {
                        task.finish(Err(Error::new(Kind::Cancelled)));
                    } else if task.deaths < shared.config.retries {
                        // Allowed to fail again: a fresh worker runs it (a panic is never
                        // retried; only a death lands here).
                        let mut task = task;
                        task.deaths += 1;
                        again.push(task);
                    } else {
                        let function = task.function.path.to_string();
                        task.finish(Err(match shared.config.memory_limit {
                            // Rust aborts when an allocation fails; the kernel's OOM killer
                            // sends SIGKILL.
                            Some(limit)
                                if matches!(
                                    exit,
                                    ExitReason::Signal(libc::SIGABRT | libc::SIGKILL)
                                ) =>
                            {
                                Error::new(Kind::OutOfMemory {
                                    function,
                                    exit,
                                    limit,
                                })
                            }
                            _ => Error::new(Kind::Died { function, exit }),
                        }));
                    }
                }
                shared.requeue(again.into_iter());
            }
        }
    }
}

/// Locks a mutex, going on if a panicking thread poisoned it: the data it guards stays valid
/// between statements.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Hears from `drivers` driver threads how their first worker started; keeps the first error.
pub(crate) fn wait_started(
    started: &std::sync::mpsc::Receiver<Result<()>>,
    drivers: usize,
    failure: &mut Option<Error>,
) {
    for _ in 0..drivers {
        match started.recv() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                failure.get_or_insert(error);
            }
            Err(_) => {
                failure.get_or_insert(Error::protocol("a pool thread ended while starting"));
            }
        }
    }
}
