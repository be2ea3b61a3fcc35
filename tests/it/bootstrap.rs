//! How a binary behaves when the worker marker is set by someone other than mp, and how a
//! program started in an unusual way (through the dynamic loader, without `/dev/null` or
//! `/proc`, under a low resource limit) starts its workers or says why it cannot.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mp_runtime::{Pool, StartMethod, process_fn, spawn};

#[process_fn]
fn pid() -> u32 {
    std::process::id()
}

/// Runs this test binary again with `MP_RUNTIME_ROLE` set to `role` and `stdin`; returns exit
/// code and standard error.
fn run_with_role(role: &str, stdin: Stdio) -> (Option<i32>, String) {
    let output = Command::new(std::env::current_exe().unwrap())
        .arg("--list")
        .env("MP_RUNTIME_ROLE", role)
        .stdin(stdin)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_forged_marker_is_a_clear_error_and_a_non_zero_exit() {
    let me = std::process::id().to_string();
    for role in ["1", "worker:1", "worker:x", &format!("worker:{me}")] {
        let (code, stderr) = run_with_role(role, Stdio::null());
        assert_eq!(code, Some(2), "{role}: {stderr}");
        assert!(stderr.contains("not started by mp"), "{role}: {stderr}");
        assert!(stderr.contains("unset MP_RUNTIME_ROLE"), "{role}: {stderr}");
    }
}

#[test]
fn a_child_of_another_build_says_so() {
    let me = std::process::id();
    // A channel made by this process, as a real parent's is: the role is proven, the build not.
    let (_ours, theirs) = UnixStream::pair().unwrap();
    let (code, stderr) = run_with_role(
        &format!("worker:{me}:0123456789abcdef"),
        Stdio::from(OwnedFd::from(theirs)),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("same build"), "{stderr}");
}

#[test]
fn a_real_child_does_not_pass_the_marker_on() {
    #[process_fn]
    fn marker() -> Option<String> {
        std::env::var("MP_RUNTIME_ROLE").ok()
    }
    assert_eq!(spawn!(marker).unwrap().join().unwrap(), None);
    assert_ne!(spawn!(pid).unwrap().join().unwrap(), std::process::id());
}

/// The variable that makes `startup_case` run a case: the outer tests below set it for a copy
/// of this binary that they start in an unusual way.
const CASE_VAR: &str = "MP_TEST_STARTUP_CASE";

/// One case of start-up, run in a copy of this binary that an outer test started in an unusual
/// way; does nothing when run by the harness as usual.
#[test]
fn startup_case() {
    let Ok(case) = std::env::var(CASE_VAR) else {
        return;
    };
    let bound = Duration::from_secs(60);
    match case.as_str() {
        // Workers start, by both start methods.
        "run" => {
            let mut child = spawn!(pid).unwrap();
            let joined = child.join_timeout(bound);
            if joined.is_err() {
                let _ = child.kill();
            }
            assert_ne!(joined.unwrap(), std::process::id());
            let pool = Pool::builder()
                .start_method(StartMethod::ForkServer)
                .processes(1)
                .build()
                .unwrap();
            let applied = pool.apply(pid, ());
            pool.terminate();
            assert_ne!(applied.unwrap(), std::process::id());
        }
        // A memory limit above the hard RLIMIT_DATA (set by the outer test) is refused at
        // `build`, with what to do; one below it works.
        "memory" => {
            let err = Pool::builder()
                .processes(1)
                .memory_limit(4 << 30)
                .build()
                .expect_err("a memory limit above the hard RLIMIT_DATA is refused");
            let text = err.to_string();
            assert!(err.is_usage(), "{text}");
            assert!(text.contains("RLIMIT_DATA"), "{text}");
            assert!(text.contains("1024 MiB"), "{text}");
            let pool = Pool::builder()
                .processes(1)
                .memory_limit(512 << 20)
                .build()
                .unwrap();
            let applied = pool.apply(pid, ());
            pool.terminate();
            assert_ne!(applied.unwrap(), std::process::id());
        }
        // The reason a child cannot be started is in the error's `Display`.
        "e2big" => {
            // SAFETY: this copy runs this one test, on the harness's one test thread, and no
            // other thread reads the environment meanwhile.
            unsafe { std::env::set_var("MP_TEST_HUGE", "x".repeat(256 << 10)) };
            let err = spawn!(pid)
                .err()
                .expect("no child starts with a 256 KiB variable");
            let text = err.to_string();
            assert!(text.contains("Argument list too long"), "{text}");
            assert!(text.contains("environment"), "{text}");
        }
        "noproc" => {
            let err = spawn!(pid).err().expect("no child starts without /proc");
            let text = err.to_string();
            assert!(text.contains("No such file or directory"), "{text}");
            assert!(text.contains("mount /proc"), "{text}");
        }
        other => panic!("unknown case {other}"),
    }
}

/// Runs `startup_case` for `case` in a copy of this binary that `command` starts (with this
/// binary's path and the harness's arguments appended); panics, with its output, unless it
/// passes. Bounded: the copy is killed after two minutes.
fn run_case(mut command: Command, case: &str) {
    let dir = std::env::temp_dir().join(format!("mp-startup-{case}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join("output");
    let file = std::fs::File::create(&output).unwrap();
    let mut child = command
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "bootstrap::startup_case",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CASE_VAR, case)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&output).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.is_some(), "{case}: hung\n{text}");
    assert!(status.unwrap().success(), "{case}: {text}");
    // A filter that matched no test would pass too.
    assert!(
        text.contains("1 passed"),
        "{case}: the case did not run\n{text}"
    );
}

