//! A task's panic explains itself in every build: with `panic = "abort"` as with unwinding, the
//! parent gets an error with the panic's message and `file:line:column`.
//!
//! Run with `cargo run --example panic_abort` (unwinding), and with `cargo run --release
//! --example panic_abort --config 'profile.release.panic="abort"'`, where the panic aborts the
//! worker: its panic hook sends the answer first. Exits non-zero if either a lone process or a
//! pool's `map` reports anything else, or if the pool does not go on after.

use mp_runtime::{Pool, process_fn, spawn};

#[process_fn]
fn check_input(x: u32) -> u32 {
    if x == 37 {
        panic!("bad input {x}");
    }
    x * 2
}

/// Whether `error` is the panic of `check_input(37)`, with its message and exact location.
fn assert_is_the_panic(error: &mp_runtime::Error) {
    assert!(error.is_panic(), "expected a panic, got: {error}");
    assert_eq!(error.panic_message(), Some("bad input 37"));
    let location = error.panic_location().expect("a panic's location");
    let line = include_str!("panic_abort.rs")
        .lines()
        .position(|line| line.contains("panic!(\"bad input"))
        .expect("the panic! is in this file")
        + 1;
    assert!(location.file().ends_with("panic_abort.rs"), "{location}");
    assert_eq!(location.line() as usize, line, "{location}");
    assert!(location.column() > 0, "{location}");
}

fn main() -> mp_runtime::Result<()> {
    let build = if cfg!(panic = "abort") {
        "panic = \"abort\""
    } else {
        "panic = \"unwind\""
    };
    println!("built with {build}");

    let error = spawn!(check_input, 37)?
        .join()
        .expect_err("check_input(37) panics");
    println!("a process: {error}");
    assert_is_the_panic(&error);

    let pool = Pool::new(2)?;
    let error = pool
        .map(check_input, 0..100)
        .expect_err("check_input(37) panics");
    println!("a pool's map: {error}");
    assert_is_the_panic(&error);

    let doubled = pool.map(check_input, vec![1, 2, 3])?;
    println!("the same pool after: {doubled:?}");
    assert_eq!(doubled, vec![2, 4, 6]);
    Ok(())
}
