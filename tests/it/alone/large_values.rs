//! Values of a mebibyte or more cross in a sealed memfd rather than through the socket: in task
//! arguments and results, beside handles, and through pipes, both ways, leaking no descriptor.
//! It runs in a child of its own, so that no other test opens descriptors while it counts them.

use mp_runtime::{Connection, Pool, pipe, process_fn, spawn};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Three mebibytes that differ from byte to byte, so a misplaced page would show.
fn large(seed: u8) -> Vec<u8> {
    (0..3 << 20)
        .map(|i: u32| (i as u8) ^ (i >> 12) as u8 ^ seed)
        .collect()
}

/// Checks the value, returns a changed copy of it, and this worker's descriptor count.
#[process_fn]
fn flip(data: Vec<u8>, seed: u8) -> (Vec<u8>, usize) {
    assert!(data == large(seed), "the argument arrived changed");
    (large(seed.wrapping_add(1)), open_fds())
}

/// Sends a large value back through the pipe it was given beside one.
#[process_fn]
fn echo_large(data: Vec<u8>, conn: Connection<Vec<u8>>) -> usize {
    let received = conn.recv().unwrap();
    conn.send(&received).unwrap();
    conn.send(&data).unwrap();
    open_fds()
}

/// The body of [`large_values_cross_both_ways_and_leak_no_descriptor`], in a process of its own.
#[process_fn]
fn large_values_cross_both_ways_and_leak_no_descriptor_alone() {
    let pool = Pool::new(1).unwrap();
    // Warm up: the worker and the pool's threads are running.
    let (back, worker_fds) = pool.apply(flip, (large(0), 0)).unwrap();
    assert!(back == large(1));
    let here = open_fds();
    for seed in 1..6u8 {
        let (back, fds) = pool.apply(flip, (large(seed), seed)).unwrap();
        assert!(back == large(seed + 1), "the result arrived changed");
        assert_eq!(fds, worker_fds, "the worker leaked descriptors");
    }
    // Several large values in one chunk: one frame holds them all.
    let inputs: Vec<(Vec<u8>, u8)> = (0..3).map(|seed| (large(seed), seed)).collect();
    let results = pool.starmap(flip, inputs).unwrap();
    for (seed, (back, _)) in results.into_iter().enumerate() {
        assert!(back == large(seed as u8 + 1));
    }
    assert_eq!(open_fds(), here, "the parent leaked descriptors");

    // A large argument beside a handle, and large messages through the pipe both ways.
    let (here_end, there_end) = pipe::<Vec<u8>>().unwrap();
    let child = spawn!(echo_large, large(7), there_end).unwrap();
    here_end.send(&large(8)).unwrap();
    assert!(here_end.recv().unwrap() == large(8));
    assert!(here_end.recv().unwrap() == large(7));
    child.join().unwrap();
    drop(here_end);
    assert_eq!(open_fds(), here, "pipes or processes leaked descriptors");
}

/// Runs [`large_values_cross_both_ways_and_leak_no_descriptor_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn large_values_cross_both_ways_and_leak_no_descriptor() {
    crate::in_child(large_values_cross_both_ways_and_leak_no_descriptor_alone);
}
