//! The table on the terminal, and BENCHMARKS.md with its plots.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::measure::{self, Figure, Row, duration_text, median};
use crate::python;
use crate::workloads::{self, Speedup, Throughput};

fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| workload | system | median | min | max | per op (median) |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|");
    for row in rows {
        let (median, min, max) = if row.figure == Figure::Kib {
            let kib = |v: f64| format!("{v:.0} KiB");
            (kib(row.median()), kib(row.min()), kib(row.max()))
        } else {
            (
                duration_text(row.median()),
                duration_text(row.min()),
                duration_text(row.max()),
            )
        };
        let _ = writeln!(
            out,
            "| {} | {} | {median} | {min} | {max} | {} |",
            row.workload,
            row.system,
            row.figure_text()
        );
    }
    out
}

pub fn print_table(rows: &[Row]) {
    println!("{}", table(rows));
}

/// The goals these runs of one group measured (an `--only` run).
pub fn print_measured_goals(runs: &[Run]) {
    for line in goal_table(runs).lines() {
        if !line.contains("not measured") {
            println!("{line}");
        }
    }
}

pub fn print_speedup(speedup: &Speedup) {
    println!(
        "64 CPU-bound tasks of {:.1} ms each: speedup over serial",
        speedup.task_ms
    );
    for (i, workers) in speedup.workers.iter().enumerate() {
        println!(
            "  {workers} workers: mp {:.2}x, rayon {:.2}x",
            speedup.mp[i], speedup.rayon[i]
        );
    }
}

fn find<'a>(rows: &'a [Row], workload: &str, system: &str) -> Option<&'a Row> {
    rows.iter()
        .find(|row| row.workload == workload && row.system.starts_with(system))
}

/// `ours / theirs` of the headline figures, when both were measured.
fn ratio(rows: &[Row], workload: &str, ours: &str, theirs: &str) -> Option<f64> {
    Some(find(rows, workload, ours)?.figure_value() / find(rows, workload, theirs)?.figure_value())
}

/// mp's round trip over MPI ranks against twice a raw rsmpi round trip plus a local pool's.
fn mpi_round_trip(rows: &[Row]) -> Option<f64> {
    use workloads::{MPI_APPLY, MPI_LOCAL, MPI_OVER_RANKS, MPI_RAW};
    let ours = find(rows, MPI_APPLY, MPI_OVER_RANKS)?.figure_value();
    let raw = find(rows, MPI_APPLY, MPI_RAW)?.figure_value();
    let local = find(rows, MPI_APPLY, MPI_LOCAL)?.figure_value();
    Some(ours / (2.0 * raw + local))
}

/// What a goal asks of its figure.
#[derive(Clone, Copy)]
enum Bound {
    AtMost(f64),
    AtLeast(f64),
    Below(f64),
}

impl Bound {
    fn met(self, value: f64) -> bool {
        match self {
            Bound::AtMost(limit) => value <= limit,
            Bound::AtLeast(limit) => value >= limit,
            Bound::Below(limit) => value < limit,
        }
    }
}

/// The least a value users pass must reach, as a fraction of a memcpy there and back, in a
/// release build and in a user's default debug build (their side of the codec compiled at
/// opt-level 0).
const VALUES_GOAL: f64 = 0.4;
const DEV_VALUES_GOAL: f64 = 0.2;

/// One run of the workloads: its rows and its CPU-bound speedups.
pub struct Run {
    pub rows: Vec<Row>,
    pub speedup: Speedup,
}

/// One speed goal (what mp promises against a bare re-exec, Python and a memcpy) as one run
/// measured it.
struct Goal {
    name: String,
    value: Option<f64>,
    unit: &'static str,
    bound: Bound,
}

