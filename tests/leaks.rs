//! Thousands of spawns and pool tasks with handles leave nothing behind: no zombie, no open
//! descriptor, no memory beyond noise, no file in /dev/shm. Alone in its binary, so that the
//! descriptors and children counted are this test's.
//!
//! The default run does 1,000 of each; the full 10,000 runs with
//! `cargo test --release --test leaks -- --ignored`.

use std::time::Duration;

use mp_runtime::{Connection, Pool, Queue, process_fn, spawn};
use mp_support::zombie_children;

const LONG: Duration = Duration::from_secs(60);

#[process_fn]
fn add_one(x: u64) -> u64 {
    x + 1
}

/// A task with handles among its arguments: answers through both.
#[process_fn]
fn answer(x: u64, conn: Connection<u64>, queue: Queue<u64>) -> u64 {
    conn.send(&(x * 2)).unwrap();
    queue.put(&(x * 3)).unwrap();
    x
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Resident memory, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn shm_entries() -> Vec<String> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.contains(&me) || name.contains("mp"))
                .collect()
        })
        .unwrap_or_default()
}

fn spawns_and_tasks(n: u64) {
    let round = |count: u64| {
        for i in 0..count {
            let mut p = spawn!(add_one, i).unwrap();
            assert_eq!(p.join_timeout(LONG).unwrap(), i + 1);
        }
        let pool = Pool::new(2).unwrap();
        let queue = Queue::new().unwrap();
        // In batches, so that the pipes open at once stay well under the descriptor limit.
        for batch in (0..count).collect::<Vec<_>>().chunks(100) {
            let (ours, args): (Vec<_>, Vec<_>) = batch
                .iter()
                .map(|&i| {
                    let (ours, theirs) = mp_runtime::pipe::<u64>().unwrap();
                    (ours, (i, theirs, queue.clone()))
                })
                .unzip();
            assert_eq!(pool.starmap(answer, args).unwrap(), batch);
            for (conn, &i) in ours.iter().zip(batch) {
                assert_eq!(conn.recv_timeout(LONG).unwrap(), i * 2);
            }
            for _ in batch {
                queue.get_timeout(LONG).unwrap();
            }
        }
        pool.close();
        pool.join().unwrap();
    };
    // Warm-up: lazily built tables, the allocator's arenas, the first worker threads.
    round(20);
    let (fds, rss, shm) = (open_fds(), rss_kib(), shm_entries());
    let started = std::time::Instant::now();
    round(n);
    let (fds_after, rss_after, shm_after) = (open_fds(), rss_kib(), shm_entries());
    println!(
        "{n} spawns and {n} pool tasks with a pipe and a queue each in {:.1} s: descriptors \
         {fds} -> {fds_after}, RSS {rss} -> {rss_after} KiB, zombies {:?}",
        started.elapsed().as_secs_f64(),
        zombie_children()
    );
    assert!(zombie_children().is_empty(), "{:?}", zombie_children());
    assert_eq!(fds_after, fds, "descriptors leaked");
    assert!(
        rss_after < rss + 20 * 1024,
        "RSS grew from {rss} to {rss_after} KiB"
    );
    assert_eq!(shm_after, shm, "files left in /dev/shm");
}

#[test]
fn a_thousand_spawns_and_tasks_leave_nothing_behind() {
    spawns_and_tasks(1_000);
}

#[test]
#[ignore = "about 30 s: cargo test --release --test leaks -- --ignored"]
fn ten_thousand_spawns_and_tasks_leave_nothing_behind() {
    spawns_and_tasks(10_000);
}
