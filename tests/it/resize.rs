//! `Pool::resize`, `pool_map!`'s shared pool taking a new size, a pool's own environment
//! variables, and the depth limit of nested pools.

use std::collections::HashSet;
use std::time::Duration;

use mp_runtime::{Pool, StartMethod, pool_map, process_fn, spawn};
use mp_support::{is_running, wait_for};

const LONG: Duration = Duration::from_secs(60);

#[process_fn]
fn pid_after(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

#[process_fn]
fn square(x: u64) -> u64 {
    x * x
}

/// The pids of `n` tasks that each hold their worker for `ms`, so that `n` workers run one each.
fn pids_of(pool: &Pool, n: usize, ms: u64) -> HashSet<u32> {
    pool.map(pid_after, vec![ms; n])
        .unwrap()
        .into_iter()
        .collect()
}

#[test]
fn growing_starts_workers_that_take_work() {
    let pool = Pool::new(1).unwrap();
    pool.resize(3).unwrap();
    assert_eq!(pool.processes(), 3);
    assert_eq!(pids_of(&pool, 3, 400).len(), 3);
    assert_eq!(pool.map(square, 0..100).unwrap()[99], 99 * 99);
}

#[test]
fn shrinking_retires_idle_workers_first_and_lets_a_running_task_finish() {
    let pool = Pool::new(3).unwrap();
    let all = pids_of(&pool, 3, 300);
    assert_eq!(all.len(), 3);
    let busy = pool.apply_async(pid_after, (1500,));
    std::thread::sleep(Duration::from_millis(300)); // it runs
    pool.resize(1).unwrap();
    assert_eq!(pool.processes(), 1);
    let busy = busy.get_timeout(LONG).unwrap();
    let idle: Vec<u32> = all.iter().copied().filter(|&pid| pid != busy).collect();
    assert_eq!(idle.len(), 2);
    assert!(
        wait_for(LONG, || idle.iter().all(|&pid| !is_running(pid))),
        "the idle workers {idle:?} still run after the pool shrank to 1"
    );
    // The one left is the worker that was busy: it was not cut short, nor retired.
    assert_eq!(pids_of(&pool, 2, 0), HashSet::from([busy]));
}

#[test]
fn a_shrink_taken_back_before_any_worker_left_keeps_every_worker() {
    let pool = Pool::new(2).unwrap();
    let running = pool.map_async(pid_after, [800, 800]);
    std::thread::sleep(Duration::from_millis(200)); // both workers are busy
    pool.resize(1).unwrap();
    pool.resize(2).unwrap();
    assert_eq!(pool.processes(), 2);
    let before: HashSet<u32> = running.get_timeout(LONG).unwrap().into_iter().collect();
    assert_eq!(before.len(), 2);
    // No worker left and none was started: the same two serve on.
    assert_eq!(pids_of(&pool, 2, 300), before);
}

#[test]
fn queued_work_survives_a_shrink() {
    let pool = Pool::new(3).unwrap();
    let pending = pool.map_async(pid_after, vec![20; 60]);
    std::thread::sleep(Duration::from_millis(100));
    pool.resize(1).unwrap();
    assert_eq!(pending.get_timeout(LONG).unwrap().len(), 60);
    assert_eq!(pids_of(&pool, 3, 50).len(), 1);
}

#[test]
fn many_resizes_end_with_the_last_size_and_a_clean_join() {
    let pool = Pool::new(1).unwrap();
    let mut seen = HashSet::new();
    for size in [3, 1, 4, 2, 2, 5, 1, 3] {
        pool.resize(size).unwrap();
        assert_eq!(pool.processes(), size);
        seen.extend(pool.map(pid_after, vec![1; 8]).unwrap());
    }
    pool.close();
    pool.join_timeout(LONG).unwrap();
    assert!(
        wait_for(LONG, || seen.iter().all(|&pid| !is_running(pid))),
        "workers of a resized pool outlived its join"
    );
}

#[test]
fn resize_refuses_zero_and_a_closed_pool() {
    let pool = Pool::new(1).unwrap();
    let zero = pool.resize(0).unwrap_err();
    assert!(zero.to_string().contains("at least one"), "{zero}");
    assert_eq!(pool.processes(), 1);
    pool.close();
    assert!(pool.resize(2).unwrap_err().is_closed());
    pool.join_timeout(LONG).unwrap();
    let terminated = Pool::new(1).unwrap();
    terminated.terminate();
    assert!(terminated.resize(2).unwrap_err().is_closed());
}

/// In a child of its own: `pool_map!`'s shared pool is the whole process's.
#[test]
fn the_shared_pool_takes_a_new_size_with_the_workers_it_has() {
    super::in_child(shared_pool_takes_a_new_size);
}

#[process_fn]
fn shared_pool_takes_a_new_size() {
    let two: HashSet<u32> = pool_map!(pid_after, [300, 300], processes = 2)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(two.len(), 2);
    let three: HashSet<u32> = pool_map!(pid_after, [300, 300, 300], processes = 3)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(three.len(), 3);
    assert!(two.is_subset(&three), "{two:?} {three:?}");
    // Not 2 + 3 workers: one pool of 3.
    assert_eq!(mp_runtime::active_children().len(), 3);
    let one: HashSet<u32> = pool_map!(pid_after, [0, 0], processes = 1)
        .unwrap()
        .into_iter()
        .collect();
    assert!(one.is_subset(&three));
    assert!(
        wait_for(LONG, || mp_runtime::active_children().len() == 1),
        "{:?}",
        mp_runtime::active_children()
    );
}

#[process_fn]
fn var(name: String) -> Option<String> {
    std::env::var(&name).ok()
}

#[test]
fn a_pools_variables_reach_its_workers_only() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let pool = Pool::builder()
            .processes(1)
            .start_method(method)
            .env("MP_TEST_POOL_VAR", "first")
            .env("MP_TEST_POOL_VAR", "one")
            .env("MP_TEST_OTHER", "two words")
            .build()
            .unwrap();
        let names = ["MP_TEST_POOL_VAR", "MP_TEST_OTHER"].map(String::from);
        let got: Vec<_> = pool.map(var, names.clone()).unwrap();
        assert_eq!(got, [Some("one".into()), Some("two words".into())]);
        assert_eq!(std::env::var("MP_TEST_POOL_VAR").ok(), None);
        let plain = Pool::builder()
            .processes(1)
            .start_method(method)
            .build()
            .unwrap();
        assert_eq!(plain.map(var, names).unwrap(), [None, None]);
        // A replaced worker gets them too.
        let replaced = Pool::builder()
            .processes(1)
            .start_method(method)
            .max_tasks_per_child(1)
            .env("MP_TEST_POOL_VAR", "again")
            .build()
            .unwrap();
        let again = vec!["MP_TEST_POOL_VAR".to_string(); 3];
        assert_eq!(
            replaced.map(var, again).unwrap(),
            vec![Some("again".into()); 3]
        );
    }
}

