//! mp-bench: the same workloads on mp, Python's multiprocessing, procspawn, rayon and the
//! machine's raw limits, in one run; prints a table and writes `BENCHMARKS.md` and SVG plots.
//!
//! `cargo run --release -p mp-bench` for the full run, `-- --quick` for a short one (fewer
//! repeats, smaller inputs: a check that everything runs, not figures to quote).

mod measure;
mod python;
mod report;
mod workloads;

use std::path::PathBuf;

/// Set in a child started only to measure a bare re-exec: it exits before doing anything.
const BARE_EXIT_VAR: &str = "MP_BENCH_BARE_EXIT";

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
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = if quick {
        std::env::temp_dir().join("mp-bench-quick")
    } else {
        root.clone()
    };
    std::fs::create_dir_all(out.join("benches/plots")).expect("create the output folder");

    let mut rows = Vec::new();
    workloads::start_join(scale, &mut rows);
    workloads::map_tiny(scale, &mut rows);
    workloads::one_at_a_time(scale, &mut rows);
    workloads::apply_round_trip(scale, &mut rows);
    workloads::large_values(scale, &mut rows);
    workloads::channels(scale, &mut rows);
    workloads::idle_memory(scale, &mut rows);
    let speedup = workloads::cpu_speedup(scale);
    let throughput = workloads::throughput_by_task_size(scale);

    report::print_table(&rows);
    report::print_speedup(&speedup);
    let command = if quick {
        "cargo run --release -p mp-bench -- --quick"
    } else {
        "cargo run --release -p mp-bench"
    };
    let path =
        report::write(&out, command, &rows, &speedup, &throughput).expect("write the report");
    println!("\nwrote {}", path.display());
}
