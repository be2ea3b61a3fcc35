//! `cargo bench -p mp-runtime --bench roundtrip`: a quick look at start + join and pool round
//! trips, and proof that a bench binary's children become workers before its `main` runs. The
//! full comparison with Python, procspawn and rayon is `cargo run --release -p mp-bench`.

use std::time::Instant;

use mp_runtime::{Pool, process_fn, spawn};

#[process_fn]
fn cube(x: u64) -> u64 {
    x * x * x
}

fn main() {
    let rounds = 50;
    let start = Instant::now();
    for i in 0..rounds {
        assert_eq!(spawn!(cube, i).unwrap().join().unwrap(), i * i * i);
    }
    println!("spawn + join: {:?} each", start.elapsed() / rounds as u32);

    let pool = Pool::new(2).unwrap();
    let start = Instant::now();
    for i in 0..1000u64 {
        assert_eq!(pool.apply(cube, (i,)).unwrap(), i * i * i);
    }
    println!("pool apply round trip: {:?} each", start.elapsed() / 1000);

    let start = Instant::now();
    let out = pool.map(cube, 0..1_000_000u64).unwrap();
    assert_eq!(out[999_999], 999_999u64.pow(3));
    println!("pool map of 1,000,000 tiny tasks: {:?}", start.elapsed());
}
