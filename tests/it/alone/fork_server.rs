//! The fork-server start method: the same behaviour as `Spawn`, exit codes and signals
//! included. Every test here sets the process-wide start method, and so runs in a child of
//! its own.

use std::time::Duration;

use mp_runtime::{
    CallOptions, Event, Pool, Process, RLock, StartMethod, active_children, parent_process,
    process_fn, set_start_method, spawn,
};
use mp_support::tasks::{abort, exit_with, sleep_ms};
use mp_support::{is_running, unlisted_children, wait_for, zombie_children};

const LONG: Duration = Duration::from_secs(30);

fn fork_server() {
    set_start_method(StartMethod::ForkServer);
}

#[process_fn]
fn negate(x: i64) -> i64 {
    -x
}

#[process_fn]
fn fail_with(message: String) -> u8 {
    panic!("{message}");
}

#[process_fn]
fn parent_pid() -> Option<u32> {
    parent_process().map(|p| p.pid())
}

/// The body of [`spawn_and_join`], in a process of its own.
#[process_fn]
fn spawn_and_join_alone() {
    fork_server();
    assert_eq!(spawn!(negate, 5).unwrap().join().unwrap(), -5);
    let p = spawn!(parent_pid).unwrap();
    // The zygote forks it as this process's own child, so this process waits for it directly.
    assert_eq!(mp_support::parent_of(p.pid()), Some(std::process::id()));
    assert_eq!(p.join().unwrap(), Some(std::process::id()));
}

/// The body of [`a_panic_comes_back_with_message_and_location`], in a process of its own.
#[process_fn]
fn a_panic_comes_back_with_message_and_location_alone() {
    fork_server();
    let err = spawn!(fail_with, "bad input 7".to_string())
        .unwrap()
        .join()
        .unwrap_err();
    assert!(err.is_panic(), "{err}");
    assert_eq!(err.panic_message(), Some("bad input 7"));
    assert!(err.panic_location().unwrap().file() == "tests/it/alone/fork_server.rs");
}

/// The body of [`a_child_that_dies_reports_how`], in a process of its own.
#[process_fn]
fn a_child_that_dies_reports_how_alone() {
    fork_server();
    let err = spawn!(abort).unwrap().join().unwrap_err();
    assert!(err.is_died(), "{err}");
    assert_eq!(err.signal(), Some(libc::SIGABRT));

    let mut p = spawn!(exit_with, 3).unwrap();
    let err = p.join_timeout(LONG).unwrap_err();
    assert_eq!(err.exit_code(), Some(3), "{err}");
    assert_eq!(p.exit_code(), Some(3));

    let mut p = spawn!(sleep_ms, 60_000).unwrap();
    // SAFETY: plain system call on a child that is not reaped yet (we have not joined it).
    assert_eq!(unsafe { libc::kill(p.pid() as i32, libc::SIGKILL) }, 0);
    let err = p.join_timeout(LONG).unwrap_err();
    assert_eq!(err.signal(), Some(libc::SIGKILL), "{err}");
    assert_eq!(p.exit_code(), Some(-libc::SIGKILL));
}

/// The body of [`kill_terminate_and_join_timeout`], in a process of its own.
#[process_fn]
fn kill_terminate_and_join_timeout_alone() {
    fork_server();
    let mut p = spawn!(sleep_ms, 60_000).unwrap();
    assert!(p.is_alive());
    assert!(active_children().iter().any(|c| c.pid() == p.pid()));
    p.kill().unwrap();
    assert!(!p.is_alive());
    assert_eq!(p.exit_code(), Some(-libc::SIGKILL));
    assert!(!active_children().iter().any(|c| c.pid() == p.pid()));
    assert_eq!(p.join().unwrap_err().signal(), Some(libc::SIGKILL));

    let mut p = spawn!(sleep_ms, 60_000).unwrap();
    p.terminate().unwrap();
    assert_eq!(p.join().unwrap_err().signal(), Some(libc::SIGTERM));

    let mut p = spawn!(sleep_ms, 300).unwrap();
    let err = p.join_timeout(Duration::from_millis(10)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(p.join_timeout(LONG).unwrap(), 300);
    assert_eq!(p.exit_code(), Some(0));
}

#[process_fn]
fn die_on(bad: u64, x: u64) -> u64 {
    if x == bad {
        std::process::abort();
    }
    x * x * x
}

/// The body of [`a_pool_survives_a_worker_crash`], in a process of its own.
#[process_fn]
fn a_pool_survives_a_worker_crash_alone() {
    let pool = Pool::builder()
        .start_method(StartMethod::ForkServer)
        .processes(2)
        .build()
        .unwrap();
    let err = pool.starmap(die_on, (0..20).map(|x| (7, x))).unwrap_err();
    assert_eq!(err.signal(), Some(libc::SIGABRT), "{err}");
    let out = pool.starmap(die_on, (0..20).map(|x| (99, x))).unwrap();
    assert_eq!(out, (0..20).map(|x| x * x * x).collect::<Vec<_>>());
    let names: Vec<String> = active_children()
        .into_iter()
        .map(|c| c.name().to_string())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("ForkServerPoolWorker-")),
        "{names:?}"
    );
}

