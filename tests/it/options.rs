//! `CallOptions`: chunk size, time limit and read-ahead, for every kind of call, and the one
//! check that refuses options that cannot work.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mp_runtime::{CallOptions, Error, Pool, process_fn};

const LONG: Duration = Duration::from_secs(60);

#[process_fn]
fn pid_of(_: u64) -> u32 {
    std::process::id()
}

#[process_fn]
fn pid_of_pair(_: u64, _: u64) -> u32 {
    std::process::id()
}

#[process_fn]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[process_fn]
fn nap_pair(ms: u64, value: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    value
}

#[process_fn]
fn double(x: u64) -> u64 {
    2 * x
}

/// Pids in chunks of three: each chunk ran on one worker.
fn in_chunks_of_three(pids: &[u32]) {
    assert_eq!(pids.len(), 9);
    for chunk in pids.chunks(3) {
        assert!(chunk.iter().all(|&pid| pid == chunk[0]), "{pids:?}");
    }
}

#[test]
fn every_kind_of_call_keeps_its_chunk_size() {
    let pool = Pool::new(2).unwrap();
    let calls = pool.with(&CallOptions::new().chunksize(3));
    in_chunks_of_three(&calls.map(pid_of, 0..9).unwrap());
    in_chunks_of_three(&calls.map_async(pid_of, 0..9).get_timeout(LONG).unwrap());
    let pairs: Vec<(u64, u64)> = (0..9).map(|i| (i, i)).collect();
    in_chunks_of_three(&calls.starmap(pid_of_pair, &pairs).unwrap());
    in_chunks_of_three(
        &calls
            .starmap_async(pid_of_pair, &pairs)
            .get_timeout(LONG)
            .unwrap(),
    );
    let streamed: Vec<u32> = calls.imap(pid_of, 0..9).map(Result::unwrap).collect();
    in_chunks_of_three(&streamed);
    // Completion order keeps a chunk's results together.
    let unordered: Vec<u32> = calls
        .imap_unordered(pid_of, 0..9)
        .map(Result::unwrap)
        .collect();
    in_chunks_of_three(&unordered);
}

#[test]
fn a_time_limit_fails_only_its_task_on_every_kind_of_call() {
    let pool = Pool::new(2).unwrap();
    let calls = pool.with(&CallOptions::new().timeout(Duration::from_millis(500)));
    assert!(calls.apply(nap, (60_000,)).unwrap_err().is_timeout());
    assert_eq!(calls.apply_async(nap, (1,)).get_timeout(LONG).unwrap(), 1);
    let err = calls.map(nap, [1, 60_000, 2]).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let err = calls
        .starmap_async(nap_pair, [(1, 1), (60_000, 2)])
        .get_timeout(LONG)
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(calls.starmap(nap_pair, [(1, 7)]).unwrap(), [7]);
    // A chunk size asked for is taken as 1 under the limit: the slow input fails alone.
    let chunked = CallOptions::new()
        .chunksize(3)
        .timeout(Duration::from_millis(500));
    let naps: Vec<_> = pool.with(&chunked).imap(nap, [1, 60_000, 2]).collect();
    assert!(naps[1].as_ref().unwrap_err().is_timeout());
    assert_eq!(
        (naps[0].as_ref().ok(), naps[2].as_ref().ok()),
        (Some(&1), Some(&2))
    );
    let mut unordered: Vec<_> = pool
        .with(&chunked)
        .imap_unordered(nap, [1, 60_000, 2])
        .collect();
    unordered.sort_by_key(Result::is_err);
    assert!(unordered[2].as_ref().unwrap_err().is_timeout());
    assert_eq!(calls.map_async(nap, [3]).get_timeout(LONG).unwrap(), [3]);
}

/// An endless input that counts how many items were read from it.
fn counted(read: &Arc<AtomicUsize>) -> impl Iterator<Item = u64> + use<> {
    let read = read.clone();
    (0..).inspect(move |_| {
        read.fetch_add(1, Ordering::SeqCst);
    })
}

#[test]
fn buffersize_bounds_how_far_an_endless_input_is_read() {
    let pool = Pool::new(2).unwrap();
    for chunksize in [1, 2] {
        let options = CallOptions::new().chunksize(chunksize).buffersize(4);
        let read = Arc::new(AtomicUsize::new(0));
        let mut doubles = pool.with(&options).imap(double, counted(&read));
        for taken in 1..=20u64 {
            assert_eq!(doubles.next().unwrap().unwrap(), 2 * (taken - 1));
            let read = read.load(Ordering::SeqCst);
            assert!(read <= taken as usize + 4, "{read} read, {taken} taken");
        }
        let read = Arc::new(AtomicUsize::new(0));
        let mut unordered = pool.with(&options).imap_unordered(double, counted(&read));
        for taken in 1..=20 {
            unordered.next().unwrap().unwrap();
            let read = read.load(Ordering::SeqCst);
            assert!(read <= taken + 4, "{read} read, {taken} taken");
        }
    }
    // Without it an imap reads well ahead (32 chunks per worker), as before.
    let read = Arc::new(AtomicUsize::new(0));
    let mut doubles = pool.imap(double, counted(&read));
    doubles.next().unwrap().unwrap();
    assert!(read.load(Ordering::SeqCst) > 5);
    // Blocking maps keep their results under any buffersize, down to one input at a time.
    for buffersize in [1, 3, 1000] {
        let calls = pool.with(&CallOptions::new().buffersize(buffersize));
        let want: Vec<u64> = (0..50).map(|x| 2 * x).collect();
        assert_eq!(calls.map(double, 0..50).unwrap(), want);
        let pairs: Vec<(u64, u64)> = (0..50).map(|x| (0, 2 * x)).collect();
        assert_eq!(calls.starmap(nap_pair, &pairs).unwrap(), want);
        assert_eq!(calls.map_async(double, 0..50).get().unwrap(), want);
    }
}

