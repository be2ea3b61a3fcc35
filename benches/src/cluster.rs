//! The MPI rows (feature `mpi`): a task's round trip across ranks against a raw rsmpi round
//! trip and a local pool's, and tiny-task throughput over 3 ranks against a local pool.
//!
//! The harness runs itself twice under `mpirun`: with 3 ranks for mp's rows (rank 0 measures;
//! ranks 1 and 2 serve its pools), and with 2 ranks and `MP_RUNTIME_MPI=off` for the raw
//! ping-pong (mp stays out, both ranks run `main` and talk through rsmpi alone). Rank 0 prints
//! each row as a line of JSON, which the harness reads back.
//!
//! The launcher is `mpirun`, or the command line in `MP_BENCH_LAUNCHER` (the launcher of the
//! MPI this binary was built against, when it is not the first `mpirun` on `PATH`: Debian's
//! `mpirun.openmpi`, say), as `MP_TEST_LAUNCHER` is for tests/mpi.rs.

use std::hint::black_box;
use std::process::Command;

use mp_runtime::{Pool, process_fn};

use crate::Scale;
use crate::measure::{Figure, Row, time};
use crate::workloads::{MPI_APPLY, MPI_LOCAL, MPI_OVER_RANKS, MPI_RAW};

/// Tiny-task throughput over the ranks; reported, with no goal of its own.
const MPI_MAP: &str = "MPI: map 1,000,000 tiny tasks over 3 ranks";

/// Arguments of the runs under `mpirun`.
const ROWS_ARG: &str = "--mpi-rows";
const RAW_ARG: &str = "--mpi-raw";
const PREFIX: &str = "MPI-ROW ";

#[process_fn]
fn cube(x: u64) -> u64 {
    x * x * x
}

/// In the harness: runs both jobs and adds their rows; says why on stderr if it cannot.
pub fn rows(scale: Scale, rows: &mut Vec<Row>) {
    let quick = if scale.repeats(0, 1) == 1 {
        "--quick"
    } else {
        ""
    };
    let exe = std::env::current_exe().expect("the harness's own path");
    let launcher = std::env::var("MP_BENCH_LAUNCHER").unwrap_or_else(|_| "mpirun".to_string());
    let runs = [
        (vec!["-n", "3"], ROWS_ARG, false),
        (vec!["-n", "2"], RAW_ARG, true),
    ];
    for (ranks, arg, opt_out) in runs {
        let mut words = launcher.split_whitespace();
        let mut command = Command::new(words.next().unwrap_or("mpirun"));
        command
            .args(words)
            .args(ranks)
            .arg(&exe)
            .arg(arg)
            // Open MPI 4 and 5: as root, and 3 ranks on fewer cores (MPICH ignores these).
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
            .env("PRTE_MCA_rmaps_default_mapping_policy", ":oversubscribe");
        if !quick.is_empty() {
            command.arg(quick);
        }
        if opt_out {
            command.env("MP_RUNTIME_MPI", "off");
        }
        let output = match command.output() {
            Ok(output) if output.status.success() => output,
            Ok(output) => {
                eprintln!(
                    "{launcher} {arg} failed ({}): {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                );
                continue;
            }
            Err(e) => {
                eprintln!("{launcher} cannot run ({e}); skipping the MPI rows");
                return;
            }
        };
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let Some(json) = line.strip_prefix(PREFIX) else {
                continue;
            };
            match serde_json::from_str::<Row>(json) {
                Ok(row) => rows.push(row),
                Err(_) => eprintln!("an MPI row that cannot be read: {line}"),
            }
        }
    }
}

/// Under `mpirun`: runs this rank's part of a job and returns true (then `main` returns);
/// false in the harness itself.
pub fn under_mpirun(scale: Scale) -> bool {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|arg| arg == RAW_ARG) {
        raw_ping_pong(scale);
        true
    } else if args.iter().any(|arg| arg == ROWS_ARG) {
        pool_rows(scale);
        true
    } else {
        false
    }
}

fn print(row: Row) {
    println!(
        "{PREFIX}{}",
        serde_json::to_string(&row).expect("rows encode")
    );
}

/// Round trips of 8 bytes between ranks 0 and 1, with rsmpi's blocking send and receive.
fn raw_ping_pong(scale: Scale) {
    use mpi::traits::{Communicator, Destination, Source};

    let universe = mpi::initialize().expect("MPI initializes");
    let world = universe.world();
    let n = 10_000;
    let repeats = scale.repeats(10, 2);
    let mut buf = [0u8; 8];
    if world.rank() == 0 {
        let other = world.process_at_rank(1);
        let seconds = time(repeats + 1, || {
            for _ in 0..n {
                other.send(&buf[..]);
                other.receive_into(&mut buf[..]);
            }
        });
        print(Row::new(
            MPI_APPLY,
            MPI_RAW,
            // The first repeat warms up.
            seconds[1..].to_vec(),
            n as f64,
            Figure::Time,
        ));
    } else {
        let zero = world.process_at_rank(0);
        for _ in 0..n * (repeats + 1) {
            zero.receive_into(&mut buf[..]);
            zero.send(&buf[..]);
        }
    }
}

/// Rank 0 of a 3-rank job: mp's pool over the other ranks, and a local pool beside it.
fn pool_rows(scale: Scale) {
    let repeats = scale.repeats(10, 2);
    let n = 1000u64;
    let apply_rows = [
        (MPI_OVER_RANKS, Pool::builder().mpi().processes(1).build()),
        (MPI_LOCAL, Pool::builder().local().processes(1).build()),
    ];
    for (system, pool) in apply_rows {
        let pool = pool.expect("a pool for the MPI rows");
        pool.map(cube, 0..100).expect("a warm-up map");
        let seconds = time(repeats, || {
            for i in 0..n {
                black_box(pool.apply(cube, (i,)).expect("an apply"));
            }
        });
        print(Row::new(
            MPI_APPLY,
            format!("{system} (1 worker per pool)"),
            seconds,
            n as f64,
            Figure::Time,
        ));
    }

    let tasks = if scale.repeats(0, 1) == 1 {
        100_000
    } else {
        1_000_000
    };
    let map_rows = [
        (MPI_OVER_RANKS, Pool::builder().mpi().build()),
        (MPI_LOCAL, Pool::builder().local().build()),
    ];
    for (system, pool) in map_rows {
        let pool = pool.expect("a pool for the MPI rows");
        let processes = pool.processes();
        pool.map(cube, 0..10_000).expect("a warm-up map");
        let seconds = time(repeats.min(5), || {
            black_box(pool.map(cube, 0..tasks).expect("a map"));
        });
        print(Row::new(
            MPI_MAP,
            format!("{system} ({processes} workers)"),
            seconds,
            tasks as f64,
            Figure::Rate,
        ));
    }
}