#[test]
fn variables_no_worker_can_be_given_are_refused_at_build() {
    for (name, value, why) in [
        ("", "x", "is empty"),
        ("A=B", "x", "holds `=`"),
        ("NUL\0", "x", "NUL byte"),
        ("GOOD", "bad\0", "NUL byte"),
        ("MP_RUNTIME_ROLE", "x", "mp's own"),
    ] {
        let error = Pool::builder().env(name, value).build().unwrap_err();
        assert!(error.to_string().contains(why), "{name:?}: {error}");
    }
}

/// Builds a pool whose worker runs this again, `levels` times; the depth reached, or the
/// error that stopped it.
#[process_fn]
fn nest(levels: u32) -> Result<u32, String> {
    if levels == 0 {
        return Ok(0);
    }
    let pool = Pool::new(1).map_err(|e| e.to_string())?;
    Ok(1 + pool
        .apply(nest, (levels - 1,))
        .map_err(|e| e.to_string())??)
}

/// Starts a process that runs this again, `levels` times.
#[process_fn]
fn nest_processes(levels: u32) -> Result<u32, String> {
    if levels == 0 {
        return Ok(0);
    }
    let child = spawn!(nest_processes, levels - 1).map_err(|e| e.to_string())?;
    Ok(1 + child.join().map_err(|e| e.to_string())??)
}

#[test]
fn nested_pools_stop_at_the_depth_limit_with_an_error_that_says_so() {
    let pool = Pool::builder()
        .processes(1)
        .env("MP_MAX_DEPTH", "3")
        .build()
        .unwrap();
    assert_eq!(pool.apply(nest, (2,)).unwrap(), Ok(2));
    let error = pool.apply(nest, (3,)).unwrap().unwrap_err();
    assert!(
        error.contains("would be 4 levels below the main process"),
        "{error}"
    );
    assert!(error.contains("MP_MAX_DEPTH=3"), "{error}");
    // A process started by a task counts as a level too.
    assert_eq!(pool.apply(nest_processes, (2,)).unwrap(), Ok(2));
    assert!(pool.apply(nest_processes, (3,)).unwrap().is_err());
}

#[test]
fn without_a_limit_set_recursion_stops_at_ten() {
    let pool = Pool::new(1).unwrap();
    let error = pool.apply(nest_processes, (50,)).unwrap().unwrap_err();
    assert!(
        error.contains("this process is 10 levels below it"),
        "{error}"
    );
}

#[test]
fn a_limit_that_is_not_a_number_is_refused() {
    let pool = Pool::builder()
        .processes(1)
        .env("MP_MAX_DEPTH", "ten")
        .build()
        .unwrap();
    let error = pool.apply(nest, (1,)).unwrap().unwrap_err();
    assert!(
        error.contains("MP_MAX_DEPTH=\"ten\" is not a whole number"),
        "{error}"
    );
}
