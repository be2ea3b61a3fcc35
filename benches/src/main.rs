//! mp-bench: the same workloads on mp, Python's multiprocessing, procspawn, rayon and the
//! machine's raw limits, in one run; prints a table and writes `BENCHMARKS.md` and SVG plots.
//!
//! `cargo run --release -p mp-bench` for the full run, `-- --quick` for a short one (fewer
//! repeats, smaller inputs: a check that everything runs, not figures to quote). `--only
//! GROUP` (start, map, imap, apply, values, channels, memory, speedup, and mpi) runs one group
//! and prints its rows, without writing the report. With `--features mpi` (and that MPI's
//! `mpirun` on the path, or its command line in `MP_BENCH_LAUNCHER`), the MPI rows run too, and
//! the report is `BENCHMARKS-mpi.md`; `--out NAME` names the report `NAME.md` (a run on another
//! machine, say).
//!
//! The values rows as a user's default debug build has them (everything at `opt-level = 0`,
//! which this workspace's own `[profile.dev]` raises to 1):
//! `CARGO_PROFILE_DEV_OPT_LEVEL=0 cargo run -p mp-bench -- --quick --only values`. Their goal
//! lines then ask 0.2x a memcpy, the debug build's goal, instead of release's 0.4x.

#[cfg(feature = "mpi")]
mod cluster;
mod measure;
mod python;
mod report;
mod workloads;

use std::path::PathBuf;

/// Set in a child started only to measure a bare re-exec: it exits before doing anything.
const BARE_EXIT_VAR: &str = "MP_BENCH_BARE_EXIT";

/// One group of workloads: adds its rows.
type Workloads = fn(Scale, &mut Vec<measure::Row>);

/// How hard to push: the full run, or a quick check.
#[derive(Clone, Copy)]
pub struct Scale {
    quick: bool,
}

impl Scale {
    /// `full` repeats normally, `quick` in a check run.
    pub fn repeats(self, full: usize, quick: usize) -> usize {
        if self.quick { quick } else { full }
    }
}

fn main() {
    if std::env::var_os(BARE_EXIT_VAR).is_some() {
        std::process::exit(0);
    }
    // procspawn's children enter here; ours became workers before main.
    procspawn::init();

    let quick = std::env::args().any(|arg| arg == "--quick");
    let scale = Scale { quick };
    #[cfg(feature = "mpi")]
    if cluster::under_mpirun(scale) {
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = if quick {
        std::env::temp_dir().join("mp-bench-quick")
    } else {
        root.clone()
    };
    std::fs::create_dir_all(out.join("benches/plots")).expect("create the output folder");

    // `--only NAME` runs one group of workloads and prints its rows, to iterate on it.
    let only = std::env::args().skip_while(|arg| arg != "--only").nth(1);
    let groups: &[(&str, Workloads)] = &[
        ("start", workloads::start_join),
        ("map", workloads::map_tiny),
        ("imap", workloads::one_at_a_time),
        ("apply", workloads::apply_round_trip),
        ("values", workloads::large_values),
        ("channels", workloads::channels),
        ("memory", workloads::idle_memory),
        #[cfg(feature = "mpi")]
        ("mpi", cluster::rows),
    ];
    let mut rows = Vec::new();
    if only.as_deref() == Some("speedup") {
        report::print_speedup(&workloads::cpu_speedup(scale));
        return;
    }
    if let Some(only) = only {
        let Some((_, run)) = groups.iter().find(|(name, _)| *name == only) else {
            let mut names: Vec<&str> = groups.iter().map(|(name, _)| *name).collect();
            names.push("speedup");
            eprintln!(
                "unknown group {only}; expected one of: {}",
                names.join(", ")
            );
            std::process::exit(2);
        };
        run(scale, &mut rows);
        report::print_table(&rows);
        report::print_measured_goals(&rows);
        return;
    }
    for (_, run) in groups {
        run(scale, &mut rows);
    }
    let speedup = workloads::cpu_speedup(scale);
    let throughput = workloads::throughput_by_task_size(scale);

    report::print_table(&rows);
    report::print_speedup(&speedup);
    let default_name = if cfg!(feature = "mpi") {
        "BENCHMARKS-mpi"
    } else {
        "BENCHMARKS"
    };
    let named = std::env::args().skip_while(|arg| arg != "--out").nth(1);
    let name = named.clone().unwrap_or_else(|| default_name.to_string());
    // The command that makes this report, as the report will say.
    let mut command = String::from("cargo run --release -p mp-bench");
    if cfg!(feature = "mpi") {
        command.push_str(" --features mpi");
    }
    let mut args = Vec::new();
    if quick {
        args.push("--quick".to_string());
    }
    if let Some(named) = named {
        args.push(format!("--out {named}"));
    }
    if !args.is_empty() {
        command.push_str(&format!(" -- {}", args.join(" ")));
    }
    let path = report::write(&out, &name, &command, &rows, &speedup, &throughput)
        .expect("write the report");
    println!("\nwrote {}", path.display());
}
