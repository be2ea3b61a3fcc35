//! One pool over every rank of an MPI job: `mpirun -n 3 target/release/examples/cluster_map`
//! (build it first with `cargo build --release --features mpi --example cluster_map`).
//!
//! Rank 0 runs `main`; ranks 1 and 2 become the pool's workers before their `main` would run,
//! each running its tasks in a local pool of its own. The program maps 10,000 tasks, checks the
//! results' checksum, and prints how many tasks each rank and host ran. Started without a
//! launcher, the same program runs its pool on this machine.

use std::collections::BTreeMap;

use mp_runtime::{Pool, process_fn};

/// A task: the square, and where it ran.
#[process_fn]
fn square_where(x: u64) -> (u64, Option<u32>, String) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_default();
    (x * x, mp_runtime::mpi_rank(), host)
}

fn main() -> mp_runtime::Result<()> {
    const TASKS: u64 = 10_000;
    // On rank 0 of an MPI job, a pool's workers are the other ranks.
    let pool = Pool::builder().build()?;
    let results = pool.map(square_where, 0..TASKS)?;

    let checksum: u64 = results.iter().map(|(square, _, _)| square).sum();
    let expected: u64 = (0..TASKS).map(|x| x * x).sum();
    assert_eq!(checksum, expected, "wrong checksum");
    println!("checksum of {TASKS} squares: {checksum} (correct)");

    let mut per_place: BTreeMap<(Option<u32>, String), usize> = BTreeMap::new();
    for (_, rank, host) in results {
        *per_place.entry((rank, host)).or_default() += 1;
    }
    for ((rank, host), tasks) in &per_place {
        match rank {
            Some(rank) => println!("rank {rank} on {host}: {tasks} tasks"),
            None => println!("this machine ({host}), no MPI job: {tasks} tasks"),
        }
    }
    if let Some(me) = mp_runtime::mpi_rank() {
        let ranks: Vec<u32> = per_place.keys().filter_map(|(rank, _)| *rank).collect();
        assert!(!ranks.contains(&me), "rank 0 runs main, not tasks");
        println!(
            "{} worker processes on {} ranks",
            pool.processes(),
            ranks.len()
        );
    }
    Ok(())
}