/// The dynamic loader this binary was started with, from its mappings.
fn dynamic_loader() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| {
            let name = path.rsplit('/').next().unwrap_or("");
            name.starts_with("ld-linux") || name.starts_with("ld-musl")
        })
        .map(str::to_string)
}

/// Whether this process may make mount namespaces (root, with `unshare` installed).
fn can_unshare() -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("unshare")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// `unshare` wrapped around the copy: a mount namespace of its own, in which `script` runs
/// first (it then runs the copy, `"$0" "$@"`).
fn unshared(script: &str) -> Command {
    let mut command = Command::new("unshare");
    command.args(["--mount", "--propagation", "private", "sh", "-c"]);
    command.arg(format!("{script} && exec \"$0\" \"$@\""));
    command
}

// A program started through the dynamic loader (`ld.so ./prog`), whose /proc/self/exe is the
// loader, starts its workers, by both start methods: re-executing /proc/self/exe alone would
// run the loader with no program.
#[test]
fn a_program_started_through_the_dynamic_loader_starts_workers() {
    let Some(loader) = dynamic_loader() else {
        eprintln!("skipped: this binary was not started by a dynamic loader");
        return;
    };
    run_case(Command::new(loader), "run");
}

// Without /dev/null (an empty /dev, as in some containers), workers start: a worker's closed
// standard descriptors must be filled some other way.
#[test]
fn workers_start_without_dev_null() {
    if !can_unshare() {
        eprintln!("skipped: needs root and unshare(1) to hide /dev");
        return;
    }
    run_case(unshared("mount -t tmpfs none /dev"), "run");
}

// Without /proc, the error says so and what to do, in its `Display`: a worker that cannot
// start says why, in the caller's error.
#[test]
fn without_proc_the_error_says_so() {
    if !can_unshare() {
        eprintln!("skipped: needs root and unshare(1) to hide /proc");
        return;
    }
    run_case(unshared("mount -t tmpfs none /proc"), "noproc");
}

// A child that cannot be started for E2BIG (an environment too large to exec) says so in its
// `Display`, not only as an errno.
#[test]
fn a_child_that_cannot_be_executed_says_why() {
    run_case(Command::new("env"), "e2big");
}

// A memory limit above the hard RLIMIT_DATA of a process that cannot raise it is refused at
// `build`, with why: otherwise the pool builds, and then every task fails with code 1.
#[test]
fn a_memory_limit_above_the_hard_limit_is_refused_at_build() {
    let mut command = Command::new("prlimit");
    command.arg("--data=1073741824:1073741824");
    // SAFETY: geteuid has no preconditions and touches no memory.
    if unsafe { libc::geteuid() } == 0 {
        // Root may raise a hard limit: the copy runs without that capability.
        command.args([
            "setpriv",
            "--inh-caps=-sys_resource",
            "--bounding-set=-sys_resource",
        ]);
    }
    run_case(command, "memory");
}
