//! `AsyncResult::add_done_callback`: called once, in completion order, on the pool's callback
//! thread; a callback that panics or blocks holds up no result, no time limit, no other pool.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mp_runtime::{CallOptions, Pool, Result, process_fn};

const LONG: Duration = Duration::from_secs(60);

#[process_fn]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[process_fn]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[process_fn]
fn refuse(x: u64) -> u64 {
    panic!("refused {x}")
}

/// A callback that sends what it saw, as text: `Ok(value)` or the error's message.
fn reporter<T: std::fmt::Debug>(sender: &Sender<String>) -> impl FnOnce(&Result<T>) + use<T> {
    let sender = sender.clone();
    move |result| {
        let seen = match result {
            Ok(value) => format!("{value:?}"),
            Err(error) => format!("error: {error}"),
        };
        let _ = sender.send(seen);
    }
}

fn next(seen: &Receiver<String>) -> String {
    seen.recv_timeout(LONG).expect("a callback within a minute")
}

#[test]
fn a_callback_is_called_once_with_the_value_which_get_still_returns() {
    let pool = Pool::new(1).unwrap();
    let (sender, seen) = mpsc::channel();
    let pending = pool.apply_async(add, (1, 2));
    pending.add_done_callback(reporter(&sender));
    assert_eq!(next(&seen), "3");
    assert_eq!(pending.get_timeout(LONG).unwrap(), 3);
    // Once: nothing more comes.
    assert!(seen.recv_timeout(Duration::from_millis(200)).is_err());
    // Called at once when the result is there already, and still leaves it to take.
    let done = pool.apply_async(add, (2, 2));
    assert!(done.wait_timeout(LONG));
    done.add_done_callback(reporter(&sender));
    assert_eq!(next(&seen), "4");
    assert_eq!(done.get_timeout(LONG).unwrap(), 4);
    // A result taken already gives a new callback an error that says so.
    done.add_done_callback(reporter(&sender));
    assert!(next(&seen).contains("taken"));
}

#[test]
fn callbacks_run_in_completion_order() {
    let pool = Pool::new(3).unwrap();
    let (sender, seen) = mpsc::channel();
    let pending: Vec<_> = [1_200, 0, 600]
        .into_iter()
        .map(|ms| pool.apply_async(nap, (ms,)))
        .collect();
    for result in &pending {
        result.add_done_callback(reporter(&sender));
    }
    let order: Vec<String> = (0..3).map(|_| next(&seen)).collect();
    assert_eq!(order, ["0", "600", "1200"]);
    // Those of one result run in the order they were added.
    let one = pool.apply_async(nap, (100,));
    let order = Arc::new(Mutex::new(Vec::new()));
    for i in 0..5 {
        let order = order.clone();
        one.add_done_callback(move |_| order.lock().unwrap().push(i));
    }
    one.get_timeout(LONG).unwrap();
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
}

#[test]
fn map_async_and_starmap_async_callbacks_get_the_whole_list() {
    let pool = Pool::new(2).unwrap();
    let (sender, seen) = mpsc::channel();
    let calls = pool.with(&CallOptions::new().chunksize(2));
    calls
        .map_async(nap, [3, 1, 2])
        .add_done_callback(reporter(&sender));
    assert_eq!(next(&seen), "[3, 1, 2]");
    pool.starmap_async(add, [(1, 1), (2, 2)])
        .add_done_callback(reporter(&sender));
    assert_eq!(next(&seen), "[2, 4]");
}

#[test]
fn a_callback_on_a_failed_task_sees_the_error() {
    let pool = Pool::new(1).unwrap();
    let (sender, seen) = mpsc::channel();
    let failed = pool.apply_async(refuse, (7,));
    failed.add_done_callback(reporter(&sender));
    let error = next(&seen);
    assert!(error.contains("refused 7"), "{error}");
    assert!(failed.get_timeout(LONG).unwrap_err().is_panic());
    let limited = CallOptions::new().timeout(Duration::from_millis(300));
    pool.with(&limited)
        .apply_async(nap, (60_000,))
        .add_done_callback(reporter(&sender));
    assert!(next(&seen).contains("time"));
}

#[test]
fn a_panicking_callback_stops_neither_the_pool_nor_later_callbacks() {
    let pool = Pool::new(1).unwrap();
    let (sender, seen) = mpsc::channel();
    let first = pool.apply_async(add, (1, 1));
    first.add_done_callback(|_| panic!("a callback that panics"));
    first.add_done_callback(reporter(&sender));
    assert_eq!(next(&seen), "2");
    assert_eq!(first.get_timeout(LONG).unwrap(), 2);
    pool.apply_async(add, (2, 3))
        .add_done_callback(reporter(&sender));
    assert_eq!(next(&seen), "5");
    assert_eq!(pool.apply(add, (3, 3)).unwrap(), 6);
}