/// The speed goals, as one run measured them.
fn goals(rows: &[Row], speedup: &Speedup) -> Vec<Goal> {
    use Bound::*;
    use workloads::*;
    let two_workers = speedup.workers.iter().position(|&w| w == 2);
    let sixteen_workers = speedup.workers.iter().position(|&w| w == 16);
    // (goal, figure, its unit, what the goal asks of it)
    let goals = [
        (
            "start + join ≤ 1.3x a bare re-exec",
            ratio(rows, START_JOIN, "mp spawn", "raw: bare re-exec"),
            "x",
            AtMost(1.3),
        ),
        (
            "start + join faster than Python fork",
            ratio(rows, START_JOIN, "mp spawn", "Python fork"),
            "x",
            Below(1.0),
        ),
        (
            "start + join, fork server ≤ 0.3 ms",
            find(rows, START_JOIN, "mp forkserver").map(|row| row.figure_value() * 1e3),
            " ms",
            AtMost(0.3),
        ),
        (
            "map 10k tiny tasks ≥ 10x Python Pool.map",
            ratio(rows, MAP_10K, "mp", "Python fork"),
            "x",
            AtLeast(10.0),
        ),
        (
            "map 1M tiny tasks ≥ 15x Python Pool.map",
            ratio(rows, MAP_1M, "mp", "Python fork"),
            "x",
            AtLeast(15.0),
        ),
        (
            "one task at a time ≥ 10x Python imap",
            ratio(rows, ONE_AT_A_TIME, "mp", "Python fork"),
            "x",
            AtLeast(10.0),
        ),
        (
            "one task at a time ≥ 1 M tasks/s",
            find(rows, ONE_AT_A_TIME, "mp").map(|row| row.figure_value() / 1e6),
            " M/s",
            AtLeast(1.0),
        ),
        (
            "apply round trip ≤ 10 µs",
            find(rows, APPLY, "mp").map(|row| row.figure_value() * 1e6),
            " µs",
            AtMost(10.0),
        ),
        (
            "apply round trip ≤ 1/10 of Python's",
            ratio(rows, APPLY, "mp", "Python fork"),
            "x",
            AtMost(0.1),
        ),
        (
            "apply round trip ≤ 0.5x a raw socketpair round trip",
            ratio(rows, APPLY, "mp", RAW_SOCKETPAIR),
            "x",
            AtMost(0.5),
        ),
        (
            "64 MiB by value ≥ 5x Python",
            ratio(rows, BYTES, "mp", "Python fork"),
            "x",
            AtLeast(5.0),
        ),
        (
            "64 MiB through shared memory ≥ 3 GiB/s",
            find(rows, SHARED, "mp").map(|row| row.figure_value() / f64::from(1u32 << 30)),
            " GiB/s",
            AtLeast(3.0),
        ),
        (
            "Queue throughput ≥ 10x Python",
            ratio(rows, QUEUE, "mp", "Python fork"),
            "x",
            AtLeast(10.0),
        ),
        (
            "Pipe round trip ≤ 1.2x a raw socketpair",
            ratio(rows, PIPE, "mp", "raw: socketpair"),
            "x",
            AtMost(1.2),
        ),
        (
            "CPU-bound speedup ≥ 1.8x on 2 cores",
            two_workers.map(|i| speedup.mp[i]),
            "x",
            AtLeast(1.8),
        ),
        (
            "CPU-bound speedup ≥ 14x on 16 cores (measured where 16 cores are present)",
            sixteen_workers.map(|i| speedup.mp[i]),
            "x",
            AtLeast(14.0),
        ),
        (
            "idle worker RSS ≤ 1/5 of a Python worker",
            ratio(rows, RSS, "mp worker", "Python fork"),
            "x",
            AtMost(0.2),
        ),
        (
            "idle worker USS ≤ 1/5 of a Python worker",
            ratio(rows, USS, "mp worker", "Python fork"),
            "x",
            AtMost(0.2),
        ),
        (
            "idle workers use no CPU (ms of processor time in 1 s)",
            find(rows, IDLE_CPU, "mp worker").map(|row| row.max() * 1e3),
            " ms",
            AtMost(0.0),
        ),
        (
            "MPI apply round trip ≤ 2x a raw rsmpi round trip + the local pool's (as a fraction)",
            mpi_round_trip(rows),
            "x",
            AtMost(1.0),
        ),
    ];
    let mut goals: Vec<Goal> = goals
        .into_iter()
        .map(|(name, value, unit, bound)| Goal {
            name: name.to_string(),
            value,
            unit,
            bound,
        })
        .collect();
    // The values users pass, in a release build and in a default debug build.
    let values = [
        (VEC_U8, "Vec<u8>"),
        (STRING, "String"),
        (VEC_F64, "Vec<f64>"),
        (RECORD, "struct { String, Vec<u8>, Vec<f32> }"),
    ];
    for (by_value, memcpy, least, build) in [
        (BY_VALUE, MEMCPY, VALUES_GOAL, ""),
        (
            DEV_BY_VALUE,
            DEV_MEMCPY,
            DEV_VALUES_GOAL,
            " (default dev build)",
        ),
    ] {
        for (workload, value) in values {
            goals.push(Goal {
                name: format!("64 MiB {value} by value ≥ {least}x memcpy{build}"),
                value: exact_ratio(rows, workload, by_value, memcpy),
                unit: "x",
                bound: AtLeast(least),
            });
        }
    }
    goals
}

