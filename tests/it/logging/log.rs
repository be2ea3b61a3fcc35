//! An `env_logger` set up in `main` only, as a user sets it up, shows what tasks
//! log with `log` and with `tracing`, marked with the worker, filtered by the logger's own
//! filter, and before the caller has the task's result. It runs in a process of its own (a
//! `spawn!`ed child), where the logger is that process's, set up once.

use std::time::Duration;

use mp_runtime::{Pool, process_fn};
use mp_support::Captured;

/// Logs through both libraries, at levels the parent shows and one it does not.
#[process_fn]
fn work(x: u32) -> u32 {
    log::info!("log info from task {x}");
    log::debug!("log debug from task {x}");
    tracing::warn!(x, "tracing warn from a task");
    x + 1
}

mod quiet {
    /// Logs at info from a module whose info the parent's filter hides.
    #[mp_runtime::process_fn]
    pub fn chatter(x: u32) -> u32 {
        log::info!("quiet module info {x}");
        log::warn!("quiet module warn {x}");
        x
    }
}

/// A message longer than one record may be: it arrives cut, and says so.
#[process_fn]
fn shout(len: usize) -> usize {
    log::info!("long: {}", "a".repeat(len));
    len
}

/// The scenario, in a process of its own (see [`a_logger_set_up_in_the_parent_shows_what_tasks_log`]).
#[process_fn]
fn scenario() {
    // Every wait below is bounded by this: a hang fails the test instead of stalling CI.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(120));
        eprintln!("logging::log: still running after 120 s");
        std::process::exit(1);
    });
    let captured = Captured::default();
    env_logger::Builder::new()
        .parse_filters("info,it::logging::log::quiet=warn")
        .target(env_logger::Target::Pipe(Box::new(captured.clone())))
        .init();

    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.map(work, [1, 2, 3]).unwrap(), [2, 3, 4]);
    assert_eq!(pool.apply(quiet::chatter, (5,)).unwrap(), 5);
    assert_eq!(pool.apply(shout, (200_000,)).unwrap(), 200_000);
    // Read at once: what a task logged is passed on before its result is delivered.
    let text = captured.text();
    let worker_lines = |needle: &str| -> Vec<&str> {
        text.lines()
            .filter(|line| line.contains(needle))
            .collect::<Vec<_>>()
    };
    for x in 1..=3 {
        for needle in [
            format!("log info from task {x}"),
            format!("tracing warn from a task x={x}"),
        ] {
            let lines = worker_lines(&needle);
            assert_eq!(lines.len(), 1, "{needle:?} once in:\n{text}");
            assert!(
                lines[0].contains("[SpawnPoolWorker-") && lines[0].contains("it::logging::log"),
                "not marked with the worker, or the target is lost: {}",
                lines[0]
            );
        }
    }
    assert!(
        !text.contains("debug from task"),
        "the logger's level (info) is not honoured:\n{text}"
    );
    assert_eq!(worker_lines("quiet module warn 5").len(), 1, "{text}");
    assert!(
        worker_lines("quiet module info").is_empty(),
        "a target the logger's filter hides was shown:\n{text}"
    );
    let long = worker_lines("long: aaa");
    assert_eq!(long.len(), 1, "the long record is lost");
    assert!(
        long[0].contains("more bytes cut by mp") && long[0].len() > 60_000,
        "the long record is not cut as it says: {} bytes",
        long[0].len()
    );
    pool.close();
    pool.join().unwrap();
}

/// Runs [`scenario`] in a child process: a logger is set up once for a whole process.
#[test]
fn a_logger_set_up_in_the_parent_shows_what_tasks_log() {
    crate::in_child(scenario);
}
