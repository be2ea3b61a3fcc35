//! The sandbox attacked: each test is a way out of (or around) a sandboxed worker, tried from
//! inside one, and fails when the way works (README, Sandboxing: "What a sandboxed worker
//! cannot do"). A way that still works is a known limit: its test is ignored, with the reason
//! and what to do instead, as the README's "What it does not stop" says. `tests/it/sandbox.rs`
//! is the feature's own suite (each escape from a plain pool and from a sandboxed one, and
//! everything mp does working inside); this one is the hostile review's.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mp_runtime::{Event, Pool, Process, Sandbox, StartMethod, process_fn};

/// What an escape came to: `Ok` with what it got when it got out, else what stopped it.
type Escape = Result<String, String>;

fn errno() -> String {
    std::io::Error::last_os_error().to_string()
}

fn checked(result: libc::c_long, what: &str) -> Escape {
    if result < 0 {
        Err(format!("{what}: {}", errno()))
    } else {
        Ok(format!("{what}: {result}"))
    }
}

fn sandboxed_pool(method: StartMethod, sandbox: Sandbox) -> Pool {
    Pool::builder()
        .processes(1)
        .start_method(method)
        .sandbox(sandbox)
        .build()
        .unwrap()
}

const METHODS: [StartMethod; 2] = [StartMethod::Spawn, StartMethod::ForkServer];

