//! A logger set up in `main` that panics on a record from a worker: that record is lost, and
//! nothing else is. The pool's thread that passed it on does not unwind, so the task's result
//! arrives, the records around it pass, and the pool goes on. It runs in a process of its own
//! (a `spawn!`ed child), where the logger is that process's, set up once.

use std::sync::Mutex;
use std::time::Duration;

use log::{Log, Metadata, Record};
use mp_runtime::{CallOptions, Pool, process_fn};

/// Keeps every record's text, and panics on one that says "boom".
struct Panicky {
    seen: Mutex<Vec<String>>,
}

impl Log for Panicky {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let text = record.args().to_string();
        assert!(!text.contains("boom"), "the logger fails on: {text}");
        self.seen.lock().unwrap().push(text);
    }

    fn flush(&self) {}
}

static LOGGER: Panicky = Panicky {
    seen: Mutex::new(Vec::new()),
};

/// Logs one record per call; the one for 3 makes the parent's logger panic.
#[process_fn]
fn say(x: u64) -> u64 {
    if x == 3 {
        log::info!("boom {x}");
    } else {
        log::info!("fine {x}");
    }
    x
}

/// The scenario, in a process of its own (see [`a_logger_that_panics_loses_that_record_only`]).
#[process_fn]
fn scenario() {
    // Every wait below is bounded by this: a hang fails the test instead of stalling CI.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(120));
        eprintln!("logging::panics: still running after 120 s");
        std::process::exit(1);
    });
    // The logger's panic is expected: kept off the test's output, every other panic shown.
    let shown = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains("the logger fails on") {
            shown(info);
        }
    }));
    log::set_logger(&LOGGER).unwrap();
    log::set_max_level(log::LevelFilter::Info);

    let pool = Pool::new(2).unwrap();
    assert_eq!(
        pool.with(&CallOptions::new().chunksize(1))
            .map(say, 0..8)
            .unwrap(),
        (0..8).collect::<Vec<_>>()
    );
    // The same pool goes on, and its records still reach the logger.
    assert_eq!(pool.apply(say, (8,)).unwrap(), 8);

    let seen = LOGGER.seen.lock().unwrap().clone();
    for x in (0..9).filter(|&x| x != 3) {
        let fine = format!("fine {x}");
        let lines: Vec<&String> = seen.iter().filter(|line| line.ends_with(&fine)).collect();
        assert_eq!(lines.len(), 1, "one record for {x} in {seen:#?}");
        assert!(lines[0].contains("PoolWorker-"), "marked: {}", lines[0]);
    }
    assert!(!seen.iter().any(|line| line.contains("boom")), "{seen:#?}");
}

/// Runs [`scenario`] in a child process: a logger is set up once for a whole process.
#[test]
fn a_logger_that_panics_loses_that_record_only() {
    crate::in_child(scenario);
}
