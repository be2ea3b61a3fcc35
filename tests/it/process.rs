//! One call in one child process: `spawn!` and `Process`.

use std::time::{Duration, Instant};

use mp_runtime::{Process, process_fn, spawn};
use mp_support::tasks::{abort, exit_with, sleep_ms};
use mp_support::{is_running, wait_for, zombie_children};
use serde::{Deserialize, Serialize};

const LONG: Duration = Duration::from_secs(30);

#[process_fn]
fn answer() -> u32 {
    42
}

#[process_fn]
fn negate(x: i64) -> i64 {
    -x
}

#[process_fn]
fn describe(name: String, age: u8, tags: Vec<String>) -> String {
    format!("{name} ({age}): {}", tags.join(","))
}

#[test]
fn spawns_with_zero_one_and_three_arguments() {
    assert_eq!(spawn!(answer).unwrap().join().unwrap(), 42);
    assert_eq!(spawn!(negate, 5).unwrap().join().unwrap(), -5);
    let tags = vec!["a".to_string(), "b".to_string()];
    let p = spawn!(describe, "ann".to_string(), 30, tags).unwrap();
    assert_eq!(p.join().unwrap(), "ann (30): a,b");
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Order {
    id: u64,
    lines: Vec<(String, u32)>,
    note: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Total {
    id: u64,
    items: u32,
}

#[process_fn]
fn total(order: Order) -> Total {
    Total {
        id: order.id,
        items: order.lines.iter().map(|(_, n)| n).sum(),
    }
}

#[test]
fn structs_cross_both_ways() {
    let order = Order {
        id: 9,
        lines: vec![("pen".into(), 2), ("ink".into(), 3)],
        note: None,
    };
    assert_eq!(
        spawn!(total, order).unwrap().join().unwrap(),
        Total { id: 9, items: 5 }
    );
}

#[process_fn]
fn fail_with(message: String) -> u8 {
    panic!("{message}");
}

#[test]
fn a_panic_comes_back_with_message_and_location() {
    let err = spawn!(fail_with, "bad input 7".to_string())
        .unwrap()
        .join()
        .unwrap_err();
    assert!(err.is_panic(), "{err}");
    assert_eq!(err.panic_message(), Some("bad input 7"));
    assert!(
        err.panic_location().unwrap().file() == "tests/it/process.rs",
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("fail_with") && text.contains("bad input 7"),
        "{text}"
    );
}

#[process_fn]
fn panics_with_a_backtrace() {
    panic!("look at the backtrace");
}

/// Run again by `a_panic_carries_the_childs_backtrace_when_enabled` with `MP_TEST_BACKTRACE`
/// saying whether backtraces are enabled in its environment, which its child inherits (so the
/// variables are set for that child only, without `set_var` in this multi-threaded harness);
/// run plainly, it checks nothing.
#[test]
fn backtrace_as_the_environment_says() {
    let Some(enabled) = std::env::var_os("MP_TEST_BACKTRACE") else {
        return;
    };
    let err = spawn!(panics_with_a_backtrace).unwrap().join().unwrap_err();
    assert!(err.is_panic(), "{err}");
    if enabled == "off" {
        assert_eq!(err.panic_backtrace(), None, "{err:?}");
        return;
    }
    let backtrace = err.panic_backtrace().expect("a backtrace");
    assert!(backtrace.contains("panics_with_a_backtrace"), "{backtrace}");
    // `unwrap` shows it; `Display` stays one line.
    assert!(format!("{err:?}").contains(backtrace), "{err:?}");
    assert!(!err.to_string().contains('\n'), "{err}");
}

#[test]
fn a_panic_carries_the_childs_backtrace_when_enabled() {
    for (variable, value, expect) in [
        ("RUST_BACKTRACE", "1", "on"),
        ("RUST_LIB_BACKTRACE", "1", "on"),
        ("RUST_BACKTRACE", "0", "off"),
    ] {
        let mut run = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "process::backtrace_as_the_environment_says"])
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .env(variable, value)
            .env("MP_TEST_BACKTRACE", expect)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let ended = wait_for(LONG * 4, || run.try_wait().unwrap().is_some());
        if !ended {
            run.kill().unwrap();
        }
        let output = run.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(
            ended,
            "{variable}={value}: still running after {:?}",
            LONG * 4
        );
        assert!(output.status.success(), "{variable}={value}: {text}");
        assert!(text.contains("1 passed"), "{variable}={value}: {text}");
    }
}

