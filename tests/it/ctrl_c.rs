//! Ctrl-C during a long `Pool::map`: the terminal sends SIGINT to the whole foreground process
//! group, so the parent, its pool workers, its fork server and its lone processes all get it.
//! By default the parent dies of it like any program, and takes every child with it; a parent
//! that handles SIGINT itself gets an error from `map` instead, since its workers died of it.
//! Either way no child is left, and no task is reported twice.
//!
//! Each case runs a helper: this test binary again, in a process group of its own, so that the
//! SIGINT sent to that group reaches no one else.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mp_runtime::{Pool, StartMethod, active_children, process_fn, spawn};
use mp_support::{is_running, wait_for};

/// Set to the start method the helper's pool uses; the helper runs only then.
const HELPER: &str = "MP_CTRL_C_HELPER";
/// Set when the helper handles SIGINT itself instead of dying of it.
const HANDLE: &str = "MP_CTRL_C_HANDLE";

#[process_fn]
fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(50));
    x * x
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// The helper: a pool busy with a long map and a lone process; prints every child's pid, then
/// `map` and how the map ended (if the helper is still alive to say it).
#[test]
fn helper() {
    let Ok(method) = std::env::var(HELPER) else {
        return;
    };
    if std::env::var_os(HANDLE).is_some() {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
    } else {
        // A program in a terminal's foreground has SIGINT's default action; one started as a
        // shell's background job (as CI may run this) inherits it ignored. Be the former.
        // SAFETY: plain system call; no handler is installed.
        unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
    }
    let method = if method == "forkserver" {
        StartMethod::ForkServer
    } else {
        StartMethod::Spawn
    };
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .build()
        .unwrap();
    // Make sure both workers are up before the pids are read.
    pool.map(slow_square, 0..4u64).unwrap();
    let lone = spawn!(slow_square, 1_000_000).unwrap();
    let mut pids: Vec<u32> = active_children().iter().map(|c| c.pid()).collect();
    pids.push(lone.pid());
    pids.sort_unstable();
    pids.dedup();
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    println!("pids {}", pids.join(" "));
    println!("map");
    // About 50 s of work: far longer than the test waits.
    let result = pool.map(slow_square, 0..2_000u64);
    match result {
        Ok(squares) => println!("map ended: ok, {} results", squares.len()),
        Err(error) => println!("map ended: error: {error}"),
    }
    // The group's SIGINT reaches the workers and this process in one `kill`, but the map may
    // hear of its dead workers before this process's handler runs: give it time to.
    wait_for(Duration::from_secs(10), || {
        INTERRUPTED.load(Ordering::SeqCst)
    });
    println!("interrupted: {}", INTERRUPTED.load(Ordering::SeqCst));
}

/// What the helper said and how it ended.
struct Outcome {
    lines: Vec<String>,
    status: std::process::ExitStatus,
    pids: Vec<u32>,
}

/// Runs the helper, sends SIGINT to its process group once its map runs, and waits (bounded)
/// for it to end.
fn interrupt_helper(method: &str, handle: bool) -> Outcome {
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new(exe);
    command
        .args([
            "--exact",
            "ctrl_c::helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER, method)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    if handle {
        command.env(HANDLE, "1");
    }
    let mut child = command.spawn().unwrap();
    let pgid = child.id() as i32;
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l == "map") {
        match lines_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => lines.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("the helper did not start its map: {lines:?}");
            }
        }
    }
    let pids: Vec<u32> = lines
        .iter()
        // libtest prints `test helper ... ` before the first line.
        .find_map(|l| l.split_once("pids ").map(|(_, pids)| pids))
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(pids.len() >= 3, "two workers and a lone process: {pids:?}");
    // Let the map get going, with tasks in flight on both workers.
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: plain system call; the group is the helper's own, made by `process_group(0)`.
    assert_eq!(unsafe { libc::kill(-pgid, libc::SIGINT) }, 0);

    let mut status = None;
    let ended = wait_for(Duration::from_secs(10), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !ended {
        // SAFETY: plain system call on the helper's own group, to clean up after a failure.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = child.wait();
        panic!("the helper still runs 10 s after Ctrl-C: {lines:?}");
    }
    reader.join().unwrap();
    lines.extend(lines_rx.try_iter());
    Outcome {
        lines,
        status: status.unwrap(),
        pids,
    }
}

fn assert_no_child_left(outcome: &Outcome) {
    let gone = wait_for(Duration::from_secs(10), || {
        outcome.pids.iter().all(|&pid| !is_running(pid))
    });
    let left: Vec<u32> = outcome
        .pids
        .iter()
        .copied()
        .filter(|&pid| is_running(pid))
        .collect();
    assert!(gone, "children left 10 s after Ctrl-C: {left:?}");
}

#[test]
fn ctrl_c_ends_the_parent_and_every_child() {
    for method in ["spawn", "forkserver"] {
        let outcome = interrupt_helper(method, false);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            outcome.status.signal(),
            Some(libc::SIGINT),
            "{method}: {:?}",
            outcome.lines
        );
        assert!(
            !outcome.lines.iter().any(|l| l.starts_with("map ended")),
            "{method}: {:?}",
            outcome.lines
        );
        assert_no_child_left(&outcome);
    }
}

#[test]
fn a_parent_that_handles_ctrl_c_gets_an_error_from_map() {
    for method in ["spawn", "forkserver"] {
        let outcome = interrupt_helper(method, true);
        assert!(outcome.status.success(), "{method}: {:?}", outcome.lines);
        let ended = outcome
            .lines
            .iter()
            .find(|l| l.starts_with("map ended"))
            .unwrap_or_else(|| panic!("{method}: {:?}", outcome.lines));
        // A fork-server child is the fork server's child, not ours: the fork server reports its
        // status, unless SIGINT ended the fork server first; then the error says only that the
        // worker ended.
        let said = ended.contains("SIGINT")
            || (method == "forkserver" && ended.contains("unknown status"));
        assert!(said, "{method}: {ended}");
        assert!(outcome.lines.contains(&"interrupted: true".to_string()));
        assert_no_child_left(&outcome);
    }
}
