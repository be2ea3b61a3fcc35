//! Passing handles leaks no descriptor in either process. It runs in a child of its own, so
//! that no other test opens descriptors while this one counts them.

use std::time::Duration;

use mp_runtime::{Connection, Lock, Pool, Queue, SharedMemory, Value, pipe, process_fn, spawn};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[process_fn]
fn touch(queue: Queue<u32>, lock: Lock, value: Value<u64>, shm: SharedMemory, n: u32) -> usize {
    queue.put(&n).unwrap();
    drop(lock.acquire().unwrap());
    *value.lock().unwrap() += 1;
    assert_eq!(shm.len(), 8);
    open_fds()
}

#[process_fn]
fn send_back(conn: Connection<u32>) -> Connection<u32> {
    conn.send(&1).unwrap();
    conn
}

/// The body of [`a_thousand_handle_passes_leak_no_descriptor`], in a process of its own.
#[process_fn]
fn a_thousand_handle_passes_leak_no_descriptor_alone() {
    let pool = Pool::new(1).unwrap();
    let queue = Queue::new().unwrap();
    let lock = Lock::new().unwrap();
    let value = Value::new(0u64).unwrap();
    let shm = SharedMemory::new(8).unwrap();
    let args = |range: std::ops::Range<u32>| -> Vec<_> {
        range
            .map(|n| {
                (
                    queue.clone(),
                    lock.clone(),
                    value.clone(),
                    shm.clone().unwrap(),
                    n,
                )
            })
            .collect()
    };
    // Warm up: the pool's worker and its threads are running.
    let first = pool.starmap(touch, args(0..10)).unwrap();
    let here = open_fds();
    let counts = pool.starmap(touch, args(10..1010)).unwrap();
    assert_eq!(open_fds(), here, "the parent leaked descriptors");
    assert_eq!(counts.last(), first.last(), "the worker leaked descriptors");
    assert_eq!(value.get().unwrap(), 1010);
    assert_eq!(queue.len().unwrap(), 1010);

    // Results and pipes too.
    for _ in 0..20 {
        let (a, b) = pipe::<u32>().unwrap();
        let back = spawn!(send_back, b).unwrap().join().unwrap();
        assert_eq!(a.recv_timeout(Duration::from_secs(60)).unwrap(), 1);
        drop((a, back));
    }
    assert_eq!(open_fds(), here, "results or pipes leaked descriptors");
}

/// Runs [`a_thousand_handle_passes_leak_no_descriptor_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn a_thousand_handle_passes_leak_no_descriptor() {
    crate::in_child(a_thousand_handle_passes_leak_no_descriptor_alone);
}
