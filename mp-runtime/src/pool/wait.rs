//! [`wait`]: waiting on several connections, processes and results at once, as CPython's
//! `multiprocessing.connection.wait`.

use std::time::{Duration, Instant};

use super::AsyncResult;
use crate::ipc::Connection;
use crate::process::Process;

/// The longest pause between two looks at the objects [`wait`] waits on: how late it may see
/// one become ready.
const MAX_PAUSE: Duration = Duration::from_millis(5);

/// Something [`wait`] can wait on: a [`Connection`] (a message, or the other end's close, can
/// be received), a [`Process`] (its result, or its end, can be read: `join` returns at once)
/// or an [`AsyncResult`] (done). Implement it for a type of your own to wait on it beside
/// these.
///
/// # Examples
///
/// ```
/// use mp_runtime::Waitable;
///
/// let (a, b) = mp_runtime::pipe::<u8>().unwrap();
/// assert!(!b.is_ready());
/// a.send(&1).unwrap();
/// assert!(b.is_ready());
/// ```
pub trait Waitable {
    /// Whether waiting on it would end now.
    fn is_ready(&self) -> bool;
}

impl<T> Waitable for Connection<T> {
    fn is_ready(&self) -> bool {
        // A connection that cannot be polled (a send-only end, say) fails at once on `recv`:
        // waiting on it is over too.
        self.poll(Duration::ZERO).unwrap_or(true)
    }
}

impl<R> Waitable for Process<R> {
    fn is_ready(&self) -> bool {
        self.result_ready()
    }
}

impl<T> Waitable for AsyncResult<T> {
    fn is_ready(&self) -> bool {
        self.ready()
    }
}

impl<T: Waitable + ?Sized> Waitable for &T {
    fn is_ready(&self) -> bool {
        (**self).is_ready()
    }
}

/// Waits until at least one of `objects` is ready, or `timeout` passes, and returns those that
/// are ready (none on timeout), as CPython's `multiprocessing.connection.wait` returns the
/// objects: over [`Connection`]s, [`Process`]es and [`AsyncResult`]s, of one type or mixed as
/// `&dyn Waitable`. Readiness is seen within a few milliseconds.
///
/// # Examples
///
/// Several objects of one type come back as themselves, ready to use:
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
/// let results = [pool.apply_async(nap, (60_000,)), pool.apply_async(nap, (1,))];
/// let ready = mp_runtime::wait(&results, Duration::from_secs(30));
/// assert_eq!(ready.len(), 1);
/// assert_eq!(ready[0].get_timeout(Duration::ZERO).unwrap(), 1);
/// ```
///
/// Mixed objects, as `&dyn Waitable`; each then says whether it is ready:
///
/// ```
/// use std::time::Duration;
/// use mp_runtime::{process_fn, spawn, Waitable};
///
/// #[process_fn]
/// fn nap(ms: u64) {
///     std::thread::sleep(Duration::from_millis(ms));
/// }
///
/// let (tx, rx) = mp_runtime::pipe::<&str>().unwrap();
/// let mut slow = spawn!(nap, 60_000).unwrap();
/// let long = Duration::from_secs(30);
/// tx.send(&"hello").unwrap();
/// let objects: [&dyn Waitable; 2] = [&rx, &slow];
/// assert_eq!(mp_runtime::wait(objects, long).len(), 1);
/// assert!(rx.is_ready() && !slow.is_ready());
/// assert!(mp_runtime::wait([&slow], Duration::from_millis(10)).is_empty());
/// slow.kill().unwrap();
/// assert_eq!(mp_runtime::wait([&slow], long).len(), 1);
/// ```
pub fn wait<'a, W>(objects: impl IntoIterator<Item = &'a W>, timeout: Duration) -> Vec<&'a W>
where
    W: Waitable + ?Sized + 'a,
{
    let objects: Vec<&W> = objects.into_iter().collect();
    let deadline = Instant::now().checked_add(timeout);
    // Short pauses first, for what becomes ready soon; longer ones cost less while nothing does.
    let mut pause = Duration::from_micros(50);
    loop {
        let ready: Vec<&W> = (objects.iter().copied())
            .filter(|object| object.is_ready())
            .collect();
        if !ready.is_empty() {
            return ready;
        }
        let left = deadline.map_or(pause, |at| at.saturating_duration_since(Instant::now()));
        if left.is_zero() {
            return ready;
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(MAX_PAUSE);
    }
}
