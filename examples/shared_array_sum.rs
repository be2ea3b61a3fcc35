//! A 100-million-element shared `Array<f64>` is filled once, then summed in slices by a pool of
//! processes that map the same memory: no element is copied. Prints the sum and the time.
//!
//! Run with `cargo run --release --example shared_array_sum` (800 MB of shared memory).
//! `MP_ARRAY_LEN` sets another length, for a quick run in a debug build. Exits non-zero if the
//! sum is wrong.

use std::time::Instant;

use mp_runtime::{Array, Pool, process_fn};

/// Sums `array[start..end]` where the array lives: the task receives a descriptor, not data.
/// The slices are read without the lock, side by side in every worker (Python's `RawArray`).
#[process_fn]
fn sum_slice(array: Array<f64>, start: usize, end: usize) -> f64 {
    // SAFETY: the parent filled the array before the map started and writes no more.
    let values = unsafe { array.unlocked() };
    values[start..end].iter().sum()
}

fn main() -> mp_runtime::Result<()> {
    let len: usize = std::env::var("MP_ARRAY_LEN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000_000);
    let started = Instant::now();
    let array = Array::<f64>::new(len)?;
    for (i, x) in array.lock()?.iter_mut().enumerate() {
        *x = (i % 1000) as f64;
    }
    let filled = started.elapsed();

    let pool = Pool::builder().build()?;
    let parts = pool.processes() * 4;
    let slices: Vec<(Array<f64>, usize, usize)> = (0..parts)
        .map(|p| (array.clone(), p * len / parts, (p + 1) * len / parts))
        .collect();
    let summing = Instant::now();
    let sum: f64 = pool.starmap(sum_slice, slices)?.iter().sum();
    let summed = summing.elapsed();

    // Each full run of 0..1000 sums to 499,500; the last run may be partial.
    let runs = (len / 1000) as f64;
    let rest: f64 = (0..len % 1000).map(|i| i as f64).sum();
    let expected = runs * 499_500.0 + rest;
    println!(
        "sum of {len} elements = {sum} (filled in {filled:.2?}, summed by {} processes in \
         {summed:.2?})",
        pool.processes()
    );
    assert_eq!(sum, expected, "the sum is wrong");
    Ok(())
}
