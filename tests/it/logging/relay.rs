//! The log relay under a hostile logger and hostile tasks: a logger in `main` that blocks or
//! crawls holds up no result and no time limit; a flood is dropped and counted, not waited
//! for; a record's worker mark is the kernel's word, not the sender's; oversize fields are cut,
//! never dropped; an initializer that sets up its own logger or subscriber keeps it. It runs in a process
//! of its own (a `spawn!`ed child), where the logger is that process's, set up once.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use log::{Log, Metadata, Record};
use mp_runtime::{CallOptions, Pool, process_fn};

/// Keeps every record's text (target, then message). A record that says "BLOCK" holds the
/// logger until the gate opens; one that says "SLOW" takes a millisecond.
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

struct GateState {
    open: bool,
    blocked: bool,
    seen: Vec<String>,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_open(&self, open: bool) {
        self.lock().open = open;
        self.changed.notify_all();
    }

    /// Waits until `done` holds of the state, for at most `limit`.
    fn wait_for(&self, limit: Duration, done: impl Fn(&GateState) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        let mut state = self.lock();
        while !done(&state) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self.changed.wait_timeout(state, left).unwrap().0;
        }
        true
    }

    fn lines_with(&self, needle: &str) -> Vec<String> {
        let state = self.lock();
        state
            .seen
            .iter()
            .filter(|line| line.contains(needle))
            .cloned()
            .collect()
    }
}

impl Log for Gate {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let text = format!("{} {}", record.target(), record.args());
        if text.contains("BOMB") {
            std::panic::panic_any(Bomb);
        }
        if text.contains("SLOW") {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut state = self.lock();
        if text.contains("BLOCK") {
            state.blocked = true;
            self.changed.notify_all();
            // Bounded, so that a relay that never lets go fails the test instead of hanging.
            let deadline = Instant::now() + Duration::from_secs(60);
            while !state.open && Instant::now() < deadline {
                state = self
                    .changed
                    .wait_timeout(state, Duration::from_millis(50))
                    .unwrap()
                    .0;
            }
            state.blocked = false;
        }
        state.seen.push(text);
        self.changed.notify_all();
    }

    fn flush(&self) {}
}

/// A panic payload that panics again when dropped.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("the payload panics as it is dropped");
    }
}

static GATE: Gate = Gate {
    state: Mutex::new(GateState {
        open: false,
        blocked: false,
        seen: Vec::new(),
    }),
    changed: Condvar::new(),
};

/// Logs one record that blocks the parent's logger.
#[process_fn]
fn block_logger(x: u32) -> u32 {
    log::info!("BLOCK {x}");
    x
}

/// Logs nothing.
#[process_fn]
fn quiet(x: u32) -> u32 {
    x + 1
}

#[process_fn]
fn sleepy(seconds: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(seconds));
    seconds
}

/// Logs `n` records, each of which takes the parent's logger a millisecond when `slow`.
#[process_fn]
fn chatter(n: u32, slow: bool) -> u32 {
    for i in 0..n {
        if slow {
            log::info!("SLOW chatter {i}");
        } else {
            log::info!("flood {i}");
        }
    }
    n
}

/// Forks a process that logs through the worker's logger: its record must be marked with its
/// own pid, not with the worker's name.
#[process_fn]
fn fork_and_log() -> i32 {
    // SAFETY: the child only logs (a send on a socket) and exits without unwinding.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        log::info!("from the grandchild");
        // SAFETY: ends the forked copy at once, running nothing of the worker's.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked, with a valid pointer for its status.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    pid
}

/// Writes bytes that are no record to this worker's log socket, as a task that went looking
/// for it would; how many packets it wrote.
#[process_fn]
fn scribble() -> u32 {
    let Some(fd) = log_socket() else {
        return 0;
    };
    let forged = b"[SpawnPoolWorker-99 1] forged";
    // SAFETY: sends from a valid buffer of the length given.
    let sent = unsafe { libc::send(fd, forged.as_ptr().cast(), forged.len(), 0) };
    u32::from(sent > 0)
}

/// This worker's log socket: the one sequenced-packet socket it holds.
fn log_socket() -> Option<i32> {
    (0..1024).find(|&fd| {
        let mut kind: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: asks the socket type of a descriptor number into a valid int.
        let ok = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_TYPE,
                (&raw mut kind).cast(),
                &mut len,
            )
        } == 0;
        ok && kind == libc::SOCK_SEQPACKET
    })
}

