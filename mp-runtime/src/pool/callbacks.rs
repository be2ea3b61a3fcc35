//! A pool's callback thread: runs the callbacks of its results
//! ([`AsyncResult::add_done_callback`](super::AsyncResult::add_done_callback)), one at a time,
//! in the order the results completed, away from the threads that deliver results. A pool
//! thread that completes a result only queues its callbacks here, so a callback that blocks or
//! panics delays no result and no time limit: only the callbacks queued behind it.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use super::scheduler::lock;

/// How long dropping a pool waits for the callbacks still queued to run, before it leaves them
/// to the callback thread and returns.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A callback of a result, with what it is called with.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// The callback thread of one pool, started at its first callback.
pub(crate) struct CallbackThread {
    state: Mutex<State>,
    /// A job was queued, or the pool closed.
    work: Condvar,
    /// The thread exited.
    exited: Condvar,
}

struct State {
    jobs: VecDeque<Job>,
    /// The thread is running (started and not yet exited).
    running: bool,
    /// The pool is gone: the thread exits once the queue is empty.
    closed: bool,
    /// The thread, once started: a wait on it for its own later work would never end.
    thread: Option<ThreadId>,
}

impl CallbackThread {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(CallbackThread {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                running: false,
                closed: false,
                thread: None,
            }),
            work: Condvar::new(),
            exited: Condvar::new(),
        })
    }

    /// Queues `job` for the thread, starting it if it is not running. Once the pool is gone
    /// and its thread has exited, the job runs here: no pool thread is left to hold up.
    pub(crate) fn run(self: &Arc<Self>, job: Job) {
        let mut state = lock(&self.state);
        if state.closed && !state.running {
            drop(state);
            job();
            return;
        }
        state.jobs.push_back(job);
        if state.running {
            drop(state);
            self.work.notify_one();
            return;
        }
        state.running = true;
        let thread = self.clone();
        let started = std::thread::Builder::new()
            .name("mp-pool-callbacks".into())
            .spawn(move || thread.serve());
        if let Err(error) = started {
            // Out of threads: the job is dropped, and hands its result back unseen.
            state.running = false;
            let unrun = state.jobs.pop_back();
            drop(state);
            drop(unrun);
            eprintln!(
                "mp: cannot start a pool's callback thread ({error}): a callback was not run; \
                 raise the limit on threads or processes"
            );
        }
    }

    /// The thread: runs the jobs in the order they came, until the pool is gone and none is
    /// left.
    fn serve(self: Arc<Self>) {
        let mut state = lock(&self.state);
        state.thread = Some(std::thread::current().id());
        loop {
            if let Some(job) = state.jobs.pop_front() {
                drop(state);
                // A job whose result's handles are all gone drops the result here: a panic in
                // its `Drop` (user code) ends neither this thread nor the jobs behind it.
                if let Err(panic) = crate::wire::panics::catch(job) {
                    let location = panic.location.as_deref().unwrap_or("an unknown place");
                    eprintln!(
                        "mp: dropping a pool's result on its callback thread panicked at \
                         {location}: {}; the pool and its callbacks go on",
                        panic.message
                    );
                }
                state = lock(&self.state);
            } else if state.closed {
                state.running = false;
                drop(state);
                self.exited.notify_all();
                return;
            } else {
                // Waits as long as the pool lives: it is woken by each job and by `close`.
                state = self.work.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    /// Whether this is the callback thread: there, waiting for a callback still to run waits
    /// for itself.
    pub(crate) fn is_current(&self) -> bool {
        lock(&self.state).thread == Some(std::thread::current().id())
    }

    /// For a pool being dropped: lets the thread exit once the callbacks queued have run, and
    /// waits for that at most [`CLOSE_WAIT`]. A callback still running then (one that blocks)
    /// is left to finish on the thread, which exits after the callbacks queued behind it. A
    /// pool dropped by one of its own callbacks does not wait: the thread would wait for itself.
    pub(crate) fn close(&self) {
        let mut state = lock(&self.state);
        state.closed = true;
        self.work.notify_all();
        if state.running && state.thread == Some(std::thread::current().id()) {
            return;
        }
        let deadline = Instant::now() + CLOSE_WAIT;
        while state.running {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            state = self
                .exited
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Runs one callback: a panic in it is printed once, as the user's, and goes no further, so
/// the thread goes on with the next.
pub(crate) fn call(callback: impl FnOnce()) {
    if let Err(panic) = crate::wire::panics::catch(callback) {
        let location = panic.location.as_deref().unwrap_or("an unknown place");
        eprintln!(
            "mp: a callback of a pool's result panicked at {location}: {}; the pool and its \
             later callbacks go on",
            panic.message
        );
    }
}
