//! Process identity, and handles in every position: arguments, pool tasks, results.

use std::time::Duration;

use mp_runtime::{
    Array, Barrier, Condition, Event, JoinableQueue, Lock, Pool, Queue, RLock, Semaphore,
    SharedMemory, Value, active_children, current_process, parent_process, pipe, process_fn, spawn,
};

const LONG: Duration = Duration::from_secs(60);

#[process_fn]
fn identity() -> (String, u32, Option<(String, u32)>) {
    let me = current_process();
    let parent = parent_process().map(|p| (p.name().to_string(), p.pid()));
    (me.name().to_string(), me.pid(), parent)
}

#[test]
fn children_know_their_names_and_parent() {
    assert_eq!(current_process().name(), "MainProcess");
    assert!(parent_process().is_none());
    let mut p = spawn!(identity).unwrap();
    let (name, pid) = (p.name().to_string(), p.pid());
    let parent = Some(("MainProcess".to_string(), std::process::id()));
    assert_eq!(p.join_timeout(LONG).unwrap(), (name, pid, parent));
    let pool = Pool::new(1).unwrap();
    let (name, _, _) = pool.apply(identity, ()).unwrap();
    assert!(name.starts_with("SpawnPoolWorker-"), "{name}");
}

#[process_fn]
fn sleep_a_while() {
    std::thread::sleep(Duration::from_secs(30));
}

#[test]
fn active_children_lists_running_children_only() {
    let mut p = spawn!(sleep_a_while).unwrap();
    let listed = active_children();
    assert!(
        listed
            .iter()
            .any(|c| c.pid() == p.pid() && c.name() == p.name())
    );
    p.kill().unwrap();
    assert!(!active_children().iter().any(|c| c.pid() == p.pid()));
}

/// Every kind of handle, in one argument.
type Kit = (
    Queue<u32>,
    JoinableQueue<u32>,
    Lock,
    RLock,
    Semaphore,
    Event,
    Condition,
    Barrier,
    Value<u32>,
    Array<u8>,
    SharedMemory,
);

fn kit() -> Kit {
    (
        Queue::new().unwrap(),
        JoinableQueue::new().unwrap(),
        Lock::new().unwrap(),
        RLock::new().unwrap(),
        Semaphore::new(1).unwrap(),
        Event::new().unwrap(),
        Condition::new().unwrap(),
        Barrier::new(1).unwrap(),
        Value::new(0).unwrap(),
        Array::new(4).unwrap(),
        SharedMemory::new(4).unwrap(),
    )
}

#[process_fn]
fn use_kit(kit: Kit, n: u32) -> Kit {
    let (queue, joinable, lock, rlock, sem, event, cond, barrier, value, array, mut shm) = kit;
    queue.put(&n).unwrap();
    joinable.put(&n).unwrap();
    drop(lock.acquire().unwrap());
    drop(rlock.acquire().unwrap());
    drop(sem.acquire().unwrap());
    event.set().unwrap();
    cond.notify_all();
    barrier.wait().unwrap();
    *value.lock().unwrap() += n;
    array.lock().unwrap()[0] += 1;
    shm.write_at(0, &[1]).unwrap();
    // And back again, in the result.
    (
        queue, joinable, lock, rlock, sem, event, cond, barrier, value, array, shm,
    )
}

#[test]
fn every_handle_goes_to_pool_tasks_and_comes_back_in_results() {
    let pool = Pool::new(2).unwrap();
    let k = kit();
    let args: Vec<(Kit, u32)> = (1..=4)
        .map(|n| {
            let shm = k.10.clone().unwrap();
            let copy = (
                k.0.clone(),
                k.1.clone(),
                k.2.clone(),
                k.3.clone(),
                k.4.clone(),
                k.5.clone(),
                k.6.clone(),
                k.7.clone(),
                k.8.clone(),
                k.9.clone(),
                shm,
            );
            (copy, n)
        })
        .collect();
    let back = pool.starmap(use_kit, args).unwrap();
    assert_eq!(back.len(), 4);
    assert_eq!(k.8.get().unwrap(), 10);
    assert_eq!(back[0].8.get().unwrap(), 10); // the same value, returned
    assert_eq!(k.9.get(0).unwrap(), Some(4));
    assert_eq!(k.0.len().unwrap(), 4);
    assert!(back[3].5.is_set().unwrap());
    let mut byte = [0];
    back[2].10.read_at(0, &mut byte).unwrap();
    assert_eq!(byte, [1]);
    // Through a pipe as well.
    let (a, b) = pipe::<Kit>().unwrap();
    a.send(&back.into_iter().next().unwrap()).unwrap();
    let through = b.recv_timeout(LONG).unwrap();
    assert_eq!(through.8.get().unwrap(), 10);
}
