//! Samples and their summary.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// One line of the table: a workload on one system, with its samples in seconds.
///
/// Serde, so that another run (the dev build's, a rank's under `mpirun`) can hand its rows over.
#[derive(Clone, Serialize, Deserialize)]
pub struct Row {
    pub workload: String,
    pub system: String,
    /// Wall time of each repeat, in seconds.
    pub seconds: Vec<f64>,
    /// How many operations one repeat did: the per-operation figure divides by it.
    pub ops: f64,
    /// What the per-operation figure is: `time` per op, or `rate` (ops per second), or a
    /// plain `value` that is not a time (memory).
    pub figure: Figure,
}

#[derive(Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Figure {
    /// Time per operation, shown in µs or ms.
    Time,
    /// Operations per second.
    Rate,
    /// Bytes per second.
    Bandwidth,
    /// A number in KiB (memory), not a time.
    Kib,
}

impl Row {
    pub fn new(
        workload: impl Into<String>,
        system: impl Into<String>,
        seconds: Vec<f64>,
        ops: f64,
        figure: Figure,
    ) -> Row {
        Row {
            workload: workload.into(),
            system: system.into(),
            seconds,
            ops,
            figure,
        }
    }

    pub fn median(&self) -> f64 {
        median(&self.seconds)
    }

    pub fn min(&self) -> f64 {
        self.seconds.iter().copied().fold(f64::INFINITY, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.seconds.iter().copied().fold(0.0, f64::max)
    }

    /// The headline figure, from the median.
    pub fn figure_value(&self) -> f64 {
        match self.figure {
            Figure::Time => self.median() / self.ops,
            Figure::Rate | Figure::Bandwidth => self.ops / self.median(),
            Figure::Kib => self.median(),
        }
    }

    pub fn figure_text(&self) -> String {
        let value = self.figure_value();
        match self.figure {
            Figure::Time => duration_text(value),
            Figure::Rate => format!("{} /s", si(value)),
            Figure::Bandwidth => format!("{:.2} GiB/s", value / (1u64 << 30) as f64),
            Figure::Kib => format!("{:.0} KiB", value),
        }
    }
}

/// The rows of several runs as one table: the samples of each workload on each system, over
/// every run.
pub fn merge<'a>(runs: impl IntoIterator<Item = &'a [Row]>) -> Vec<Row> {
    let mut merged: Vec<Row> = Vec::new();
    for row in runs.into_iter().flatten() {
        match merged
            .iter_mut()
            .find(|m| m.workload == row.workload && m.system == row.system)
        {
            Some(m) => m.seconds.extend(&row.seconds),
            None => merged.push(row.clone()),
        }
    }
    merged
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

pub fn duration_text(seconds: f64) -> String {
    if seconds >= 1.0 {
        format!("{seconds:.2} s")
    } else if seconds >= 1e-3 {
        format!("{:.2} ms", seconds * 1e3)
    } else {
        format!("{:.1} µs", seconds * 1e6)
    }
}

fn si(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2} M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1} k", value / 1e3)
    } else {
        format!("{value:.1}")
    }
}

/// Runs `once` `repeats` times and returns each wall time in seconds.
pub fn time(repeats: usize, mut once: impl FnMut()) -> Vec<f64> {
    (0..repeats)
        .map(|_| {
            let start = Instant::now();
            once();
            start.elapsed().as_secs_f64()
        })
        .collect()
}