#[test]
fn a_blocking_callback_holds_up_no_result_time_limit_or_other_pool() {
    let pool = Pool::new(2).unwrap();
    let other = Pool::new(1).unwrap();
    let (release, released) = mpsc::channel::<()>();
    let (entered, blocked) = mpsc::channel();
    let stuck = pool.apply_async(add, (1, 1));
    stuck.add_done_callback(move |_| {
        entered.send(()).unwrap();
        // Blocks until the test lets it go (at most a minute).
        let _ = released.recv_timeout(LONG);
    });
    blocked.recv_timeout(LONG).unwrap();
    let start = Instant::now();
    // Results of the same pool, of another pool, and a time limit, all in time.
    assert_eq!(pool.apply(add, (2, 2)).unwrap(), 4);
    assert_eq!(pool.map(add_one, 0..100).unwrap().len(), 100);
    assert_eq!(other.apply(add, (3, 3)).unwrap(), 6);
    let limited = CallOptions::new().timeout(Duration::from_millis(300));
    let err = pool.with(&limited).apply(nap, (60_000,)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // A later callback of another pool runs; one of this pool waits its turn.
    let (sender, seen) = mpsc::channel();
    other
        .apply_async(add, (4, 4))
        .add_done_callback(reporter(&sender));
    assert_eq!(next(&seen), "8");
    let later = pool.apply_async(add, (5, 5));
    later.add_done_callback(reporter(&sender));
    assert!(seen.recv_timeout(Duration::from_millis(300)).is_err());
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    // Its own result is ready once its callback returns.
    assert!(!stuck.ready());
    release.send(()).unwrap();
    assert_eq!(stuck.get_timeout(LONG).unwrap(), 2);
    assert_eq!(next(&seen), "10");
    assert_eq!(later.get_timeout(LONG).unwrap(), 10);
}

#[process_fn]
fn add_one(x: u64) -> u64 {
    x + 1
}

#[test]
fn a_callback_may_submit_work_to_the_same_pool() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let (sender, seen) = mpsc::channel();
    let first = pool.apply_async(add, (1, 2));
    let (again, chained) = (pool.clone(), sender.clone());
    first.add_done_callback(move |result| {
        let value = *result.as_ref().unwrap();
        // Waits for new work of the same pool, and submits more with a callback of its own.
        let doubled = again.apply(add, (value, value)).unwrap();
        let _ = chained.send(format!("{doubled}"));
        again
            .apply_async(add, (doubled, 1))
            .add_done_callback(reporter(&chained));
    });
    assert_eq!(next(&seen), "6");
    assert_eq!(next(&seen), "7");
    assert_eq!(first.get_timeout(LONG).unwrap(), 3);
}

#[test]
fn dropping_the_pool_runs_the_callbacks_still_due() {
    let pool = Pool::new(1).unwrap();
    let (sender, seen) = mpsc::channel();
    let stuck = pool.apply_async(nap, (60_000,));
    stuck.add_done_callback(reporter(&sender));
    drop(pool);
    assert!(next(&seen).contains("clos"));
    assert!(stuck.get_timeout(LONG).unwrap_err().is_closed());
    // With the pool gone, a callback runs at once.
    stuck.add_done_callback(reporter(&sender));
    assert!(next(&seen).contains("taken"));
}

// Attacks on the callback thread (review of #20): what the pool runs there besides callbacks,
// waits that cannot end, a pool dropped from its own thread, and the process's exit.

/// Armed only in the parent, after its pool started (workers never drop one armed): a result
/// whose drop panics there, as user code may.
static BOMBS_ARMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Bomb(u64);

impl Drop for Bomb {
    fn drop(&mut self) {
        if BOMBS_ARMED.load(std::sync::atomic::Ordering::SeqCst) && !std::thread::panicking() {
            panic!("a result that panics as it is dropped");
        }
    }
}

#[process_fn]
fn bomb(x: u64) -> Bomb {
    Bomb(x)
}

#[test]
fn a_result_whose_drop_panics_on_the_callback_thread_stops_no_later_callback() {
    let pool = Pool::new(1).unwrap();
    BOMBS_ARMED.store(true, std::sync::atomic::Ordering::SeqCst);
    let (sender, seen) = mpsc::channel();
    // Fire and forget: the callback thread holds the last handle on the result, and drops it.
    let first = sender.clone();
    pool.apply_async(bomb, (1,))
        .add_done_callback(move |result| {
            // Long enough for the pool thread to let go of the result.
            std::thread::sleep(Duration::from_millis(300));
            let _ = first.send(format!("{:?}", result.as_ref().map(|b| b.0)));
        });
    assert_eq!(next(&seen), "Ok(1)");
    let later = pool.apply_async(add, (2, 2));
    later.add_done_callback(reporter(&sender));
    let after = seen.recv_timeout(Duration::from_secs(10));
    BOMBS_ARMED.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(after.as_deref(), Ok("4"), "a later callback never ran");
    assert_eq!(later.get_timeout(Duration::from_secs(10)).unwrap(), 4);
}