/// Like [`ratio`], for systems named exactly (one name may begin another).
fn exact_ratio(rows: &[Row], workload: &str, ours: &str, theirs: &str) -> Option<f64> {
    let row = |system: &str| {
        rows.iter()
            .find(|row| row.workload == workload && row.system == system)
    };
    Some(row(ours)?.figure_value() / row(theirs)?.figure_value())
}

/// One line per goal: what each run measured, the range over the runs, and whether it was met
/// in every run (a goal met only in some runs is not met).
fn goal_table(runs: &[Run]) -> String {
    let per_run: Vec<Vec<Goal>> = runs
        .iter()
        .map(|run| goals(&run.rows, &run.speedup))
        .collect();
    let mut out = String::from("| goal | measured (range over the runs) | each run | met |\n");
    out.push_str("|---|---|---|---|\n");
    let Some(first) = per_run.first() else {
        return out;
    };
    for (at, goal) in first.iter().enumerate() {
        let values: Vec<f64> = per_run.iter().filter_map(|run| run[at].value).collect();
        let text = |value: f64| {
            let digits = if goal.unit == " ms" { 3 } else { 2 };
            format!("{value:.digits$}{}", goal.unit)
        };
        if values.is_empty() {
            let _ = writeln!(out, "| {} | not measured | | — |", goal.name);
            continue;
        }
        let low = values.iter().copied().fold(f64::INFINITY, f64::min);
        let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let range = if values.len() == 1 {
            text(low)
        } else {
            format!("{}–{}", text(low), text(high))
        };
        let each: Vec<String> = per_run
            .iter()
            .map(|run| run[at].value.map_or("—".to_string(), text))
            .collect();
        let met_in = values.iter().filter(|&&v| goal.bound.met(v)).count();
        let met = if met_in == per_run.len() {
            "yes".to_string()
        } else if met_in == 0 {
            "no".to_string()
        } else {
            format!("no (met in {met_in} of {} runs)", per_run.len())
        };
        let _ = writeln!(
            out,
            "| {} | {range} | {} | {met} |",
            goal.name,
            each.join(", ")
        );
    }
    out
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpu}, {} CPUs usable, Linux {}, {}",
        mp_runtime::cpu_count(),
        kernel.trim(),
        python::version()
    )
}

