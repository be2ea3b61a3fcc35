//! Fresh worker processes after a set number of tasks: `max_tasks_per_child`, for tasks that
//! leak memory or other resources.
//!
//! Run with `cargo run --example max_tasks_per_child`. One worker, replaced after every two
//! tasks: each task returns the pid of the process that ran it, and the pids change every two
//! tasks. Exits non-zero if they do not.

use mp_runtime::{CallOptions, Pool, process_fn};

#[process_fn]
fn worker_pid(task: u32) -> (u32, u32) {
    (task, std::process::id())
}

fn main() -> mp_runtime::Result<()> {
    let pool = Pool::builder()
        .processes(1)
        .max_tasks_per_child(2)
        .build()?;

    // Chunks of one input, so each input is one task (a chunk counts as one task).
    let results = pool
        .with(&CallOptions::new().chunksize(1))
        .map(worker_pid, 0..6)?;
    for (task, pid) in &results {
        println!("task {task} ran in process {pid}");
    }

    let pids: Vec<u32> = results.iter().map(|&(_, pid)| pid).collect();
    for task in 1..pids.len() {
        let (before, now) = (pids[task - 1], pids[task]);
        if task % 2 == 1 {
            assert_eq!(
                before,
                now,
                "tasks {} and {task} should share a worker: {pids:?}",
                task - 1
            );
        } else {
            assert_ne!(
                before, now,
                "a fresh worker should run task {task}: {pids:?}"
            );
        }
    }
    let parent = std::process::id();
    assert!(
        pids.iter().all(|&pid| pid != parent),
        "tasks run in workers: {pids:?}"
    );
    Ok(())
}
