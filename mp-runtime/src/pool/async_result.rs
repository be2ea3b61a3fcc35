//! [`AsyncResult`]: the handle to work submitted with `apply_async` or `map_async`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::callbacks::{CallbackThread, call};
use super::scheduler::{Control, Raw, Sink, lock};
use crate::base::{Error, Handle, Kind, Result};
use crate::runtime::spawn::Owner;
use crate::wire::ring;

/// Where the one result of a submission lands; the first to complete it wins.
pub(crate) struct Completion<T> {
    state: Mutex<CompletionState<T>>,
    done: Condvar,
    /// Set once it is ready to take (as `state` says), for a waiter that spins.
    ready: AtomicBool,
    /// Where its callbacks run: the pool's callback thread.
    callbacks: Arc<CallbackThread>,
}

struct CompletionState<T> {
    result: Option<Result<T>>,
    taken: bool,
    /// The result is with the callback thread, which hands it back once its callbacks have run:
    /// until then it is complete, but not yet ready to take.
    lent: bool,
    /// Callbacks to run when it completes (or, while it is lent, after those running).
    callbacks: Vec<Callback<T>>,
    waker: Option<Waker>,
    /// Threads asleep on `done`: a completion with none wakes nobody (a wake-up call costs a
    /// system call even then).
    sleepers: usize,
}

/// A callback of [`AsyncResult::add_done_callback`].
type Callback<T> = Box<dyn FnOnce(&Result<T>) + Send>;

