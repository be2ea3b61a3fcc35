//! Workers killed at random while a long map runs: every task still ends exactly once, with its
//! result or an error, and the pool is healthy after. It runs in a child of its own, so that
//! every child of that process is a worker of the pool under test.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mp_runtime::{CallOptions, Pool, process_fn};

#[process_fn]
fn double_or_die(x: u64) -> u64 {
    match x % 10_007 {
        // Some tasks end their own worker on purpose.
        1 => std::process::exit(7),
        2 => std::process::abort(),
        _ => x * 2,
    }
}

/// The pids of this process's children.
pub(crate) fn children() -> Vec<i32> {
    let me = std::process::id();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{me}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// Every 15 ms until `done`, sends SIGKILL, SIGSEGV or SIGABRT to a random child (a worker);
/// returns how many it sent. `seed` picks the victims and signals.
pub(crate) fn chaos(done: &AtomicBool, mut seed: u64) -> usize {
    let signals = [libc::SIGKILL, libc::SIGSEGV, libc::SIGABRT];
    let mut kills = 0;
    loop {
        std::thread::sleep(Duration::from_millis(15));
        if done.load(Ordering::SeqCst) {
            return kills;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let victims = children();
        if let Some(&pid) = victims.get(seed as usize % victims.len().max(1)) {
            // SAFETY: plain system call on a child of this process, a pool worker.
            unsafe { libc::kill(pid, signals[(seed >> 32) as usize % signals.len()]) };
            kills += 1;
        }
    }
}

/// The body of [`a_map_under_chaos_ends_every_task_exactly_once`], in a process of its own.
#[process_fn]
fn a_map_under_chaos_ends_every_task_exactly_once_alone() {
    const TASKS: u64 = 100_000;
    let pool = Pool::new(2).unwrap();
    let done = AtomicBool::new(false);
    let (results, kills) = std::thread::scope(|scope| {
        let chaos = scope.spawn(|| chaos(&done, 0x2545_f491_4f6c_dd1d));
        let results: Vec<_> = pool
            .with(&CallOptions::new().chunksize(50))
            .imap(double_or_die, 0..TASKS)
            .collect();
        done.store(true, Ordering::SeqCst);
        (results, chaos.join().unwrap())
    });

    assert_eq!(results.len() as u64, TASKS, "a task was lost or duplicated");
    let mut failed = 0;
    for (x, result) in results.iter().enumerate() {
        match result {
            Ok(value) => assert_eq!(*value, 2 * x as u64, "task {x}"),
            Err(error) => {
                assert!(error.is_died(), "task {x}: {error}");
                failed += 1;
            }
        }
    }
    // The tasks that end their worker on purpose always fail.
    assert!(failed >= 2 * (TASKS / 10_007) as usize, "{failed} failed");
    assert!(kills > 0, "the chaos thread never found a worker");
    eprintln!("{TASKS} tasks, {kills} workers killed from outside, {failed} tasks failed");
    // Healthy after: every worker answers.
    assert_eq!(
        pool.map(double_or_die, 3..8).unwrap(),
        vec![6, 8, 10, 12, 14]
    );
    drop(pool);
    assert!(
        children().is_empty(),
        "workers left behind: {:?}",
        children()
    );
}

/// The chaos map, again and again for `MP_SOAK_SECONDS` (default 600):
/// `cargo test --release --test it alone::chaos::soak -- --ignored --nocapture`. Prints what it did.
/// The body of [`soak`], in a process of its own.
#[process_fn]
fn soak_alone() {
    let seconds: u64 = std::env::var("MP_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    let pool = Pool::builder().processes(2).retries(1).build().unwrap();
    let (mut tasks, mut failed, mut kills, mut rounds) = (0u64, 0u64, 0usize, 0u64);
    while std::time::Instant::now() < deadline {
        let done = AtomicBool::new(false);
        let start = rounds * 100_000;
        let (results, killed) = std::thread::scope(|scope| {
            let chaos = scope.spawn(|| chaos(&done, 0x9e37_79b9_7f4a_7c15 ^ rounds));
            let results: Vec<_> = pool
                .with(&CallOptions::new().chunksize(50))
                .imap(double_or_die, start..start + 100_000)
                .collect();
            done.store(true, Ordering::SeqCst);
            (results, chaos.join().unwrap())
        });
        assert_eq!(
            results.len(),
            100_000,
            "round {rounds}: a task was lost or duplicated"
        );
        for (i, result) in results.iter().enumerate() {
            let x = start + i as u64;
            match result {
                Ok(value) => assert_eq!(*value, 2 * x),
                Err(error) => {
                    assert!(error.is_died(), "task {x}: {error}");
                    failed += 1;
                }
            }
        }
        tasks += 100_000;
        kills += killed;
        rounds += 1;
    }
    assert_eq!(
        pool.map(double_or_die, 3..8).unwrap(),
        vec![6, 8, 10, 12, 14]
    );
    drop(pool);
    let left = children();
    eprintln!(
        "soak: {seconds} s, {rounds} rounds, {tasks} tasks, {kills} workers killed from outside, \
         {failed} tasks failed (each with its error), 0 lost, {} children left",
        left.len()
    );
    assert!(left.is_empty(), "workers left behind: {left:?}");
}

/// Runs [`a_map_under_chaos_ends_every_task_exactly_once_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn a_map_under_chaos_ends_every_task_exactly_once() {
    crate::in_child(a_map_under_chaos_ends_every_task_exactly_once_alone);
}

/// Runs [`soak_alone`] in a child: what it changes or counts is that process's alone.
#[test]
#[ignore = "a soak of ten minutes; run it by name"]
fn soak() {
    crate::in_child(soak_alone);
}
