//! Issue 11 item 16: a parent that sets SIGCHLD to SIG_IGN (so the kernel reaps its children)
//! still gets the result of a child that answered. Alone in its binary: the disposition of
//! SIGCHLD is process-wide.

#[allow(dead_code)]
#[path = "it/adversarial/bounded.rs"]
mod bounded;

use mp_runtime::{process_fn, spawn};

#[process_fn]
fn answer() -> u64 {
    42
}

// Issue 11 item 16: spawn!(..).join() under SIGCHLD = SIG_IGN returns the answer.
#[test]
fn join_returns_the_answer_when_sigchld_is_ignored() {
    // SAFETY: plain system call; restored below.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    let got = bounded::bounded(
        "issue 11 item 16 (join under SIGCHLD ignored)",
        bounded::HANG,
        || spawn!(answer).and_then(|p| p.join()),
    );
    // SAFETY: as above.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    match got {
        Ok(Ok(value)) => assert_eq!(value, 42),
        Ok(Err(error)) => panic!("issue 11 item 16: the answer was lost: {error}"),
        Err(why) => panic!("{why}"),
    }
}