#[test]
fn a_child_that_dies_reports_how() {
    let p = spawn!(abort).unwrap();
    let pid = p.pid();
    let err = p.join().unwrap_err();
    assert!(err.is_died(), "{err}");
    assert_eq!(err.signal(), Some(libc::SIGABRT));
    assert_eq!(err.pid(), Some(pid), "{err}");
    assert!(err.to_string().contains(&format!("process {pid}")), "{err}");
    assert!(err.to_string().contains("SIGABRT"), "{err}");

    let mut p = spawn!(exit_with, 3).unwrap();
    let err = p.join_timeout(LONG).unwrap_err();
    assert!(err.is_died(), "{err}");
    assert_eq!(err.exit_code(), Some(3));
    assert_eq!(p.exit_code(), Some(3));
    assert!(err.to_string().contains("exited with code 3"), "{err}");

    let mut p = spawn!(sleep_ms, 60_000).unwrap();
    // SAFETY: plain system call on our own child, which is not reaped yet.
    assert_eq!(unsafe { libc::kill(p.pid() as i32, libc::SIGKILL) }, 0);
    let err = p.join_timeout(LONG).unwrap_err();
    assert_eq!(err.signal(), Some(libc::SIGKILL), "{err}");
    assert_eq!(err.pid(), Some(p.pid()), "{err}");
    assert_eq!(p.exit_code(), Some(-libc::SIGKILL));

    // The parent is unharmed.
    assert_eq!(spawn!(answer).unwrap().join().unwrap(), 42);
}

#[test]
fn join_timeout_can_be_called_again_then_join() {
    let mut p = spawn!(sleep_ms, 300).unwrap();
    assert!(
        p.join_timeout(Duration::from_millis(10))
            .unwrap_err()
            .is_timeout()
    );
    assert!(
        p.join_timeout(Duration::from_millis(10))
            .unwrap_err()
            .is_timeout()
    );
    assert!(p.is_alive());
    assert_eq!(p.join().unwrap(), 300);
}

#[test]
fn the_result_is_taken_once() {
    let mut p = spawn!(answer).unwrap();
    assert_eq!(p.join_timeout(LONG).unwrap(), 42);
    let again = p.join_timeout(LONG).unwrap_err();
    assert!(again.is_usage(), "{again}");
}

#[test]
fn kill_and_terminate_return_promptly() {
    let mut p = spawn!(sleep_ms, 60_000).unwrap();
    let started = Instant::now();
    p.kill().unwrap();
    assert!(!p.is_alive());
    assert_eq!(p.exit_code(), Some(-libc::SIGKILL));
    assert!(started.elapsed() < LONG);
    assert_eq!(p.join().unwrap_err().signal(), Some(libc::SIGKILL));

    let mut p = spawn!(sleep_ms, 60_000).unwrap();
    p.terminate().unwrap();
    assert_eq!(p.join().unwrap_err().signal(), Some(libc::SIGTERM));
}

#[test]
fn large_arguments_and_results_cross_whole() {
    #[process_fn]
    fn reverse(mut data: Vec<u8>) -> Vec<u8> {
        data.reverse();
        data
    }
    let data: Vec<u8> = (0..64 * 1024 * 1024)
        .map(|i: u32| (i % 251) as u8)
        .collect();
    let mut expected = data.clone();
    expected.reverse();
    let out = spawn!(reverse, data).unwrap().join().unwrap();
    assert_eq!(out.len(), expected.len());
    assert!(out == expected);
}

#[process_fn]
fn child_spawns_grandchild(x: i64) -> (u32, i64) {
    let grandchild = spawn!(negate, x).unwrap();
    (std::process::id(), grandchild.join().unwrap())
}

#[test]
fn a_child_can_spawn_its_own_child() {
    let p = spawn!(child_spawns_grandchild, 8).unwrap();
    let pid = p.pid();
    assert_eq!(p.join().unwrap(), (pid, -8));
}