/// Every kind of call with `options` fails with a usage error that says what to give.
fn refused_by_every_call(pool: &Pool, options: &CallOptions, says: &str) {
    let calls = pool.with(options);
    let check = |err: Error| {
        assert!(err.is_usage(), "{err}");
        assert!(err.to_string().contains(says), "{err}");
    };
    check(calls.map(double, 0..4).unwrap_err());
    check(calls.map_async(double, 0..4).get_timeout(LONG).unwrap_err());
    check(calls.starmap(nap_pair, [(0, 1)]).unwrap_err());
    check(
        calls
            .starmap_async(nap_pair, [(0, 1)])
            .get_timeout(LONG)
            .unwrap_err(),
    );
    check(calls.apply(double, (1,)).unwrap_err());
    check(
        calls
            .apply_async(double, (1,))
            .get_timeout(LONG)
            .unwrap_err(),
    );
    let mut streamed = calls.imap(double, 0..);
    check(streamed.next().unwrap().unwrap_err());
    assert!(streamed.next().is_none());
    let mut unordered = calls.imap_unordered(double, 0..);
    check(unordered.next().unwrap().unwrap_err());
    assert!(unordered.next().is_none());
}

#[test]
fn options_that_cannot_work_are_refused_by_every_kind_of_call() {
    let pool = Pool::new(1).unwrap();
    refused_by_every_call(
        &pool,
        &CallOptions::new().chunksize(0),
        "give `chunksize` 1 or more",
    );
    refused_by_every_call(
        &pool,
        &CallOptions::new().buffersize(0),
        "give `buffersize` 1 or more",
    );
    refused_by_every_call(
        &pool,
        &CallOptions::new().timeout(Duration::ZERO),
        "give `timeout` a positive duration",
    );
    refused_by_every_call(
        &pool,
        &CallOptions::new().chunksize(5).buffersize(2),
        "a `buffersize` of at least the `chunksize`",
    );
    // The pool goes on.
    assert_eq!(pool.map(double, 0..3).unwrap(), [0, 2, 4]);
}

#[test]
fn calls_on_a_closed_pool_fail_with_its_closing_error_on_every_kind_of_call() {
    let pool = Pool::new(1).unwrap();
    let calls = pool.with(&CallOptions::new().chunksize(2).buffersize(4));
    pool.close();
    assert!(calls.map(double, 0..4).unwrap_err().is_closed());
    assert!(
        calls
            .map_async(double, 0..4)
            .get_timeout(LONG)
            .unwrap_err()
            .is_closed()
    );
    assert!(calls.apply(double, (1,)).unwrap_err().is_closed());
    let mut streamed = calls.imap(double, 0..);
    assert!(streamed.next().unwrap().unwrap_err().is_closed());
    pool.join().unwrap();
}

#[test]
fn extreme_options_work_or_fail_at_once() {
    let pool = Pool::new(2).unwrap();
    let huge = CallOptions::new()
        .chunksize(usize::MAX)
        .timeout(Duration::MAX);
    assert_eq!(pool.with(&huge).map(double, 0..5).unwrap(), [0, 2, 4, 6, 8]);
    let no_limit = CallOptions::new().chunksize(usize::MAX);
    assert_eq!(
        pool.with(&no_limit).map(double, 0..5).unwrap(),
        [0, 2, 4, 6, 8]
    );
    assert_eq!(pool.with(&no_limit).imap(double, 0..5).count(), 5);
    let tiny = CallOptions::new().timeout(Duration::from_nanos(1));
    assert!(pool.with(&tiny).apply(nap, (50,)).unwrap_err().is_timeout());
    // A read-ahead of one input on an endless input, with fewer inputs than workers ahead.
    let one = CallOptions::new().buffersize(1);
    let first: Vec<u64> = pool
        .with(&one)
        .imap(double, 0..)
        .take(20)
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(first.len(), 20);
    assert_eq!(pool.with(&one).map(double, 0..20).unwrap().len(), 20);
    let unordered: Vec<_> = pool.with(&one).imap_unordered(refuse_odd, 0..6).collect();
    assert_eq!(unordered.iter().filter(|r| r.is_err()).count(), 3);
}

#[process_fn]
fn refuse_odd(x: u64) -> u64 {
    assert!(x % 2 == 0, "odd {x}");
    x
}
