//! A program that forks while it holds mp handles (a daemonising library, a test harness,
//! `nix::unistd::fork`): the copy holds the pool's and the processes' handles too, but their
//! threads and children are the original's, and a handle belongs to the process that made it.
//! In the copy every call on such a handle fails at once, dropping it leaves the original's
//! workers alone, `pool_map!` makes a pool of the copy's own, and handles made to be shared
//! (queues) keep working.
//!
//! Each test forks with libc and checks in the copy, which reports by its exit status; the
//! test waits for it with a bound and kills it if it hangs.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use mp_runtime::{
    Error, ErrorKind, Pool, Queue, StartMethod, active_children, pool_map, process_fn, spawn,
};
use mp_support::is_running;
use mp_support::tasks::sleep_ms;

#[process_fn]
fn double(x: u32) -> u32 {
    x * 2
}

/// How long a copy may take; far more than any check needs, since each must fail at once.
const COPY_LIMIT: Duration = Duration::from_secs(30);

/// Runs `check` in a forked copy of this process and returns what it came to: `Err` with why
/// if it failed, panicked, or ran past [`COPY_LIMIT`] (then it is killed). The copy writes why
/// it failed to standard error itself: the test harness's capture of `eprintln!` would keep it
/// in the copy.
fn in_forked_copy(check: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    // SAFETY: the copy runs only `check` (which the tests keep to mp calls and allocation; the
    // C library makes allocation safe across fork) and then `_exit`, which runs no exit
    // handler of the original's.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = match std::panic::catch_unwind(AssertUnwindSafe(check)) {
            Ok(Ok(())) => 0,
            Ok(Err(why)) => {
                let _ = writeln!(std::io::stderr(), "forked copy: {why}");
                1
            }
            Err(_) => 2,
        };
        // SAFETY: ends the copy at once; nothing of it outlives this call.
        unsafe { libc::_exit(code) };
    }
    let deadline = Instant::now() + COPY_LIMIT;
    loop {
        let mut status = 0;
        // SAFETY: plain system call on our own child, reaped only here.
        let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(reaped >= 0, "waitpid: {}", std::io::Error::last_os_error());
        if reaped == pid {
            return match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
                (true, 0) => Ok(()),
                (true, 1) => Err("a check failed in the copy (see its standard error)".into()),
                (true, 2) => Err("the copy panicked".into()),
                _ => Err(format!("the copy ended with status {status:#x}")),
            };
        }
        if Instant::now() >= deadline {
            // SAFETY: plain system calls on our own child, not reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Err(format!("the copy hung for {COPY_LIMIT:?} and was killed"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Fails unless `result` is an error saying the handle belongs to another process.
fn foreign<T: std::fmt::Debug>(what: &str, result: Result<T, Error>) -> Result<(), String> {
    match result {
        Err(error) if error.is_foreign_process() && error.kind() == ErrorKind::ForeignProcess => {
            let text = error.to_string();
            let owner = format!("belongs to process {}", std::os::unix::process::parent_id());
            match text.contains(&owner) && text.contains("a new") {
                true => Ok(()),
                false => Err(format!(
                    "{what}: the error does not say whose or what to do: {text}"
                )),
            }
        }
        other => Err(format!(
            "{what}: expected a foreign-process error, got {other:?}"
        )),
    }
}

/// Fails unless `run` returns within a second: in the copy, nothing may wait for the original.
fn at_once<T>(what: &str, run: impl FnOnce() -> T) -> Result<T, String> {
    let started = Instant::now();
    let value = run();
    match started.elapsed() {
        took if took < Duration::from_secs(1) => Ok(value),
        took => Err(format!("{what} took {took:?}")),
    }
}

/// The pids of the children this process has running now.
fn children() -> BTreeSet<u32> {
    active_children().iter().map(|c| c.pid()).collect()
}

/// The children started by `start`.
fn started_by<T>(start: impl FnOnce() -> T) -> (T, BTreeSet<u32>) {
    let before = children();
    let value = start();
    (value, children().difference(&before).copied().collect())
}

/// The body of [`dropping_a_pool_in_a_forked_copy_leaves_the_original_alone`], in a process of its own.
#[process_fn]
fn dropping_a_pool_in_a_forked_copy_leaves_the_original_alone_alone() {
    let (pool, workers) = started_by(|| Pool::new(2).unwrap());
    let running = pool.apply_async(sleep_ms, (1_500,));
    assert_eq!(workers.len(), 2, "{workers:?}");

    // The copy takes the pool out of the cell and drops it; the original keeps its own.
    let pool = RefCell::new(Some(pool));
    in_forked_copy(|| at_once("dropping the pool", || drop(pool.take()))).unwrap();
    assert!(pool.borrow().is_some());

    // The original's workers were not killed: the task that ran during the drop finished.
    assert_eq!(running.get().unwrap(), 1_500);
    assert!(workers.iter().all(|&pid| is_running(pid)), "{workers:?}");
    assert!(children().is_superset(&workers));
}

/// The body of [`a_pool_used_in_a_forked_copy_fails_at_once_and_the_original_goes_on`], in a process of its own.
#[process_fn]
fn a_pool_used_in_a_forked_copy_fails_at_once_and_the_original_goes_on_alone() {
    let (pool, workers) = started_by(|| Pool::new(2).unwrap());
    let running = RefCell::new(Some(pool.apply_async(sleep_ms, (1_500,))));
    let mut streaming = pool.imap(double, 0..1_000);
    assert_eq!(streaming.next().unwrap().unwrap(), 0);

    in_forked_copy(|| {
        let running = running.take().unwrap();
        foreign("map", at_once("map", || pool.map(double, [1, 2]))?)?;
        foreign("apply", at_once("apply", || pool.apply(double, (1,)))?)?;
        let mut imap = pool.imap(double, [1, 2]);
        foreign("imap", at_once("imap", || imap.next().unwrap())?)?;
        if imap.next().is_some() {
            return Err("an imap in the copy goes on after its error".into());
        }
        // Results of work submitted before the fork: the original's to wait for.
        if !at_once("ready", || running.ready())? {
            return Err("a result made before the fork is not ready in the copy".into());
        }
        if at_once("cancel", || running.cancel())? {
            return Err("a result made before the fork was cancelled in the copy".into());
        }
        foreign("get", at_once("get", || running.get())?)?;
        foreign("imap next", at_once("imap", || streaming.next().unwrap())?)?;
        foreign("join", at_once("join", || pool.join())?)?;
        // Terminating is the original's to do: in the copy, nothing happens.
        at_once("terminate", || pool.terminate())?;
        drop(imap);
        // A pool made in the copy is the copy's own.
        let own = Pool::new(1).map_err(|e| e.to_string())?;
        match own.map(double, [5]) {
            Ok(values) if values == [10] => Ok(()),
            other => Err(format!("a pool made in the copy: {other:?}")),
        }
    })
    .unwrap();

    let running = running.take().unwrap();
    assert_eq!(running.get().unwrap(), 1_500);
    assert_eq!(streaming.next().unwrap().unwrap(), 2);
    drop(streaming);
    assert_eq!(pool.map(double, [3, 4]).unwrap(), [6, 8]);
    assert!(workers.iter().all(|&pid| is_running(pid)), "{workers:?}");
}

/// The body of [`a_process_handle_in_a_forked_copy_leaves_the_child_alone`], in a process of its own.
#[process_fn]
fn a_process_handle_in_a_forked_copy_leaves_the_child_alone_alone() {
    let sleeper = RefCell::new(Some(spawn!(sleep_ms, 60_000).unwrap()));
    let quick = RefCell::new(Some(spawn!(double, 21).unwrap()));

    in_forked_copy(|| {
        let (mut sleeper, quick) = (sleeper.take().unwrap(), quick.take().unwrap());
        if at_once("is_alive", || sleeper.is_alive())? {
            return Err("the original's child is alive as this copy's".into());
        }
        foreign("terminate", at_once("terminate", || sleeper.terminate())?)?;
        foreign("kill", at_once("kill", || sleeper.kill())?)?;
        foreign("join", at_once("join", || quick.join())?)?;
        at_once("drop", || drop(sleeper))
    })
    .unwrap();

    let (mut sleeper, quick) = (sleeper.take().unwrap(), quick.take().unwrap());
    assert!(sleeper.is_alive() && is_running(sleeper.pid()));
    sleeper.kill().unwrap();
    assert_eq!(sleeper.exit_code(), Some(-libc::SIGKILL));
    assert_eq!(quick.join().unwrap(), 42);
}

/// The body of [`pool_map_in_a_forked_copy_uses_a_pool_of_its_own`], in a process of its own.
#[process_fn]
fn pool_map_in_a_forked_copy_uses_a_pool_of_its_own_alone() {
    let (mapped, workers) = started_by(|| pool_map!(double, [1, 2], processes = 1));
    assert_eq!(mapped.unwrap(), [2, 4]);
    assert_eq!(workers.len(), 1, "{workers:?}");

    in_forked_copy(|| match pool_map!(double, [3], processes = 1) {
        Ok(values) if values == [6] => Ok(()),
        other => Err(format!("pool_map! in the copy: {other:?}")),
    })
    .unwrap();

    assert_eq!(pool_map!(double, [4], processes = 1).unwrap(), [8]);
    assert!(workers.iter().all(|&pid| is_running(pid)), "{workers:?}");
}

#[process_fn]
fn parent_pid() -> u32 {
    std::os::unix::process::parent_id()
}

/// The body of [`a_fork_server_pool_in_a_forked_copy_has_workers_of_its_own`], in a process of its own.
#[process_fn]
fn a_fork_server_pool_in_a_forked_copy_has_workers_of_its_own_alone() {
    let fork_server = || {
        Pool::builder()
            .start_method(StartMethod::ForkServer)
            .processes(1)
    };
    let pool = fork_server().build().unwrap();
    assert_eq!(pool.apply(parent_pid, ()).unwrap(), std::process::id());

    in_forked_copy(|| {
        // The original's zygote would fork the worker as the original's child.
        let own = fork_server().build().map_err(|e| e.to_string())?;
        match own.apply(parent_pid, ()) {
            Ok(parent) if parent == std::process::id() => Ok(()),
            other => Err(format!("the copy's worker's parent: {other:?}")),
        }
    })
    .unwrap();

    assert_eq!(pool.apply(parent_pid, ()).unwrap(), std::process::id());
}

/// The body of [`a_queue_works_across_a_fork`], in a process of its own.
#[process_fn]
fn a_queue_works_across_a_fork_alone() {
    let queue = Queue::<u32>::new().unwrap();
    in_forked_copy(|| queue.put(&7).map_err(|e| e.to_string())).unwrap();
    assert_eq!(queue.get_timeout(Duration::from_secs(10)).unwrap(), 7);
}

/// The body of [`callbacks_in_a_forked_copy_are_called_at_once_and_the_original_s_run`], in a process of its own.
#[process_fn]
fn callbacks_in_a_forked_copy_are_called_at_once_and_the_original_s_run_alone() {
    let pool = Pool::new(1).unwrap();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (entered, blocked) = std::sync::mpsc::channel();
    // The fork comes while a callback runs on the callback thread, another queued behind it.
    let stuck = pool.apply_async(double, (1,));
    stuck.add_done_callback(move |_| {
        entered.send(()).unwrap();
        let _ = released.recv_timeout(Duration::from_secs(60));
    });
    blocked.recv_timeout(Duration::from_secs(60)).unwrap();
    let (sender, seen) = std::sync::mpsc::channel();
    let pending = pool.apply_async(double, (2,));
    let to_original = sender.clone();
    pending.add_done_callback(move |result| {
        let _ = to_original.send(format!("{result:?}"));
    });
    let pool = RefCell::new(Some(pool));
    in_forked_copy(|| {
        let (in_copy, heard) = std::sync::mpsc::channel();
        at_once("a callback added in the copy", || {
            pending.add_done_callback(move |result| {
                let _ = in_copy.send(result.as_ref().map(|_| ()).map_err(Clone::clone));
            })
        })?;
        let called = heard
            .try_recv()
            .map_err(|_| "the copy's callback was not called at once".to_string())?;
        foreign("a callback in the copy", called)?;
        foreign(
            "get_timeout in the copy",
            at_once("get_timeout", || {
                pending.get_timeout(Duration::from_secs(10))
            })?,
        )?;
        at_once("dropping the pool", || drop(pool.take()))
    })
    .unwrap();
    release.send(()).unwrap();
    assert_eq!(seen.recv_timeout(Duration::from_secs(60)).unwrap(), "Ok(4)");
    assert_eq!(stuck.get_timeout(Duration::from_secs(60)).unwrap(), 2);
    assert_eq!(pending.get_timeout(Duration::from_secs(60)).unwrap(), 4);
}

/// Runs [`callbacks_in_a_forked_copy_are_called_at_once_and_the_original_s_run_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn callbacks_in_a_forked_copy_are_called_at_once_and_the_original_s_run() {
    crate::in_child(callbacks_in_a_forked_copy_are_called_at_once_and_the_original_s_run_alone);
}