/// Shuts this worker's log socket for writing, as a hostile task may.
#[process_fn]
fn shut_log_socket() -> i32 {
    let fd = log_socket().expect("no log socket");
    // SAFETY: shuts down a descriptor this process holds.
    unsafe { libc::shutdown(fd, libc::SHUT_WR) }
}

/// Logs `n` records of `size` bytes while the parent is stopped, so that its socket fills and
/// the last of them are dropped in the worker, then lets it go on. Nothing is logged after.
#[process_fn]
fn log_while_parent_stopped(n: u32, size: usize) -> u32 {
    let pad = "x".repeat(size);
    // SAFETY: plain system calls on this process's parent.
    let parent = unsafe { libc::getppid() };
    // SAFETY: as above.
    unsafe { libc::kill(parent, libc::SIGSTOP) };
    // A signal takes effect a moment after it is sent.
    std::thread::sleep(Duration::from_millis(100));
    for i in 0..n {
        log::info!("stopped {i} {pad}");
    }
    // SAFETY: as above.
    unsafe { libc::kill(parent, libc::SIGCONT) };
    n
}

/// Captures a record of its own as sent, then sends it again with its level set to 9.
#[process_fn]
fn forge_level() -> bool {
    let fd = log_socket().expect("no log socket");
    let mut pair = [0; 2];
    // SAFETY: descriptors of this process, valid out array and buffers throughout.
    unsafe {
        libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, pair.as_mut_ptr());
        let saved = libc::dup(fd);
        libc::dup2(pair[0], fd);
        log::info!("capture me");
        libc::dup2(saved, fd);
        let mut buf = vec![0u8; 70_000];
        let n = libc::recv(
            pair[1],
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        );
        buf.truncate(n.max(0) as usize);
        // The first bytes: the variant (Record), then the origin, then the level.
        let at = buf.iter().position(|&b| b == 3).expect("an info record");
        buf[at] = 9;
        libc::send(fd, buf.as_ptr().cast(), buf.len(), 0) > 0
    }
}

/// Logs one record that makes the parent's logger panic with a payload that panics again.
#[process_fn]
fn bomb() -> u32 {
    log::info!("BOMB");
    1
}

/// Logs one record.
#[process_fn]
fn say(text: String) -> u32 {
    log::info!("{text}");
    1
}

/// A target and a file far longer than a record may be.
#[process_fn]
fn long_target() -> usize {
    let target = "t".repeat(100_000);
    log::info!(target: &target, "long target message");
    target.len()
}

/// Sets up a logger of the worker's own, as programs did before logs were forwarded: must not
/// find mp's there and panic.
#[process_fn]
fn own_env_logger() {
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Off)
        .init();
}

#[process_fn]
fn own_tracing_subscriber() {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::ERROR)
        .with_writer(std::io::sink)
        .init();
}

/// The exit code of child `pid`, waited for at most `limit` (then killed: `None`).
fn wait_child(pid: i32, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: polls for a child of this process, with a valid pointer for its status.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            return libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        }
        if Instant::now() > deadline {
            // SAFETY: kills and reaps the child that overran.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn within(limit: Duration, what: &str, started: Instant) {
    let took = started.elapsed();
    assert!(took < limit, "{what} took {took:?}, more than {limit:?}");
}

