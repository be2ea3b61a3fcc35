//! A worker that crashes fails only its own task: the pool reports how the worker died,
//! replaces it, and goes on. (Python's pool hangs here; see bpo-22393.)
//!
//! Run with `cargo run --example crash_recovery`. The task for input 13 calls
//! `std::process::abort()`, killing its worker with SIGABRT; `map` returns that error, which the
//! example prints. The same pool then maps again and gets every result. Exits non-zero if
//! either map does not behave so.

use mp_runtime::{Pool, process_fn};

#[process_fn]
fn checked_double(x: u32) -> u32 {
    if x == 13 {
        std::process::abort(); // a crash no `catch_unwind` can stop: the worker process dies
    }
    x * 2
}

fn main() -> mp_runtime::Result<()> {
    let pool = Pool::new(2)?;

    let error = pool
        .map(checked_double, 10..16)
        .expect_err("the task for 13 kills its worker");
    println!("first map failed: {error}");
    assert!(error.is_died(), "expected a dead worker, got: {error}");
    assert_eq!(error.signal(), Some(libc::SIGABRT));

    let doubled = pool.map(checked_double, vec![1, 2, 3, 20])?;
    println!("second map on the same pool: {doubled:?}");
    assert_eq!(doubled, vec![2, 4, 6, 40]);
    Ok(())
}
