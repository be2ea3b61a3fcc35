//! The first program of any multiprocessing tutorial: one child process prints a line while
//! the parent prints its own, then the parent waits for the child.
//!
//! Run with `cargo run --example first_process`. The child writes to the same terminal as the
//! parent (it inherits stdout), so the two lines may come in either order. Exits non-zero if the
//! child does not finish cleanly.

use mp_runtime::{process_fn, spawn};

#[process_fn]
fn greet() {
    println!("this is my very first multi processing program");
}

fn main() -> mp_runtime::Result<()> {
    let child = spawn!(greet)?; // the child starts now and runs alongside the parent
    println!("this is sparta");
    child.join()?; // waits for the child; an error here would say how it failed
    Ok(())
}
