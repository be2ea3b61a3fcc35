//! Four processes increment a shared `Value<u64>` under its lock, 10,000 times each; prints
//! 40000.
//!
//! Run with `cargo run --example shared_counter`; exits non-zero if an increment is lost.

use mp_runtime::{Process, Value, process_fn, spawn};

#[process_fn]
fn increment(counter: Value<u64>, times: u32) {
    for _ in 0..times {
        *counter.lock().expect("no holder died") += 1;
    }
}

fn main() -> mp_runtime::Result<()> {
    let counter = Value::new(0u64)?;
    let workers: Vec<Process<()>> = (0..4)
        .map(|_| spawn!(increment, counter.clone(), 10_000))
        .collect::<Result<_, _>>()?;
    for worker in workers {
        worker.join()?;
    }
    let total = counter.get()?;
    println!("{total}");
    assert_eq!(total, 40_000, "increments were lost");
    Ok(())
}
