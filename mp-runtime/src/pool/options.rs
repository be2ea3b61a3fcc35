//! [`CallOptions`]: how one call on a pool runs (chunk size, time limit, read-ahead), and
//! [`Calls`], the pool's call methods under those options.

use std::borrow::Borrow;
use std::time::Duration;

use serde::Serialize;

use super::{AsyncResult, IMap, Pool, Submission, all, argument_tuples, only, single_arguments};
use crate::base::{Error, Result};
use crate::runtime::registry::ProcessFn;

/// Options for calls on a [`Pool`], given with [`Pool::with`]: what Python passes as keyword
/// arguments (`chunksize=`, pebble's `timeout=`, `Executor.map`'s `buffersize=`). Each option
/// left unset keeps what the pool's own methods do; one value serves any number of calls.
///
/// An option that cannot work (a chunk size, buffersize or time limit of zero; a chunk size
/// larger than the buffersize) fails the call, the way that call reports errors: the `Result`
/// of a blocking call, the [`AsyncResult`] of an `*_async` one, the first item of an [`IMap`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mp_runtime::{process_fn, CallOptions, Pool};
///
/// #[process_fn]
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = Pool::new(2).unwrap();
/// let options = CallOptions::new().chunksize(10).timeout(Duration::from_secs(30));
/// assert_eq!(pool.with(&options).map(square, 0..4).unwrap(), [0, 1, 4, 9]);
///
/// let err = pool.with(&CallOptions::new().chunksize(0)).map(square, 0..4).unwrap_err();
/// assert!(err.is_usage(), "{err}");
/// ```
#[derive(Clone, Debug, Default)]
#[must_use = "options do nothing until given to `Pool::with`"]
pub struct CallOptions {
    pub(super) chunksize: Option<usize>,
    pub(super) timeout: Option<Duration>,
    pub(super) buffersize: Option<usize>,
}

impl CallOptions {
    /// No option set: calls run as the pool's own methods run them.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, CallOptions, Pool};
    ///
    /// #[process_fn]
    /// fn inc(x: u8) -> u8 {
    ///     x + 1
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// assert_eq!(pool.with(&CallOptions::new()).map(inc, [1, 2]).unwrap(), [2, 3]);
    /// ```
    pub fn new() -> Self {
        CallOptions::default()
    }

    /// How many inputs go to a worker as one task, like Python's `chunksize=`: larger chunks
    /// cost fewer round trips for small tasks. By default, about four chunks per worker for
    /// `map`, `starmap` and their `*_async` forms (at most 16,384 inputs each), and one input for
    /// `imap` and `imap_unordered`. An `apply` is one input whatever this says. Under a time
    /// limit (this call's or the pool's [`task_timeout`](super::PoolBuilder::task_timeout)) it
    /// is taken as 1, so a slow input fails alone. Zero is refused.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, CallOptions, Pool};
    ///
    /// #[process_fn]
    /// fn pid(_: u32) -> u32 {
    ///     std::process::id()
    /// }
    ///
    /// let pool = Pool::new(2).unwrap();
    /// let pids = pool.with(&CallOptions::new().chunksize(3)).map(pid, 0..6).unwrap();
    /// assert_eq!(pids[0], pids[2]); // one chunk, one worker
    /// assert_eq!(pids[3], pids[5]);
    /// ```
    pub fn chunksize(mut self, chunksize: usize) -> Self {
        self.chunksize = Some(chunksize);
        self
    }

