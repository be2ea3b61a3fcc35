//! A pool's calls and answers travel through rings in memory that the parent shares with each
//! worker (`mp-runtime/src/wire/ring/README.md`). Here workers die in the middle of that
//! protocol, over and over, and tasks scribble over their own worker's rings: every task still
//! ends exactly once, with its own value or an error, the parent never crashes or reads out of
//! bounds, and the pool goes on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use mp_runtime::{CallOptions, Pool, process_fn};

use crate::adversarial::bounded::must;
use crate::alone::chaos::children;

/// Where the words and records of a worker's rings are in their memory file, as the README's
/// "Layout" gives them: each ring's `tail`, `head` and `sleeps` words, and its records.
const CALLS_HEAD: usize = 64;
pub(crate) const ANSWERS_TAIL: usize = 192;
const ANSWERS_HEAD: usize = 256;
const ANSWERS_SLEEPS: usize = 320;
pub(crate) const CAPACITY: usize = 256 << 10;
const ANSWERS_DATA: usize = 4096 + CAPACITY;
const FILE_LEN: usize = 4096 + 2 * CAPACITY;

/// This worker's mapping of its rings, found in `/proc/self/maps` by the memory file's name.
fn own_rings() -> *mut u8 {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps
        .lines()
        .find(|line| line.contains("memfd:mp-rings"))
        .expect("a pool's worker maps its rings");
    let start = line.split('-').next().unwrap();
    usize::from_str_radix(start, 16).unwrap() as *mut u8
}

/// The word at `offset` of this worker's rings.
pub(crate) fn word(offset: usize) -> &'static AtomicU64 {
    assert!(offset + 8 <= FILE_LEN && offset % 8 == 0);
    // SAFETY: the rings stay mapped for the worker's life, the offset is in the file and
    // aligned, and the worker itself reads these words only atomically.
    unsafe { &*own_rings().add(offset).cast::<AtomicU64>() }
}

/// Writes `bytes` into the answers' records at position `at` (wrapping), as a scribbler would.
pub(crate) fn write_answer_bytes(at: u64, bytes: &[u8]) {
    let rings = own_rings();
    for (i, &byte) in bytes.iter().enumerate() {
        let offset = ANSWERS_DATA + (at as usize + i) % CAPACITY;
        // SAFETY: in the answers' records, inside the mapping; a data race with the parent's
        // atomic reads is what this test is about, and only bytes move.
        unsafe { rings.add(offset).write_volatile(byte) };
    }
}

