//! `mp_runtime::wait` over connections, processes and async results at once, as CPython's
//! `multiprocessing.connection.wait`: one thread can serve several of them without polling.

use std::time::{Duration, Instant};

use mp_runtime::{Pool, Waitable, pipe, process_fn, spawn, wait};
use mp_support::tasks::{abort, sleep_ms};

const LONG: Duration = Duration::from_secs(60);

/// Where each object `wait` returned stands in `objects`.
fn positions(objects: &[&dyn Waitable], timeout: Duration) -> Vec<usize> {
    let ready = wait(objects.iter().copied(), timeout);
    (ready.iter())
        .map(|r| {
            (objects.iter())
                .position(|o| std::ptr::addr_eq(*o, *r))
                .unwrap()
        })
        .collect()
}

#[process_fn]
fn send_after(out: mp_runtime::Connection<u32>, ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
    out.send(&7).unwrap();
}

#[test]
fn wait_returns_what_is_ready_among_connections_processes_and_results() {
    let (tx, rx) = pipe::<u32>().unwrap();
    let mut sleeper = spawn!(sleep_ms, 60_000).unwrap();
    let pool = Pool::new(1).unwrap();
    let pending = pool.apply_async(sleep_ms, (60_000,));

    // Nothing is ready: the wait ends at its timeout, with nothing.
    let started = Instant::now();
    assert!(positions(&[&rx, &sleeper, &pending], Duration::from_millis(200)).is_empty());
    assert!(started.elapsed() >= Duration::from_millis(200));

    // A message sent by another process wakes it, and names only the connection.
    let sender = spawn!(send_after, tx, 100).unwrap();
    assert_eq!(positions(&[&rx, &sleeper, &pending], LONG), [0]);
    assert_eq!(rx.recv().unwrap(), 7);
    sender.join().unwrap();

    // A process that dies without a result is ready: join says how it ended.
    let crashed = spawn!(abort).unwrap();
    assert_eq!(positions(&[&sleeper, &crashed], LONG), [1]);
    assert!(crashed.join().unwrap_err().is_died());

    // A finished result is ready; so is a cancelled one.
    let quick = pool.apply_async(sleep_ms, (1,));
    pending.cancel();
    let ready = positions(&[&sleeper, &pending, &quick], LONG);
    assert!(ready == [1] || ready == [1, 2], "{ready:?}");
    assert_eq!(wait([&quick], LONG).len(), 1);
    assert_eq!(quick.get().unwrap(), 1);

    // The other end's close (the sender's copy went with it) counts as ready, as in Python:
    // `recv` then says so at once.
    assert!(rx.is_ready());
    assert!(rx.recv().unwrap_err().is_disconnected());
    assert!(!sleeper.is_ready());
    sleeper.kill().unwrap();
    assert_eq!(positions(&[&sleeper], LONG), [0]);
}

#[test]
fn wait_hands_back_the_ready_objects_themselves() {
    let mut readers = Vec::new();
    let mut senders = Vec::new();
    for ms in [60_000, 50, 60_000] {
        let (tx, rx) = pipe::<u32>().unwrap();
        readers.push(rx);
        senders.push(spawn!(send_after, tx, ms).unwrap());
    }
    let ready = wait(&readers, LONG);
    assert_eq!(ready.len(), 1);
    assert!(std::ptr::eq(ready[0], &readers[1]));
    assert_eq!(ready[0].recv().unwrap(), 7);
    for mut sender in senders {
        let _ = sender.kill();
    }
}