    /// Gives each task at most `limit` to run, counted from when a worker starts it, like
    /// pebble's `schedule(timeout=)`: a task still running after that has its worker killed and
    /// replaced, and fails with an error whose [`is_timeout`](Error::is_timeout) is true and
    /// that names the limit. Tasks queued behind it run on another worker. It overrides the
    /// pool's [`task_timeout`](super::PoolBuilder::task_timeout) for this call; maps then send
    /// each input as a task of its own. Zero is refused; not for pools over MPI ranks, where
    /// each task fails with an error that says so.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mp_runtime::{process_fn, CallOptions, Pool};
    ///
    /// #[process_fn]
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let strict = CallOptions::new().timeout(Duration::from_millis(500));
    /// let err = pool.with(&strict).apply(nap, (60_000,)).unwrap_err();
    /// assert!(err.is_timeout());
    /// assert!(err.to_string().contains("500ms"), "{err}");
    /// assert_eq!(pool.with(&strict).apply(nap, (1,)).unwrap(), 1);
    /// ```
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Reads at most `inputs` inputs ahead of the results, like `Executor.map(buffersize=)` of
    /// Python 3.14, so that an endless or huge input is read only as far as the results taken.
    ///
    /// - [`imap`](Calls::imap) and [`imap_unordered`](Calls::imap_unordered): at most `inputs`
    ///   inputs are read and not yet yielded by the iterator. By default the bound is 32
    ///   chunks per worker.
    /// - [`map`](Calls::map) and [`starmap`](Calls::starmap): these read their whole input
    ///   first (its length sets the default chunk size), then keep at most `inputs` inputs
    ///   encoded and not yet done, which bounds the memory their encoded form takes (the
    ///   default chunk size is made no larger). By default the bound is 32 chunks per worker.
    /// - The `*_async` calls and `apply` do not use it: they encode every input before they
    ///   return, since their inputs may be borrowed.
    ///
    /// Zero is refused, and so is a [`chunksize`](CallOptions::chunksize) larger than it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::Cell;
    /// use mp_runtime::{process_fn, CallOptions, Pool};
    ///
    /// #[process_fn]
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let pool = Pool::new(2).unwrap();
    /// let read = Cell::new(0);
    /// let endless = (0..).inspect(|_| read.set(read.get() + 1));
    /// let squares = pool.with(&CallOptions::new().buffersize(4)).imap(square, endless);
    /// let first: Vec<u64> = squares.take(3).map(|r| r.unwrap()).collect();
    /// assert_eq!(first, [0, 1, 4]);
    /// assert!(read.get() <= 3 + 4, "read {}", read.get());
    /// ```
    pub fn buffersize(mut self, inputs: usize) -> Self {
        self.buffersize = Some(inputs);
        self
    }

    /// The one place options are checked: the error a call with them fails with.
    pub(super) fn check(&self) -> Result<()> {
        if self.chunksize == Some(0) {
            return Err(Error::usage(
                "a chunk size of 0 cannot hold an input; give `chunksize` 1 or more, or leave \
                 it out for the default",
            ));
        }
        if self.buffersize == Some(0) {
            return Err(Error::usage(
                "a buffersize of 0 lets no input be read; give `buffersize` 1 or more, or leave \
                 it out for the default",
            ));
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(Error::usage(
                "a time limit of 0 fails every task; give `timeout` a positive duration, or \
                 leave it out for the pool's",
            ));
        }
        if let (Some(chunksize), Some(buffersize)) = (self.chunksize, self.buffersize) {
            if chunksize > buffersize {
                return Err(Error::usage(format!(
                    "a chunk of {chunksize} inputs does not fit in a buffersize of \
                     {buffersize}; give a `buffersize` of at least the `chunksize`"
                )));
            }
        }
        Ok(())
    }
}

/// A [`Pool`]'s call methods under [`CallOptions`], from [`Pool::with`]: the same methods, with
/// the same signatures, as the pool's own.
///
/// # Examples
///
/// ```
/// use mp_runtime::{process_fn, CallOptions, Pool};
///
/// #[process_fn]
/// fn add(a: i32, b: i32) -> i32 {
///     a + b
/// }
///
/// let pool = Pool::new(2).unwrap();
/// let calls = pool.with(&CallOptions::new().chunksize(2));
/// assert_eq!(calls.starmap(add, [(1, 2), (3, 4), (5, 6)]).unwrap(), [3, 7, 11]);
/// assert_eq!(calls.apply(add, (1, 1)).unwrap(), 2);
/// ```
#[derive(Debug)]
pub struct Calls<'pool> {
    pool: &'pool Pool,
    options: CallOptions,
}