impl<T: Send + 'static> Completion<T> {
    pub(crate) fn new(callbacks: Arc<CallbackThread>) -> Self {
        Completion {
            state: Mutex::new(CompletionState {
                result: None,
                taken: false,
                lent: false,
                callbacks: Vec::new(),
                waker: None,
                sleepers: 0,
            }),
            done: Condvar::new(),
            ready: AtomicBool::new(false),
            callbacks,
        }
    }

    /// Stores the result unless one is there already; wakes every waiter. With callbacks, the
    /// result goes to the callback thread first, and is stored when they have run: the caller
    /// (a pool thread) only queues them.
    pub(crate) fn complete(self: &Arc<Self>, result: Result<T>) -> bool {
        let mut state = lock(&self.state);
        if state.result.is_some() || state.taken || state.lent {
            return false;
        }
        if !state.callbacks.is_empty() {
            let callbacks = std::mem::take(&mut state.callbacks);
            state.lent = true;
            drop(state);
            self.lend(result, callbacks);
            return true;
        }
        state.result = Some(result);
        self.ready.store(true, Ordering::Release);
        let waker = state.waker.take();
        let sleepers = state.sleepers;
        drop(state);
        if sleepers > 0 {
            self.done.notify_all();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// Runs `callback` with the result once it is complete: at once (on the callback thread)
    /// if it is.
    fn add_callback(self: &Arc<Self>, callback: Callback<T>) {
        let mut state = lock(&self.state);
        if state.lent || (state.result.is_none() && !state.taken) {
            state.callbacks.push(callback);
            return;
        }
        match state.result.take() {
            Some(result) => {
                state.lent = true;
                drop(state);
                self.lend(result, vec![callback]);
            }
            None => {
                // Taken already: there is no value left to show.
                drop(state);
                let taken = Err(Error::new(Kind::ResultTaken));
                self.callbacks
                    .run(Box::new(move || call(|| callback(&taken))));
            }
        }
    }

    /// Hands the result, with `callbacks` to run on it, to the callback thread.
    fn lend(self: &Arc<Self>, result: Result<T>, callbacks: Vec<Callback<T>>) {
        let lent = Lent {
            completion: self.clone(),
            result: Some(result),
            callbacks,
        };
        self.callbacks.run(Box::new(move || lent.run_callbacks()));
    }
}

/// A completed result on the callback thread, with the callbacks to run on it. However it
/// ends (run, or dropped unrun), it hands the result back to its completion.
struct Lent<T> {
    completion: Arc<Completion<T>>,
    result: Option<Result<T>>,
    callbacks: Vec<Callback<T>>,
}

impl<T> Lent<T> {
    fn run_callbacks(mut self) {
        loop {
            if let Some(result) = &self.result {
                for callback in std::mem::take(&mut self.callbacks) {
                    call(|| callback(result));
                }
            }
            // Callbacks added while these ran run too, before the result is handed back.
            let completion = self.completion.clone();
            let mut state = lock(&completion.state);
            if state.callbacks.is_empty() {
                if let Some(result) = self.result.take() {
                    hand_back(&completion, state, result);
                }
                return;
            }
            self.callbacks = std::mem::take(&mut state.callbacks);
        }
    }
}

/// Stores a lent result back in its completion (whose `state` is held), ready to take; wakes
/// every waiter.
fn hand_back<T>(
    completion: &Completion<T>,
    mut state: MutexGuard<'_, CompletionState<T>>,
    result: Result<T>,
) {
    state.result = Some(result);
    state.lent = false;
    completion.ready.store(true, Ordering::Release);
    let waker = state.waker.take();
    let sleepers = state.sleepers;
    drop(state);
    if sleepers > 0 {
        completion.done.notify_all();
    }
    if let Some(waker) = waker {
        waker.wake();
    }
}

impl<T> Drop for Lent<T> {
    fn drop(&mut self) {
        if let Some(result) = self.result.take() {
            let state = lock(&self.completion.state);
            hand_back(&self.completion, state, result);
        }
    }
}

impl<T> Completion<T> {
    /// Complete: a result is there, taken, or with the callback thread.
    pub(crate) fn is_complete(&self) -> bool {
        let state = lock(&self.state);
        state.result.is_some() || state.taken || state.lent
    }

    /// Ready to take: complete, and its callbacks have run.
    fn is_ready(&self) -> bool {
        let state = lock(&self.state);
        state.result.is_some() || state.taken
    }

    fn succeeded(&self) -> bool {
        matches!(&lock(&self.state).result, Some(Ok(_)))
    }

    /// Whether waiting here for it to be ready would never end: on its pool's callback thread,
    /// for a result whose callbacks are to run there, after the one running now.
    fn waits_for_itself(&self) -> bool {
        if !self.callbacks.is_current() {
            return false;
        }
        let state = lock(&self.state);
        state.result.is_none() && !state.taken && (state.lent || !state.callbacks.is_empty())
    }

    /// Waits until ready or `deadline`; true if ready. False at once for a wait that would
    /// never end ([`waits_for_itself`](Completion::waits_for_itself)).
    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        if self.waits_for_itself() {
            return false;
        }
        // A result that comes within microseconds (a tiny task on a worker that is hot) is
        // taken without the cost of a sleep, where a core is free for the spin (and the wait
        // may last as long).
        if deadline.is_none_or(|deadline| deadline > Instant::now() + ring::SPIN) {
            ring::spin_if_a_core_is_free(|| self.ready.load(Ordering::Acquire));
        }
        let mut state = lock(&self.state);
        while state.result.is_none() && !state.taken {
            let left = match deadline {
                None => None,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    Some(left)
                }
            };
            state.sleepers += 1;
            state = match left {
                None => self.done.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(left) => {
                    self.done
                        .wait_timeout(state, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            state.sleepers -= 1;
        }
        true
    }

    fn take(&self) -> Result<T> {
        let mut state = lock(&self.state);
        match state.result.take() {
            Some(result) => {
                state.taken = true;
                result
            }
            None => Err(Error::new(Kind::ResultTaken)),
        }
    }
}

/// How many of a submission's calls have returned, of how many.
pub(crate) struct Progress {
    done: AtomicUsize,
    total: usize,
}

impl Progress {
    pub(crate) fn new(total: usize) -> Self {
        Progress {
            done: AtomicUsize::new(0),
            total,
        }
    }

    /// The calls done so far.
    pub(crate) fn done(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }
}

/// A sink that decodes the chunks of one submission as they arrive (on the pool's threads,
/// while later chunks still run) and completes its [`Completion`] with all values in order;
/// the first failure completes it at once and the rest of the submission is skipped.
pub(crate) struct Gather<R, T> {
    parts: Mutex<GatherState<R>>,
    completion: Arc<Completion<T>>,
    control: Arc<Control>,
    progress: Arc<Progress>,
    function: &'static str,
    /// Turns the values, in input order, into what the completion holds.
    finish: fn(Vec<R>) -> Result<T>,
}

struct GatherState<R> {
    chunks: Vec<Option<Vec<R>>>,
    missing: usize,
}

impl<R: DeserializeOwned, T: Send + 'static> Gather<R, T> {
    /// Gathers `chunks` chunks of calls of `function` (named in errors).
    pub(crate) fn new(
        chunks: usize,
        completion: Arc<Completion<T>>,
        control: Arc<Control>,
        progress: Arc<Progress>,
        function: &'static str,
        finish: fn(Vec<R>) -> Result<T>,
    ) -> Self {
        let gather = Gather {
            parts: Mutex::new(GatherState {
                chunks: (0..chunks).map(|_| None).collect(),
                missing: chunks,
            }),
            completion,
            control,
            progress,
            function,
            finish,
        };
        if chunks == 0 {
            gather.completion.complete((gather.finish)(Vec::new()));
        }
        gather
    }
}

impl<R: DeserializeOwned + Send, T: Send + 'static> Sink for Gather<R, T> {
    fn deliver(&self, index: usize, result: Raw) {
        let mut values = Vec::new();
        let decoded = result.and_then(|outcomes| {
            values.reserve(outcomes.len());
            outcomes.decode_all(self.function, &mut values)
        });
        if let Err(error) = decoded {
            // Report the failure at once; the rest of this submission need not run.
            self.control.skip_queued();
            self.completion.complete(Err(error));
            // The values decoded before the failure are dropped only now, so that a `Drop`
            // of theirs that panics cannot keep the caller from its error.
            drop(values);
            return;
        }
        let mut parts = lock(&self.parts);
        if parts.chunks[index].is_none() {
            self.progress
                .done
                .fetch_add(values.len(), Ordering::Relaxed);
            parts.chunks[index] = Some(values);
            parts.missing -= 1;
        }
        if parts.missing == 0 {
            let chunks = std::mem::take(&mut parts.chunks);
            drop(parts);
            let mut all = Vec::with_capacity(chunks.iter().flatten().map(Vec::len).sum());
            for chunk in chunks.into_iter().flatten() {
                all.extend(chunk);
            }
            self.completion.complete((self.finish)(all));
        }
    }
}