/// The body of [`max_tasks_per_child_forks_fresh_workers`], in a process of its own.
#[process_fn]
fn max_tasks_per_child_forks_fresh_workers_alone() {
    #[process_fn]
    fn pid(_: u32) -> u32 {
        std::process::id()
    }
    let pool = Pool::builder()
        .start_method(StartMethod::ForkServer)
        .processes(1)
        .max_tasks_per_child(1)
        .build()
        .unwrap();
    let pids = pool
        .with(&CallOptions::new().chunksize(1))
        .map(pid, 0..4)
        .unwrap();
    assert_eq!(
        pids.iter().collect::<std::collections::HashSet<_>>().len(),
        4
    );
}

#[process_fn]
fn child_spawns_grandchild(x: i64) -> (u32, i64) {
    // A forked child starts its own zygote for its own children.
    set_start_method(StartMethod::ForkServer);
    let grandchild = spawn!(negate, x).unwrap();
    (std::process::id(), grandchild.join().unwrap())
}

/// The body of [`a_forked_child_can_start_its_own_children`], in a process of its own.
#[process_fn]
fn a_forked_child_can_start_its_own_children_alone() {
    fork_server();
    let p = spawn!(child_spawns_grandchild, 8).unwrap();
    let pid = p.pid();
    assert_eq!(p.join().unwrap(), (pid, -8));
}

/// The body of [`a_hundred_spawns_leave_no_zombie`], in a process of its own.
#[process_fn]
fn a_hundred_spawns_leave_no_zombie_alone() {
    fork_server();
    let mut pids = Vec::new();
    for i in 0..100 {
        let p = spawn!(negate, i).unwrap();
        pids.push(p.pid());
        if i % 2 == 0 {
            assert_eq!(p.join().unwrap(), -i);
        }
        // Odd ones are dropped unjoined: they are reaped in the background.
    }
    let gone = wait_for(LONG, || pids.iter().all(|pid| !is_running(*pid)));
    assert!(gone, "still running");
    // A child dropped unjoined is reaped by a thread of its own, a moment after it ends.
    let reaped = wait_for(LONG, || zombie_children().is_empty());
    assert!(reaped, "{:?}", zombie_children());
}

/// Runs in a child of its own, so that killing its zygote cannot touch the other tests'.
#[process_fn]
fn kill_the_zygote_mid_wait() {
    fork_server();
    let mut p: Process<u64> = spawn!(sleep_ms, 300).unwrap();
    // The zygote, then the spare it forks after `p`.
    assert!(wait_for(LONG, || unlisted_children().len() >= 2));
    let unlisted = unlisted_children();
    let [zygote, spares @ ..] = &unlisted[..] else {
        panic!("no zygote among {unlisted:?}");
    };
    assert!(!spares.is_empty(), "no spare among {unlisted:?}");
    // SAFETY: plain system call on the zygote, a child of ours not reaped yet.
    assert_eq!(unsafe { libc::kill(*zygote as i32, libc::SIGKILL) }, 0);
    // Its children are this process's: the one at work ends as it would have.
    assert_eq!(p.join_timeout(LONG).unwrap(), 300);
    // The zygote is reaped, and so is the spare it left: no zombie stays behind.
    let cleared = wait_for(LONG, || {
        !spares.iter().any(|pid| is_running(*pid)) && zombie_children().is_empty()
    });
    assert!(cleared, "left behind: {:?}", zombie_children());
    // The next start brings a new zygote.
    let q = spawn!(negate, 1).unwrap();
    assert_eq!(q.join().unwrap(), -1);
    assert!(!unlisted_children().contains(zygote));
}