/// Every third task (counting from 1) starts writing its answer as the worker would (a header
/// that announces 64 bytes, and half of them) without publishing it, and dies: what a worker
/// killed in the middle of writing an answer leaves behind. The others double `x`.
#[process_fn]
fn die_writing_an_answer(x: u64) -> u64 {
    if x % 3 == 1 {
        let tail = word(ANSWERS_TAIL).load(Ordering::SeqCst);
        write_answer_bytes(tail, &64u64.to_le_bytes());
        write_answer_bytes(tail + 8, &[0xee; 32]);
        // SAFETY: plain system call ending this process.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    x * 2
}

// The half-written answer is never read: the task fails with its worker's death (the parent
// sees nothing published), the tasks sent behind it run again on a fresh worker, and the rest
// are answered whole, each once.
#[test]
fn an_answer_half_written_when_its_worker_dies_is_never_read() {
    let pool = Pool::new(2).unwrap();
    let results: Vec<_> = must("an imap whose workers die writing", move || {
        pool.imap(die_writing_an_answer, 0..300u64).collect()
    });
    assert_eq!(results.len(), 300);
    for (x, result) in results.iter().enumerate() {
        match result {
            Ok(value) if x % 3 != 1 => assert_eq!(*value, 2 * x as u64),
            Err(error) if x % 3 == 1 => assert!(error.is_died(), "task {x}: {error}"),
            other => panic!("task {x}: {other:?}"),
        }
    }
}

/// How a task breaks its worker's rings.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
enum Scribble {
    /// Publishes answers that were never written, as far as the end of memory.
    TailToTheEnd,
    /// Publishes a record that announces 3 GiB.
    HugeRecord,
    /// Publishes a record of a kind that does not exist.
    UnknownKind,
    /// Fills every word and byte of the answers' ring with ones.
    AllOnes,
    /// Says that the worker took calls that were never sent (the parent reads this word as it
    /// sends the next call).
    CallsHeadAhead,
    /// Says that the parent took answers that were never written (the worker reads this
    /// word as it answers).
    AnswersHeadAhead,
}

/// Breaks this worker's rings as `how` says, then ends the worker (so that its parent looks at
/// what it left), except where the break is found by the next send: the parent's to this
/// worker (`CallsHeadAhead`), or this worker's answer (`AnswersHeadAhead`).
#[process_fn]
fn scribble(how: Scribble) -> u64 {
    let tail = word(ANSWERS_TAIL).load(Ordering::SeqCst);
    match how {
        Scribble::TailToTheEnd => word(ANSWERS_TAIL).store(u64::MAX, Ordering::SeqCst),
        Scribble::HugeRecord => {
            write_answer_bytes(tail, &(3u64 << 30).to_le_bytes());
            word(ANSWERS_TAIL).store(tail + 64, Ordering::SeqCst);
        }
        Scribble::UnknownKind => {
            write_answer_bytes(tail, &(9u64 << 32 | 8).to_le_bytes());
            word(ANSWERS_TAIL).store(tail + 16, Ordering::SeqCst);
        }
        Scribble::AllOnes => {
            for offset in [ANSWERS_TAIL, ANSWERS_HEAD, ANSWERS_SLEEPS] {
                word(offset).store(u64::MAX, Ordering::SeqCst);
            }
            write_answer_bytes(0, &vec![0xff; CAPACITY]);
        }
        Scribble::CallsHeadAhead => {
            word(CALLS_HEAD).store(u64::MAX / 2, Ordering::SeqCst);
            return 7;
        }
        Scribble::AnswersHeadAhead => {
            word(ANSWERS_HEAD).store(u64::MAX, Ordering::SeqCst);
            return 7;
        }
    }
    std::process::exit(0)
}

#[process_fn]
fn double(x: u64) -> u64 {
    x * 2
}

// A task that breaks its worker's rings fails (or, having broken only what the next call
// finds, the next call to that worker fails), its worker is replaced, and the parent and every
// other task go on: no crash, no read outside the rings, nothing delivered twice.
#[test]
fn a_task_that_scribbles_over_its_rings_fails_and_the_pool_goes_on() {
    use Scribble::*;
    for how in [
        TailToTheEnd,
        HugeRecord,
        UnknownKind,
        AllOnes,
        CallsHeadAhead,
        AnswersHeadAhead,
    ] {
        let pool = Arc::new(Pool::new(1).unwrap());
        assert_eq!(pool.apply(double, (1,)).unwrap(), 2);
        let outcome = must("a scribbling task", {
            let pool = pool.clone();
            move || pool.apply(scribble, (how,))
        });
        match (how, outcome) {
            (CallsHeadAhead, Ok(7)) => {
                // The worker's next call cannot be sent: it fails, and the one after runs.
                let next = must("the call after", {
                    let pool = pool.clone();
                    move || pool.apply(double, (2,))
                });
                assert!(next.is_err(), "{how:?}: {next:?}");
            }
            (_, Err(error)) => {
                // The error with its causes: the reply that could not be received, and why.
                let mut text = error.to_string();
                let mut cause = std::error::Error::source(&error);
                while let Some(error) = cause {
                    text = format!("{text}: {error}");
                    cause = error.source();
                }
                assert!(
                    text.contains("corrupt") || error.is_died(),
                    "{how:?}: {text}"
                );
            }
            (_, other) => panic!("{how:?}: {other:?}"),
        }
        // A fresh worker answers, and a map runs whole.
        let pool2 = pool.clone();
        let after = must("the pool afterwards", move || pool2.map(double, 0..1000u64));
        assert_eq!(
            after.unwrap(),
            (0..1000).map(|x| 2 * x).collect::<Vec<_>>(),
            "{how:?}"
        );
    }
}

/// Sends its parent wake-ups (empty frames, which the parent's link skips) on every socket of
/// this worker, without end.
#[process_fn]
fn ring_for_ever() {
    let sockets: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|entry| {
            std::fs::read_link(entry.path())
                .is_ok_and(|to| to.to_string_lossy().starts_with("socket:"))
        })
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    loop {
        for &socket in &sockets {
            let doorbell = [0u8; 8];
            // SAFETY: plain system call on a descriptor of this process, from a live buffer.
            unsafe {
                libc::send(
                    socket,
                    doorbell.as_ptr().cast(),
                    doorbell.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
        }
    }
}

// A worker that sends nothing but wake-ups, which its parent skips, is still held to its
// task's time limit: killed, and the task fails with a timeout (without the parent's look at the
// deadline before each wait, it waited for ever).
#[test]
fn a_worker_that_only_rings_is_held_to_the_time_limit() {
    let pool = Arc::new(Pool::new(1).unwrap());
    let limited = CallOptions::new().timeout(Duration::from_millis(300));
    let outcome = must("a task that rings for ever", {
        let pool = pool.clone();
        move || pool.with(&limited).apply(ring_for_ever, ())
    });
    assert!(
        outcome.as_ref().is_err_and(|e| e.is_timeout()),
        "{outcome:?}"
    );
    assert_eq!(pool.apply(double, (4,)).unwrap(), 8);
}

#[process_fn]
fn own_pid(_: u64) -> u32 {
    std::process::id()
}

/// The processor time process `pid` has used, user and system, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

// Idle workers use no CPU: after a burst of tiny tasks, which every side spins between, a worker
// spins once, for at most 50 µs, and then sleeps until it is sent work. One that kept spinning
// would use a tick (10 ms) every 10 ms of the second measured.
#[test]
fn idle_workers_use_no_cpu() {
    let pool = Pool::new(2).unwrap();
    let pids: std::collections::BTreeSet<u32> = pool
        .with(&CallOptions::new().chunksize(1))
        .map(own_pid, 0..2000)
        .unwrap()
        .into_iter()
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let before: Vec<u64> = pids.iter().map(|&pid| cpu_ticks(pid)).collect();
    std::thread::sleep(Duration::from_secs(1));
    for (&pid, before) in pids.iter().zip(before) {
        let used = cpu_ticks(pid) - before;
        assert!(used <= 1, "idle worker {pid} used {used} ticks in a second");
    }
}

/// Until `done`, every 2 ms sends SIGKILL to a random child (a worker); returns how many.
fn kill_workers(done: &AtomicBool, mut seed: u64) -> usize {
    let mut kills = 0;
    loop {
        std::thread::sleep(Duration::from_millis(2));
        // Looked at after the sleep: no kill lands after the map it was for.
        if done.load(Ordering::SeqCst) {
            return kills;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let victims = children();
        if let Some(&pid) = victims.get(seed as usize % victims.len().max(1)) {
            // SAFETY: plain system call on a child of this process, a pool worker.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            kills += 1;
        }
    }
}

/// The body of [`workers_killed_at_any_point_of_the_ring_protocol_lose_no_answer`], in a process
/// of its own (every child of which is a worker of the pool under test).
#[process_fn]
fn workers_killed_at_any_point_of_the_ring_protocol_lose_no_answer_alone() {
    const TASKS: u64 = 20_000;
    let pool = Pool::new(2).unwrap();
    let done = AtomicBool::new(false);
    let (results, kills) = std::thread::scope(|scope| {
        let killer = scope.spawn(|| kill_workers(&done, 0x2545_f491_4f6c_dd1d));
        // One call per task, answered at once: the workers spend their time in the rings,
        // where the kills land.
        let results: Vec<_> = pool
            .with(&CallOptions::new().chunksize(1))
            .imap(double, 0..TASKS)
            .collect();
        done.store(true, Ordering::SeqCst);
        (results, killer.join().unwrap())
    });
    assert_eq!(
        results.len() as u64,
        TASKS,
        "a task was lost or delivered twice"
    );
    let mut failed = 0;
    for (x, result) in results.iter().enumerate() {
        match result {
            Ok(value) => assert_eq!(*value, 2 * x as u64, "task {x} was answered wrong"),
            Err(error) => {
                assert!(error.is_died(), "task {x}: {error}");
                failed += 1;
            }
        }
    }
    assert!(kills > 0, "no worker was killed");
    eprintln!("{TASKS} tasks, {kills} workers killed, {failed} tasks failed with their death");
    // The pool goes on (a kill sent as the map ended may fail one more task).
    let after = pool.map(double, 3..8).or_else(|_| pool.map(double, 3..8));
    assert_eq!(after.unwrap(), vec![6, 8, 10, 12, 14]);
    drop(pool);
    assert!(
        children().is_empty(),
        "workers left behind: {:?}",
        children()
    );
}

// Workers killed every 2 ms while tiny tasks stream through their rings: a kill lands while a
// worker writes an answer, reads a call, or sleeps on either, thousands of times over the
// suite's runs. No answer is lost, none is delivered twice or wrong, and the pool goes on.
#[test]
fn workers_killed_at_any_point_of_the_ring_protocol_lose_no_answer() {
    crate::in_child(workers_killed_at_any_point_of_the_ring_protocol_lose_no_answer_alone);
}