/// The result of work submitted with [`Pool::apply_async`](crate::Pool::apply_async),
/// [`Pool::map_async`](crate::Pool::map_async) or
/// [`Pool::starmap_async`](crate::Pool::starmap_async).
///
/// Wait for it with [`get`](AsyncResult::get) or [`get_timeout`](AsyncResult::get_timeout),
/// poll it with [`ready`](AsyncResult::ready), stop it with [`cancel`](AsyncResult::cancel), have
/// a callback called with it ([`add_done_callback`](AsyncResult::add_done_callback)), or
/// `.await` it: it is a [`Future`] that any executor can drive (a worker thread wakes it).
/// Dropping it does not cancel the work.
///
/// In a copy of the process made by `fork()`, a result of a pool of the original is ready at
/// once with an error whose [`is_foreign_process`](Error::is_foreign_process) is true: the
/// pool's threads, which would deliver it, are the original's. Cancelling it there does
/// nothing.
///
/// # Examples
///
/// ```
/// use mp_runtime::{process_fn, Pool};
///
/// #[process_fn]
/// fn add(a: i32, b: i32) -> i32 {
///     a + b
/// }
///
/// let pool = Pool::new(2).unwrap();
/// let pending: Vec<_> = (0..4).map(|i| pool.apply_async(add, (i, i))).collect();
/// let sums: Vec<i32> = pending.into_iter().map(|r| r.get().unwrap()).collect();
/// assert_eq!(sums, [0, 2, 4, 6]);
/// ```
pub struct AsyncResult<T> {
    completion: Arc<Completion<T>>,
    control: Arc<Control>,
    progress: Arc<Progress>,
    function: &'static str,
    /// The process whose pool threads complete `completion`. In any other (a forked copy) it is
    /// never completed, and its lock may have been held at the fork: it is not used.
    owner: Owner,
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(
        completion: Arc<Completion<T>>,
        control: Arc<Control>,
        progress: Arc<Progress>,
        function: &'static str,
    ) -> Self {
        AsyncResult {
            completion,
            control,
            progress,
            function,
            // Made here in the process of its pool, or, for a pool of a forked copy's
            // original, completed with the pool's error: the process's own either way.
            owner: Owner::this_process(),
        }
    }

    fn take(&self) -> Result<T> {
        self.owner.check(Handle::PoolResult)?;
        self.completion.take()
    }

