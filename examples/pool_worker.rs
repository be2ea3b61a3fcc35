//! A pool of five worker processes doubling a list of numbers, like Python's
//! `Pool(5).map(worker, [3, 4, 5, 6, 28, 99, 30])`.
//!
//! Run with `cargo run --example pool_worker`; prints the doubled list, in input order, and exits
//! non-zero if it is wrong.

use mp_runtime::{Pool, process_fn};

#[process_fn]
fn worker(argument: u64) -> u64 {
    argument * 2
}

fn main() -> mp_runtime::Result<()> {
    let pool = Pool::new(5)?;
    let result = pool.map(worker, vec![3, 4, 5, 6, 28, 99, 30])?;
    println!("{result:?}");
    assert_eq!(result, vec![6, 8, 10, 12, 56, 198, 60]);
    Ok(())
}
