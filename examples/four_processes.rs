//! Four processes, each given its own number to print; the parent waits for all of them.
//!
//! Run with `cargo run --example four_processes`. The children print `Process stage : 444` to
//! `447`, one line each, in whatever order they get to run; the parent prints its line only
//! after joining all four. Exits non-zero if any child fails.

use mp_runtime::{process_fn, spawn};

#[process_fn]
fn stage(number: u32) -> u32 {
    println!("Process stage : {number}");
    number
}

fn main() -> mp_runtime::Result<()> {
    let processes = (444..=447)
        .map(|number| spawn!(stage, number))
        .collect::<mp_runtime::Result<Vec<_>>>()?;
    let mut finished = Vec::new();
    for process in processes {
        finished.push(process.join()?);
    }
    println!("All printing of different number are finished.");
    assert_eq!(finished, vec![444, 445, 446, 447]);
    Ok(())
}
