//! Runs the Python side of a workload and reads its samples.

use std::process::Command;

const SCRIPT: &str = include_str!("python_bench.py");

/// Python's three start methods.
pub const METHODS: [&str; 3] = ["fork", "spawn", "forkserver"];

/// What one run of the Python script measured.
pub struct Sample {
    pub seconds: Vec<f64>,
    pub extra: serde_json::Value,
}

/// Runs `workload` under `method`; `None` (with a note on stderr) if python3 is missing or fails.
pub fn run(method: &str, workload: &str, repeats: usize, arg: u64) -> Option<Sample> {
    let script = std::env::temp_dir().join("mp_bench_python.py");
    std::fs::write(&script, SCRIPT).ok()?;
    let output = Command::new("python3")
        .arg(&script)
        .args([method, workload, &repeats.to_string(), &arg.to_string()])
        .output();
    let output = match output {
        Ok(output) if output.status.success() => output,
        Ok(output) => {
            eprintln!(
                "python {method} {workload} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            return None;
        }
        Err(e) => {
            eprintln!("python3 cannot run ({e}); skipping the Python rows");
            return None;
        }
    };
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    let seconds = value["seconds"]
        .as_array()?
        .iter()
        .filter_map(|s| s.as_f64())
        .collect();
    Some(Sample {
        seconds,
        extra: value["extra"].clone(),
    })
}

/// The Python version, for the report.
pub fn version() -> String {
    Command::new("python3")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "python3 not found".into())
}
