//! Cancelling a map in progress: `IMap::cancel` and `AsyncResult::cancel` of a `map_async`
//! stop the queued tasks and kill the workers running theirs, which are replaced.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mp_runtime::{Pool, process_fn};
use mp_support::{is_running, wait_for};

const LONG: Duration = Duration::from_secs(60);

/// Marks that input `index` started (a file in `dir`), then naps `ms`; its worker's pid.
#[process_fn]
fn marked_nap((dir, index, ms): (PathBuf, usize, u64)) -> u32 {
    // Written whole, then named: a reader never sees half a marker.
    let part = dir.join(format!(".{index}"));
    std::fs::write(&part, std::process::id().to_string()).unwrap();
    std::fs::rename(part, dir.join(index.to_string())).unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

/// A fresh directory for the markers of one test.
fn marker_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mp-cancel-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The pids that wrote markers in `dir`, by input.
fn started(dir: &Path) -> Vec<(usize, u32)> {
    let mut marks: Vec<(usize, u32)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| !entry.file_name().to_str().unwrap().starts_with('.'))
        .map(|entry| {
            let index = entry.file_name().to_str().unwrap().parse().unwrap();
            let pid = std::fs::read_to_string(entry.path())
                .unwrap()
                .parse()
                .unwrap();
            (index, pid)
        })
        .collect();
    marks.sort();
    marks
}

/// Inputs for `marked_nap`: the first quick, the rest an hour long.
fn inputs(dir: &Path, n: usize) -> Vec<(PathBuf, usize, u64)> {
    (0..n)
        .map(|i| (dir.to_path_buf(), i, if i == 0 { 1 } else { 3_600_000 }))
        .collect()
}

/// Waits until the tasks marked in `dir` are `running` many beside the quick one, and returns
/// their pids.
fn running_pids(dir: &Path, running: usize) -> Vec<u32> {
    assert!(
        wait_for(LONG, || started(dir).len() == 1 + running),
        "{:?}",
        started(dir)
    );
    started(dir)
        .into_iter()
        .skip(1)
        .map(|(_, pid)| pid)
        .collect()
}

/// After a cancel: the killed workers exit, no queued task ever starts, and fresh workers
/// serve the pool.
fn assert_cancelled(pool: &Pool, dir: &Path, killed: &[u32]) {
    assert!(
        wait_for(LONG, || killed.iter().all(|&pid| !is_running(pid))),
        "workers {killed:?} still run their cancelled tasks"
    );
    let fresh = pool
        .map(
            marked_nap,
            [(dir.join("fresh"), 0, 0), (dir.join("fresh"), 1, 0)],
        )
        .unwrap_err();
    // `fresh` is not a directory: the task panics, which proves a worker ran it.
    assert!(fresh.is_panic(), "{fresh}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        started(dir).len(),
        1 + killed.len(),
        "a queued task ran after the cancel"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn cancelling_an_imap_kills_its_running_tasks_and_skips_the_queued_ones() {
    let dir = marker_dir("imap");
    let pool = Pool::new(2).unwrap();
    let mut naps = pool.imap_unordered(marked_nap, inputs(&dir, 8));
    naps.next().unwrap().unwrap();
    let killed = running_pids(&dir, 2);
    naps.cancel();
    assert!(naps.next().is_none());
    assert!(naps.next().is_none());
    assert_cancelled(&pool, &dir, &killed);
}

#[test]
fn cancelling_a_map_async_kills_its_running_tasks_and_skips_the_queued_ones() {
    let dir = marker_dir("map-async");
    let pool = Pool::new(2).unwrap();
    let pending = pool.map_async(marked_nap, inputs(&dir, 8));
    let killed = running_pids(&dir, 2);
    assert!(pending.cancel());
    assert!(pending.get_timeout(LONG).unwrap_err().is_cancelled());
    assert_cancelled(&pool, &dir, &killed);
}

#[test]
fn a_cancel_leaves_other_calls_to_finish() {
    let dir = marker_dir("others");
    let beside_dir = marker_dir("beside");
    let pool = Pool::new(3).unwrap();
    let naps = pool.map_async(marked_nap, inputs(&dir, 3));
    let killed = running_pids(&dir, 2);
    // On the third worker, beside the two the cancel kills.
    let beside = pool.apply_async(marked_nap, ((beside_dir.clone(), 0, 500),));
    assert!(wait_for(LONG, || started(&beside_dir).len() == 1));
    assert!(naps.cancel());
    let beside_pid = beside.get_timeout(LONG).unwrap();
    assert!(!killed.contains(&beside_pid));
    assert_eq!(
        started(&beside_dir),
        [(0, beside_pid)],
        "it ran once, to its end"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&beside_dir).unwrap();
}

#[test]
fn cancelling_what_has_finished_changes_nothing() {
    let pool = Pool::new(1).unwrap();
    let done = pool.map_async(marked_nap, Vec::<(PathBuf, usize, u64)>::new());
    assert_eq!(done.get_timeout(LONG).unwrap(), Vec::<u32>::new());
    assert!(!done.cancel());
    assert!(done.ready());
    let mut all = pool.imap(marked_nap, Vec::<(PathBuf, usize, u64)>::new());
    assert!(all.next().is_none());
    all.cancel();
    assert!(all.next().is_none());
}