/// The body of [`a_dead_zygote_leaves_its_children_running_and_no_zombie`], in a process of its own.
#[process_fn]
fn a_dead_zygote_leaves_its_children_running_and_no_zombie_alone() {
    fork_server();
    spawn!(kill_the_zygote_mid_wait).unwrap().join().unwrap();
}

#[process_fn]
fn hold_rlock(rlock: RLock, holding: Event) {
    let guard = rlock.acquire().unwrap();
    holding.set().unwrap();
    std::thread::sleep(Duration::from_secs(600));
    drop(guard);
}

#[process_fn]
fn try_rlock(rlock: RLock) -> bool {
    rlock.try_acquire().unwrap().is_some()
}

// Children forked from one zygote are distinct lock owners, and one that dies holding a lock
// is seen to: the C library's thread id and robust-mutex list are the child's own.
/// The body of [`forked_children_own_locks_as_themselves`], in a process of its own.
#[process_fn]
fn forked_children_own_locks_as_themselves_alone() {
    fork_server();
    let rlock = RLock::new().unwrap();
    let holding = Event::new().unwrap();
    let mut holder = spawn!(hold_rlock, rlock.clone(), holding.clone()).unwrap();
    assert!(holding.wait_timeout(LONG).unwrap());
    assert!(!spawn!(try_rlock, rlock.clone()).unwrap().join().unwrap());
    holder.kill().unwrap();
    let err = rlock.acquire_timeout(Duration::from_secs(10)).unwrap_err();
    assert!(err.is_owner_died(), "{err}");
}

/// The body of [`a_dropped_pool_leaves_no_zombie`], in a process of its own.
#[process_fn]
fn a_dropped_pool_leaves_no_zombie_alone() {
    let pool = Pool::builder()
        .start_method(StartMethod::ForkServer)
        .processes(2)
        .max_tasks_per_child(1)
        .build()
        .unwrap();
    assert_eq!(
        pool.map(negate, 0..6).unwrap(),
        (0..6).map(|x| -x).collect::<Vec<_>>()
    );
    // Only the pool's workers are counted: the fork server is a child too.
    let workers: Vec<u32> = active_children()
        .iter()
        .filter(|c| c.name().starts_with("ForkServerPoolWorker-"))
        .map(|c| c.pid())
        .collect();
    drop(pool);
    let gone = wait_for(LONG, || {
        !workers.iter().any(|pid| is_running(*pid)) && zombie_children().is_empty()
    });
    assert!(gone, "left behind: {:?}", zombie_children());
}

/// Runs [`spawn_and_join_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn spawn_and_join() {
    crate::in_child(spawn_and_join_alone);
}

/// Runs [`a_panic_comes_back_with_message_and_location_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn a_panic_comes_back_with_message_and_location() {
    crate::in_child(a_panic_comes_back_with_message_and_location_alone);
}

/// Runs [`a_child_that_dies_reports_how_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn a_child_that_dies_reports_how() {
    crate::in_child(a_child_that_dies_reports_how_alone);
}

/// Runs [`kill_terminate_and_join_timeout_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn kill_terminate_and_join_timeout() {
    crate::in_child(kill_terminate_and_join_timeout_alone);
}

/// Runs [`a_pool_survives_a_worker_crash_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn a_pool_survives_a_worker_crash() {
    crate::in_child(a_pool_survives_a_worker_crash_alone);
}

/// Runs [`max_tasks_per_child_forks_fresh_workers_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn max_tasks_per_child_forks_fresh_workers() {
    crate::in_child(max_tasks_per_child_forks_fresh_workers_alone);
}

/// Runs [`a_forked_child_can_start_its_own_children_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn a_forked_child_can_start_its_own_children() {
    crate::in_child(a_forked_child_can_start_its_own_children_alone);
}

/// Runs [`a_hundred_spawns_leave_no_zombie_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn a_hundred_spawns_leave_no_zombie() {
    crate::in_child(a_hundred_spawns_leave_no_zombie_alone);
}

/// Runs [`a_dead_zygote_leaves_its_children_running_and_no_zombie_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn a_dead_zygote_leaves_its_children_running_and_no_zombie() {
    crate::in_child(a_dead_zygote_leaves_its_children_running_and_no_zombie_alone);
}

/// Runs [`forked_children_own_locks_as_themselves_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn forked_children_own_locks_as_themselves() {
    crate::in_child(forked_children_own_locks_as_themselves_alone);
}

/// Runs [`a_dropped_pool_leaves_no_zombie_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn a_dropped_pool_leaves_no_zombie() {
    crate::in_child(a_dropped_pool_leaves_no_zombie_alone);
}