#[test]
fn a_hundred_spawns_leave_no_zombie() {
    let mut pids = Vec::new();
    for i in 0..100 {
        let p = spawn!(negate, i).unwrap();
        pids.push(p.pid());
        if i % 2 == 0 {
            assert_eq!(p.join().unwrap(), -i);
        }
        // Odd ones are dropped unjoined: reaped in the background.
    }
    let gone = wait_for(LONG, || {
        let zombies = zombie_children();
        pids.iter()
            .all(|pid| !zombies.contains(pid) && !is_running(*pid))
    });
    assert!(gone, "left behind: {:?}", zombie_children());
}

fn not_registered(x: u8) -> u8 {
    x
}

#[test]
fn an_unregistered_function_fails_before_starting_a_process() {
    let err = spawn!(not_registered, 1).unwrap_err();
    assert!(err.is_not_registered(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("not_registered") && text.contains("#[process_fn]"),
        "{text}"
    );

    let closure = |x: u8| x + 1;
    let err = Process::start(closure, (1,)).unwrap_err();
    assert!(err.to_string().contains("closure"), "{err}");
}

#[process_fn]
fn print_then_return(line: String) -> usize {
    print!("{line}");
    line.len()
}

#[test]
fn output_is_flushed_before_the_result() {
    // Without a newline the line sits in the child's buffer unless it is flushed on return.
    let p = spawn!(
        print_then_return,
        "child output without newline\n".to_string()
    )
    .unwrap();
    assert_eq!(p.join().unwrap(), 29);
}

#[test]
fn names_count_up() {
    let a = spawn!(answer).unwrap();
    let b = spawn!(answer).unwrap();
    let number = |p: &Process<u32>| p.name()["Process-".len()..].parse::<u32>().unwrap();
    assert!(number(&b) > number(&a));
    a.join().unwrap();
    b.join().unwrap();
}

/// Four mebibytes: a frame that would travel in a memfd.
fn four_mib(seed: u8) -> Vec<u8> {
    (0..4u32 << 20)
        .map(|i| (i as u8) ^ (i >> 12) as u8 ^ seed)
        .collect()
}

#[process_fn]
fn echo_bytes(data: Vec<u8>) -> Vec<u8> {
    data
}

/// Installs a seccomp filter that makes `memfd_create` fail with EPERM in this process and
/// every process it starts, as some container profiles do.
fn refuse_memfd_create() {
    let filter = [
        // The system call's number: offset 0 of `struct seccomp_data`.
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_memfd_create as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: plain prctl calls; `program` and the filter it points to outlive the call,
    // which copies them.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &program as *const libc::sock_fprog,
            ),
            0,
            "cannot install a seccomp filter: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Refuses itself memfds, then sends four mebibytes to a child (which inherits the refusal
/// and sends them back) and returns four more to its own parent.
#[process_fn]
fn without_memfd() -> Result<Vec<u8>, String> {
    refuse_memfd_create();
    // SAFETY: a plain system call with a NUL-terminated name.
    let fd = unsafe { libc::memfd_create(c"probe".as_ptr(), 0) };
    let refused = std::io::Error::last_os_error();
    if fd != -1 || refused.raw_os_error() != Some(libc::EPERM) {
        return Err(format!(
            "the filter did not refuse memfd_create: {fd}, {refused}"
        ));
    }
    let back = spawn!(echo_bytes, four_mib(1))
        .and_then(|mut p| p.join_timeout(LONG))
        .map_err(|e| e.to_string())?;
    if back != four_mib(1) {
        return Err("the value came back changed".to_string());
    }
    Ok(four_mib(2))
}

// A seccomp profile that refuses memfd_create used to fail every value of a mebibyte or more
// with an error that blamed serde. Such frames go through the socket instead: as a call's
// arguments and result in a process that cannot make a memfd, and as its parent's result.
#[test]
fn large_values_cross_where_memfd_create_is_refused() {
    let mut p = spawn!(without_memfd).unwrap();
    let result = p.join_timeout(LONG).unwrap();
    assert!(result.unwrap() == four_mib(2), "the result arrived changed");
}

/// Set in the copy of this test binary that runs inside a new pid namespace.
const IN_PID_NAMESPACE: &str = "MP_TEST_IN_PID_NAMESPACE";

// In a pid namespace without its own /proc (`unshare --pid --fork`, as root), /proc shows the
// outer namespace: `/proc/<pid>/stat` of a child's pid is another process there, or none.
// `active_children` used to read it and miss a live child that `is_alive` reported.
#[test]
fn active_children_lists_a_live_child_in_a_pid_namespace_without_its_own_proc() {
    if std::env::var_os(IN_PID_NAMESPACE).is_some() {
        let mut p = spawn!(sleep_ms, 60_000).unwrap();
        assert!(p.is_alive());
        let listed = mp_runtime::active_children()
            .iter()
            .any(|c| c.pid() == p.pid());
        p.kill().unwrap();
        assert!(listed, "active_children misses live child {}", p.pid());
        return;
    }
    // SAFETY: a plain system call without arguments.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: `unshare --pid` needs root");
        return;
    }
    let test =
        "process::active_children_lists_a_live_child_in_a_pid_namespace_without_its_own_proc";
    let spawned = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child"])
        .arg(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture"])
        .env(IN_PID_NAMESPACE, "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            eprintln!("skipped: cannot run `unshare`: {e}");
            return;
        }
    };
    if !wait_for(LONG, || child.try_wait().unwrap().is_some()) {
        child.kill().unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    if text.contains("unshare failed") || text.contains("unshare:") {
        eprintln!("skipped: `unshare --pid --fork` is refused here: {text}");
        return;
    }
    assert!(output.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Handles SIGINT, says it is ready, then waits (bounded) for the signal and returns 7.
#[process_fn]
fn clean_up_on_interrupt(ready: mp_runtime::Queue<()>) -> u32 {
    let handler = on_sigint as extern "C" fn(libc::c_int);
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    let previous = unsafe { libc::signal(libc::SIGINT, handler as libc::sighandler_t) };
    assert_ne!(previous, libc::SIG_ERR);
    ready.put(&()).unwrap();
    let deadline = Instant::now() + LONG;
    while !INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        7
    } else {
        0
    }
}

// Python 3.14's `Process.interrupt()`: SIGINT, which a child that handles it survives, and one
// that does not dies of.
#[test]
fn interrupt_lets_a_handling_child_finish_and_ends_one_that_does_not_handle_it() {
    let ready = mp_runtime::Queue::new().unwrap();
    let mut p = spawn!(clean_up_on_interrupt, ready.clone()).unwrap();
    ready.get_timeout(LONG).unwrap();
    p.interrupt().unwrap();
    assert_eq!(p.join_timeout(LONG).unwrap(), 7);

    let mut p = spawn!(sleep_ms, 60_000).unwrap();
    p.interrupt().unwrap();
    let err = p.join_timeout(LONG).unwrap_err();
    assert!(err.is_died(), "{err}");
    assert_eq!(err.signal(), Some(libc::SIGINT), "{err}");
    assert!(err.to_string().contains("SIGINT"), "{err}");
    // Once it has ended, interrupting it again does nothing.
    p.interrupt().unwrap();
    assert_eq!(p.exit_code(), Some(-libc::SIGINT));
}

// Interrupt after the result was taken, after kill, twice: no error, and the
// exit status stays that of the child's own end.
#[test]
fn interrupt_after_the_result_or_a_kill_does_nothing() {
    let mut p = spawn!(answer).unwrap();
    assert_eq!(p.join_timeout(LONG).unwrap(), 42);
    assert!(wait_for(LONG, || !p.is_alive()));
    p.interrupt().unwrap();
    p.interrupt().unwrap();
    assert_eq!(p.exit_code(), Some(0));

    let mut p = spawn!(sleep_ms, 60_000).unwrap();
    p.kill().unwrap();
    p.interrupt().unwrap();
    p.interrupt().unwrap();
    assert_eq!(p.exit_code(), Some(-libc::SIGKILL));
    assert!(!zombie_children().contains(&p.pid()));
}