/// Runs [`dropping_a_pool_in_a_forked_copy_leaves_the_original_alone_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn dropping_a_pool_in_a_forked_copy_leaves_the_original_alone() {
    crate::in_child(dropping_a_pool_in_a_forked_copy_leaves_the_original_alone_alone);
}

/// Runs [`a_pool_used_in_a_forked_copy_fails_at_once_and_the_original_goes_on_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn a_pool_used_in_a_forked_copy_fails_at_once_and_the_original_goes_on() {
    crate::in_child(a_pool_used_in_a_forked_copy_fails_at_once_and_the_original_goes_on_alone);
}

/// Runs [`a_process_handle_in_a_forked_copy_leaves_the_child_alone_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn a_process_handle_in_a_forked_copy_leaves_the_child_alone() {
    crate::in_child(a_process_handle_in_a_forked_copy_leaves_the_child_alone_alone);
}

/// Runs [`pool_map_in_a_forked_copy_uses_a_pool_of_its_own_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn pool_map_in_a_forked_copy_uses_a_pool_of_its_own() {
    crate::in_child(pool_map_in_a_forked_copy_uses_a_pool_of_its_own_alone);
}

/// Runs [`a_fork_server_pool_in_a_forked_copy_has_workers_of_its_own_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn a_fork_server_pool_in_a_forked_copy_has_workers_of_its_own() {
    crate::in_child(a_fork_server_pool_in_a_forked_copy_has_workers_of_its_own_alone);
}

/// Runs [`a_queue_works_across_a_fork_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn a_queue_works_across_a_fork() {
    crate::in_child(a_queue_works_across_a_fork_alone);
}