/// A directory for one test, removed after it.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "mp-escape-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&root).unwrap();
        Dir(root)
    }

    fn path(&self, rest: &str) -> PathBuf {
        self.0.join(rest)
    }

    fn text(&self, rest: &str) -> String {
        self.path(rest).to_string_lossy().into_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Other processes of the same user: limits and scheduling, which no Landlock scope covers.

/// Lowers the parent's soft limit on open files to 16 with `prlimit`: the parent could as well
/// be given a CPU limit of one second (SIGXCPU kills it) or a file-size limit of 0 (SIGXFSZ).
#[process_fn]
fn limit_the_parent() -> Escape {
    // SAFETY: getppid has no arguments.
    let parent = unsafe { libc::getppid() };
    let mut old: libc::rlimit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let new = libc::rlimit {
        rlim_cur: 16,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: read the old limit first, into a live struct.
    let got = unsafe { libc::prlimit(parent, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    if got != 0 {
        return Err(format!("reading the parent's limit: {}", errno()));
    }
    let new = libc::rlimit {
        rlim_max: old.rlim_max,
        ..new
    };
    // SAFETY: a live struct to read from; no old value written.
    let set = unsafe { libc::prlimit(parent, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    checked(set as libc::c_long, "prlimit(parent, RLIMIT_NOFILE, 16)")
}

fn own_nofile() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: writes a live struct.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(got, 0);
    limit.rlim_cur
}

#[process_fn]
fn a_worker_cannot_change_the_parents_limits_body() {
    for method in METHODS {
        let before = own_nofile();
        let got = sandboxed_pool(method, Sandbox::new())
            .apply(limit_the_parent, ())
            .unwrap();
        let after = own_nofile();
        assert!(
            got.is_err() && before == after,
            "{method:?}: a sandboxed worker changed its parent's RLIMIT_NOFILE from {before} to \
             {after} ({got:?})"
        );
    }
}

#[process_fn]
fn a_sandboxed_process_cannot_change_its_parents_limits_body() {
    let before = own_nofile();
    let mut child = Process::builder()
        .sandbox(Sandbox::new())
        .start(limit_the_parent, ())
        .unwrap();
    let got = child.join_timeout(Duration::from_secs(60)).unwrap();
    let after = own_nofile();
    assert!(
        got.is_err() && before == after,
        "a sandboxed Process changed its parent's RLIMIT_NOFILE from {before} to {after} \
         ({got:?})"
    );
}

#[test]
fn a_sandboxed_process_cannot_change_its_parents_limits() {
    crate::in_child(a_sandboxed_process_cannot_change_its_parents_limits_body);
}

#[test]
fn a_worker_cannot_change_the_parents_limits() {
    crate::in_child(a_worker_cannot_change_the_parents_limits_body);
}

/// Renices the parent to 19, and moves it to SCHED_IDLE: it then runs only when nothing else
/// wants the CPU.
#[process_fn]
fn slow_the_parent_down() -> Vec<Escape> {
    // SAFETY: getppid has no arguments.
    let parent = unsafe { libc::getppid() };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: these calls take a pid and a live struct or plain numbers.
    unsafe {
        vec![
            checked(
                libc::setpriority(libc::PRIO_PROCESS, parent as libc::id_t, 19) as libc::c_long,
                "setpriority(parent, 19)",
            ),
            checked(
                libc::sched_setscheduler(parent, libc::SCHED_IDLE, &param) as libc::c_long,
                "sched_setscheduler(parent, SCHED_IDLE)",
            ),
            // IOPRIO_WHO_PROCESS, class idle.
            checked(
                libc::syscall(libc::SYS_ioprio_set, 1, parent, 3 << 13),
                "ioprio_set(parent, idle)",
            ),
        ]
    }
}

#[process_fn]
fn a_worker_cannot_reschedule_the_parent_body() {
    // As root the worker's dropped capabilities stop it (commoncap refuses a caller with fewer
    // capabilities than its target); a user's program has none to drop.
    become_nobody();
    let pool = sandboxed_pool(StartMethod::Spawn, Sandbox::new());
    let got = pool.apply(slow_the_parent_down, ()).unwrap();
    // SAFETY: plain calls about this process.
    let (nice, policy) = unsafe {
        *libc::__errno_location() = 0;
        (
            libc::getpriority(libc::PRIO_PROCESS, 0),
            libc::sched_getscheduler(0),
        )
    };
    let got_out: Vec<&String> = got.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert!(
        got_out.is_empty(),
        "a sandboxed worker rescheduled its parent: {got_out:?}; the parent's nice is now {nice}, \
         its policy {policy} (SCHED_IDLE is {})",
        libc::SCHED_IDLE
    );
}

/// Makes this (test child) process an unprivileged user's, as a program run by one is; its
/// workers are then that user's too. Only as root; otherwise it is one already.
fn become_nobody() {
    // SAFETY: plain calls about this process; setgroups takes no list (0 entries).
    unsafe {
        if libc::geteuid() != 0 {
            return;
        }
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
        assert_eq!(libc::setresgid(65534, 65534, 65534), 0);
        assert_eq!(libc::setresuid(65534, 65534, 65534), 0);
    }
}

#[test]
fn a_worker_cannot_reschedule_the_parent() {
    crate::in_child(a_worker_cannot_reschedule_the_parent_body);
}

// ---------------------------------------------------------------------------------------------
// Descriptors the worker inherits: its standard output and error.

/// Opens its standard output again through /proc/self/fd, for reading: where that is a pipe,
/// it reads what the parent (and every other worker) writes there.
#[process_fn]
fn read_the_parents_output() -> Escape {
    let path = c"/proc/self/fd/1";
    // SAFETY: a live C string; the descriptor returned is owned below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK) };
    if fd < 0 {
        return Err(format!("open /proc/self/fd/1 for reading: {}", errno()));
    }
    // SAFETY: just opened, owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut buffer = [0u8; 4096];
    // SAFETY: reads into a live buffer of its length.
    let n = unsafe { libc::read(fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) };
    if n < 0 {
        return Err(format!("read: {}", errno()));
    }
    Ok(String::from_utf8_lossy(&buffer[..n as usize]).into_owned())
}

#[process_fn]
fn a_worker_cannot_read_the_parents_output_body() {
    let mut fds = [0; 2];
    // SAFETY: a live array of two.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: fd 1 of this child process becomes the pipe's writing end; the reading end stays
    // open (and unread) here.
    unsafe {
        assert_eq!(libc::dup2(fds[1], 1), 1);
        libc::close(fds[1]);
    }
    for method in METHODS {
        let pool = sandboxed_pool(method, Sandbox::new());
        let secret = format!("secret printed by the parent ({method:?})\n");
        // SAFETY: writes a live buffer of its length.
        let wrote = unsafe { libc::write(1, secret.as_ptr().cast(), secret.len()) };
        assert_eq!(wrote, secret.len() as isize);
        let got = pool.apply(read_the_parents_output, ()).unwrap();
        assert!(
            got.is_err(),
            "{method:?}: a sandboxed worker read its parent's standard output: {got:?}"
        );
    }
}

#[test]
#[ignore = "known limit (README, Sandboxing): a worker inherits the parent's standard output and may reopen a pipe there through /proc/self/fd/1; run with stdout to a file or terminal"]
fn a_worker_cannot_read_the_parents_output() {
    crate::in_child(a_worker_cannot_read_the_parents_output_body);
}

/// Puts its standard output (the parent's open file description) in non-blocking mode.
#[process_fn]
fn make_stdout_nonblocking() -> Escape {
    // SAFETY: no memory arguments.
    let flags = unsafe { libc::fcntl(1, libc::F_GETFL) };
    // SAFETY: as above.
    let set = unsafe { libc::fcntl(1, libc::F_SETFL, flags | libc::O_NONBLOCK) };
    checked(set as libc::c_long, "fcntl(1, F_SETFL, O_NONBLOCK)")
}

// A parent whose standard output is a pipe then fails to print when the pipe is full
// (`println!` panics with EAGAIN) instead of waiting: the worker changed the parent.
#[process_fn]
fn a_worker_cannot_make_the_parents_output_nonblocking_body() {
    let mut fds = [0; 2];
    // SAFETY: a live array of two; fd 1 of this child becomes the pipe.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        assert_eq!(libc::dup2(fds[1], 1), 1);
    }
    let pool = sandboxed_pool(StartMethod::Spawn, Sandbox::new());
    let got = pool.apply(make_stdout_nonblocking, ()).unwrap();
    // SAFETY: no memory arguments.
    let flags = unsafe { libc::fcntl(1, libc::F_GETFL) };
    assert!(
        flags & libc::O_NONBLOCK == 0,
        "a sandboxed worker made its parent's standard output non-blocking ({got:?})"
    );
}

#[test]
#[ignore = "known limit (README, Sandboxing): a worker shares the open file of the parent's standard output and its O_NONBLOCK flag; run with stdout to a file or terminal"]
fn a_worker_cannot_make_the_parents_output_nonblocking() {
    crate::in_child(a_worker_cannot_make_the_parents_output_nonblocking_body);
}

/// Pushes `text` into the input of the terminal on its standard output, as if typed there: the
/// shell that started the parent reads it as a command once the parent exits.
#[process_fn]
fn type_into_the_terminal(text: String) -> Escape {
    for byte in text.bytes() {
        // SAFETY: TIOCSTI reads one byte through the pointer, to a live local.
        let got = unsafe { libc::ioctl(1, libc::TIOCSTI, &byte as *const u8) };
        if got != 0 {
            return Err(format!("ioctl(TIOCSTI): {}", errno()));
        }
    }
    Ok(format!("typed {text:?}"))
}

#[process_fn]
fn a_worker_cannot_type_into_the_terminal_body() {
    // A session of its own, with a new terminal as its controlling one and standard output,
    // as a program started from a shell in a terminal has.
    let (mut master, mut slave) = (0, 0);
    // SAFETY: setsid takes nothing; openpty writes two live ints (no name, termios or size).
    unsafe {
        assert!(libc::setsid() > 0, "setsid: {}", errno());
        assert_eq!(
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null()
            ),
            0
        );
        assert_eq!(libc::ioctl(slave, libc::TIOCSCTTY, 0), 0, "{}", errno());
        assert_eq!(libc::dup2(slave, 1), 1);
    }
    for method in METHODS {
        let pool = sandboxed_pool(method, Sandbox::new());
        let got = pool
            .apply(type_into_the_terminal, ("echo pwned\n".to_string(),))
            .unwrap();
        // What the shell would read next from the terminal.
        let mut typed = [0u8; 64];
        let mut pfd = libc::pollfd {
            fd: slave,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: a live pollfd; a read into a live buffer of its length.
        let n = unsafe {
            if libc::poll(&mut pfd, 1, 100) == 1 {
                libc::read(slave, typed.as_mut_ptr().cast(), typed.len())
            } else {
                0
            }
        };
        let typed = String::from_utf8_lossy(&typed[..n.max(0) as usize]).into_owned();
        assert!(
            got.is_err() && typed.is_empty(),
            "{method:?}: a sandboxed worker typed into its terminal: {got:?}; the terminal's \
             next input is {typed:?}"
        );
    }
    let _ = master;
}

#[test]
fn a_worker_cannot_type_into_the_terminal() {
    crate::in_child(a_worker_cannot_type_into_the_terminal_body);
}

// ---------------------------------------------------------------------------------------------
// Sockets a worker may still make (a stream pair) and hold.

/// Binds one end of a stream pair to the abstract name `name`, closes the other, and listens.
/// Keeps it (and answers whoever connects with "from inside") for `ms` milliseconds.
#[process_fn]
fn listen_on_abstract(name: Vec<u8>, ms: u64) -> Escape {
    let mut pair = [0; 2];
    // SAFETY: a live array of two.
    let made = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) };
    if made != 0 {
        return Err(format!("socketpair: {}", errno()));
    }
    // SAFETY: both just made, owned here.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };
    drop(theirs);
    // SAFETY: a zeroed sockaddr_un is valid; the name fits (checked by the caller's size).
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (at, byte) in name.iter().enumerate() {
        address.sun_path[at + 1] = *byte as libc::c_char;
    }
    let length = (size_of::<libc::sa_family_t>() + 1 + name.len()) as libc::socklen_t;
    // SAFETY: a live address of the length given.
    let bound = unsafe {
        libc::bind(
            ours.as_raw_fd(),
            (&address as *const libc::sockaddr_un).cast(),
            length,
        )
    };
    if bound != 0 {
        return Err(format!("bind: {}", errno()));
    }
    // SAFETY: no memory arguments.
    let listening = unsafe { libc::listen(ours.as_raw_fd(), 4) } == 0;
    let listen_error = errno();
    if listening {
        let deadline = std::time::Instant::now() + Duration::from_millis(ms);
        let mut pfd = libc::pollfd {
            fd: ours.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: a live pollfd.
        if unsafe { libc::poll(&mut pfd, 1, ms as i32) } == 1 {
            // SAFETY: no address wanted.
            let client = unsafe {
                libc::accept(ours.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut())
            };
            if client >= 0 {
                let hello = b"from inside";
                // SAFETY: a live buffer of its length; the descriptor is the accepted one.
                unsafe {
                    libc::write(client, hello.as_ptr().cast(), hello.len());
                    libc::close(client);
                }
                return Ok("listened on an abstract name, and a process outside connected".into());
            }
        }
        std::thread::sleep(deadline.saturating_duration_since(std::time::Instant::now()));
        return Ok("listened on an abstract name".into());
    }
    std::thread::sleep(Duration::from_millis(ms));
    Ok(format!("bound an abstract name (listen: {listen_error})"))
}

#[test]
fn a_worker_cannot_take_an_abstract_name() {
    use std::io::Read;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
    let name = format!("mp-escape-squat-{}", std::process::id()).into_bytes();
    let pool = sandboxed_pool(StartMethod::Spawn, Sandbox::new());
    let held = pool.apply_async(listen_on_abstract, (name.clone(), 3000));
    let address = SocketAddr::from_abstract_name(&name).unwrap();
    // A service outside (D-Bus, X11, ...) that starts after the worker took its name.
    let taken = mp_support::wait_for(Duration::from_secs(5), || {
        UnixListener::bind_addr(&address).is_err()
    });
    // A client outside, that believes it talks to that service.
    let mut client_read = String::new();
    if let Ok(mut client) = UnixStream::connect_addr(&address) {
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = client.read_to_string(&mut client_read);
    }
    let got = held.get_timeout(Duration::from_secs(60)).unwrap();
    assert!(
        !taken && client_read.is_empty(),
        "a sandboxed worker took the abstract name {:?} from the processes outside: {got:?}; a \
         client outside that connected read {client_read:?}",
        String::from_utf8_lossy(&name)
    );
}

// ---------------------------------------------------------------------------------------------
// Paths.

#[process_fn]
fn write_to(path: String) -> Escape {
    std::fs::write(&path, "written from inside")
        .map(|()| format!("wrote {path}"))
        .map_err(|e| e.to_string())
}

// README: "write below a `read_only` path" is stopped. A read-only folder inside a read-write
// one is the natural way to say "the inputs may not be changed, the rest of the work folder
// may"; Landlock only adds rights down a tree, so it would be writable: the pool is refused,
// with what to do instead.
#[test]
fn a_read_only_path_inside_a_read_write_one_stays_read_only() {
    let dir = Dir::new();
    std::fs::create_dir_all(dir.path("work/inputs")).unwrap();
    std::fs::write(dir.path("work/inputs/file.txt"), "input").unwrap();
    let sandbox = Sandbox::new()
        .read_write(dir.path("work"))
        .read_only(dir.path("work/inputs"));
    let err = Pool::builder()
        .processes(1)
        .sandbox(sandbox.clone())
        .build()
        .map(|pool| pool.apply(write_to, (dir.text("work/inputs/file.txt"),)))
        .expect_err("a read_only path inside a read_write one was allowed");
    assert!(err.is_sandbox(), "{err}");
    assert!(err.to_string().contains("read-only"), "{err}");
    let err = Process::builder()
        .sandbox(sandbox)
        .start(write_to, (dir.text("work/inputs/file.txt"),))
        .map(|_| ())
        .expect_err("a read_only path inside a read_write one was allowed");
    assert!(err.is_sandbox(), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path("work/inputs/file.txt")).unwrap(),
        "input"
    );
}

#[test]
fn a_path_given_both_read_only_and_read_write_is_refused_or_read_only() {
    let dir = Dir::new();
    std::fs::write(dir.path("file.txt"), "input").unwrap();
    // The same folder, once through a link: the paths are compared as the kernel reaches them.
    std::os::unix::fs::symlink(&dir.0, dir.path("link")).unwrap();
    let sandbox = Sandbox::new()
        .read_only(dir.path("link"))
        .read_write(&dir.0);
    let err = Pool::builder()
        .processes(1)
        .sandbox(sandbox)
        .build()
        .map(|pool| pool.apply(write_to, (dir.text("file.txt"),)))
        .expect_err("a path given both read_only and read_write was allowed");
    assert!(err.is_sandbox(), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path("file.txt")).unwrap(),
        "input"
    );
}

// ---------------------------------------------------------------------------------------------
// What outlives the worker.

/// Forks a child that lives on for `ms` milliseconds; returns its pid.
#[process_fn]
fn leave_a_child_behind(ms: u64) -> i32 {
    // SAFETY: the child only sleeps (nanosleep through std is async-signal-safe enough for a
    // single-threaded worker) and exits with _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        std::thread::sleep(Duration::from_millis(ms));
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    pid
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks.
    unsafe { libc::kill(pid, 0) == 0 }
}

// Once the pool is gone (or a task that timed out was killed), what a sandboxed worker forked
// lives on, still with what the sandbox lets it reach: the output folder, the log socket.
#[test]
#[ignore = "known limit (README, Sandboxing): what a worker forks may outlive the pool; run the parent in a cgroup or PID namespace that is killed as a whole"]
fn what_a_sandboxed_worker_forks_ends_with_the_pool() {
    let pool = sandboxed_pool(StartMethod::Spawn, Sandbox::new());
    let pid = pool.apply(leave_a_child_behind, (30_000,)).unwrap();
    assert!(pid > 0);
    drop(pool);
    let ended = mp_support::wait_for(Duration::from_secs(5), || !alive(pid));
    // SAFETY: ends the leftover (a process of this user), if any.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert!(
        ended,
        "process {pid}, forked by a sandboxed worker, outlived its pool"
    );
}

