//! A parent that dies takes all its children with it, whichever way they were started, and a
//! child started from a thread that then ends does not die with that thread.

use std::time::{Duration, Instant};

use mp_runtime::{
    Pool, Process, Queue, StartMethod, active_children, process_fn, set_start_method, spawn,
};
use mp_support::{is_running, unlisted_children, wait_for};

const LONG: Duration = Duration::from_secs(60);

#[process_fn]
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Starts a child of its own and reports that grandchild's pid.
#[process_fn]
fn with_grandchild(pids: Queue<u32>) {
    let grandchild = spawn!(sleep_ms, 120_000).unwrap();
    pids.put(&grandchild.pid()).unwrap();
    grandchild.join().unwrap();
}

/// Starts one of each kind of child, reports all their pids, then waits to be killed.
#[process_fn]
fn family(pids: Queue<u32>) {
    let pool = Pool::new(2).unwrap();
    let _busy = pool.apply_async(sleep_ms, (120_000,));
    let _lone = spawn!(sleep_ms, 120_000).unwrap();
    let _parent = spawn!(with_grandchild, pids.clone()).unwrap();

    let forked_pool = Pool::builder()
        .processes(2)
        .start_method(StartMethod::ForkServer)
        .build()
        .unwrap();
    let _forked_busy = forked_pool.apply_async(sleep_ms, (120_000,));
    set_start_method(StartMethod::ForkServer);
    let _forked = spawn!(sleep_ms, 120_000).unwrap();
    // The zygote, and the child it forks ahead of time for the next start: this process's
    // too, and as bound to die with it.
    assert!(wait_for(LONG, || unlisted_children().len() == 2));

    for child in active_children() {
        pids.put(&child.pid()).unwrap();
    }
    for pid in unlisted_children() {
        pids.put(&pid).unwrap();
    }
    pids.put(&0).unwrap();
    std::thread::sleep(Duration::from_secs(120));
}

/// The body of [`killing_the_parent_ends_every_child_within_seconds`], in a process of its own.
#[process_fn]
fn killing_the_parent_ends_every_child_within_seconds_alone() {
    let pids = Queue::new().unwrap();
    let mut parent: Process<()> = spawn!(family, pids.clone()).unwrap();
    let mut family = Vec::new();
    // Four pool workers, a lone process, a process with a child, a forked one, the zygote, its
    // spare, and the grandchild (reported when it starts), then the end marker 0.
    while family.len() < 11 {
        family.push(pids.get_timeout(LONG).unwrap());
    }
    family.retain(|&pid| pid != 0);
    assert_eq!(family.len(), 10, "{family:?}");
    assert!(family.iter().all(|&pid| is_running(pid)), "{family:?}");

    parent.kill().unwrap();
    let killed = Instant::now();
    let gone = wait_for(Duration::from_secs(10), || {
        family.iter().all(|&pid| !is_running(pid))
    });
    let left: Vec<u32> = family.iter().copied().filter(|&p| is_running(p)).collect();
    assert!(gone, "still running 10 s after their parent died: {left:?}");
    eprintln!(
        "all {} descendants gone {:?} after the parent was killed",
        family.len(),
        killed.elapsed()
    );
}

/// Starts a child (and, under the fork server, the zygote) from a thread that ends at once.
#[process_fn]
fn start_from_ending_thread(fork_server: bool) -> (u64, u64) {
    if fork_server {
        set_start_method(StartMethod::ForkServer);
    }
    let p = std::thread::spawn(|| spawn!(sleep_ms, 300).unwrap())
        .join()
        .unwrap();
    let first = p.join().unwrap();
    // The zygote, if any, is still there too.
    (first, spawn!(sleep_ms, 1).unwrap().join().unwrap())
}

/// The body of [`a_child_outlives_the_thread_that_started_it`], in a process of its own.
#[process_fn]
fn a_child_outlives_the_thread_that_started_it_alone() {
    let p = std::thread::spawn(|| spawn!(sleep_ms, 300).unwrap())
        .join()
        .unwrap();
    assert_eq!(p.join().unwrap(), 300);
    for fork_server in [false, true] {
        let p = spawn!(start_from_ending_thread, fork_server).unwrap();
        assert_eq!(p.join().unwrap(), (300, 1), "fork server: {fork_server}");
    }
}

/// Runs [`killing_the_parent_ends_every_child_within_seconds_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn killing_the_parent_ends_every_child_within_seconds() {
    crate::in_child(killing_the_parent_ends_every_child_within_seconds_alone);
}

/// Runs [`a_child_outlives_the_thread_that_started_it_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn a_child_outlives_the_thread_that_started_it() {
    crate::in_child(a_child_outlives_the_thread_that_started_it_alone);
}
