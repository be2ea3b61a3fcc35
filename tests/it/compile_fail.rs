//! Compile-fail tests: each `tests/ui/<case>.rs` (the errors of `#[process_fn]`, `spawn!` and
//! `pool_map!`) and each `tests/ui_adversarial/<case>.rs` (a `Pod` aligned above 64 bytes in
//! `Value`/`Array`, a lock guard sent to another thread) must fail to build with exactly the
//! diagnostics in its `.stderr`, and each case under `pass/` must build and run.
//!
//! Each case is built by `rustc` itself, against the `mp_runtime` and `serde` that cargo built
//! for this very test (asked with `cargo test --no-run --message-format=json`, which finds them
//! fresh): nothing is built twice. (trybuild, which this replaces, builds every dependency again
//! in a project of its own; on a fresh clone that was most of `cargo test`'s time.) A case is
//! built, not only checked, since some errors come after monomorphization.
//!
//! A `.stderr` holds the diagnostics as rustc gives them in JSON, written one per line with
//! their notes and helps below: level, code, message, and where (`file:line:column` in the
//! case, only the file elsewhere, so that editing mp-runtime does not move them). After
//! changing a message, write the expected output again with
//! `BLESS=1 cargo test --test it -- compile_fail` and read the diff.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The longest a case may take to build or run: far more than any takes, so that a hang fails.
const CASE_LIMIT: Duration = Duration::from_secs(300);

/// The workspace root, where the cases' paths start and `rustc` runs.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What a case is built with: the crates it may name, and the folder of their dependencies.
struct Toolchain {
    externs: Vec<(String, PathBuf)>,
    deps: PathBuf,
}

/// Asks cargo for the `mp_runtime` and `serde` libraries of this build (the same profile and
/// features as this test, so none is rebuilt).
fn toolchain() -> Toolchain {
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(root())
        .args(["test", "--no-run", "--message-format=json", "--test", "it"]);
    if !cfg!(debug_assertions) {
        cargo.arg("--release");
    }
    if cfg!(feature = "mpi") {
        cargo.args(["--features", "mpi"]);
    }
    let output = run(&mut cargo, &[]);
    assert!(
        output.status.success(),
        "cargo could not say where this build's libraries are:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut externs = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let message: Value = serde_json::from_str(line).expect("cargo's JSON message");
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let name = message["target"]["name"].as_str().unwrap_or_default();
        let is_lib = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|kind| kind == "lib"));
        if is_lib && (name == "mp_runtime" || name == "serde") {
            let rlib = message["filenames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .find(|file| file.ends_with(".rlib"))
                .expect("a library's .rlib");
            externs.push((name.to_string(), PathBuf::from(rlib)));
        }
    }
    assert_eq!(
        externs.len(),
        2,
        "cargo named {externs:?}, not mp_runtime and serde"
    );
    let deps = externs[0].1.parent().unwrap().to_path_buf();
    Toolchain { externs, deps }
}

/// Runs a command to its end, for at most [`CASE_LIMIT`].
fn run(command: &mut Command, env: &[(&str, &str)]) -> Output {
    let mut child = command
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a command");
    // Read both pipes on threads of their own, so a full pipe cannot stall the child.
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let (stdout, stderr) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let deadline = Instant::now() + CASE_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for a command") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} ran for more than {CASE_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Builds one case into `out`; returns rustc's output (JSON diagnostics on stderr).
fn build(tools: &Toolchain, case: &Path, out: &Path) -> Output {
    let mut rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()));
    rustc
        .current_dir(root())
        .arg(case.strip_prefix(root()).unwrap())
        .args(["--edition=2024", "--crate-type=bin", "--error-format=json"])
        .args(["-C", "opt-level=0", "-o"])
        .arg(out)
        .arg("-L")
        .arg(format!("dependency={}", tools.deps.display()));
    for (name, rlib) in &tools.externs {
        rustc
            .arg("--extern")
            .arg(format!("{name}={}", rlib.display()));
    }
    run(&mut rustc, &[])
}

/// A path as a `.stderr` shows it: relative to the workspace, or to the standard library or
/// the registry, without what differs between machines.
fn shown_path(file: &str) -> String {
    let root = format!("{}/", root().display());
    if let Some(inside) = file.strip_prefix(&root) {
        return inside.to_string();
    }
    if let Some(at) = file.find("/library/") {
        return format!("$RUST/{}", &file[at + "/library/".len()..]);
    }
    if let Some(at) = file.find("/registry/src/") {
        let rest = &file[at + "/registry/src/".len()..];
        let crate_path = rest.split_once('/').map_or(rest, |(_, path)| path);
        return format!("$CARGO/{crate_path}");
    }
    file.to_string()
}