// ---------------------------------------------------------------------------------------------
// What held: each of these is refused.

#[process_fn]
fn signals_around() -> Vec<Escape> {
    // SAFETY: getppid has no arguments; kill and the raw calls take plain numbers.
    unsafe {
        let parent = libc::getppid();
        let pidfd = libc::syscall(libc::SYS_pidfd_open, parent, 0);
        vec![
            checked(libc::kill(parent, 0) as libc::c_long, "kill(parent, 0)"),
            if pidfd < 0 {
                Err(format!("pidfd_open: {}", errno()))
            } else {
                checked(
                    libc::syscall(libc::SYS_pidfd_send_signal, pidfd, 0, 0, 0),
                    "pidfd_send_signal(parent, 0)",
                )
            },
            checked(
                libc::syscall(libc::SYS_tgkill, parent, parent, 0),
                "tgkill(parent, 0)",
            ),
            checked(
                libc::syscall(libc::SYS_kcmp, libc::getpid(), parent, 0, 0, 0),
                "kcmp(self, parent, KCMP_FILE)",
            ),
        ]
    }
}

#[test]
fn signals_and_comparisons_with_the_parent_are_refused() {
    let pool = sandboxed_pool(StartMethod::Spawn, Sandbox::new());
    let got = pool.apply(signals_around, ()).unwrap();
    let out: Vec<&String> = got.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert!(out.is_empty(), "{out:?} (all: {got:?})");
}