    /// Waits until complete or `deadline`; true if complete. At once in a forked copy, whose
    /// result is its error.
    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        !self.owner.is_here() || self.completion.wait_until(deadline)
    }

    /// Waits for the result and returns it.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn double(x: u32) -> u32 {
    ///     x * 2
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// assert_eq!(pool.map_async(double, vec![1, 2]).get().unwrap(), vec![2, 4]);
    /// ```
    pub fn get(self) -> Result<T> {
        if !self.wait_until(None) {
            return Err(waits_for_itself());
        }
        self.take()
    }

    /// Waits at most `timeout`. On timeout the error's [`is_timeout`](Error::is_timeout) is
    /// true and the work goes on (as in Python): call again later. Once the result has been
    /// returned, later calls say it was taken.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn slow(x: u32) -> u32 {
    ///     std::thread::sleep(Duration::from_millis(300));
    ///     x
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let result = pool.apply_async(slow, (5,));
    /// assert!(result.get_timeout(Duration::from_millis(1)).unwrap_err().is_timeout());
    /// assert_eq!(result.get_timeout(Duration::from_secs(30)).unwrap(), 5);
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        if self.owner.is_here() && self.completion.waits_for_itself() {
            return Err(waits_for_itself());
        }
        if !self.wait_until(Instant::now().checked_add(timeout)) {
            return Err(Error::timeout(
                "a task's result (it goes on: wait again, or cancel it)",
                timeout,
            ));
        }
        self.take()
    }

    /// Waits until the result is there, without taking it.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn one() -> u8 {
    ///     1
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let result = pool.apply_async(one, ());
    /// result.wait();
    /// assert!(result.ready());
    /// ```
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits at most `timeout` until the result is there; true if it is.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn one() -> u8 {
    ///     1
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let result = pool.apply_async(one, ());
    /// assert!(result.wait_timeout(Duration::from_secs(30)));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    /// Whether the work has finished (successfully or not, or was cancelled), and the
    /// callbacks added with [`add_done_callback`](AsyncResult::add_done_callback) have run.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn slow() {
    ///     std::thread::sleep(Duration::from_millis(300));
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let result = pool.apply_async(slow, ());
    /// assert!(!result.ready());
    /// result.wait();
    /// assert!(result.ready());
    /// ```
    pub fn ready(&self) -> bool {
        !self.owner.is_here() || self.completion.is_ready()
    }

    /// Whether the work has finished and every call in it returned a value. False while it
    /// runs (Python raises there instead).
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn check(x: i32) -> i32 {
    ///     assert!(x >= 0, "negative");
    ///     x
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let good = pool.apply_async(check, (1,));
    /// let bad = pool.apply_async(check, (-1,));
    /// good.wait();
    /// bad.wait();
    /// assert!(good.successful());
    /// assert!(!bad.successful());
    /// ```
    pub fn successful(&self) -> bool {
        self.owner.is_here() && self.completion.succeeded()
    }

    /// How many of the calls have returned so far, and how many there are in all: `(done,
    /// total)`, for a progress bar over a [`map_async`](crate::Pool::map_async) (an
    /// [`apply_async`](crate::Pool::apply_async) is one call). Calls are counted as their chunk
    /// comes back; a call that failed is not counted, and the result is then ready at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, CallOptions, Pool};
    ///
    /// #[process_fn]
    /// fn double(x: u32) -> u32 {
    ///     x * 2
    /// }
    ///
    /// let pool = Pool::new(2).unwrap();
    /// let pending = pool.with(&CallOptions::new().chunksize(3)).map_async(double, 0..10);
    /// let (done, total) = pending.progress();
    /// assert!(done <= total);
    /// assert_eq!(total, 10);
    /// pending.wait();
    /// assert_eq!(pending.progress(), (10, 10));
    /// ```
    pub fn progress(&self) -> (usize, usize) {
        let done = self.progress.done.load(Ordering::Relaxed);
        (done.min(self.progress.total), self.progress.total)
    }
}

impl<T: Send + 'static> AsyncResult<T> {
    /// Calls `callback` with the result once the work is done, like concurrent.futures'
    /// `add_done_callback`; at once if it is done already. Python's `apply_async(...,
    /// callback=, error_callback=)` is a `match` on what it is given:
    ///
    /// ```
    /// # use mp_runtime::{process_fn, Pool};
    /// # #[process_fn]
    /// # fn add(a: i32, b: i32) -> i32 { a + b }
    /// # let pool = Pool::new(1).unwrap();
    /// pool.apply_async(add, (1, 2)).add_done_callback(|result| match result {
    ///     Ok(sum) => println!("got {sum}"),          // callback=
    ///     Err(error) => eprintln!("failed: {error}"), // error_callback=
    /// });
    /// ```
    ///
    /// Callbacks run in the parent, on a thread the pool owns (one per pool, started at its
    /// first callback), one at a time, in the order their results completed; those of one
    /// result in the order they were added. The result is still there for
    /// [`get`](AsyncResult::get) afterwards: the callback sees it by reference, and the result
    /// becomes ready to take (and [`ready`](AsyncResult::ready) true) once its callbacks have
    /// run, as in Python's pool. A result taken already (by
    /// [`get_timeout`](AsyncResult::get_timeout) or `.await`) gives a new callback an error
    /// that says so.
    ///
    /// A callback that panics has its panic printed, and the pool and the later callbacks go
    /// on. One that blocks delays no result and no time limit, of this pool or another: only
    /// the callbacks after it, and the `get` of the results they belong to (its own among
    /// them). So a callback may submit work to the same pool and wait for it; waiting for a
    /// result of the same pool that has callbacks of its own would never end (they run after
    /// it, on the same thread), so there [`get`](AsyncResult::get) and
    /// [`get_timeout`](AsyncResult::get_timeout) fail at once with an error that says so
    /// ([`is_usage`](Error::is_usage)), and [`wait`](AsyncResult::wait) and
    /// [`wait_timeout`](AsyncResult::wait_timeout) return at once. Dropping the pool runs the
    /// callbacks still queued (those of the work it ends too, with its closing error), waiting
    /// for them at most a second (not at all when a callback drops it); the thread finishes
    /// them after that and then exits. A result whose `Drop` panics there, when its handles
    /// are gone, has the panic printed, and the thread goes on. A callback added once the pool and its thread are gone runs at once, on the caller's
    /// thread. In a copy of the process made by `fork()` it is called at once, on the caller's
    /// thread, with the error whose [`is_foreign_process`](Error::is_foreign_process) is true.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use std::time::Duration;
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn double(x: u32) -> u32 {
    ///     x * 2
    /// }
    ///
    /// let pool = Pool::new(2).unwrap();
    /// let (sender, seen) = mpsc::channel();
    /// let pending = pool.map_async(double, vec![1, 2, 3]);
    /// pending.add_done_callback(move |values| sender.send(values.as_ref().unwrap().clone()).unwrap());
    /// assert_eq!(seen.recv_timeout(Duration::from_secs(30)).unwrap(), vec![2, 4, 6]);
    /// assert_eq!(pending.get().unwrap(), vec![2, 4, 6]); // still there
    /// ```
    pub fn add_done_callback(&self, callback: impl FnOnce(&Result<T>) + Send + 'static) {
        if let Err(error) = self.owner.check(Handle::PoolResult) {
            // A forked copy: the pool's thread is the original's, and this is the result.
            call(|| callback(&Err(error)));
            return;
        }
        self.completion.add_callback(Box::new(callback));
    }

    /// Cancels the work: calls still queued never run, and a worker running one is killed and
    /// replaced. [`get`](AsyncResult::get) then reports [`is_cancelled`](Error::is_cancelled).
    /// Returns false if the work had already finished.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn forever() {
    ///     loop {
    ///         std::thread::sleep(Duration::from_secs(1));
    ///     }
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let stuck = pool.apply_async(forever, ());
    /// assert!(stuck.cancel());
    /// assert!(stuck.get().unwrap_err().is_cancelled());
    /// ```
    pub fn cancel(&self) -> bool {
        // In a forked copy the workers running it are the original's, not ours to kill.
        if !self.owner.is_here() {
            return false;
        }
        let cancelled = self.completion.complete(Err(Error::new(Kind::Cancelled)));
        if cancelled {
            self.control.cancel();
        }
        cancelled
    }
}

/// The error of a wait on a pool's callback thread for a result whose callbacks run there
/// later: it would never end.
fn waits_for_itself() -> Error {
    Error::usage(
        "a callback waits for a result whose own callbacks run after it, on the same thread: \
         it would wait forever; take that result in a callback of its own, or on another thread",
    )
}

impl<T> Future for AsyncResult<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        if self.owner.is_here() {
            let mut state = lock(&self.completion.state);
            if state.result.is_none() && !state.taken {
                state.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
        Poll::Ready(self.take())
    }
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("function", &self.function)
            .field("ready", &self.ready())
            .finish()
    }
}
