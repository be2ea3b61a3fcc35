//! A forged parent: whoever can set `MP_RUNTIME_ROLE` must not be able to drive a worker, and a
//! worker driven by its real parent must answer hostile frames with bounded errors. This test
//! binary is run again by hand with `MP_RUNTIME_ROLE` set and a socket we control as its
//! standard input, and spoken to with today's protocol (wire/frame.rs: an 8-byte little-endian
//! header, low 47 bits the length, bit 47 "in a file"; wire/protocol.rs: a `Request::Call {
//! function }` in bincode fixint, then records of a u32 length and the arguments). The real
//! build id is read from a real worker's `/proc/PID/environ`. Once the role is proven by more
//! than the variable, a forged worker may refuse to serve at all: these tests then pass by that
//! refusal (exit without a signal, small replies); if the frame format changes, adapt
//! `call_frame`.
//!
//! The role is proven by the channel: standard input must be a socket made by the parent
//! process itself (SO_PEERCRED). These tests' forger is such a parent, so it is served (its
//! hostile frames must then get bounded errors); a socket from anywhere else is refused, and so
//! is a setuid worker (AT_SECURE).

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mp_runtime::{process_fn, spawn};
use serde::{Deserialize, Serialize};

const LONG: Duration = Duration::from_secs(30);
const IN_FILE: u64 = 1 << 47;

/// A value as deep as its sender likes.
#[derive(Serialize, Deserialize)]
enum Tree {
    Leaf,
    Node(Box<Tree>),
}

#[process_fn(name = "adv_forged::depth")]
fn depth(tree: Tree) -> u32 {
    let mut depth = 0;
    let mut at = &tree;
    while let Tree::Node(next) = at {
        depth += 1;
        at = next;
    }
    // Dropping a deep tree recurses as deeply as decoding it: not what is tested here.
    std::mem::forget(tree);
    depth
}

#[process_fn(name = "adv_forged::touch")]
fn touch(path: String) -> bool {
    std::fs::write(path, b"served").is_ok()
}

#[process_fn(name = "adv_forged::sleep")]
fn sleep_a_minute() {
    std::thread::sleep(Duration::from_secs(60));
}

/// The value of `MP_RUNTIME_ROLE` that a real worker of this binary got, if it can be seen.
fn real_role() -> Option<String> {
    let mut child = spawn!(sleep_a_minute).ok()?;
    let environ = std::fs::read(format!("/proc/{}/environ", child.pid()));
    let _ = child.kill();
    let _ = child.join_timeout(LONG);
    environ
        .ok()?
        .split(|&b| b == 0)
        .find_map(|var| var.strip_prefix(b"MP_RUNTIME_ROLE="))
        .map(|role| String::from_utf8_lossy(role).into_owned())
}

/// The build id at the end of a role.
fn build_of(role: &str) -> &str {
    role.rsplit(':').next().unwrap_or_default()
}

/// Starts `exe` as a worker of this process with `role`, optionally as another user.
fn start_forged(exe: &Path, role: &str, user: Option<(u32, u32)>) -> (Child, UnixStream) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut command = Command::new(exe);
    command
        .env("MP_RUNTIME_ROLE", role)
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    // A copy just written may still be open for writing in a child that another test's thread
    // forked meanwhile (until that child execs): exec then fails with ETXTBSY for a moment.
    for _ in 0..100 {
        match command.spawn() {
            Err(error) if error.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(Duration::from_millis(20));
            }
            spawned => return (spawned.unwrap(), ours),
        }
    }
    panic!("{} stayed busy for 2 s", exe.display());
}

/// A frame calling `function` on the argument records `records` (each already framed).
fn call_frame(function: &str, records: &[u8]) -> Vec<u8> {
    let mut body = 0u32.to_le_bytes().to_vec();
    body.extend((function.len() as u64).to_le_bytes());
    body.extend(function.as_bytes());
    body.extend(records);
    let mut frame = (body.len() as u64).to_le_bytes().to_vec();
    frame.extend(body);
    frame
}

/// One argument record.
fn record(bytes: &[u8]) -> Vec<u8> {
    let mut record = (bytes.len() as u32).to_le_bytes().to_vec();
    record.extend(bytes);
    record
}

/// Sends `frame`, closes our sending side, and counts the reply bytes (frame lengths, those in
/// files included) until the worker closes its side; then waits for the worker's exit.
fn converse(mut child: Child, socket: UnixStream, frame: Vec<u8>) -> (u64, ExitStatus, String) {
    let mut sending = socket.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = sending.write_all(&frame);
        let _ = sending.shutdown(std::net::Shutdown::Write);
    });
    let mut receiving = socket;
    receiving.set_read_timeout(Some(LONG)).unwrap();
    let mut total = 0u64;
    let mut header = [0u8; 8];
    while receiving.read_exact(&mut header).is_ok() && total < (1 << 30) {
        let header = u64::from_le_bytes(header);
        let len = header & (IN_FILE - 1);
        total += len;
        if header & IN_FILE == 0 {
            let copied = std::io::copy(&mut (&receiving).take(len), &mut std::io::sink());
            if copied.map_or(true, |n| n < len) {
                break;
            }
        }
    }
    let status = exit_or_kill(&mut child, "hung: the forged worker did not exit");
    let _ = sender.join();
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (total, status, stderr)
}

fn forged_role(build: &str) -> String {
    format!("worker:{}:{build}", std::process::id())
}