static SIGNALS_SEEN: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count_signal(_: libc::c_int) {
    SIGNALS_SEEN.fetch_add(1, Ordering::SeqCst);
}

fn count_signals(signal: libc::c_int) {
    // SAFETY: a handler that only touches an atomic; sa_mask empty.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = count_signal as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        assert_eq!(libc::sigaction(signal, &action, std::ptr::null_mut()), 0);
    }
}

/// Signals its process group, which is its parent's.
#[process_fn]
fn signal_indirectly() -> Escape {
    // SAFETY: plain numbers.
    checked(
        unsafe { libc::kill(0, libc::SIGURG) } as libc::c_long,
        "kill(0, SIGURG)",
    )
}

#[process_fn]
fn nothing() {}

#[process_fn]
fn signals_to_the_process_group_do_not_reach_the_parent_body() {
    count_signals(libc::SIGURG);
    // From a plain worker, it reaches the parent: the test can fail.
    let plain = Pool::builder().processes(1).build().unwrap();
    plain.apply(signal_indirectly, ()).unwrap().unwrap();
    drop(plain);
    assert!(
        mp_support::wait_for(Duration::from_secs(10), || SIGNALS_SEEN
            .load(Ordering::SeqCst)
            >= 1),
        "a plain worker's signals did not arrive, so the test shows nothing"
    );
    SIGNALS_SEEN.store(0, Ordering::SeqCst);
    let pool = sandboxed_pool(StartMethod::Spawn, Sandbox::new());
    let set = pool.apply(signal_indirectly, ()).unwrap();
    pool.apply(nothing, ()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let seen = SIGNALS_SEEN.load(Ordering::SeqCst);
    assert_eq!(
        seen, 0,
        "the parent got {seen} signals from its worker ({set:?})"
    );
}

#[test]
fn signals_to_the_process_group_do_not_reach_the_parent() {
    crate::in_child(signals_to_the_process_group_do_not_reach_the_parent_body);
}

// ---------------------------------------------------------------------------------------------
// What is outside the file system Landlock rules: System V IPC and POSIX message queues.

const MARK: &[u8] = b"mp-escape secret of the parent";

/// Looks through every System V shared memory segment of the machine (`SHM_STAT_ANY` lists
/// them all) for `MARK`.
#[process_fn]
fn find_system_v_memory() -> Escape {
    const SHM_INFO: libc::c_int = 14;
    const SHM_STAT_ANY: libc::c_int = 15;
    // SAFETY: shmctl writes at most a shmid_ds into a live one; shmat maps read-only, and
    // the mapping is read within its size and removed.
    unsafe {
        let mut ds: libc::shmid_ds = std::mem::zeroed();
        let highest = libc::shmctl(0, SHM_INFO, &mut ds);
        if highest < 0 {
            return Err(format!("shmctl(SHM_INFO): {}", errno()));
        }
        let mut refused = Vec::new();
        for index in 0..=highest {
            let id = libc::shmctl(index, SHM_STAT_ANY, &mut ds);
            if id < 0 {
                continue;
            }
            let at = libc::shmat(id, std::ptr::null(), libc::SHM_RDONLY);
            if at as isize == -1 {
                refused.push(errno());
                continue;
            }
            let bytes = std::slice::from_raw_parts(at.cast::<u8>(), MARK.len().min(ds.shm_segsz));
            let found = bytes == MARK;
            libc::shmdt(at);
            if found {
                return Ok(format!("read segment {id}"));
            }
        }
        Err(format!("not found (refused: {refused:?})"))
    }
}

#[test]
fn system_v_shared_memory_of_the_parent_stays_closed() {
    // SAFETY: a private segment of one page, mapped, written within its size, unmapped, and
    // removed at the end.
    let id = unsafe {
        let id = libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600);
        assert!(id >= 0, "{}", errno());
        let at = libc::shmat(id, std::ptr::null(), 0);
        assert_ne!(at as isize, -1);
        std::ptr::copy_nonoverlapping(MARK.as_ptr(), at.cast::<u8>(), MARK.len());
        libc::shmdt(at);
        id
    };
    let pool = sandboxed_pool(StartMethod::Spawn, Sandbox::new());
    let got = pool.apply(find_system_v_memory, ());
    // SAFETY: removes the segment made above.
    unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    let got = got.unwrap();
    assert!(
        got.is_err(),
        "a sandboxed worker read the parent's System V shared memory: {got:?}"
    );
}

