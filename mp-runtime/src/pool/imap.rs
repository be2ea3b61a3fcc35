//! [`IMap`]: lazy, streaming maps over a pool.

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::options::CallOptions;
use super::scheduler::{Control, Raw, Shared, Sink, Task};
use crate::base::{Error, Handle, Result};
use crate::runtime::registry::Entry;
use crate::runtime::spawn::Owner;
use crate::wire::protocol::Args;

/// Hands each finished chunk to the iterator's thread.
struct Stream(Mutex<Sender<(usize, Raw)>>);

impl Sink for Stream {
    fn deliver(&self, index: usize, result: Raw) {
        // The iterator may be gone; then the result has no one to go to.
        let _ = super::scheduler::lock(&self.0).send((index, result));
    }
}

/// An iterator over the results of [`Pool::imap`](crate::Pool::imap) (input order) or
/// [`Pool::imap_unordered`](crate::Pool::imap_unordered) (completion order), one `Result` per input.
///
/// It reads its input lazily: at most 32 chunks per worker are queued or running at a time
/// (and at most a [`buffersize`](crate::CallOptions::buffersize) of inputs read and not yet
/// yielded, when one is given), so an endless input works, and the first results arrive while later ones compute. Dropping
/// it drops what it had queued.
///
/// Its [`size_hint`](Iterator::size_hint) counts the results still to come, exactly when the
/// input's does, and it is an [`ExactSizeIterator`] when the input is one, so progress bars
/// (indicatif's `.progress()`) know the length. [`next_timeout`](IMap::next_timeout) waits
/// for the next result at most so long, as Python's `IMapIterator.next(timeout)`.
///
/// In a copy of the process made by `fork()`, an iterator of a pool of the original yields an
/// error whose [`is_foreign_process`](Error::is_foreign_process) is true, at once, and ends: the
/// pool's threads, which would deliver its results, are the original's.
///
/// # Examples
///
/// ```
/// use mp_runtime::{process_fn, Pool};
///
/// #[process_fn]
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = Pool::new(2).unwrap();
/// let first: Vec<u64> = pool.imap(square, 1..).take(4).map(|r| r.unwrap()).collect();
/// assert_eq!(first, [1, 4, 9, 16]);
/// ```
pub struct IMap<'pool, I: Iterator, R> {
    /// The queue and workers of the pool it maps over.
    pool: &'pool Shared,
    /// The function, or `None` when it could not be looked up (the error is then in `ready`).
    function: Option<&'static Entry>,
    inputs: I,
    /// Encodes a chunk of inputs as calls of the function with the given id.
    encode: fn(&str, &[I::Item]) -> Result<Args>,
    inputs_done: bool,
    chunksize: usize,
    /// The time limit of each task; `None` for none.
    timeout: Option<Duration>,
    ordered: bool,
    max_in_flight: usize,
    /// At most this many inputs read and not yet yielded.
    buffersize: usize,
    /// Chunks submitted so far; the next one gets this index.
    submitted: usize,
    received: usize,
    /// The index of the chunk to yield next, when ordered.
    next_chunk: usize,
    /// How many inputs each chunk in flight holds.
    sizes: HashMap<usize, usize>,
    /// How many inputs the chunks in flight hold together.
    in_flight_items: usize,
    /// How many results the finished chunks in `waiting` hold together.
    waiting_items: usize,
    /// Finished chunks waiting for their turn, when ordered.
    waiting: HashMap<usize, Vec<Result<R>>>,
    ready: VecDeque<Result<R>>,
    results: Receiver<(usize, Raw)>,
    sink: Arc<Stream>,
    control: Arc<Control>,
    /// The process whose pool threads deliver the results: in any other (a forked copy),
    /// nothing is waited for, and the locks a thread of the original may have held at the
    /// fork are not taken.
    owner: Owner,
    output: PhantomData<fn() -> R>,
}

