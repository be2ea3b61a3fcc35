//! `pool_map!`'s shared pools retire their workers when unused and start them again (as loky's
//! reusable executor does), so an idle program holds no processes. A file of its own: the idle
//! timeout is program-wide.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mp_runtime::{pool_map, process_fn};
use mp_support::is_running;

#[process_fn]
fn pid_after(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

#[test]
fn idle_shared_pools_are_retired_and_started_again() {
    mp_runtime::set_shared_pool_idle_timeout(Duration::from_millis(300));
    // A map that takes longer than the idle timeout is not cut short: the pool is in use.
    let first: HashSet<u32> = pool_map!(pid_after, [600, 600], processes = 2)
        .unwrap()
        .into_iter()
        .collect();
    assert!(first.iter().all(|&pid| pid != std::process::id()));

    let deadline = Instant::now() + Duration::from_secs(60);
    while first.iter().any(|&pid| is_running(pid)) {
        assert!(
            Instant::now() < deadline,
            "idle workers {first:?} still run"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let second: HashSet<u32> = pool_map!(pid_after, [0, 0, 0, 0], processes = 2)
        .unwrap()
        .into_iter()
        .collect();
    assert!(first.is_disjoint(&second), "{first:?} {second:?}");
    assert!(second.iter().all(|&pid| is_running(pid)), "started again");

    // Kept for the life of the program when asked.
    mp_runtime::set_shared_pool_idle_timeout(Duration::MAX);
    let third: HashSet<u32> = pool_map!(pid_after, [0, 0], processes = 3)
        .unwrap()
        .into_iter()
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(third.iter().all(|&pid| is_running(pid)));
}
