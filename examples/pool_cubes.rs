//! The seed program: cubes of a list of numbers, over a pool of five processes.
//!
//! Run with `cargo run --example pool_cubes`; prints the cubes and exits non-zero if they are
//! wrong.

use mp_runtime::{pool_map, process_fn};

#[process_fn]
fn cubes(n: u64) -> u64 {
    n * n * n
}

fn main() -> mp_runtime::Result<()> {
    let inputs = vec![3, 4, 5, 6, 28, 99, 30];
    let result = pool_map!(cubes, inputs, processes = 5)?;
    println!("{result:?}");
    assert_eq!(result, vec![27, 64, 125, 216, 21952, 970299, 27000]);
    Ok(())
}