/// The scenario, in a process of its own (see [`the_relay_holds_against_hostile_loggers_and_tasks`]).
#[process_fn]
fn scenario() {
    // Every wait below is bounded by this: a hang fails the test instead of stalling CI.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(120));
        eprintln!("logging::relay: still running after 120 s");
        std::process::exit(1);
    });
    log::set_logger(&GATE).unwrap();
    log::set_max_level(log::LevelFilter::Info);

    let logging = Pool::new(1).unwrap();
    let other = Pool::new(1).unwrap();
    // Both pools' workers are up before the clock starts.
    assert_eq!(other.apply(quiet, (0,)).unwrap(), 1);
    assert_eq!(logging.apply(quiet, (0,)).unwrap(), 1);

    // 1. A logger that blocks holds up no result and no time limit, of another pool or of the
    //    task that logged.
    let blocking = logging.apply_async(block_logger, (7,));
    assert!(
        GATE.wait_for(Duration::from_secs(10), |state| state.blocked),
        "the worker's record never reached the logger"
    );
    let started = Instant::now();
    assert_eq!(blocking.get_timeout(Duration::from_secs(5)).unwrap(), 7);
    within(
        Duration::from_secs(3),
        "the blocked record's own task",
        started,
    );
    let started = Instant::now();
    assert_eq!(other.apply(quiet, (1,)).unwrap(), 2);
    within(Duration::from_secs(3), "another pool's task", started);
    let started = Instant::now();
    let error = other
        .with(&CallOptions::new().timeout(Duration::from_millis(300)))
        .apply(sleepy, (30,))
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    within(Duration::from_secs(4), "a time limit of 300 ms", started);

    // 2. A flood while the logger is blocked: the flooding task ends, what does not fit is
    //    dropped and counted, and the count is said once the logger is back.
    let started = Instant::now();
    assert_eq!(logging.apply(chatter, (20_000, false)).unwrap(), 20_000);
    within(
        Duration::from_secs(20),
        "a task that logs 20,000 records",
        started,
    );
    let started = Instant::now();
    assert_eq!(other.apply(quiet, (2,)).unwrap(), 3);
    within(Duration::from_secs(3), "a task beside the flood", started);
    GATE.set_open(true);
    assert!(
        GATE.wait_for(Duration::from_secs(20), |state| {
            state.seen.iter().any(|line| line.contains("were dropped"))
        }),
        "no count of the records dropped"
    );
    let dropped = GATE.lines_with("were dropped");
    assert!(
        dropped[0].contains("records of worker processes"),
        "{dropped:?}"
    );
    assert_eq!(GATE.lines_with("BLOCK 7").len(), 1);

    // 3. A logger that crawls (1 ms a record) while a task logs 2,000 records: another task's
    //    result does not wait for them.
    let chatty = logging.apply_async(chatter, (2_000, true));
    assert!(
        GATE.wait_for(Duration::from_secs(10), |state| {
            state.seen.iter().any(|line| line.contains("SLOW chatter"))
        }),
        "the slow records never came"
    );
    let started = Instant::now();
    assert_eq!(other.apply(quiet, (3,)).unwrap(), 4);
    within(
        Duration::from_secs(3),
        "a task beside a crawling logger",
        started,
    );
    assert_eq!(chatty.get_timeout(Duration::from_secs(60)).unwrap(), 2_000);

    // 4. The mark is the kernel's word: a forked grandchild is marked by its own pid, and
    //    bytes written to the socket by a task are counted as no record, not passed on.
    let grandchild = logging.apply(fork_and_log, ()).unwrap();
    assert!(
        GATE.wait_for(Duration::from_secs(10), |state| {
            state
                .seen
                .iter()
                .any(|line| line.contains("from the grandchild"))
        }),
        "the grandchild's record never came"
    );
    let line = &GATE.lines_with("from the grandchild")[0];
    assert!(
        line.contains(&format!("[pid {grandchild}]")) && !line.contains("PoolWorker"),
        "the grandchild's record passes for its worker: {line}"
    );
    assert!(
        logging.apply(scribble, ()).unwrap() >= 1,
        "no log socket found"
    );
    assert!(
        GATE.wait_for(Duration::from_secs(10), |state| {
            state
                .seen
                .iter()
                .any(|line| line.contains("were not records of this build"))
        }),
        "bytes forged on the log socket were dropped without a word"
    );
    assert!(GATE.lines_with("SpawnPoolWorker-99").is_empty());

    // 5. A target over 64 KiB arrives cut, and says so.
    assert_eq!(logging.apply(long_target, ()).unwrap(), 100_000);
    assert!(
        GATE.wait_for(Duration::from_secs(10), |state| {
            state
                .seen
                .iter()
                .any(|line| line.contains("long target message"))
        }),
        "a record with a long target was lost"
    );
    let line = &GATE.lines_with("long target message")[0];
    assert!(
        line.contains("more bytes cut by mp"),
        "{}",
        &line[line.len() - 200..]
    );

    // 6. An initializer that sets up the worker's own logger or subscriber keeps it.
    for initializer in [0, 1] {
        let builder = Pool::builder().processes(1);
        let builder = if initializer == 0 {
            builder.initializer(own_env_logger, ())
        } else {
            builder.initializer(own_tracing_subscriber, ())
        };
        let pool = builder.build().unwrap();
        assert_eq!(pool.apply(quiet, (4,)).unwrap(), 5);
    }

    // 7. A task that shuts its log socket down silences its own worker only.
    let mut pools = [Pool::new(1).unwrap(), Pool::new(1).unwrap()];
    assert_eq!(pools[0].apply(shut_log_socket, ()).unwrap(), 0);
    assert_eq!(
        pools[1]
            .apply(say, ("after a shutdown".to_string(),))
            .unwrap(),
        1
    );
    assert_eq!(
        GATE.lines_with("after a shutdown").len(),
        1,
        "silenced by another worker"
    );

    // 8. Records a worker dropped as its last act are counted all the same: 8 records of
    //    60,000 bytes while the parent is stopped (its socket holds 3), nothing logged after.
    assert_eq!(
        pools[1]
            .apply(log_while_parent_stopped, (8, 60_000))
            .unwrap(),
        8
    );
    let [_, stopped] =
        std::mem::replace(&mut pools, [Pool::new(1).unwrap(), Pool::new(1).unwrap()]);
    drop(stopped);
    assert!(
        GATE.wait_for(Duration::from_secs(10), |state| {
            state
                .seen
                .iter()
                .any(|line| line.contains("of its records were dropped"))
        }),
        "records the worker dropped as its last act were lost without a word"
    );
    let arrived = GATE.lines_with(" stopped ").len();
    let said = GATE.lines_with("of its records were dropped");
    assert!(
        arrived < 8,
        "the socket held them all: the test shows nothing"
    );
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains(&format!("{} of its records", 8 - arrived)),
        "{arrived} arrived: {said:?}"
    );

    // 9. A record with a level `log` has not is counted, not dropped in silence; a logger
    //    that panics with a payload that panics again loses that record only.
    let before = GATE.lines_with("were not records of this build").len();
    assert!(pools[0].apply(forge_level, ()).unwrap());
    assert!(
        GATE.wait_for(Duration::from_secs(10), |state| {
            state
                .seen
                .iter()
                .filter(|l| l.contains("were not records of this build"))
                .count()
                > before
        }),
        "a record of level 9 vanished without a word"
    );
    let shown = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains("payload") && info.payload().downcast_ref::<Bomb>().is_none()
        {
            shown(info);
        }
    }));
    assert_eq!(pools[0].apply(bomb, ()).unwrap(), 1);
    assert_eq!(
        pools[0]
            .apply(say, ("after the bomb".to_string(),))
            .unwrap(),
        1
    );
    assert!(
        GATE.wait_for(Duration::from_secs(10), |state| {
            state
                .seen
                .iter()
                .any(|line| line.contains("after the bomb"))
        }),
        "the logger thread died of the panicking payload"
    );

    // 10. A fork() copy of this program relays its own workers' logs to its logger.
    // SAFETY: the copy runs only mp calls and the logger, then leaves with `_exit`.
    let copy = unsafe { libc::fork() };
    if copy == 0 {
        let logged = Pool::new(1)
            .and_then(|pool| pool.apply(say, ("in the copy".to_string(),)))
            .is_ok()
            && GATE.wait_for(Duration::from_secs(10), |state| {
                state.seen.iter().any(|line| line.contains("in the copy"))
            });
        // SAFETY: ends the copy at once.
        unsafe { libc::_exit(if logged { 0 } else { 1 }) };
    }
    assert_eq!(
        wait_child(copy, Duration::from_secs(60)),
        Some(0),
        "the copy's workers' logs were lost"
    );

    // 11. The program ends with its logger blocked for good.
    GATE.set_open(false);
    let _ = logging.apply(block_logger, (8,));
    assert!(GATE.wait_for(Duration::from_secs(10), |state| state.blocked));
}

/// Runs [`scenario`] in a child process: a logger is set up once for a whole process.
#[test]
fn the_relay_holds_against_hostile_loggers_and_tasks() {
    crate::in_child(scenario);
}