impl<'pool> Calls<'pool> {
    pub(super) fn new(pool: &'pool Pool, options: &CallOptions) -> Self {
        Calls {
            pool,
            options: options.clone(),
        }
    }

    /// How a call with these options is submitted; `blocking` for a call that waits for its
    /// result anyway, whose inputs are encoded only as workers need them.
    fn submission<X>(
        &self,
        encode: fn(&str, &[X]) -> Result<crate::wire::protocol::Args>,
        blocking: bool,
    ) -> Result<Submission<X>> {
        self.options.check()?;
        Ok(Submission {
            chunksize: self.options.chunksize,
            timeout: self.options.timeout,
            ahead: blocking.then(|| self.pool.chunks_ahead()),
            buffersize: self.options.buffersize.filter(|_| blocking),
            encode,
        })
    }

    /// [`Pool::map`] under these options.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, CallOptions, Pool};
    ///
    /// #[process_fn]
    /// fn inc(x: u8) -> u8 {
    ///     x + 1
    /// }
    ///
    /// let pool = Pool::new(2).unwrap();
    /// let calls = pool.with(&CallOptions::new().chunksize(2));
    /// assert_eq!(calls.map(inc, vec![1, 2, 3]).unwrap(), vec![2, 3, 4]);
    /// ```
    pub fn map<F, A, I>(&self, f: F, inputs: I) -> Result<Vec<F::Output>>
    where
        F: ProcessFn<(A,)>,
        I: IntoIterator,
        I::Item: Borrow<A>,
        A: Serialize,
    {
        let how = self.submission(single_arguments::<A, I::Item>, true);
        self.pool.submit(f, inputs, how, all).get()
    }

    /// [`Pool::map_async`] under these options.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, CallOptions, Pool};
    ///
    /// #[process_fn]
    /// fn inc(x: u8) -> u8 {
    ///     x + 1
    /// }
    ///
    /// let pool = Pool::new(2).unwrap();
    /// let pending = pool.with(&CallOptions::new().chunksize(1)).map_async(inc, vec![1, 2]);
    /// assert_eq!(pending.get().unwrap(), vec![2, 3]);
    /// ```
    pub fn map_async<F, A, I>(&self, f: F, inputs: I) -> AsyncResult<Vec<F::Output>>
    where
        F: ProcessFn<(A,)>,
        I: IntoIterator,
        I::Item: Borrow<A>,
        A: Serialize,
    {
        let how = self.submission(single_arguments::<A, I::Item>, false);
        self.pool.submit(f, inputs, how, all)
    }

    /// [`Pool::starmap`] under these options.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, CallOptions, Pool};
    ///
    /// #[process_fn]
    /// fn add(a: i32, b: i32) -> i32 {
    ///     a + b
    /// }
    ///
    /// let pool = Pool::new(2).unwrap();
    /// let calls = pool.with(&CallOptions::new().chunksize(1));
    /// assert_eq!(calls.starmap(add, vec![(1, 2), (3, 4)]).unwrap(), vec![3, 7]);
    /// ```
    pub fn starmap<F, Args, I>(&self, f: F, inputs: I) -> Result<Vec<F::Output>>
    where
        F: ProcessFn<Args>,
        I: IntoIterator,
        I::Item: Borrow<Args>,
        Args: Serialize,
    {
        let how = self.submission(argument_tuples::<Args, I::Item>, true);
        self.pool.submit(f, inputs, how, all).get()
    }