#[process_fn]
fn read_message_queue(name: String) -> Escape {
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: a live C string; mq_receive writes at most the buffer's length.
    unsafe {
        let queue = libc::mq_open(name.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK);
        if queue < 0 {
            return Err(format!("mq_open: {}", errno()));
        }
        let mut buffer = vec![0u8; 8192];
        let n = libc::mq_receive(
            queue,
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            std::ptr::null_mut(),
        );
        libc::mq_close(queue);
        if n < 0 {
            return Err(format!("mq_receive: {}", errno()));
        }
        Ok(String::from_utf8_lossy(&buffer[..n as usize]).into_owned())
    }
}

#[test]
fn a_posix_message_queue_of_the_parent_stays_closed() {
    let name = format!("/mp-escape-{}", std::process::id());
    let c_name = std::ffi::CString::new(name.clone()).unwrap();
    // SAFETY: a live C string; default attributes; sends a live buffer of its length.
    unsafe {
        let queue = libc::mq_open(
            c_name.as_ptr(),
            libc::O_CREAT | libc::O_RDWR,
            0o600 as libc::mode_t,
            std::ptr::null::<libc::mq_attr>(),
        );
        assert!(queue >= 0, "{}", errno());
        assert_eq!(libc::mq_send(queue, MARK.as_ptr().cast(), MARK.len(), 0), 0);
        libc::mq_close(queue);
    }
    let pool = sandboxed_pool(StartMethod::Spawn, Sandbox::new());
    let got = pool.apply(read_message_queue, (name,));
    // SAFETY: a live C string.
    unsafe { libc::mq_unlink(c_name.as_ptr()) };
    let got = got.unwrap();
    assert!(
        got.is_err(),
        "a sandboxed worker read the parent's message queue: {got:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Files outside: what Landlock (up to ABI 7) does not rule.

/// Changes the mode, times and extended attributes of `path`, a file outside its paths.
#[process_fn]
fn change_outside(path: String) -> Vec<Escape> {
    let c = std::ffi::CString::new(path).unwrap();
    let times = [libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    }; 2];
    let value = b"planted";
    // SAFETY: live C strings and buffers of the lengths given.
    unsafe {
        vec![
            checked(
                libc::chmod(c.as_ptr(), 0o4777) as libc::c_long,
                "chmod 4777",
            ),
            checked(
                libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) as libc::c_long,
                "utimensat to 1970",
            ),
            checked(
                libc::setxattr(
                    c.as_ptr(),
                    c"user.mp".as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                ) as libc::c_long,
                "setxattr user.mp",
            ),
        ]
    }
}

/// Opens `path`, outside its paths, as `O_PATH` (no access needed) and changes its mode and
/// owner through that descriptor: the descriptor forms the filter leaves open.
#[process_fn]
fn change_outside_by_descriptor(path: String) -> Vec<Escape> {
    let c = std::ffi::CString::new(path).unwrap();
    // SAFETY: a live C string; the descriptor is owned by `fd` and closed with it.
    unsafe {
        let fd = libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
        if fd < 0 {
            return vec![Err(format!("open O_PATH: {}", errno()))];
        }
        let fd = OwnedFd::from_raw_fd(fd);
        vec![
            checked(
                libc::fchmod(fd.as_raw_fd(), 0o4777) as libc::c_long,
                "fchmod 4777",
            ),
            checked(
                libc::fchown(fd.as_raw_fd(), libc::getuid(), libc::getgid()) as libc::c_long,
                "fchown",
            ),
            checked(
                libc::fsetxattr(
                    fd.as_raw_fd(),
                    c"user.mp".as_ptr(),
                    c"x".as_ptr().cast(),
                    1,
                    0,
                ) as libc::c_long,
                "fsetxattr user.mp",
            ),
        ]
    }
}

// The descriptor forms of chmod, chown and setxattr stay allowed: they need a descriptor
// opened for real (an O_PATH one gives EBADF), which Landlock rules.
#[test]
fn files_outside_cannot_be_changed_through_an_o_path_descriptor() {
    let dir = Dir::new();
    std::fs::create_dir_all(dir.path("outside")).unwrap();
    let file = dir.path("outside/file.txt");
    std::fs::write(&file, "private").unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let pool = sandboxed_pool(StartMethod::Spawn, Sandbox::new());
    let got = pool
        .apply(
            change_outside_by_descriptor,
            (dir.text("outside/file.txt"),),
        )
        .unwrap();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    let out: Vec<&String> = got.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert!(
        out.is_empty() && mode & 0o7777 == 0o600,
        "a sandboxed worker changed a file outside its paths: {out:?}; its mode is now {mode:o}"
    );
}

// Inside its paths a worker changes modes through a descriptor (File::set_permissions), not
// by path (std::fs::set_permissions), as the README says.
#[process_fn]
fn change_modes_inside(path: String) -> (bool, bool) {
    let by_path =
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o640));
    let by_file = std::fs::File::open(&path)
        .and_then(|f| f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o640)));
    (by_path.is_ok(), by_file.is_ok())
}

