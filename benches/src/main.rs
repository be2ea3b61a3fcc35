//! mp-bench: the same workloads on mp, Python's multiprocessing, procspawn, rayon and the
//! machine's raw limits, in one run; prints a table and writes `BENCHMARKS.md` and SVG plots.
//!
//! `cargo run --release -p mp-bench` for the full report: every workload three times over
//! (`--runs N` for another count), each goal's ratio taken within each run, and met only when
//! met in every run. It also builds this harness as a user's default debug build (everything
//! at `opt-level = 0`, in `target/bench-dev`) and runs the values users pass there, for the
//! dev-build goals. `-- --quick` is a short check that everything runs (one run, fewer
//! repeats, smaller inputs, no debug build), not figures to quote. `--only GROUP` (start, map,
//! imap, apply, values, natural, channels, memory, speedup, and mpi) runs one group and prints
//! its rows and goals, without writing the report. With `--features mpi` (and that MPI's
//! `mpirun` on the path, or its command line in `MP_BENCH_LAUNCHER`), the MPI rows run too,
//! and the report is `BENCHMARKS-mpi.md`; `--out NAME` names the report `NAME.md` (a run on
//! another machine, say).

#[cfg(feature = "mpi")]
mod cluster;
mod measure;
mod python;
mod report;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::Command;

use measure::Row;
use report::Run;
use workloads::Speedup;

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
    let only = value_of("--only");
    let runs = match value_of("--runs").map(|n| n.parse::<usize>()) {
        None => scale.repeats(3, 1),
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("--runs takes a count of one or more");
            std::process::exit(2);
        }
    };
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
    if only.as_deref() == Some("speedup") {
        report::print_speedup(&workloads::cpu_speedup(scale));
        return;
    }
    if let Some(only) = only {
        let natural: (&str, Workloads) = ("natural", workloads::natural);
        let Some((_, run)) = groups
            .iter()
            .chain([&natural])
            .find(|(name, _)| *name == only)
        else {
            let mut names: Vec<&str> = groups.iter().map(|(name, _)| *name).collect();
            names.extend(["natural", "speedup"]);
            eprintln!(
                "unknown group {only}; expected one of: {}",
                names.join(", ")
            );
            std::process::exit(2);
        };
        let runs: Vec<Run> = (0..runs)
            .map(|_| {
                let mut rows = Vec::new();
                run(scale, &mut rows);
                Run {
                    rows,
                    speedup: Speedup::default(),
                }
            })
            .collect();
        if let Some(path) = value_of("--rows-out") {
            let rows: Vec<&Vec<Row>> = runs.iter().map(|run| &run.rows).collect();
            let json = serde_json::to_string(&rows).expect("rows encode");
            std::fs::write(&path, json).expect("write the rows");
        }
        report::print_table(&measure::merge(runs.iter().map(|run| &run.rows[..])));
        report::print_measured_goals(&runs);
        return;
    }
    let mut all = Vec::new();
    for at in 1..=runs {
        eprintln!("run {at} of {runs}");
        let mut rows = Vec::new();
        for (_, run) in groups {
            run(scale, &mut rows);
        }
        let speedup = workloads::cpu_speedup(scale);
        all.push(Run { rows, speedup });
    }
    if !quick {
        add_dev_build_rows(&root, &mut all);
    }
    let throughput = workloads::throughput_by_task_size(scale);

    report::print_table(&measure::merge(all.iter().map(|run| &run.rows[..])));
    for run in &all {
        report::print_speedup(&run.speedup);
    }
    let default_name = if cfg!(feature = "mpi") {
        "BENCHMARKS-mpi"
    } else {
        "BENCHMARKS"
    };
    let named = value_of("--out");
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
    if let Some(runs) = value_of("--runs") {
        args.push(format!("--runs {runs}"));
    }
    if let Some(named) = named {
        args.push(format!("--out {named}"));
    }
    if !args.is_empty() {
        command.push_str(&format!(" -- {}", args.join(" ")));
    }
    let path = report::write(&out, &name, &command, &all, &throughput).expect("write the report");
    println!("\nwrote {}", path.display());
}

/// The value after `flag` on the command line, if given.
fn value_of(flag: &str) -> Option<String> {
    std::env::args().skip_while(|arg| arg != flag).nth(1)
}

/// Builds this harness as a user's default debug build would (`cargo run`, every crate at
/// `opt-level = 0`, which this workspace's own `[profile.dev]` raises to 1), in a target
/// directory of its own so that the workspace's debug build is left as it is; runs the values
/// users pass there once per run, and adds its rows to each run. Says why on stderr if it
/// cannot (the dev-build goals are then not measured).
fn add_dev_build_rows(root: &Path, runs: &mut [Run]) {
    let file = std::env::temp_dir().join(format!("mp-bench-dev-rows-{}.json", std::process::id()));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building and running the default debug build (target/bench-dev)");
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["run", "-q", "-p", "mp-bench", "--target-dir"])
        .arg(root.join("target/bench-dev"))
        .args(["--", "--only", "natural", "--runs", &runs.len().to_string()])
        .arg("--rows-out")
        .arg(&file)
        .env("CARGO_PROFILE_DEV_OPT_LEVEL", "0")
        .status();
    let rows = match status {
        Ok(status) if status.success() => std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|json| {
                serde_json::from_str::<Vec<Vec<Row>>>(&json).map_err(|e| e.to_string())
            }),
        Ok(status) => Err(format!("it failed ({status})")),
        Err(e) => Err(format!("cargo cannot run ({e})")),
    };
    let _ = std::fs::remove_file(&file);
    match rows {
        Ok(rows) => {
            for (run, rows) in runs.iter_mut().zip(rows) {
                run.rows.extend(rows);
            }
        }
        Err(why) => eprintln!("no dev-build rows: {why}"),
    }
}
