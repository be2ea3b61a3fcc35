//! Results as they come: `Pool::imap` hands back each result as soon as it (and those before
//! it) are done, so a long job can report progress instead of waiting for the whole list.
//!
//! Run with `cargo run --example imap_progress`. A pool of two maps a task that takes about
//! 20 ms over 40 inputs and prints `done 1/40 after 20 ms` ... `done 40/40 after 420 ms` as
//! results arrive. Exits non-zero if a result is wrong, or if the first result did not arrive
//! well before the last: with `map` all of them would come at the end.

use std::time::{Duration, Instant};

use mp_runtime::{Pool, process_fn};

#[process_fn]
fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(20));
    x * x
}

fn main() -> mp_runtime::Result<()> {
    const INPUTS: u64 = 40;
    let pool = Pool::new(2)?;

    let start = Instant::now();
    let mut first_arrival = None;
    let mut squares = Vec::new();
    for result in pool.imap(slow_square, 0..INPUTS) {
        squares.push(result?);
        let now = start.elapsed();
        first_arrival.get_or_insert(now);
        println!(
            "done {}/{INPUTS} after {:>3} ms",
            squares.len(),
            now.as_millis()
        );
    }
    let total = start.elapsed();
    let first = first_arrival.expect("40 inputs give 40 results");

    println!("first result after {first:.0?}, all {INPUTS} after {total:.0?}");
    let expected: Vec<u64> = (0..INPUTS).map(|x| x * x).collect();
    assert_eq!(squares, expected);
    // 40 tasks of 20 ms on 2 workers take at least 400 ms; the first is ready after about 20.
    assert!(
        first * 4 < total,
        "the first result came after {first:?} of {total:?}: imap should not wait for the rest"
    );
    Ok(())
}