fn plot_speedup(path: &Path, speedup: &Speedup) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (640, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_workers = *speedup.workers.last().unwrap_or(&1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "speedup over serial, 64 CPU-bound tasks",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(44)
        .build_cartesian_2d(0.5..max_workers + 0.5, 0.0..max_workers + 0.5)?;
    chart
        .configure_mesh()
        .x_desc("workers")
        .y_desc("speedup")
        .draw()?;
    let series = |values: &[f64]| -> Vec<(f64, f64)> {
        speedup
            .workers
            .iter()
            .zip(values)
            .map(|(&w, &s)| (w as f64, s))
            .collect()
    };
    chart
        .draw_series(LineSeries::new(series(&speedup.mp), BLUE.stroke_width(2)))?
        .label("mp (processes)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
    chart
        .draw_series(LineSeries::new(series(&speedup.rayon), RED.stroke_width(2)))?
        .label("rayon (threads)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
    let ideal: Vec<(f64, f64)> = speedup
        .workers
        .iter()
        .map(|&w| (w as f64, w as f64))
        .collect();
    chart
        .draw_series(LineSeries::new(ideal, BLACK.mix(0.3)))?
        .label("ideal")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.mix(0.3)));
    chart
        .configure_series_labels()
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn plot_throughput(path: &Path, throughput: &Throughput) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (640, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = throughput
        .mp
        .iter()
        .chain(&throughput.rayon)
        .chain(&throughput.serial)
        .copied()
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("tasks per second against task size", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (0.5f64..200_000.0).log_scale(),
            (100.0f64..top * 2.0).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("steps per task")
        .y_desc("tasks / s")
        .draw()?;
    for (values, color, label) in [
        (&throughput.mp, BLUE, "mp map (processes)"),
        (&throughput.rayon, RED, "rayon (threads)"),
        (&throughput.serial, BLACK, "serial loop"),
    ] {
        let points: Vec<(f64, f64)> = throughput
            .steps
            .iter()
            .zip(values)
            .map(|(&s, &v)| (s as f64, v))
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Each worker count's median speedup over the runs.
fn speedup_over(runs: &[Run]) -> Speedup {
    let first = &runs[0].speedup;
    let each = |at: usize, of: fn(&Speedup) -> &Vec<f64>| {
        let values: Vec<f64> = runs
            .iter()
            .filter_map(|run| of(&run.speedup).get(at))
            .copied()
            .collect();
        median(&values)
    };
    Speedup {
        workers: first.workers.clone(),
        mp: (0..first.workers.len())
            .map(|at| each(at, |s| &s.mp))
            .collect(),
        rayon: (0..first.workers.len())
            .map(|at| each(at, |s| &s.rayon))
            .collect(),
        task_ms: median(
            &runs
                .iter()
                .map(|run| run.speedup.task_ms)
                .collect::<Vec<_>>(),
        ),
    }
}

/// Writes `NAME.md` in `out` (`name` is `BENCHMARKS` unless `--out` said otherwise), and its
/// plots in `out/benches/plots/`.
pub fn write(
    out: &Path,
    name: &str,
    command: &str,
    runs: &[Run],
    throughput: &Throughput,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let rows = measure::merge(runs.iter().map(|run| &run.rows[..]));
    let speedup = speedup_over(runs);
    // The default report keeps the plot names it always had.
    let prefix = if name == "BENCHMARKS" {
        String::new()
    } else {
        format!("{name}-")
    };
    let speedup_plot = format!("benches/plots/{prefix}speedup.svg");
    let throughput_plot = format!("benches/plots/{prefix}throughput.svg");
    plot_speedup(&out.join(&speedup_plot), &speedup)?;
    plot_throughput(&out.join(&throughput_plot), throughput)?;
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Made by `{command}` (a release build; it writes this file). Machine: {}.\n",
        machine()
    );
    let _ = writeln!(
        md,
        "The workloads ran {}, one run after the other. A goal's ratio is taken within \
         each run, since the machine is shared and noisy; the goals table gives the range over \
         the runs and each run's figure, and a goal is met only when every run meets it. In \
         the other tables each row is repeated within each run: median, min and max are wall \
         times of one repeat, over all runs, and the last column is the median per operation \
         (time per op, ops per second, or bandwidth). Python rows run \
         `benches/src/python_bench.py`; its Pools have 2 workers, like mp's. The `dev build` \
         rows come from a default debug build of this harness (`opt-level = 0` throughout), \
         which this run builds and runs itself.\n",
        match runs.len() {
            1 => "once".to_string(),
            n => format!("{n} times over"),
        }
    );
    if cfg!(feature = "mpi") {
        let _ = writeln!(
            md,
            "This binary was built with `--features mpi`, so it links the MPI library: every \
             process it starts (a bare re-exec too) loads libmpich and UCX at exec, which makes \
             starts slower and workers larger than in the default build (BENCHMARKS.md). The \
             MPI rows come from runs of this binary under `mpirun`.\n"
        );
    }
    let _ = writeln!(md, "## Goals\n\n{}", goal_table(runs));
    let _ = writeln!(md, "## All figures\n\n{}", table(&rows));
    let _ = writeln!(md, "## CPU-bound speedup\n");
    let _ = writeln!(
        md,
        "64 tasks of {:.1} ms each (serial), mapped with chunk size 1; the median of the runs' \
         speedups.\n",
        speedup.task_ms
    );
    let _ = writeln!(md, "| workers | mp | rayon |\n|---:|---:|---:|");
    for (i, workers) in speedup.workers.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {workers} | {:.2}x | {:.2}x |",
            speedup.mp[i], speedup.rayon[i]
        );
    }
    let _ = writeln!(md, "\n![speedup]({speedup_plot})\n");
    let _ = writeln!(md, "## Throughput against task size\n");
    let _ = writeln!(
        md,
        "| steps per task | mp tasks/s | rayon tasks/s | serial tasks/s |\n|---:|---:|---:|---:|"
    );
    for (i, steps) in throughput.steps.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {steps} | {:.0} | {:.0} | {:.0} |",
            throughput.mp[i], throughput.rayon[i], throughput.serial[i]
        );
    }
    let _ = writeln!(md, "\n![throughput]({throughput_plot})");
    // What the figures mean and why a goal is missed: written by hand, kept across runs.
    let notes = Path::new(env!("CARGO_MANIFEST_DIR")).join("NOTES.md");
    if let Ok(notes) = std::fs::read_to_string(notes) {
        let _ = write!(md, "\n{notes}");
    }
    let path = out.join(format!("{name}.md"));
    std::fs::write(&path, md)?;
    Ok(path)
}