// A worker started with a wrong build id never prints the right one: the refusal must not
// hand a forger what it lacks.
#[test]
fn a_wrong_build_is_refused_without_naming_the_right_one() {
    let Some(real) = real_role() else {
        eprintln!("skipped: the real role cannot be read from /proc/PID/environ");
        return;
    };
    let exe = std::env::current_exe().unwrap();
    let (child, socket) = start_forged(&exe, &forged_role("0123456789abcdef"), None);
    let (_, status, stderr) = converse(child, socket, Vec::new());
    assert!(status.signal().is_none(), "{status:?}");
    assert!(
        !stderr.contains(build_of(&real)),
        "the refusal printed the build id a forger needs: {stderr}"
    );
}

// A 1,000,000-deep value from a forged parent is an error reply or a clean exit, not a SIGSEGV:
// every decode is bounded in depth, so no input overflows the worker's stack.
#[test]
fn a_million_deep_value_does_not_crash_the_worker() {
    let Some(real) = real_role() else {
        eprintln!("skipped: the real role cannot be read from /proc/PID/environ");
        return;
    };
    let mut deep = Vec::with_capacity(4 * 1_000_001);
    for _ in 0..1_000_000 {
        deep.extend(1u32.to_le_bytes());
    }
    deep.extend(0u32.to_le_bytes());
    let exe = std::env::current_exe().unwrap();
    let (child, socket) = start_forged(&exe, &forged_role(build_of(&real)), None);
    let frame = call_frame("adv_forged::depth", &record(&deep));
    let (_, status, stderr) = converse(child, socket, frame);
    assert!(
        status.signal().is_none(),
        "a deep value killed the worker with signal {:?}: {stderr}",
        status.signal()
    );
}

// 16 KiB of zeros after a call of an unknown function (4096 empty records) gets a bounded reply
// (under 64 KiB in all): a request must not buy a reply many times its own size.
#[test]
fn zeros_after_an_unknown_call_get_a_bounded_reply() {
    let Some(real) = real_role() else {
        eprintln!("skipped: the real role cannot be read from /proc/PID/environ");
        return;
    };
    let exe = std::env::current_exe().unwrap();
    let (child, socket) = start_forged(&exe, &forged_role(build_of(&real)), None);
    let frame = call_frame("adv_forged::no_such_function", &[0u8; 16 << 10]);
    let (total, status, _) = converse(child, socket, frame);
    assert!(status.signal().is_none(), "{status:?}");
    assert!(
        total < 64 << 10,
        "{total} bytes of replies to one bad request"
    );
}

// The variable with a standard input that is a socket not made by the parent
// (here made by the started process itself, as one from a network client would be) is refused
// before anything is read, naming no build id.
#[test]
fn a_socket_not_made_by_the_parent_is_refused() {
    let Some(real) = real_role() else {
        eprintln!("skipped: the real role cannot be read from /proc/PID/environ");
        return;
    };
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .env("MP_RUNTIME_ROLE", forged_role(build_of(&real)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: runs in the forked child before exec, and calls only async-signal-safe
    // functions (socketpair, dup2) on descriptors of that child.
    unsafe {
        command.pre_exec(|| {
            let mut fds = [0; 2];
            if libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) != 0
                || libc::dup2(fds[0], 0) == -1
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let mut child = command.spawn().unwrap();
    let status = exit_or_kill(&mut child, "hung: the forged worker did not exit");
    let mut stderr = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    assert_eq!(status.code(), Some(2), "{status:?}: {stderr}");
    assert!(stderr.contains("not started by mp"), "{stderr}");
    assert!(!stderr.contains(build_of(&real)), "{stderr}");
}

/// Runs a command for the setup of the setuid case; whether it succeeded.
fn run(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn id_of(flag: &str, user: &str) -> Option<u32> {
    let output = Command::new("id").args([flag, user]).output().ok()?;
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

// A setuid-root copy of this binary, started by an unprivileged user as a forged parent, never
// serves a call (here: one that would write in a root-only directory): otherwise any user
// could run registered functions as root.
#[test]
fn a_setuid_worker_never_serves_a_forged_parent() {
    // SAFETY: plain system call.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: not root, cannot make a setuid-root binary");
        return;
    }
    let Some(real) = real_role() else {
        eprintln!("skipped: the real role cannot be read from /proc/PID/environ");
        return;
    };
    let user = "mpadvsetuid";
    let created = id_of("-u", user).is_none()
        && run("useradd", &["-M", "-r", "-s", "/usr/sbin/nologin", user]);
    let (Some(uid), Some(gid)) = (id_of("-u", user), id_of("-g", user)) else {
        eprintln!("skipped: cannot make an unprivileged user (useradd)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("mp-adv-setuid-{}", std::process::id()));
    let root_only = dir.join("root-only");
    std::fs::create_dir_all(&root_only).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&root_only, std::fs::Permissions::from_mode(0o700)).unwrap();
    let exe = dir.join("setuid-copy");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let marker = root_only.join("written-as-root");
    let (child, socket) = start_forged(&exe, &forged_role(build_of(&real)), Some((uid, gid)));
    let path = marker.to_str().unwrap();
    let mut argument = (path.len() as u64).to_le_bytes().to_vec();
    argument.extend(path.as_bytes());
    let frame = call_frame("adv_forged::touch", &record(&argument));
    let (_, status, stderr) = converse(child, socket, frame);
    let served = marker.exists();
    let _ = std::fs::remove_dir_all(&dir);
    if created {
        run("userdel", &[user]);
    }
    assert!(
        !served,
        "a setuid worker served a forged parent as root ({status:?}, {stderr})"
    );
}

/// Waits up to [`LONG`] for `child` to exit; past that, kills and reaps it and fails with
/// `hung` (what did not happen).
fn exit_or_kill(child: &mut std::process::Child, hung: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + LONG;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{hung}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