    /// [`Pool::starmap_async`] under these options.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, CallOptions, Pool};
    ///
    /// #[process_fn]
    /// fn add(a: i32, b: i32) -> i32 {
    ///     a + b
    /// }
    ///
    /// let pool = Pool::new(2).unwrap();
    /// let calls = pool.with(&CallOptions::new().chunksize(1));
    /// assert_eq!(calls.starmap_async(add, vec![(1, 1)]).get().unwrap(), vec![2]);
    /// ```
    pub fn starmap_async<F, Args, I>(&self, f: F, inputs: I) -> AsyncResult<Vec<F::Output>>
    where
        F: ProcessFn<Args>,
        I: IntoIterator,
        I::Item: Borrow<Args>,
        Args: Serialize,
    {
        let how = self.submission(argument_tuples::<Args, I::Item>, false);
        self.pool.submit(f, inputs, how, all)
    }

    /// [`Pool::apply`] under these options (of which only the time limit applies to one call).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mp_runtime::{process_fn, CallOptions, Pool};
    ///
    /// #[process_fn]
    /// fn add(a: i32, b: i32) -> i32 {
    ///     a + b
    /// }
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let calls = pool.with(&CallOptions::new().timeout(Duration::from_secs(30)));
    /// assert_eq!(calls.apply(add, (1, 2)).unwrap(), 3);
    /// ```
    pub fn apply<F, Args>(&self, f: F, args: Args) -> Result<F::Output>
    where
        F: ProcessFn<Args>,
        Args: Serialize,
    {
        self.apply_async(f, args).get()
    }

    /// [`Pool::apply_async`] under these options (of which only the time limit applies to one
    /// call).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mp_runtime::{process_fn, CallOptions, Pool};
    ///
    /// #[process_fn]
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// let pool = Pool::new(2).unwrap();
    /// let short = CallOptions::new().timeout(Duration::from_millis(200));
    /// let stuck = pool.with(&short).apply_async(nap, (60_000,));
    /// let quick = pool.with(&short).apply_async(nap, (5,));
    /// assert!(stuck.get().unwrap_err().is_timeout());
    /// assert_eq!(quick.get().unwrap(), 5);
    /// ```
    pub fn apply_async<F, Args>(&self, f: F, args: Args) -> AsyncResult<F::Output>
    where
        F: ProcessFn<Args>,
        Args: Serialize,
    {
        let how = self
            .submission(argument_tuples::<Args, Args>, false)
            .map(|how| Submission {
                chunksize: Some(1),
                ..how
            });
        self.pool.submit(f, [args], how, only)
    }

    /// [`Pool::imap`] under these options.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, CallOptions, Pool};
    ///
    /// #[process_fn]
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let pool = Pool::new(2).unwrap();
    /// let calls = pool.with(&CallOptions::new().chunksize(100));
    /// let total: u64 = calls.imap(square, 0..1000).map(|r| r.unwrap()).sum();
    /// assert_eq!(total, 332_833_500);
    /// ```
    pub fn imap<F, A, I>(&self, f: F, inputs: I) -> IMap<'pool, I::IntoIter, F::Output>
    where
        F: ProcessFn<(A,)>,
        I: IntoIterator,
        I::Item: Borrow<A>,
        A: Serialize,
    {
        self.pool.imap_of(f, inputs, &self.options, true)
    }

    /// [`Pool::imap_unordered`] under these options.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, CallOptions, Pool};
    ///
    /// #[process_fn]
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let pool = Pool::new(2).unwrap();
    /// let calls = pool.with(&CallOptions::new().chunksize(10));
    /// assert_eq!(calls.imap_unordered(square, 0..100).count(), 100);
    /// ```
    pub fn imap_unordered<F, A, I>(&self, f: F, inputs: I) -> IMap<'pool, I::IntoIter, F::Output>
    where
        F: ProcessFn<(A,)>,
        I: IntoIterator,
        I::Item: Borrow<A>,
        A: Serialize,
    {
        self.pool.imap_of(f, inputs, &self.options, false)
    }
}
