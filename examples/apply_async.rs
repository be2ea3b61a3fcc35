//! Submitting single calls without waiting: `Pool::apply_async` returns an `AsyncResult` at
//! once, and `get_timeout` collects each result, waiting at most as long as it is told.
//!
//! Run with `cargo run --example apply_async`; prints each call with its result and exits
//! non-zero if one is wrong or late.

use std::time::Duration;

use mp_runtime::{Pool, process_fn};

#[process_fn]
fn power(base: u64, exponent: u32) -> u64 {
    std::thread::sleep(Duration::from_millis(50)); // some work worth sending to another process
    base.pow(exponent)
}

fn main() -> mp_runtime::Result<()> {
    let pool = Pool::new(3)?;
    let calls = [(2, 10), (3, 4), (5, 3), (7, 2), (10, 6)];

    // All five are queued before any is waited on: the pool runs three at a time.
    let pending: Vec<_> = calls
        .iter()
        .map(|&(base, exponent)| pool.apply_async(power, (base, exponent)))
        .collect();

    for (&(base, exponent), result) in calls.iter().zip(&pending) {
        let value = result.get_timeout(Duration::from_secs(30))?;
        println!("power({base}, {exponent}) = {value}");
        assert_eq!(value, base.pow(exponent));
    }
    Ok(())
}
