//! A parent and a child process exchange 10,000 messages over a pipe; prints the round trip.
//!
//! Run with `cargo run --release --example pipe_ping_pong`; exits non-zero if a message comes
//! back wrong.

use std::time::Instant;

use mp_runtime::{Connection, pipe, process_fn, spawn};

const ROUNDS: u64 = 10_000;

#[process_fn]
fn pong(conn: Connection<u64>) -> u64 {
    let mut answered = 0;
    while let Ok(n) = conn.recv() {
        conn.send(&(n + 1)).expect("the parent is listening");
        answered += 1;
    }
    answered
}

fn main() -> mp_runtime::Result<()> {
    let (here, there) = pipe::<u64>()?;
    let child = spawn!(pong, there)?;
    // One exchange first, so the child's start-up is not counted.
    here.send(&0)?;
    assert_eq!(here.recv()?, 1);
    let started = Instant::now();
    for n in 1..=ROUNDS {
        here.send(&n)?;
        let back = here.recv()?;
        assert_eq!(back, n + 1, "message {n} came back wrong");
    }
    let elapsed = started.elapsed();
    drop(here); // the child's recv now reports the disconnection, and it returns
    let answered = child.join()?;
    assert_eq!(answered, ROUNDS + 1);
    println!(
        "{ROUNDS} round trips in {elapsed:.2?}: {:.1} µs per round trip",
        elapsed.as_secs_f64() * 1e6 / ROUNDS as f64
    );
    Ok(())
}
