//! `starmap` over 5,000 inputs that each carry a clone of one `Value` works under a descriptor
//! limit of 1024: clones of one handle cross as one descriptor, and a map holds only the chunks
//! its workers need. Each test runs in a child of its own: the limit is process-wide.

use crate::adversarial::bounded;

use std::sync::Arc;
use std::time::Duration;

use mp_runtime::{CallOptions, Pool, Value, process_fn};

#[process_fn]
fn add_value(value: Value<u64>, x: u64) -> u64 {
    value.get().unwrap() + x
}

/// Sets the soft `RLIMIT_NOFILE` to `soft` (at most the hard limit); returns the old limit.
fn set_soft_limit(soft: u64) -> libc::rlimit {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls with valid pointers.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut old), 0);
        let new = libc::rlimit {
            rlim_cur: soft.min(old.rlim_max),
            rlim_max: old.rlim_max,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &new), 0);
    }
    old
}

/// The body of [`starmap_of_many_value_clones_fits_in_1024_descriptors`], in a process of its own.
#[process_fn]
fn starmap_of_many_value_clones_fits_in_1024_descriptors_alone() {
    let old = set_soft_limit(1024);
    let value = Value::new(7u64).unwrap();
    let pool = Arc::new(Pool::new(2).unwrap());
    let inputs: Vec<(Value<u64>, u64)> = (0..5000).map(|x| (value.clone(), x)).collect();
    let p = pool.clone();
    let got = bounded::bounded(
        "starmap of 5,000 Value clones",
        Duration::from_secs(60),
        move || p.starmap(add_value, inputs),
    );
    // SAFETY: plain system call restoring the limit read above.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) };
    match got {
        Ok(Ok(values)) => assert!(
            values.iter().copied().eq((0..5000).map(|x| x + 7)),
            "wrong results"
        ),
        Ok(Err(error)) => panic!("at a limit of 1024 descriptors: {error}"),
        Err(why) => panic!("{why}"),
    }
    let _ = bounded::bounded("drop the pool", bounded::HANG, move || drop(pool));
}

#[process_fn]
fn value_plus(value: Value<u64>) -> u64 {
    value.get().unwrap() + 1
}

// A blocking map keeps only so many chunks encoded ahead of
// the workers (32 per worker), so 3,000 chunks that each carry a handle (one descriptor each)
// fit under a limit of 1024. Encoded all at once, they held 3,000 descriptors.
/// The body of [`a_blocking_map_holds_only_the_chunks_the_workers_need`], in a process of its own.
#[process_fn]
fn a_blocking_map_holds_only_the_chunks_the_workers_need_alone() {
    let old = set_soft_limit(1024);
    let value = Value::new(41u64).unwrap();
    let pool = Arc::new(Pool::new(2).unwrap());
    let inputs: Vec<Value<u64>> = (0..3000).map(|_| value.clone()).collect();
    let p = pool.clone();
    let got = bounded::bounded(
        "map of 3,000 one-input chunks with a handle each",
        Duration::from_secs(60),
        move || {
            p.with(&CallOptions::new().chunksize(1))
                .map(value_plus, inputs)
        },
    );
    // SAFETY: plain system call restoring the limit read above.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) };
    match got {
        Ok(Ok(values)) => assert!(values.iter().all(|&v| v == 42) && values.len() == 3000),
        Ok(Err(error)) => panic!("at a limit of 1024 descriptors: {error}"),
        Err(why) => panic!("{why}"),
    }
    let _ = bounded::bounded("drop the pool", bounded::HANG, move || drop(pool));
}

/// Runs [`starmap_of_many_value_clones_fits_in_1024_descriptors_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn starmap_of_many_value_clones_fits_in_1024_descriptors() {
    crate::in_child(starmap_of_many_value_clones_fits_in_1024_descriptors_alone);
}

/// Runs [`a_blocking_map_holds_only_the_chunks_the_workers_need_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn a_blocking_map_holds_only_the_chunks_the_workers_need() {
    crate::in_child(a_blocking_map_holds_only_the_chunks_the_workers_need_alone);
}
