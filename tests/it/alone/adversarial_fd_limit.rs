//! A parent with no descriptor free (`RLIMIT_NOFILE` exhausted) that receives a
//! result of a mebibyte or more (it travels as a memfd) or a handle (a `Queue`): a prompt error
//! naming the descriptor limit, `terminate` + `join` prompt, `spawn!` not claiming "exited with
//! code 0", and the pool working again once descriptors are free. Each test runs in a child of
//! its own: the limit is process-wide. Resource exhaustion must give a clear error, never a
//! hang or a misleading one.

use crate::adversarial::bounded;

use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use mp_runtime::{Pool, Queue, process_fn, spawn};

use bounded::bounded;

/// Longer than any of these calls may take.
const LIMIT: Duration = Duration::from_secs(15);

/// Two mebibytes, after `ms` milliseconds.
#[process_fn]
fn large(ms: u64) -> Vec<u8> {
    std::thread::sleep(Duration::from_millis(ms));
    vec![7; 2 << 20]
}

#[process_fn]
fn new_queue() -> Queue<u8> {
    Queue::new().unwrap()
}

#[process_fn]
fn next(x: u64) -> u64 {
    x + 1
}

/// Lowers the soft descriptor limit and takes every descriptor left; restores both on drop.
struct Exhausted {
    old: libc::rlimit,
    held: Vec<File>,
}

impl Exhausted {
    fn new() -> Exhausted {
        let mut old = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
        // SAFETY: plain system calls with valid pointers.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut old), 0);
            let new = libc::rlimit {
                rlim_cur: (open + 64).min(old.rlim_max),
                rlim_max: old.rlim_max,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &new), 0);
        }
        let mut exhausted = Exhausted {
            old,
            held: Vec::new(),
        };
        exhausted.refill();
        exhausted
    }

    /// Takes every descriptor free again, until none has come free for a while: a case before
    /// may free some (a worker that was killed closes its channel; its replacement, failing to
    /// start, closes what it had opened), and each case must start at the limit.
    fn refill(&mut self) {
        let mut quiet = 0;
        for _ in 0..30 {
            let before = self.held.len();
            self.take_free();
            quiet = if self.held.len() == before {
                quiet + 1
            } else {
                0
            };
            if quiet == 3 {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn take_free(&mut self) {
        loop {
            match File::open("/dev/null") {
                Ok(file) => self.held.push(file),
                Err(error) => {
                    assert_eq!(error.raw_os_error(), Some(libc::EMFILE), "{error}");
                    break;
                }
            }
            assert!(self.held.len() < 10_000, "the limit did not take");
        }
    }
}

impl Drop for Exhausted {
    fn drop(&mut self) {
        self.held.clear();
        // SAFETY: plain system call restoring the limit read in `new`.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &self.old) };
    }
}

/// Whether an error's text names the descriptor limit.
fn names_the_limit(text: &str) -> bool {
    text.to_lowercase().contains("descriptor")
}

/// The body of [`results_that_need_a_descriptor_at_the_descriptor_limit`], in a process of its own.
#[process_fn]
fn results_that_need_a_descriptor_at_the_descriptor_limit_alone() {
    let pools: Vec<Arc<Pool>> = (0..3).map(|_| Arc::new(Pool::new(1).unwrap())).collect();
    for pool in &pools {
        assert_eq!(pool.apply(next, (1,)).unwrap(), 2);
    }
    // Started while descriptors are free; it answers once none is.
    let child = spawn!(large, 1500).unwrap();
    let mut failures = Vec::new();

    let mut exhausted = Exhausted::new();
    let p = pools[0].clone();
    match bounded("apply, 2 MiB result", LIMIT, move || {
        p.apply(large, (0,)).map(|v| v.len())
    }) {
        Ok(Err(error)) if names_the_limit(&error.to_string()) => {}
        Ok(other) => failures.push(format!("apply, 2 MiB result: {other:?}")),
        Err(why) => failures.push(why),
    }
    exhausted.refill();
    let p = pools[1].clone();
    match bounded("apply, a returned Queue", LIMIT, move || {
        p.apply(new_queue, ()).map(|_| ())
    }) {
        Ok(Err(error)) if names_the_limit(&error.to_string()) => {}
        Ok(other) => failures.push(format!("apply, a returned Queue: {other:?}")),
        Err(why) => failures.push(why),
    }
    exhausted.refill();
    let p = pools[2].clone();
    let pending = p.apply_async(large, (300,));
    std::thread::sleep(Duration::from_millis(1000));
    if let Err(why) = bounded("terminate + join at the limit", LIMIT, move || {
        p.terminate();
        p.join()
    }) {
        failures.push(why);
    }
    drop(pending);
    exhausted.refill();
    match bounded("spawn!, 2 MiB result", LIMIT, move || {
        child.join().map(|v| v.len())
    }) {
        Ok(Err(error)) => {
            let text = error.to_string();
            if text.contains("code 0") || !names_the_limit(&text) {
                failures.push(format!("spawn!: {text}"));
            }
        }
        Ok(Ok(len)) => failures.push(format!("spawn!: received {len} bytes at the limit?")),
        Err(why) => failures.push(why),
    }
    drop(exhausted);

    // Descriptors free again: the pools whose results failed work again. A replacement worker
    // started while none was free may fail the next task with why; the one after must run.
    for pool in &pools[..2] {
        let p = pool.clone();
        match bounded("the pool afterwards", LIMIT, move || {
            p.apply(next, (41,)).or_else(|_| p.apply(next, (41,)))
        }) {
            Ok(Ok(42)) => {}
            Ok(other) => failures.push(format!("the pool afterwards: {other:?}")),
            Err(why) => failures.push(why),
        }
    }
    for pool in pools {
        if let Err(why) = bounded("dropping a pool", LIMIT, move || drop(pool)) {
            failures.push(why);
        }
    }
    assert!(
        failures.is_empty(),
        "at the descriptor limit, {} failures:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// Runs [`results_that_need_a_descriptor_at_the_descriptor_limit_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn results_that_need_a_descriptor_at_the_descriptor_limit() {
    crate::in_child(results_that_need_a_descriptor_at_the_descriptor_limit_alone);
}