#[test]
fn modes_inside_change_through_a_descriptor_only() {
    let dir = Dir::new();
    std::fs::write(dir.path("file.txt"), "mine").unwrap();
    let pool = sandboxed_pool(StartMethod::Spawn, Sandbox::new().read_write(&dir.0));
    let got = pool
        .apply(change_modes_inside, (dir.text("file.txt"),))
        .unwrap();
    assert_eq!(got, (false, true));
}

// Run as root, `chmod 4755 /bin/sh` or `chmod 666 /etc/shadow` (files root owns) would give
// every local user root; run as a user, any of their files can be opened to every other user.
#[test]
fn files_outside_cannot_be_changed() {
    let dir = Dir::new();
    std::fs::create_dir_all(dir.path("outside")).unwrap();
    let file = dir.path("outside/file.txt");
    std::fs::write(&file, "private").unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let pool = sandboxed_pool(StartMethod::Spawn, Sandbox::new());
    let got = pool
        .apply(change_outside, (dir.text("outside/file.txt"),))
        .unwrap();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    let out: Vec<&String> = got.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert!(
        out.is_empty(),
        "a sandboxed worker changed a file outside its paths: {out:?}; its mode is now {mode:o}"
    );
}

/// What can be learned about `dir`, outside the paths given, and the file `name` in it.
#[process_fn]
fn learn_outside(dir: String, name: String, watching: Event) -> Vec<Escape> {
    let file = format!("{dir}/{name}");
    let c_file = std::ffi::CString::new(file.clone()).unwrap();
    let mut value = [0u8; 64];
    // SAFETY: a live C string and buffer of the length given.
    let xattr = unsafe {
        libc::getxattr(
            c_file.as_ptr(),
            c"user.secret".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    let mut got = vec![
        std::fs::metadata(&file)
            .map(|m| format!("size of {file}: {}", m.len()))
            .map_err(|e| e.to_string()),
        if xattr < 0 {
            Err(format!("getxattr: {}", errno()))
        } else {
            Ok(format!(
                "user.secret: {}",
                String::from_utf8_lossy(&value[..xattr as usize])
            ))
        },
    ];
    // A name created there after the watch begins.
    // SAFETY: inotify on a live C string; reads into a live buffer of its length.
    unsafe {
        let fd = libc::inotify_init1(libc::IN_CLOEXEC);
        let c_dir = std::ffi::CString::new(dir).unwrap();
        if libc::inotify_add_watch(fd, c_dir.as_ptr(), libc::IN_CREATE) < 0 {
            got.push(Err(format!("inotify_add_watch: {}", errno())));
        } else {
            watching.set().unwrap();
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let mut buffer = [0u8; 4096];
            if libc::poll(&mut pfd, 1, 10_000) == 1 {
                let n = libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len());
                let event = &buffer[16..n.max(16) as usize];
                got.push(Ok(format!(
                    "created there: {}",
                    String::from_utf8_lossy(event).trim_end_matches('\0')
                )));
            } else {
                got.push(Err("no event".into()));
            }
        }
        libc::close(fd);
    }
    got
}

#[test]
#[ignore = "known limit (README, Sandboxing): stat, getxattr and inotify on paths outside are not ruled by Landlock; keep secrets out of names, sizes and attributes"]
fn nothing_is_learned_about_files_outside() {
    let dir = Dir::new();
    std::fs::create_dir_all(dir.path("outside")).unwrap();
    let file = dir.path("outside/id_rsa");
    std::fs::write(&file, "private key").unwrap();
    let c_file = std::ffi::CString::new(dir.text("outside/id_rsa")).unwrap();
    // SAFETY: a live C string and value of the length given.
    unsafe {
        libc::setxattr(
            c_file.as_ptr(),
            c"user.secret".as_ptr(),
            b"xattr secret".as_ptr().cast(),
            12,
            0,
        )
    };
    let pool = sandboxed_pool(StartMethod::Spawn, Sandbox::new());
    let watching = Event::new().unwrap();
    let watched = pool.apply_async(
        learn_outside,
        (dir.text("outside"), "id_rsa".to_string(), watching.clone()),
    );
    // The parent creates a file there once the worker watches.
    let _ = watching.wait_timeout(Duration::from_secs(60));
    std::fs::write(dir.path("outside/new_secret_name"), "").unwrap();
    let got = watched.get_timeout(Duration::from_secs(60)).unwrap();
    let out: Vec<&String> = got.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert!(
        out.is_empty(),
        "a sandboxed worker learned about files outside its paths: {out:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The parent, as the worker's reader.

/// Writes, on its own channel to the parent, the header of a frame of 32 GiB and then `mib`
/// MiB of it from one small buffer, and exits: a worker limited to little memory makes the
/// parent hold what it sends.
#[process_fn]
fn announce_a_huge_frame(mib: usize) {
    let channel = (3..16)
        .find(|&fd| {
            let mut kind: libc::c_int = 0;
            let mut len = size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: a live int and its length.
            let ok = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_TYPE,
                    (&mut kind as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            ok == 0 && kind == libc::SOCK_STREAM
        })
        .expect("the channel");
    let header = (1u64 << 35).to_le_bytes();
    let zeros = vec![0u8; 1 << 20];
    // SAFETY: writes live buffers of their lengths; exits without unwinding.
    unsafe {
        libc::write(channel, header.as_ptr().cast(), header.len());
        for _ in 0..mib {
            let mut at = 0;
            while at < zeros.len() {
                let n = libc::write(channel, zeros[at..].as_ptr().cast(), zeros.len() - at);
                if n <= 0 {
                    libc::_exit(0);
                }
                at += n as usize;
            }
        }
        libc::_exit(0);
    }
}

fn peak_rss_mib() -> i64 {
    // SAFETY: getrusage writes a live struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss / 1024
}

#[process_fn]
fn a_worker_cannot_make_the_parent_hold_what_it_sends_body() {
    let before = peak_rss_mib();
    let pool = Pool::builder()
        .processes(1)
        .memory_limit(256 << 20)
        .sandbox(Sandbox::new())
        .build()
        .unwrap();
    let err = pool.apply(announce_a_huge_frame, (512,)).unwrap_err();
    let grown = peak_rss_mib() - before;
    assert!(
        grown < 256,
        "a sandboxed worker with a memory limit of 256 MiB made its parent's memory grow by \
         {grown} MiB (with 512 MiB of a frame announced as 32 GiB; the channel takes up to 64 \
         GiB); the call ended with: {err}"
    );
}

#[test]
#[ignore = "known limit (README, Sandboxing): the parent holds a result frame as large as a worker announces, up to the channel's bound; run the parent under a memory limit (a cgroup)"]
fn a_worker_cannot_make_the_parent_hold_what_it_sends() {
    crate::in_child(a_worker_cannot_make_the_parent_hold_what_it_sends_body);
}

// ---------------------------------------------------------------------------------------------
// Paths, as each new worker opens them again.

/// Replaces the folder `inputs` (below a read-write path) with a link to `target`.
#[process_fn]
fn swap_for_a_link(inputs: String, target: String) -> Escape {
    std::fs::remove_dir_all(&inputs).map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink(&target, &inputs).map_err(|e| e.to_string())?;
    Ok(format!("{inputs} -> {target}"))
}

#[process_fn]
fn read_text(path: String) -> Escape {
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

// Each worker opens the paths given when it starts: a worker that may write where a path
// given lies puts a link there, and the workers started after it (after a crash, a time
// limit, `max_tasks_per_child`, a resize) would be given what the link points to, e.g. `/`.
// The paths are made canonical once, when the pool is built, and a worker follows no link to
// them: the next worker refuses to start instead.
#[test]
fn a_worker_cannot_widen_the_sandbox_of_the_workers_after_it() {
    let dir = Dir::new();
    for sub in ["work/inputs", "outside"] {
        std::fs::create_dir_all(dir.path(sub)).unwrap();
    }
    std::fs::write(dir.path("outside/file.txt"), "outside").unwrap();
    let sandbox = Sandbox::new()
        .read_write(dir.path("work"))
        .read_write(dir.path("work/inputs"));
    let pool = Pool::builder()
        .processes(1)
        .max_tasks_per_child(1)
        .sandbox(sandbox)
        .build()
        .unwrap();
    let swapped = pool
        .apply(
            swap_for_a_link,
            (dir.text("work/inputs"), dir.text("outside")),
        )
        .unwrap();
    assert!(swapped.is_ok(), "{swapped:?}");
    let got = pool.apply(write_to, (dir.text("outside/file.txt"),));
    assert_eq!(
        std::fs::read_to_string(dir.path("outside/file.txt")).unwrap(),
        "outside",
        "after one worker's {swapped:?}, the next wrote outside: {got:?}"
    );
    let err = got.expect_err("a worker started with a link planted in its sandbox");
    assert!(err.to_string().contains("symbolic link"), "{err}");
}

// A link given (or planted before the sandbox is built) is resolved once, in the parent: the
// folder it names then is what is allowed, as the user saw it.
#[test]
fn a_link_given_is_resolved_once_when_the_sandbox_is_built() {
    let dir = Dir::new();
    for sub in ["work", "outside"] {
        std::fs::create_dir_all(dir.path(sub)).unwrap();
    }
    std::fs::write(dir.path("outside/file.txt"), "outside").unwrap();
    std::os::unix::fs::symlink(dir.path("outside"), dir.path("work/inputs")).unwrap();
    let sandbox = Sandbox::new().read_only(dir.path("work/inputs"));
    // Built on the path the link names, as the user gave it: that is what is allowed.
    let p = Process::builder()
        .sandbox(sandbox)
        .start(read_text, (dir.text("outside/file.txt"),))
        .unwrap();
    assert_eq!(p.join().unwrap(), Ok("outside".to_string()));
}

#[test]
fn many_paths_are_given() {
    let dir = Dir::new();
    let mut sandbox = Sandbox::new();
    for at in 0..2000 {
        let sub = dir.path(&format!("d{at}"));
        std::fs::create_dir_all(&sub).unwrap();
        sandbox = sandbox.read_only(&sub);
    }
    std::fs::write(dir.path("d1999/file.txt"), "last").unwrap();
    let pool = sandboxed_pool(StartMethod::ForkServer, sandbox);
    assert_eq!(
        pool.apply(read_text, (dir.text("d1999/file.txt"),))
            .unwrap(),
        Ok("last".to_string())
    );
    assert!(
        pool.apply(read_text, (dir.text("file.txt"),))
            .unwrap()
            .is_err()
    );
}

// ---------------------------------------------------------------------------------------------
// The log socket (and any other socket a worker holds) sends to no socket named by a path.

#[process_fn]
fn send_through_the_log_socket(path: String) -> Escape {
    let log = (3..16)
        .find(|&fd| {
            let mut kind: libc::c_int = 0;
            let mut len = size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: a live int and its length.
            let ok = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_TYPE,
                    (&mut kind as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            ok == 0 && kind != libc::SOCK_STREAM
        })
        .ok_or("no log socket")?;
    // SAFETY: borrowed for this call only; the worker's logger keeps owning it.
    let socket =
        std::mem::ManuallyDrop::new(unsafe { std::os::unix::net::UnixDatagram::from_raw_fd(log) });
    socket
        .send_to(b"<13>forged by a sandboxed worker", &path)
        .map(|n| format!("sent {n} bytes to {path}"))
        .map_err(|e| e.to_string())
}

#[process_fn]
fn the_log_socket_reaches_no_named_socket_body() {
    env_logger::Builder::new()
        .parse_filters("warn")
        .target(env_logger::Target::Pipe(Box::new(std::io::sink())))
        .init();
    let dir = Dir::new();
    std::fs::create_dir_all(dir.path("outside")).unwrap();
    let receiver = std::os::unix::net::UnixDatagram::bind(dir.path("outside/log")).unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let pool = sandboxed_pool(StartMethod::Spawn, Sandbox::new());
    let got = pool
        .apply(send_through_the_log_socket, (dir.text("outside/log"),))
        .unwrap();
    let mut buffer = [0u8; 256];
    let received = receiver
        .recv(&mut buffer)
        .map(|n| String::from_utf8_lossy(&buffer[..n]).into_owned());
    // A sequenced-packet socket ignores the address (the packet goes to the relay).
    assert!(
        received.is_err(),
        "{got:?}; the socket outside received {received:?}"
    );
}

#[test]
fn the_log_socket_reaches_no_named_socket() {
    crate::in_child(the_log_socket_reaches_no_named_socket_body);
}

// ---------------------------------------------------------------------------------------------
// `memory_limit`, which the README pairs with the sandbox for what it does not bound.

/// Fills a memfd with `mib` MiB, kept until the call returns.
#[process_fn]
fn fill_a_memfd(mib: usize) -> Escape {
    // SAFETY: a live C string; the descriptor is owned below.
    let fd = unsafe { libc::memfd_create(c"fill".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: just made, owned here.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let chunk = vec![1u8; 1 << 20];
    for _ in 0..mib {
        std::io::Write::write_all(&mut &file, &chunk).map_err(|e| e.to_string())?;
    }
    Ok(format!("{mib} MiB held in a memfd"))
}

#[test]
#[ignore = "known limit (README, Sandboxing): memory_limit bounds the address space, not memfd or tmpfs pages; use a memory cgroup"]
fn memory_limit_bounds_a_sandboxed_worker() {
    let pool = Pool::builder()
        .processes(1)
        .memory_limit(64 << 20)
        .sandbox(Sandbox::new())
        .build()
        .unwrap();
    let got = pool.apply(fill_a_memfd, (256,)).unwrap();
    assert!(got.is_err(), "a worker limited to 64 MiB: {got:?}");
}

/// Opens `secret` (outside) with O_PATH, which Landlock does not rule, and tries to give it a
/// name below `outputs` (read-write) through /proc/self/fd, or to move it there; then reads it
/// under that name.
#[process_fn]
fn link_in(secret: String, outputs: String) -> Vec<Escape> {
    let c_secret = std::ffi::CString::new(secret.clone()).unwrap();
    // SAFETY: a live C string.
    let fd = unsafe { libc::open(c_secret.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return vec![Err(format!("O_PATH: {}", errno()))];
    }
    let via = std::ffi::CString::new(format!("/proc/self/fd/{fd}")).unwrap();
    let linked = std::ffi::CString::new(format!("{outputs}/linked")).unwrap();
    let moved = format!("{outputs}/moved");
    // SAFETY: live C strings.
    let link = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            via.as_ptr(),
            libc::AT_FDCWD,
            linked.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    let mut got = vec![if link == 0 {
        std::fs::read_to_string(format!("{outputs}/linked")).map_err(|e| e.to_string())
    } else {
        Err(format!("linkat: {}", errno()))
    }];
    got.push(
        std::fs::rename(&secret, &moved)
            .map_err(|e| e.to_string())
            .and_then(|()| std::fs::read_to_string(&moved).map_err(|e| e.to_string())),
    );
    got
}

#[test]
fn a_file_outside_cannot_be_linked_or_moved_in() {
    let dir = Dir::new();
    for sub in ["outputs", "outside"] {
        std::fs::create_dir_all(dir.path(sub)).unwrap();
    }
    std::fs::write(dir.path("outside/secret"), "secret").unwrap();
    let sandbox = Sandbox::new().read_write(dir.path("outputs"));
    let pool = sandboxed_pool(StartMethod::Spawn, sandbox);
    let got = pool
        .apply(link_in, (dir.text("outside/secret"), dir.text("outputs")))
        .unwrap();
    let out: Vec<&String> = got.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert!(out.is_empty(), "{out:?} (all: {got:?})");
}

/// Makes a user namespace (which gives every capability inside it) and a mount namespace, and
/// tries to mount over what it cannot read, or to become root in the parent's view.
#[process_fn]
fn new_namespaces() -> Vec<Escape> {
    // SAFETY: unshare and mount take plain numbers and live C strings.
    unsafe {
        let unshared = libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS);
        if unshared != 0 {
            return vec![Err(format!("unshare: {}", errno()))];
        }
        vec![
            checked(
                libc::mount(
                    c"none".as_ptr(),
                    c"/tmp".as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    std::ptr::null(),
                ) as libc::c_long,
                "mount tmpfs on /tmp",
            ),
            checked(libc::chroot(c"/".as_ptr()) as libc::c_long, "chroot /").and_then(|_| {
                std::fs::read_dir("/")
                    .map(|_| "listed /".to_string())
                    .map_err(|e| e.to_string())
            }),
            checked(
                libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) as libc::c_long,
                "socket(AF_INET)",
            ),
        ]
    }
}

#[test]
fn new_namespaces_give_no_way_out() {
    let pool = sandboxed_pool(StartMethod::Spawn, Sandbox::new());
    let got = pool.apply(new_namespaces, ()).unwrap();
    let out: Vec<&String> = got.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert!(out.is_empty(), "{out:?} (all: {got:?})");
}

// ---------------------------------------------------------------------------------------------
// What mp does inside: handles made by a task.

#[process_fn]
fn make_handles_inside() -> Vec<Escape> {
    let said = |what: &str, r: mp_runtime::Result<()>| -> Escape {
        r.map(|()| what.to_string())
            .map_err(|e| format!("{what}: {e}"))
    };
    vec![
        said(
            "Queue",
            mp_runtime::Queue::<u32>::new().and_then(|q| {
                q.put(&1)?;
                q.get_timeout(Duration::from_secs(5)).map(drop)
            }),
        ),
        said(
            "pipe",
            mp_runtime::pipe::<u32>().and_then(|(a, b)| {
                b.send(&1)?;
                a.recv().map(drop)
            }),
        ),
        said("Lock", mp_runtime::Lock::new().map(drop)),
        said("Event", mp_runtime::Event::new().map(drop)),
        said("Barrier", mp_runtime::Barrier::new(1).map(drop)),
        said("Value", mp_runtime::Value::new(1u64).map(drop)),
        said(
            "SharedMemory",
            mp_runtime::SharedMemory::new(4096).map(drop),
        ),
    ]
}

#[test]
fn handles_can_be_made_inside() {
    for method in METHODS {
        let pool = sandboxed_pool(method, Sandbox::new());
        let got = pool.apply(make_handles_inside, ()).unwrap();
        let failed: Vec<&String> = got.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(failed.is_empty(), "{method:?}: {failed:?}");
    }
}
