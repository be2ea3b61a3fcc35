//! A parent that sets SIGCHLD to SIG_IGN (so the kernel reaps its children, and no exit status
//! is left to wait for) still gets the result of a child that answered. It runs in a child of its own: the
//! disposition of SIGCHLD is process-wide.

use crate::adversarial::bounded;

use mp_runtime::{process_fn, spawn};

#[process_fn]
fn answer() -> u64 {
    42
}

// `spawn!(..).join()` under SIGCHLD = SIG_IGN returns the answer, not a lost child.
/// The body of [`join_returns_the_answer_when_sigchld_is_ignored`], in a process of its own.
#[process_fn]
fn join_returns_the_answer_when_sigchld_is_ignored_alone() {
    // SAFETY: plain system call; restored below.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    let got = bounded::bounded("join under SIGCHLD ignored", bounded::HANG, || {
        spawn!(answer).and_then(|p| p.join())
    });
    // SAFETY: as above.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    match got {
        Ok(Ok(value)) => assert_eq!(value, 42),
        Ok(Err(error)) => panic!("the answer was lost: {error}"),
        Err(why) => panic!("{why}"),
    }
}

/// Runs [`join_returns_the_answer_when_sigchld_is_ignored_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn join_returns_the_answer_when_sigchld_is_ignored() {
    crate::in_child(join_returns_the_answer_when_sigchld_is_ignored_alone);
}