impl<'pool, I, R> IMap<'pool, I, R>
where
    I: Iterator,
    R: DeserializeOwned,
{
    pub(crate) fn new(
        pool: &'pool Shared,
        processes: usize,
        function: Result<&'static Entry>,
        inputs: I,
        options: &CallOptions,
        ordered: bool,
        encode: fn(&str, &[I::Item]) -> Result<Args>,
    ) -> Self {
        let timeout = options.timeout.or(pool.config.task_timeout);
        let (sender, results) = mpsc::channel();
        let (function, ready) = match function {
            Ok(entry) => (Some(entry), VecDeque::new()),
            Err(error) => (None, VecDeque::from([Err(error)])),
        };
        IMap {
            pool,
            inputs_done: function.is_none(),
            function,
            inputs,
            encode,
            // A time limit is per call: a call stuck in a chunk would fail the chunk's others.
            chunksize: match timeout {
                Some(_) => 1,
                None => options.chunksize.unwrap_or(1),
            },
            timeout,
            ordered,
            // Enough chunks per worker to keep its pipeline full (short tasks are sent several
            // at a time) and more queued behind it, so that a driver refilling the pipeline finds
            // the next task there rather than waiting to be woken for it; few enough that the
            // input is read lazily.
            max_in_flight: 32 * processes,
            // Checked: a chunk fits in it.
            buffersize: options.buffersize.unwrap_or(usize::MAX),
            submitted: 0,
            received: 0,
            next_chunk: 0,
            sizes: HashMap::new(),
            in_flight_items: 0,
            waiting_items: 0,
            waiting: HashMap::new(),
            ready,
            results,
            sink: Arc::new(Stream(Mutex::new(sender))),
            control: Arc::default(),
            // Made here in the process of its pool, or, for a pool of a forked copy's original,
            // with the pool's error as its only result: the process's own either way.
            owner: Owner::this_process(),
            output: PhantomData,
        }
    }

    /// Submits chunks until enough are in flight or the input ends.
    fn top_up(&mut self) {
        let Some(function) = self.function else {
            return;
        };
        while !self.inputs_done
            && self.submitted - self.received < self.max_in_flight
            && self.pending().saturating_add(self.chunksize) <= self.buffersize
        {
            let chunk: Vec<I::Item> = self.inputs.by_ref().take(self.chunksize).collect();
            let taken = chunk.len();
            if taken < self.chunksize {
                self.inputs_done = true;
            }
            if taken == 0 {
                return;
            }
            let index = self.submitted;
            self.submitted += 1;
            self.sizes.insert(index, taken);
            self.in_flight_items += taken;
            let args = match (self.encode)(function.id, &chunk) {
                Ok(args) => args,
                Err(error) => {
                    // Report inputs that cannot be encoded in their place, without running them.
                    self.sink.deliver(index, Err(error));
                    continue;
                }
            };
            let task = Task::new(
                function,
                args,
                index,
                self.sink.clone(),
                self.control.clone(),
                self.timeout,
            );
            if self.pool.submit([task]).is_err() {
                // The refused task delivered the pool's closing error itself, as it dropped.
                self.inputs_done = true;
            }
        }
    }

    fn accept(&mut self, index: usize, raw: Raw) {
        let items = self.sizes.remove(&index).unwrap_or(1);
        self.in_flight_items -= items.min(self.in_flight_items);
        let function = self.function.map_or("", |entry| entry.path);
        let results = decode_chunk::<R>(raw, function, items);
        if self.ordered {
            self.waiting_items += results.len();
            self.waiting.insert(index, results);
            while let Some(results) = self.waiting.remove(&self.next_chunk) {
                self.waiting_items -= results.len();
                self.ready.extend(results);
                self.next_chunk += 1;
            }
        } else {
            self.ready.extend(results);
        }
    }
}

/// One result per item of a finished chunk; a chunk that failed as a whole (its worker died)
/// gives its error for each item.
pub(crate) fn decode_chunk<R: DeserializeOwned>(
    raw: Raw,
    function: &str,
    items: usize,
) -> Vec<Result<R>> {
    match raw {
        Ok(outcomes) => outcomes.decode_each(function),
        Err(error) => {
            let mut errors: Vec<Result<R>> =
                (1..items.max(1)).map(|_| Err(error.clone())).collect();
            errors.insert(0, Err(error));
            errors
        }
    }
}