#[test]
fn a_callback_that_waits_for_a_result_queued_behind_it_gets_an_error_not_a_hang() {
    let pool = Arc::new(Pool::new(2).unwrap());
    let (sender, seen) = mpsc::channel();
    let behind = pool.apply_async(nap, (100,));
    behind.add_done_callback(|_| {});
    let first = pool.apply_async(add, (1, 1));
    first.add_done_callback(move |_| {
        // `behind` completes while this runs; its callback, and so its `get`, come after this.
        let got = behind.get();
        let _ = sender.send(format!("{got:?}"));
    });
    let got = seen
        .recv_timeout(Duration::from_secs(10))
        .expect("the callback's get never returned: the callback thread waits for itself");
    assert!(got.contains("callback"), "{got}");
    assert_eq!(first.get_timeout(LONG).unwrap(), 2);
}

#[test]
fn a_pool_dropped_by_its_own_callback_is_dropped_without_waiting_for_itself() {
    let pool = Arc::new(Pool::new(1).unwrap());
    let (sender, seen) = mpsc::channel();
    let last = Arc::downgrade(&pool);
    let pending = pool.apply_async(add, (1, 2));
    let mut own = Some(pool);
    pending.add_done_callback(move |_| {
        // The last handle: the pool is dropped on its own callback thread.
        let pool = own.take().unwrap();
        let start = Instant::now();
        drop(pool);
        let _ = sender.send(start.elapsed());
    });
    let took = seen.recv_timeout(LONG).unwrap();
    assert!(last.upgrade().is_none());
    assert!(took < Duration::from_millis(900), "dropping took {took:?}");
    assert_eq!(pending.get_timeout(LONG).unwrap(), 3);
}

#[process_fn]
fn leave_a_callback_blocked() {
    let pool = Pool::new(1).unwrap();
    let pending = pool.apply_async(add, (1, 1));
    pending.add_done_callback(|_| std::thread::sleep(Duration::from_secs(3600)));
    // Closing, joining and dropping the pool, and the process's exit, wait for no callback.
    let start = Instant::now();
    pool.close();
    pool.join().unwrap();
    drop(pool);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_process_with_a_callback_blocked_forever_still_exits() {
    let mut child = mp_runtime::Process::start(leave_a_callback_blocked, ()).unwrap();
    let start = Instant::now();
    child.join_timeout(Duration::from_secs(30)).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_callback_added_from_a_callback_and_from_many_threads_runs_once_each() {
    let pool = Pool::new(2).unwrap();
    let pending = Arc::new(pool.apply_async(nap, (300,)));
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..100 {
                    let count = count.clone();
                    let again = pending.clone();
                    pending.add_done_callback(move |_| {
                        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        // The same result, from its own callback: runs before it is ready.
                        let count = count.clone();
                        again.add_done_callback(move |_| {
                            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        });
                    });
                }
            });
        }
    });
    assert!(pending.wait_timeout(LONG));
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1600);
    assert_eq!(pending.get_timeout(LONG).unwrap(), 300);
}

#[test]
fn a_result_whose_drop_panics_on_a_pool_thread_stops_no_later_result() {
    let pool = Pool::new(1).unwrap();
    BOMBS_ARMED.store(true, std::sync::atomic::Ordering::SeqCst);
    // Fire and forget, no callback: the pool thread that completes it holds the last handle.
    drop(pool.apply_async(bomb, (1,)));
    std::thread::sleep(Duration::from_millis(300));
    let later = pool
        .apply_async(add, (2, 2))
        .get_timeout(Duration::from_secs(10));
    BOMBS_ARMED.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(later.unwrap(), 4);
}

/// Armed only in the parent, by the one test that uses it.
static FUSES_ARMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A result that panics as it is dropped (when armed) and that the parent cannot decode from 1.
#[derive(Debug, serde::Serialize)]
struct Fuse(u64);

impl<'de> serde::Deserialize<'de> for Fuse {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = <u64 as serde::Deserialize>::deserialize(deserializer)?;
        if value == 1 {
            return Err(serde::de::Error::custom("a fuse of 1 does not decode"));
        }
        Ok(Fuse(value))
    }
}

impl Drop for Fuse {
    fn drop(&mut self) {
        if FUSES_ARMED.load(std::sync::atomic::Ordering::SeqCst) && !std::thread::panicking() {
            panic!("a result that panics as it is dropped");
        }
    }
}

#[process_fn]
fn fuse(x: u64) -> Fuse {
    Fuse(x)
}

// A chunk whose second value does not decode, after a first one whose `Drop` panics: the map
// fails with the decoding error, instead of never completing.
#[test]
fn a_map_whose_decoded_values_panic_on_drop_after_a_failure_still_fails() {
    let pool = Pool::new(1).unwrap();
    FUSES_ARMED.store(true, std::sync::atomic::Ordering::SeqCst);
    let pending = pool
        .with(&CallOptions::new().chunksize(2))
        .map_async(fuse, vec![0, 1]);
    let outcome = pending.get_timeout(Duration::from_secs(10));
    FUSES_ARMED.store(false, std::sync::atomic::Ordering::SeqCst);
    let error = outcome.unwrap_err();
    assert!(!error.is_timeout(), "the map never completed: {error}");
    assert!(error.to_string().contains("does not decode"), "{error}");
}