/// "and 142 others" becomes "and $N others": how many types implement a trait changes with
/// every release of a dependency.
fn without_counts(message: &str) -> String {
    let mut out = String::new();
    for (at, line) in message.lines().enumerate() {
        if at > 0 {
            out.push('\n');
        }
        let trimmed = line.trim_start();
        let is_count = trimmed
            .strip_prefix("and ")
            .and_then(|rest| rest.strip_suffix(" others"))
            .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()));
        if is_count {
            out.push_str(&line[..line.len() - trimmed.len()]);
            out.push_str("and $N others");
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Where a span is in the case: the span itself, or the place in the case that the macro
/// whose expansion holds it was called from, as rustc shows it.
fn in_case<'a>(span: &'a Value, case: &str) -> Option<&'a Value> {
    let mut site = span;
    loop {
        if site["file_name"] == case {
            return Some(site);
        }
        site = &site["expansion"]["span"];
        if site.is_null() {
            return None;
        }
    }
}

/// Writes one diagnostic and, indented below it, its notes and helps.
fn render(diagnostic: &Value, case: &str, depth: usize, out: &mut String) {
    let indent = "  ".repeat(depth);
    let level = diagnostic["level"].as_str().unwrap_or("?");
    let code = diagnostic["code"]["code"]
        .as_str()
        .map(|code| format!("[{code}]"))
        .unwrap_or_default();
    let message = without_counts(diagnostic["message"].as_str().unwrap_or(""));
    let message = message.replace('\n', &format!("\n{indent}  "));
    writeln!(out, "{indent}{level}{code}: {message}").unwrap();
    for span in diagnostic["spans"].as_array().into_iter().flatten() {
        let place = match in_case(span, case) {
            Some(site) => format!("{case}:{}:{}", site["line_start"], site["column_start"]),
            None => shown_path(span["file_name"].as_str().unwrap_or("")),
        };
        let label = span["label"]
            .as_str()
            .map(|label| format!(": {}", without_counts(label)))
            .unwrap_or_default();
        writeln!(out, "{indent}  --> {place}{label}").unwrap();
    }
    for child in diagnostic["children"].as_array().into_iter().flatten() {
        render(child, case, depth + 1, out);
    }
}

/// The diagnostics of a build, as a `.stderr` holds them; the summary lines ("aborting due
/// to ...", "for more information ...") left out.
fn diagnostics(stderr: &[u8], case: &str) -> String {
    let mut out = String::new();
    for line in String::from_utf8_lossy(stderr).lines() {
        let Ok(diagnostic) = serde_json::from_str::<Value>(line) else {
            writeln!(out, "{line}").unwrap();
            continue;
        };
        let message = diagnostic["message"].as_str().unwrap_or("");
        let is_summary = diagnostic["spans"].as_array().is_some_and(Vec::is_empty)
            && (message.starts_with("aborting due to") || diagnostic["level"] == "failure-note");
        if !is_summary {
            render(&diagnostic, case, 0, &mut out);
        }
    }
    out
}

/// Builds one case and says what is wrong with it, if anything.
fn check(tools: &Toolchain, case: &Path, must_pass: bool) -> Option<String> {
    let name = case.file_stem().unwrap().to_string_lossy();
    let relative = case
        .strip_prefix(root())
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("ui")
        .join(&relative)
        .with_extension("");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let built = build(tools, case, &out);
    let found = diagnostics(&built.stderr, &relative);
    if must_pass {
        if !built.status.success() {
            return Some(format!("{relative} should build, but:\n{found}"));
        }
        let ran = run(&mut Command::new(&out), &[]);
        return (!ran.status.success()).then(|| {
            format!(
                "{relative} built, but running it failed ({}):\n{}",
                ran.status,
                String::from_utf8_lossy(&ran.stderr)
            )
        });
    }
    if built.status.success() {
        return Some(format!("{relative} should fail to build, but it built"));
    }
    let expected_file = case.with_extension("stderr");
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&expected_file, &found).unwrap();
        return None;
    }
    let expected = std::fs::read_to_string(&expected_file).unwrap_or_default();
    (expected != found).then(|| {
        format!(
            "{relative} ({name}): the diagnostics differ from {}\n--- expected\n{expected}\n--- found\n{found}",
            expected_file.strip_prefix(root()).unwrap().display()
        )
    })
}

/// The `.rs` files of a folder, sorted.
fn cases(folder: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(root().join(folder))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .collect();
    found.sort();
    found
}

#[test]
fn ui() {
    let tools = toolchain();
    let mut work: Vec<(PathBuf, bool)> = Vec::new();
    for folder in ["tests/ui", "tests/ui_adversarial"] {
        work.extend(cases(folder).into_iter().map(|case| (case, false)));
        work.extend(
            cases(&format!("{folder}/pass"))
                .into_iter()
                .map(|case| (case, true)),
        );
    }
    let total = work.len();
    assert!(
        [
            "tests/ui",
            "tests/ui/pass",
            "tests/ui_adversarial",
            "tests/ui_adversarial/pass"
        ]
        .iter()
        .all(|folder| !cases(folder).is_empty()),
        "a folder of cases is empty: was it moved?"
    );
    let work = Mutex::new(work);
    let failures = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some((case, must_pass)) = work.lock().unwrap().pop() {
                    if let Some(failure) = check(&tools, &case, must_pass) {
                        failures.lock().unwrap().push(failure);
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed (after changing a message: BLESS=1 cargo test --test it \
         -- compile_fail, then read the diff):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