impl<I, R> IMap<'_, I, R>
where
    I: Iterator,
    R: DeserializeOwned,
{
    /// The next result, waiting for it at most `timeout`, as Python's
    /// `IMapIterator.next(timeout)`: `Ok(None)` at the end, and an error whose
    /// [`is_timeout`](Error::is_timeout) is true if nothing came in time. Nothing is lost on a
    /// timeout: the work goes on, and the next call returns that result.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let mut naps = pool.imap(nap, [300]);
    /// assert!(naps.next_timeout(Duration::from_millis(1)).unwrap_err().is_timeout());
    /// let first = naps.next_timeout(Duration::from_secs(30)).unwrap();
    /// assert_eq!(first.unwrap().unwrap(), 300);
    /// assert!(naps.next_timeout(Duration::from_secs(30)).unwrap().is_none());
    /// ```
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Result<R>>> {
        self.next_until(Instant::now().checked_add(timeout))
            .ok_or_else(|| Error::timeout("the next result of an imap", timeout))
    }

    /// Stops the map now: no more input is read, tasks still queued never run, and the workers
    /// running its tasks are killed and replaced, as [`AsyncResult::cancel`] does for one task
    /// (tasks of other calls that ran on them run again). The iterator then ends: results not
    /// yet taken are dropped. Dropping an `IMap` instead lets the tasks already running finish.
    /// In a forked copy of the process that built the pool, it only ends the iterator.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mp_runtime::{process_fn, Pool};
    ///
    /// #[process_fn]
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// let pool = Pool::new(2).unwrap();
    /// let mut naps = pool.imap_unordered(nap, [1, 60_000, 60_000, 60_000]);
    /// assert_eq!(naps.next().unwrap().unwrap(), 1);
    /// naps.cancel(); // the 60 s naps end now, with their workers
    /// assert!(naps.next().is_none());
    /// assert_eq!(pool.apply(nap, (2,)).unwrap(), 2); // fresh workers serve
    /// ```
    ///
    /// [`AsyncResult::cancel`]: crate::AsyncResult::cancel
    pub fn cancel(&mut self) {
        if self.owner.is_here() {
            self.control.cancel();
        }
        self.inputs_done = true;
        self.received = self.submitted;
        self.ready.clear();
        self.waiting.clear();
        self.sizes.clear();
        self.in_flight_items = 0;
        self.waiting_items = 0;
    }

    /// The next result (`Some(None)` at the end), or `None` if `deadline` passed first.
    fn next_until(&mut self, deadline: Option<Instant>) -> Option<Option<Result<R>>> {
        if let Err(error) = self.owner.check(Handle::PoolResult) {
            return Some(self.disown(error));
        }
        loop {
            if let Some(result) = self.ready.pop_front() {
                return Some(Some(result));
            }
            self.top_up();
            if self.received == self.submitted {
                return Some(None);
            }
            // Every submitted chunk is delivered exactly once, so this cannot wait forever.
            let received = match deadline {
                None => self
                    .results
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
                Some(deadline) => self
                    .results
                    .recv_timeout(deadline.saturating_duration_since(Instant::now())),
            };
            let (index, raw) = match received {
                Ok(received) => received,
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => {
                    (self.received, Err(Error::protocol("the pool went away")))
                }
            };
            self.received += 1;
            self.accept(index, raw);
        }
    }

    /// In a forked copy: the error the first time, then the end. What was in flight is the
    /// original's to receive.
    fn disown(&mut self, error: Error) -> Option<Result<R>> {
        let first = !self.inputs_done || self.pending() > 0;
        self.inputs_done = true;
        self.received = self.submitted;
        self.ready.clear();
        self.waiting.clear();
        self.sizes.clear();
        (self.in_flight_items, self.waiting_items) = (0, 0);
        first.then_some(Err(error))
    }

    /// How many results are still to come, of the inputs already read.
    fn pending(&self) -> usize {
        self.ready.len() + self.waiting_items + self.in_flight_items
    }
}

impl<I, R> Iterator for IMap<'_, I, R>
where
    I: Iterator,
    R: DeserializeOwned,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.next_until(None).flatten()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let pending = self.pending();
        if self.inputs_done {
            return (pending, Some(pending));
        }
        let (low, high) = self.inputs.size_hint();
        (
            pending.saturating_add(low),
            high.and_then(|high| high.checked_add(pending)),
        )
    }
}

/// One result per input: exact as long as the pool takes the work (a pool closed under it ends
/// the iterator early).
impl<I, R> ExactSizeIterator for IMap<'_, I, R>
where
    I: ExactSizeIterator,
    R: DeserializeOwned,
{
}

impl<I: Iterator, R> Drop for IMap<'_, I, R> {
    fn drop(&mut self) {
        if self.owner.is_here() {
            self.control.skip_queued();
            return;
        }
        // A forked copy: the channel's ends are left unfreed, not dropped. Dropping the
        // receiver waits for a send in progress, which a thread of the original may have been
        // making at the fork; the last sender would take a lock it may have held.
        let (_, receiver) = mpsc::channel();
        std::mem::forget(std::mem::replace(&mut self.results, receiver));
        std::mem::forget(self.sink.clone());
    }
}

impl<I: Iterator, R> std::fmt::Debug for IMap<'_, I, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IMap")
            .field("function", &self.function.map(|entry| entry.path))
            .field("ordered", &self.ordered)
            .field("chunksize", &self.chunksize)
            .finish()
    }
}
