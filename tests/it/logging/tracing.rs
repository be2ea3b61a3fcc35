//! A `tracing` subscriber set up in `main` only, as a user sets it up, shows what
//! tasks log with `tracing` and with `log`, marked with the worker, filtered by the parent's
//! own filter, and before the caller has the task's result. It runs in a process of its own (a
//! `spawn!`ed child), where the subscriber is that process's, set up once.

use std::time::Duration;

use mp_runtime::{Pool, StartMethod, process_fn, spawn};
use mp_support::Captured;
use tracing_subscriber::EnvFilter;

/// Logs through both libraries, at levels the parent shows and one it does not.
#[process_fn]
fn work(x: u32) -> u32 {
    tracing::info!(x, "tracing info from a task");
    tracing::debug!("tracing debug from task {x}");
    log::warn!("log warn from task {x}");
    log::debug!("log debug from task {x}");
    let span = tracing::info_span!("job", number = x);
    let _inside = span.enter();
    tracing::info!("inside a span of task {x}");
    x * 2
}

mod quiet {
    /// Logs at info from a module whose info the parent's filter hides.
    #[mp_runtime::process_fn]
    pub fn chatter(x: u32) -> u32 {
        tracing::info!("quiet module info {x}");
        tracing::warn!("quiet module warn {x}");
        x
    }
}

/// Logs, then dies without a reply.
#[process_fn]
fn log_then_abort() {
    tracing::error!("last words before the abort");
    std::process::abort();
}

fn check(captured: &Captured, what: &str, needle: &str, worker: &str) {
    let lines = captured.lines_with(needle);
    assert!(
        !lines.is_empty(),
        "{what}: no line with {needle:?} in:\n{}",
        captured.text()
    );
    for line in &lines {
        assert!(
            line.contains(&format!("[{worker}")),
            "{what}: not marked with the worker ({worker}): {line}"
        );
        assert!(
            !line.contains(&format!(" {} ", std::process::id())),
            "{what}: marked with the parent's pid: {line}"
        );
    }
}

/// The scenario, in a process of its own (see [`a_subscriber_set_up_in_the_parent_shows_what_tasks_log`]).
#[process_fn]
fn scenario() {
    // Every wait below is bounded by this: a hang fails the test instead of stalling CI.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(120));
        eprintln!("logging::tracing: still running after 120 s");
        std::process::exit(1);
    });
    let captured = Captured::default();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("info,it::logging::tracing::quiet=warn"))
        .with_writer({
            let captured = captured.clone();
            move || captured.clone()
        })
        .with_ansi(false)
        .init();

    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.map(work, [1, 2, 3]).unwrap(), [2, 4, 6]);
    // Read at once: what a task logged is passed on before its result is delivered.
    for x in 1..=3 {
        let what = format!("pool task {x}");
        check(
            &captured,
            &what,
            "tracing info from a task x=",
            "SpawnPoolWorker-",
        );
        check(
            &captured,
            &what,
            &format!("log warn from task {x}"),
            "SpawnPoolWorker-",
        );
        check(
            &captured,
            &what,
            &format!("job{{number={x}}}: inside a span of task {x}"),
            "SpawnPoolWorker-",
        );
    }
    let text = captured.text();
    assert!(
        !text.contains("debug from task"),
        "the parent's level (info) is not honoured:\n{text}"
    );
    assert!(
        text.lines()
            .filter(|line| line.contains("tracing info from a task"))
            .all(|line| line.contains(" INFO ") && line.contains("it::logging::tracing")),
        "the level or the task's target is lost:\n{text}"
    );

    // The parent's per-target filter applies to the workers' records too.
    assert_eq!(pool.apply(quiet::chatter, (5,)).unwrap(), 5);
    check(
        &captured,
        "quiet module",
        "quiet module warn 5",
        "SpawnPoolWorker-",
    );
    assert!(
        captured.lines_with("quiet module info").is_empty(),
        "a target the parent's filter hides was shown:\n{}",
        captured.text()
    );

    // A worker that dies right after logging: the record is not lost with it.
    let error = pool.apply(log_then_abort, ()).unwrap_err();
    assert!(error.is_died(), "{error}");
    check(
        &captured,
        "a worker that aborts",
        "last words before the abort",
        "SpawnPoolWorker-",
    );
    pool.close();
    pool.join().unwrap();

    // A single process, and the fork server's workers.
    assert_eq!(spawn!(work, 7).unwrap().join().unwrap(), 14);
    check(&captured, "spawn!", "log warn from task 7", "Process-");
    let forked = Pool::builder()
        .processes(1)
        .start_method(StartMethod::ForkServer)
        .build()
        .unwrap();
    assert_eq!(forked.apply(work, (8,)).unwrap(), 16);
    check(
        &captured,
        "fork server",
        "log warn from task 8",
        "ForkServerPoolWorker-",
    );
}

/// Runs [`scenario`] in a child process: a logger is set up once for a whole process.
#[test]
fn a_subscriber_set_up_in_the_parent_shows_what_tasks_log() {
    crate::in_child(scenario);
}
