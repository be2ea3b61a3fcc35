//! A result whose `Deserialize` panics in the parent, through `apply`, `apply_async`, `map` and
//! `map_async`: the task's error (a panic, with message and location), every worker kept, later
//! tasks still run, `join` fine, nothing hangs. User code runs on the pool's threads, which
//! must never unwind: a thread that unwound would lose its worker and the task's answer.

use std::sync::Arc;
use std::time::Duration;

use mp_runtime::{Barrier, CallOptions, Error, Pool, process_fn};

use super::bounded::must;
use super::misbehave::{Arg, Mode, Ret, misbehave};

/// Meets the other worker at `barrier`: only two workers running at once get through.
#[process_fn]
fn meet(barrier: Barrier) -> u32 {
    barrier.wait_timeout(Duration::from_secs(10)).unwrap();
    std::process::id()
}

#[derive(Clone, Copy, Debug)]
enum Via {
    Apply,
    ApplyAsync,
    Map,
    MapAsync,
}

fn decode_panic_keeps_every_worker(via: Via) {
    let pool = Arc::new(Pool::new(2).unwrap());
    // More failures than workers: a lost worker per failure would leave none.
    for round in 0..3 {
        let p = pool.clone();
        let what = format!("{via:?}, round {round}, a result decoder panics");
        let bad = Arg {
            mode: Mode::ResultDecodePanic,
            x: 2,
        };
        let got: Result<Vec<Ret>, Error> = must(&what, move || match via {
            Via::Apply => p.apply(misbehave, (bad,)).map(|v| vec![v]),
            Via::ApplyAsync => p.apply_async(misbehave, (bad,)).get().map(|v| vec![v]),
            Via::Map => p.map(misbehave, [Arg::fine(1), bad, Arg::fine(3)]),
            Via::MapAsync => p
                .map_async(misbehave, [Arg::fine(1), bad, Arg::fine(3)])
                .get(),
        });
        let error = got.expect_err("a result that cannot be decoded is an error");
        assert!(error.is_panic(), "{what}: not a panic: {error}");
        assert!(
            error
                .panic_message()
                .is_some_and(|m| m.contains("decoding this result panics")),
            "{what}: the message is lost: {error}"
        );
        assert!(
            error
                .panic_location()
                .is_some_and(|l| l.file().ends_with(".rs")),
            "{what}: the location is lost: {error}"
        );
    }
    // Every worker kept: two tasks that only finish together.
    let p = pool.clone();
    let pids = must("both workers after the failures", move || {
        let barrier = Barrier::new(2).unwrap();
        p.with(&CallOptions::new().chunksize(1))
            .map(meet, [barrier.clone(), barrier])
    })
    .expect("both workers run");
    assert_ne!(pids[0], pids[1], "one worker ran both tasks");
    // Later tasks run, and the pool closes cleanly.
    let p = pool.clone();
    let values = must("a later map", move || {
        p.map(misbehave, (0..20).map(Arg::fine))
    })
    .expect("a later map");
    assert_eq!(values.len(), 20);
    must("close and join", move || {
        pool.close();
        pool.join()
    })
    .expect("join after decoder panics");
}

// A panicking result decoder through `apply`.
#[test]
fn result_decode_panic_via_apply() {
    decode_panic_keeps_every_worker(Via::Apply);
}

// A panicking result decoder through `apply_async`.
#[test]
fn result_decode_panic_via_apply_async() {
    decode_panic_keeps_every_worker(Via::ApplyAsync);
}

// A panicking result decoder through `map`.
#[test]
fn result_decode_panic_via_map() {
    decode_panic_keeps_every_worker(Via::Map);
}

// A panicking result decoder through `map_async`.
#[test]
fn result_decode_panic_via_map_async() {
    decode_panic_keeps_every_worker(Via::MapAsync);
}
