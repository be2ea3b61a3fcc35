//! A task runs as it would in `main`: SIGPIPE ignored (a write to a closed pipe is
//! `Err(BrokenPipe)`), a stack overflow reported as one. The early entry runs before std's
//! runtime set-up, so mp must do that set-up. Under `spawn!` and pools started both ways.

use std::io::Write;
use std::os::fd::FromRawFd;
use std::time::Duration;

use mp_runtime::{Pool, StartMethod, process_fn, spawn};

use super::{Reaped, bounded};

const LONG: Duration = Duration::from_secs(60);

/// Writes to a pipe whose read end is closed; what the write said.
#[process_fn]
fn write_to_closed_pipe() -> String {
    let mut fds = [0; 2];
    // SAFETY: plain system calls; `fds` has room for both ends.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: closes the read end, which nothing else owns.
    unsafe { libc::close(fds[0]) };
    // SAFETY: the write end is open and owned by nothing else.
    let mut write_end = unsafe { std::fs::File::from_raw_fd(fds[1]) };
    match write_end.write(b"x") {
        Ok(n) => format!("wrote {n}"),
        Err(e) => format!("{:?}", e.kind()),
    }
}

// Under `spawn!`, a write to a closed pipe is `Err(BrokenPipe)`.
#[test]
fn a_spawned_task_gets_broken_pipe_not_sigpipe() {
    let mut child = Reaped(Some(spawn!(write_to_closed_pipe).unwrap()));
    let outcome = child.0.as_mut().unwrap().join_timeout(LONG);
    assert_eq!(outcome.unwrap(), "BrokenPipe");
}

fn pool_case(method: StartMethod) {
    let outcome = bounded("a write to a closed pipe in a pool", LONG, move || {
        let pool = Pool::builder()
            .start_method(method)
            .processes(1)
            .build()
            .unwrap();
        let outcome = pool.apply(write_to_closed_pipe, ());
        pool.terminate();
        outcome
    });
    assert_eq!(outcome.unwrap(), "BrokenPipe");
}

// In a Spawn pool, a write to a closed pipe is `Err(BrokenPipe)`.
#[test]
fn a_spawn_pool_task_gets_broken_pipe_not_sigpipe() {
    pool_case(StartMethod::Spawn);
}

// In a ForkServer pool, a write to a closed pipe is `Err(BrokenPipe)`.
#[test]
fn a_fork_server_pool_task_gets_broken_pipe_not_sigpipe() {
    pool_case(StartMethod::ForkServer);
}

fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 32]);
    if std::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1).wrapping_add(frame[7])
}

/// Recurses without end.
#[process_fn]
fn recurse_forever() -> u64 {
    recurse(0)
}

fn says_overflow(err: &mp_runtime::Error) {
    let text = err.to_string();
    eprintln!("stack overflow reported as: {text}");
    assert!(
        text.contains("overflow"),
        "a stack overflow was not reported as one: {text}"
    );
}

// Under `spawn!`, a stack overflow is an error that says so.
#[test]
fn a_spawned_stack_overflow_is_reported() {
    let mut child = Reaped(Some(spawn!(recurse_forever).unwrap()));
    let outcome = child.0.as_mut().unwrap().join_timeout(LONG);
    says_overflow(&outcome.unwrap_err());
}

fn pool_overflow_case(method: StartMethod) {
    let outcome = bounded("a stack overflow in a pool", LONG, move || {
        let pool = Pool::builder()
            .start_method(method)
            .processes(1)
            .build()
            .unwrap();
        let outcome = pool.apply(recurse_forever, ());
        pool.terminate();
        outcome
    });
    says_overflow(&outcome.unwrap_err());
}

// In a pool, a stack overflow is that task's error, and it says so.
#[test]
fn a_pool_stack_overflow_is_reported() {
    pool_overflow_case(StartMethod::Spawn);
}

// In a fork server's pool (whose children inherit the zygote's handler), a
// stack overflow is that task's error, and it says so.
#[test]
fn a_fork_server_pool_stack_overflow_is_reported() {
    pool_overflow_case(StartMethod::ForkServer);
}
