//! How a binary behaves when the worker marker is set by someone other than mp.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use mp_runtime::{process_fn, spawn};

#[process_fn]
fn pid() -> u32 {
    std::process::id()
}

/// Runs this test binary again with `MP_RUNTIME_ROLE` set to `role` and `stdin`; returns exit
/// code and standard error.
fn run_with_role(role: &str, stdin: Stdio) -> (Option<i32>, String) {
    let output = Command::new(std::env::current_exe().unwrap())
        .arg("--list")
        .env("MP_RUNTIME_ROLE", role)
        .stdin(stdin)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_forged_marker_is_a_clear_error_and_a_non_zero_exit() {
    let me = std::process::id().to_string();
    for role in ["1", "worker:1", "worker:x", &format!("worker:{me}")] {
        let (code, stderr) = run_with_role(role, Stdio::null());
        assert_eq!(code, Some(2), "{role}: {stderr}");
        assert!(stderr.contains("not started by mp"), "{role}: {stderr}");
        assert!(stderr.contains("unset MP_RUNTIME_ROLE"), "{role}: {stderr}");
    }
}

#[test]
fn a_child_of_another_build_says_so() {
    let me = std::process::id();
    // A channel made by this process, as a real parent's is: the role is proven, the build not.
    let (_ours, theirs) = UnixStream::pair().unwrap();
    let (code, stderr) = run_with_role(
        &format!("worker:{me}:0123456789abcdef"),
        Stdio::from(OwnedFd::from(theirs)),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("same build"), "{stderr}");
}

#[test]
fn a_real_child_does_not_pass_the_marker_on() {
    #[process_fn]
    fn marker() -> Option<String> {
        std::env::var("MP_RUNTIME_ROLE").ok()
    }
    assert_eq!(spawn!(marker).unwrap().join().unwrap(), None);
    assert_ne!(spawn!(pid).unwrap().join().unwrap(), std::process::id());
}
