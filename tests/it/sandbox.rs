//! Sandboxed workers: each way out of a worker is first shown to work from a plain pool, then
//! to fail from sandboxed ones (both start methods, and a sandboxed `Process`); everything mp
//! does is shown to keep working inside. As root, the same tests run again as an unprivileged
//! user (`an_unprivileged_user_is_sandboxed_the_same`).

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mp_runtime::{
    Array, Barrier, Connection, Event, Lock, Pool, Process, ProcessFn, Queue, Restriction, Sandbox,
    SharedMemory, StartMethod, Value, pipe, process_fn,
};
use serde::Serialize;

/// What an escape came to: `Ok` when it got out, else what stopped it.
type Escape = Result<(), String>;

fn said<T, E: std::fmt::Display>(result: Result<T, E>) -> Escape {
    result.map(drop).map_err(|e| e.to_string())
}

/// A directory tree for one test: `inputs` (the sandbox lets workers read it), `outputs`
/// (read and write) and `outside` (not given), each with a file.
struct Scene {
    root: PathBuf,
}

impl Scene {
    fn new() -> Scene {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "mp-sandbox-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        for dir in ["inputs", "outputs", "outside"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
            std::fs::write(root.join(dir).join("file.txt"), dir).unwrap();
        }
        Scene { root }
    }

    fn path(&self, rest: &str) -> String {
        self.root.join(rest).to_string_lossy().into_owned()
    }

    fn sandbox(&self) -> Sandbox {
        Sandbox::new()
            .read_only(self.root.join("inputs"))
            .read_write(self.root.join("outputs"))
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn pool(sandbox: Option<Sandbox>, method: StartMethod) -> Pool {
    let builder = Pool::builder().processes(1).start_method(method);
    match sandbox {
        Some(sandbox) => builder.sandbox(sandbox),
        None => builder,
    }
    .build()
    .unwrap()
}

/// Runs `f(args)` from a plain pool, where it must get out, and from sandboxed workers (of
/// both start methods, and a sandboxed `Process`), where it must not.
fn check_escape<F, A>(what: &str, sandbox: Sandbox, f: F, args: A)
where
    F: ProcessFn<A, Output = Escape>,
    A: Serialize + Clone,
{
    let plain = pool(None, StartMethod::Spawn)
        .apply(f, args.clone())
        .unwrap();
    assert_eq!(
        plain,
        Ok(()),
        "{what}: a plain worker cannot do it, so the test shows nothing"
    );
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let boxed = pool(Some(sandbox.clone()), method);
        let got = boxed.apply(f, args.clone()).unwrap();
        assert!(
            got.is_err(),
            "{what}: a sandboxed worker ({method:?}) got out"
        );
    }
    let process = Process::builder().sandbox(sandbox).start(f, args).unwrap();
    let got = process.join().unwrap();
    assert!(got.is_err(), "{what}: a sandboxed process got out");
}

#[process_fn]
fn read_file(path: String) -> Escape {
    said(std::fs::read(path))
}

#[process_fn]
fn list_dir(path: String) -> Escape {
    said(std::fs::read_dir(path))
}

#[process_fn]
fn write_file(path: String) -> Escape {
    said(std::fs::OpenOptions::new().append(true).open(path))
}

#[process_fn]
fn create_file(path: String) -> Escape {
    let created = said(std::fs::File::create(&path));
    let _ = std::fs::remove_file(&path);
    created
}

#[process_fn]
fn tcp_connect(port: u16) -> Escape {
    said(TcpStream::connect(("127.0.0.1", port)))
}

#[process_fn]
fn tcp_bind() -> Escape {
    said(TcpListener::bind("127.0.0.1:0"))
}

#[process_fn]
fn udp_send(port: u16) -> Escape {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    said(socket.send_to(b"out", ("127.0.0.1", port)))
}

#[process_fn]
fn unix_connect(path: String) -> Escape {
    said(UnixStream::connect(path))
}

/// Sends to a named datagram socket from a socket pair, the one kind of socket a sandboxed
/// worker may make.
#[process_fn]
fn unix_send_to(path: String) -> Escape {
    let (ours, _theirs) = UnixDatagram::pair().map_err(|e| e.to_string())?;
    said(ours.send_to(b"out", path))
}

#[process_fn]
fn abstract_connect(name: Vec<u8>) -> Escape {
    let address = SocketAddr::from_abstract_name(name).map_err(|e| e.to_string())?;
    said(UnixStream::connect_addr(&address))
}

#[process_fn]
fn run_program() -> Escape {
    let status = Command::new("/bin/true")
        .status()
        .map_err(|e| e.to_string())?;
    status.success().then_some(()).ok_or(status.to_string())
}

/// Forks, and the child runs a program: a grandchild is held as its parent is.
#[process_fn]
fn fork_and_run_program() -> Escape {
    let program = c"/bin/true";
    let argv = [program.as_ptr(), std::ptr::null()];
    // SAFETY: the child only calls execv and _exit, both async-signal-safe, on memory made
    // before the fork; the parent waits for it.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above; `argv` ends with a null pointer.
        unsafe {
            libc::execv(program.as_ptr(), argv.as_ptr());
            libc::_exit(127);
        }
    }
    if pid < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked; `status` is a live int.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
        Some(0) => Ok(()),
        _ => Err(format!(
            "the grandchild could not run the program (status {status:#x})"
        )),
    }
}

/// Sends SIGURG (ignored unless handled) to `pid`.
#[process_fn]
fn signal(pid: u32) -> Escape {
    // SAFETY: kill has no memory arguments.
    match unsafe { libc::kill(pid as i32, libc::SIGURG) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error().to_string()),
    }
}

/// Attaches to `pid` with ptrace, and if that works, stops it and lets it go at once.
#[process_fn]
fn trace(pid: u32) -> Escape {
    let pid = pid as libc::pid_t;
    let null = std::ptr::null_mut::<libc::c_void>();
    // SAFETY: SEIZE, INTERRUPT and DETACH take no memory here (null address and data); waitpid
    // writes a live int.
    unsafe {
        if libc::ptrace(libc::PTRACE_SEIZE, pid, null, null) != 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        // A seized process stops for its tracer at each signal: stop it once and detach, so
        // that it never waits for this one.
        libc::ptrace(libc::PTRACE_INTERRUPT, pid, null, null);
        let mut status = 0;
        libc::waitpid(pid, &mut status, libc::__WALL);
        let stop = libc::WSTOPSIG(status);
        // A signal it stopped for is handed back to it; the interrupt's own stop is not one.
        let pass = if status >> 16 == 0 && stop != libc::SIGTRAP {
            stop
        } else {
            0
        };
        libc::ptrace(
            libc::PTRACE_DETACH,
            pid,
            null,
            pass as usize as *mut libc::c_void,
        );
    }
    Ok(())
}

#[process_fn]
fn open_memory(pid: u32) -> Escape {
    said(std::fs::File::open(format!("/proc/{pid}/mem")))
}

#[process_fn]
fn read_environment(pid: u32) -> Escape {
    said(std::fs::read(format!("/proc/{pid}/environ")))
}

#[process_fn]
fn write_own_program() -> Escape {
    said(
        std::fs::OpenOptions::new()
            .write(true)
            .open("/proc/self/exe"),
    )
}

/// A file created beside the program (its build directory), and removed.
#[process_fn]
fn create_beside_program(name: String) -> Escape {
    let program = std::fs::read_link("/proc/self/exe").map_err(|e| e.to_string())?;
    create_file(program.with_file_name(name).to_string_lossy().into_owned())
}

#[test]
fn reading_a_file_outside_fails() {
    let scene = Scene::new();
    let outside = scene.path("outside/file.txt");
    check_escape("read", scene.sandbox(), read_file, (outside,));
}

#[test]
fn listing_a_directory_outside_fails() {
    let scene = Scene::new();
    check_escape("list", scene.sandbox(), list_dir, (scene.path("outside"),));
}

#[test]
fn writing_below_a_read_only_path_fails() {
    let scene = Scene::new();
    let input = scene.path("inputs/file.txt");
    check_escape("write", scene.sandbox(), write_file, (input,));
}

#[test]
fn creating_a_file_outside_fails() {
    let scene = Scene::new();
    let new = scene.path("outside/new.txt");
    check_escape("create", scene.sandbox(), create_file, (new,));
}

#[test]
fn connecting_to_a_tcp_listener_of_the_parent_fails() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    check_escape("tcp connect", Sandbox::new(), tcp_connect, (port,));
}

#[test]
fn binding_a_tcp_port_fails() {
    check_escape("tcp bind", Sandbox::new(), tcp_bind, ());
}

#[test]
fn sending_a_udp_datagram_fails() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    check_escape("udp send", Sandbox::new(), udp_send, (port,));
}

#[test]
fn reaching_a_unix_socket_by_its_path_fails() {
    let scene = Scene::new();
    let stream = scene.root.join("outside/stream.sock");
    let _listener = UnixListener::bind(&stream).unwrap();
    let stream = stream.to_string_lossy().into_owned();
    check_escape("unix connect", scene.sandbox(), unix_connect, (stream,));
    let datagram = scene.root.join("outside/datagram.sock");
    let _receiver = UnixDatagram::bind(&datagram).unwrap();
    let datagram = datagram.to_string_lossy().into_owned();
    check_escape("unix send_to", scene.sandbox(), unix_send_to, (datagram,));
}

#[test]
fn connecting_to_an_abstract_socket_of_the_parent_fails() {
    let name = format!("mp-sandbox-test-{}", std::process::id()).into_bytes();
    let address = SocketAddr::from_abstract_name(&name).unwrap();
    let _listener = UnixListener::bind_addr(&address).unwrap();
    check_escape(
        "abstract",
        Sandbox::new(),
        abstract_connect,
        (name.clone(),),
    );
    // With the network allowed, it is Landlock's scope that refuses.
    let open = Sandbox::new().allow_network();
    check_escape("abstract, network allowed", open, abstract_connect, (name,));
}

#[test]
fn running_a_program_fails() {
    check_escape("execve", Sandbox::new(), run_program, ());
}

#[test]
fn a_forked_grandchild_cannot_run_a_program_either() {
    check_escape("fork and exec", Sandbox::new(), fork_and_run_program, ());
}

#[test]
fn signalling_the_parent_fails() {
    check_escape("kill", Sandbox::new(), signal, (std::process::id(),));
}

#[test]
fn tracing_the_parent_fails() {
    check_escape("ptrace", Sandbox::new(), trace, (std::process::id(),));
}

#[test]
fn the_parents_memory_and_environment_stay_closed() {
    let me = std::process::id();
    check_escape("/proc/pid/mem", Sandbox::new(), open_memory, (me,));
    check_escape("/proc/pid/environ", Sandbox::new(), read_environment, (me,));
}

// The kernel refuses to open a running program for writing (ETXTBSY) in a plain worker too;
// what a worker could do is put a file beside it, in its build directory.
#[test]
fn the_program_cannot_be_written_or_added_to() {
    let plain = pool(None, StartMethod::Spawn).apply(write_own_program, ());
    let busy = std::io::Error::from_raw_os_error(libc::ETXTBSY).to_string();
    assert_eq!(plain.unwrap(), Err(busy));
    let boxed = pool(Some(Sandbox::new()), StartMethod::Spawn);
    assert!(boxed.apply(write_own_program, ()).unwrap().is_err());
    let name = format!("mp-sandbox-beside-{}", std::process::id());
    check_escape("beside", Sandbox::new(), create_beside_program, (name,));
}

#[test]
fn the_paths_given_are_open() {
    let scene = Scene::new();
    let boxed = pool(Some(scene.sandbox()), StartMethod::Spawn);
    let ok = |escape: mp_runtime::Result<Escape>| assert_eq!(escape.unwrap(), Ok(()));
    ok(boxed.apply(read_file, (scene.path("inputs/file.txt"),)));
    ok(boxed.apply(list_dir, (scene.path("inputs"),)));
    ok(boxed.apply(write_file, (scene.path("outputs/file.txt"),)));
    ok(boxed.apply(create_file, (scene.path("outputs/new.txt"),)));
    // A file given alone is open, and nothing beside it.
    let one = Sandbox::new().read_only(scene.root.join("outside/file.txt"));
    let boxed = pool(Some(one), StartMethod::Spawn);
    ok(boxed.apply(read_file, (scene.path("outside/file.txt"),)));
    assert!(
        boxed
            .apply(list_dir, (scene.path("outside"),))
            .unwrap()
            .is_err()
    );
}

#[test]
fn the_network_can_be_allowed() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let boxed = pool(Some(Sandbox::new().allow_network()), StartMethod::Spawn);
    assert_eq!(boxed.apply(tcp_connect, (port,)).unwrap(), Ok(()));
    assert_eq!(boxed.apply(tcp_bind, ()).unwrap(), Ok(()));
    let report = boxed.sandbox_report().unwrap();
    assert!(!report.enforces(Restriction::Network), "{report}");
    // The rest still holds.
    assert!(boxed.apply(run_program, ()).unwrap().is_err());
}

/// Whether this worker is sandboxed: it cannot list /tmp.
fn sandboxed() -> bool {
    std::fs::read_dir(std::env::temp_dir()).is_err()
}

#[process_fn]
fn reverse(mut bytes: Vec<u8>) -> (Vec<u8>, bool) {
    bytes.reverse();
    (bytes, sandboxed())
}

#[test]
fn calls_and_results_of_any_size_cross() {
    // Large ones travel in a memfd, which the receiver maps.
    let large: Vec<u8> = (0..6 << 20).map(|i| i as u8).collect();
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let boxed = pool(Some(Sandbox::new()), method);
        let (back, inside) = boxed.apply(reverse, (large.clone(),)).unwrap();
        assert!(inside);
        assert!(back.iter().rev().eq(large.iter()));
        let small = boxed.map(reverse, [vec![1, 2], vec![3]]).unwrap();
        assert_eq!(small, [(vec![2, 1], true), (vec![3], true)]);
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "one task uses every kind of handle"
)]
#[process_fn]
fn use_handles(
    queue: Queue<u32>,
    value: Value<u64>,
    array: Array<u32>,
    mut memory: SharedMemory,
    end: Connection<String>,
    lock: Lock,
    event: Event,
    barrier: Barrier,
) -> bool {
    queue.put(&7).unwrap();
    *value.lock().unwrap() += 1;
    array.lock().unwrap()[1] = 9;
    memory.write_at(0, b"inside").unwrap();
    end.send(&"from inside".to_string()).unwrap();
    drop(lock.acquire().unwrap());
    event.set().unwrap();
    // The parent arrives late: the barrier checks meanwhile that its holders live.
    barrier.wait_timeout(Duration::from_secs(60)).unwrap();
    sandboxed()
}

#[test]
fn handles_passed_as_arguments_work_inside() {
    let (ours, theirs) = pipe::<String>().unwrap();
    let queue = Queue::new().unwrap();
    let value = Value::new(41u64).unwrap();
    let array = Array::from_slice(&[0u32; 4]).unwrap();
    let memory = SharedMemory::new(4096).unwrap();
    let lock = Lock::new().unwrap();
    let event = Event::new().unwrap();
    let barrier = Barrier::new(2).unwrap();
    let boxed = pool(Some(Sandbox::new()), StartMethod::Spawn);
    let result = boxed.apply_async(
        use_handles,
        (
            queue.clone(),
            value.clone(),
            array.clone(),
            memory.clone().unwrap(),
            theirs,
            lock,
            event.clone(),
            barrier.clone(),
        ),
    );
    assert!(event.wait_timeout(Duration::from_secs(60)).unwrap());
    std::thread::sleep(Duration::from_millis(300));
    barrier.wait_timeout(Duration::from_secs(60)).unwrap();
    assert!(result.get_timeout(Duration::from_secs(60)).unwrap());
    assert_eq!(queue.get_timeout(Duration::from_secs(5)).unwrap(), 7);
    assert_eq!(*value.lock().unwrap(), 42);
    assert_eq!(array.lock().unwrap()[1], 9);
    let mut bytes = [0; 6];
    memory.read_at(0, &mut bytes).unwrap();
    assert_eq!(&bytes, b"inside");
    assert_eq!(ours.recv().unwrap(), "from inside");
}

#[process_fn]
fn nap(ms: u64) -> bool {
    std::thread::sleep(Duration::from_millis(ms));
    sandboxed()
}

#[test]
fn a_time_limit_kills_and_replaces_a_sandboxed_worker() {
    let boxed = Pool::builder()
        .processes(1)
        .task_timeout(Duration::from_millis(500))
        .sandbox(Sandbox::new())
        .build()
        .unwrap();
    let err = boxed.apply(nap, (60_000,)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // The replacement is sandboxed too.
    assert!(boxed.apply(nap, (0,)).unwrap());
}

#[process_fn]
fn die_once(deaths: Value<u32>) -> bool {
    let mut count = deaths.lock().unwrap();
    if *count == 0 {
        *count = 1;
        drop(count);
        std::process::abort();
    }
    sandboxed()
}

#[test]
fn a_task_is_retried_in_a_fresh_sandboxed_worker() {
    let boxed = Pool::builder()
        .processes(1)
        .retries(1)
        .sandbox(Sandbox::new())
        .build()
        .unwrap();
    let deaths = Value::new(0u32).unwrap();
    assert!(boxed.apply(die_once, (deaths.clone(),)).unwrap());
    assert_eq!(*deaths.lock().unwrap(), 1);
}

#[process_fn]
fn pid_inside(_: u32) -> (u32, bool) {
    (std::process::id(), sandboxed())
}

#[test]
fn max_tasks_per_child_gives_fresh_sandboxed_workers() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let boxed = Pool::builder()
            .processes(1)
            .max_tasks_per_child(1)
            .start_method(method)
            .sandbox(Sandbox::new())
            .build()
            .unwrap();
        let seen = boxed.map(pid_inside, 0..3).unwrap();
        assert!(seen.iter().all(|&(_, inside)| inside), "{seen:?}");
        let mut pids: Vec<u32> = seen.iter().map(|&(pid, _)| pid).collect();
        pids.dedup();
        assert_eq!(pids.len(), 3, "{seen:?}");
    }
}

#[test]
fn workers_added_by_resize_are_sandboxed() {
    let boxed = pool(Some(Sandbox::new()), StartMethod::Spawn);
    boxed.resize(3).unwrap();
    let seen = boxed.map(nap, vec![200; 6]).unwrap();
    assert_eq!(seen, [true; 6]);
}

#[process_fn]
fn fail(message: String) -> u8 {
    panic!("{message}");
}

#[test]
fn a_panic_comes_back_with_message_and_location() {
    let boxed = pool(Some(Sandbox::new()), StartMethod::Spawn);
    let err = boxed.apply(fail, ("no way out".to_string(),)).unwrap_err();
    assert_eq!(err.panic_message(), Some("no way out"));
    let location = err.panic_location().unwrap();
    assert!(location.file().ends_with("sandbox.rs"), "{location}");
}

#[process_fn]
fn panics_with_a_backtrace() {
    panic!("look at the backtrace");
}

/// Run again by `a_panic_inside_carries_a_backtrace` with `RUST_BACKTRACE=1` in its
/// environment, which the workers inherit; run plainly, it checks nothing.
#[test]
fn backtrace_inside_when_enabled() {
    if std::env::var_os("MP_TEST_SANDBOX_BACKTRACE").is_none() {
        return;
    }
    let boxed = pool(Some(Sandbox::new()), StartMethod::Spawn);
    let err = boxed.apply(panics_with_a_backtrace, ()).unwrap_err();
    // Named: the worker reads its program's file for the names, which the sandbox allows.
    let backtrace = err.panic_backtrace().expect("a backtrace");
    assert!(backtrace.contains("panics_with_a_backtrace"), "{backtrace}");
}

#[test]
fn a_panic_inside_carries_a_backtrace() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "sandbox::backtrace_inside_when_enabled"])
        .env("RUST_BACKTRACE", "1")
        .env("MP_TEST_SANDBOX_BACKTRACE", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

static OPENED_AT_INIT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

#[process_fn]
fn try_outside_at_init(path: String) {
    OPENED_AT_INIT.set(std::fs::read(path).is_ok()).unwrap();
}

#[process_fn]
fn opened_at_init() -> Option<bool> {
    OPENED_AT_INIT.get().copied()
}

#[test]
fn the_initializer_runs_inside() {
    let scene = Scene::new();
    let outside = scene.path("outside/file.txt");
    let boxed = Pool::builder()
        .processes(1)
        .initializer(try_outside_at_init, (outside,))
        .sandbox(scene.sandbox())
        .build()
        .unwrap();
    assert_eq!(boxed.apply(opened_at_init, ()).unwrap(), Some(false));
}

#[test]
fn the_report_says_what_holds() {
    for sandbox in [Sandbox::new(), Sandbox::new().best_effort()] {
        let boxed = pool(Some(sandbox), StartMethod::Spawn);
        let report = boxed.sandbox_report().unwrap();
        // This kernel (6.12 or later, as CI's) enforces all of it.
        assert!(report.is_complete(), "{report}");
        assert_eq!(
            report.to_string(),
            "enforced: file system, network, signals, abstract sockets, system calls"
        );
        assert!(report.landlock_abi().unwrap() >= 6);
    }
    let process = Process::builder()
        .sandbox(Sandbox::new())
        .start(nap, (0,))
        .unwrap();
    assert!(process.sandbox_report().unwrap().is_complete());
    assert!(process.join().unwrap());
    assert!(pool(None, StartMethod::Spawn).sandbox_report().is_none());
}

#[test]
fn a_path_that_does_not_exist_is_named() {
    let scene = Scene::new();
    let missing = scene.root.join("missing");
    let sandbox = Sandbox::new().read_write(&missing);
    let err = Pool::builder()
        .processes(1)
        .sandbox(sandbox.clone())
        .build()
        .unwrap_err();
    assert!(err.is_sandbox(), "{err}");
    let text = err.to_string();
    assert!(text.contains(&*missing.to_string_lossy()), "{text}");
    assert!(text.contains("Sandbox::read_write"), "{text}");
    let err = Process::builder()
        .sandbox(sandbox)
        .start(nap, (0,))
        .unwrap_err();
    assert!(err.is_sandbox(), "{err}");
}

/// Installs a seccomp filter that makes this process's (and its children's) Landlock and
/// seccomp calls fail with ENOSYS, as on a kernel without them.
fn pretend_an_old_kernel() {
    let nr = |call: libc::c_long| call as u32;
    let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    let jump = |k: u32, jt: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf: 0,
        k,
    };
    let ret = |k: u32| libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let mut program = [
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        // Each comparison jumps to the last instruction, past those after it.
        jump(nr(libc::SYS_landlock_create_ruleset), 4),
        jump(nr(libc::SYS_landlock_add_rule), 3),
        jump(nr(libc::SYS_landlock_restrict_self), 2),
        jump(nr(libc::SYS_seccomp), 1),
        ret(libc::SECCOMP_RET_ALLOW),
        ret(enosys),
    ];
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: prctl and this seccomp mode take a live program of the length given, copied by
    // the kernel; this process is the test's own child.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog),
            0,
            "{}",
            std::io::Error::last_os_error()
        );
    }
}

#[process_fn]
fn an_old_kernel_is_refused_unless_best_effort_body() {
    pretend_an_old_kernel();
    let err = Pool::builder()
        .processes(1)
        .sandbox(Sandbox::new())
        .build()
        .unwrap_err();
    assert!(err.is_sandbox(), "{err}");
    let text = err.to_string();
    for needle in [
        "this kernel cannot enforce the sandbox",
        "file system (this kernel has no Landlock",
        "system calls (this kernel has no seccomp filters",
        "Sandbox::best_effort()",
    ] {
        assert!(text.contains(needle), "{needle:?} in {text}");
    }
    let err = Process::builder()
        .sandbox(Sandbox::new())
        .start(nap, (0,))
        .unwrap_err();
    assert!(err.is_sandbox(), "{err}");

    let pool = Pool::builder()
        .processes(1)
        .sandbox(Sandbox::new().best_effort())
        .build()
        .unwrap();
    let report = pool.sandbox_report().unwrap();
    assert!(!report.is_complete());
    assert!(report.enforced().is_empty(), "{report}");
    assert_eq!(report.landlock_abi(), None);
    let missing: Vec<Restriction> = report.not_enforced().map(|(r, _)| r).collect();
    assert_eq!(
        missing,
        [
            Restriction::FileSystem,
            Restriction::Network,
            Restriction::Signals,
            Restriction::AbstractSockets,
            Restriction::SystemCalls
        ]
    );
    assert!(
        report
            .to_string()
            .starts_with("enforced: nothing; not enforced: file system")
    );
    // It runs, with what holds: here nothing.
    assert!(!pool.apply(nap, (0,)).unwrap());
}

#[test]
fn an_old_kernel_is_refused_unless_best_effort() {
    crate::in_child(an_old_kernel_is_refused_unless_best_effort_body);
}

#[process_fn]
fn log_from_inside(x: u32) -> u32 {
    log::warn!("logged inside the sandbox {x}");
    x
}

#[process_fn]
fn logs_are_forwarded_from_inside_body() {
    let captured = mp_support::Captured::default();
    env_logger::Builder::new()
        .parse_filters("warn")
        .target(env_logger::Target::Pipe(Box::new(captured.clone())))
        .init();
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let boxed = pool(Some(Sandbox::new()), method);
        assert_eq!(boxed.map(log_from_inside, [1, 2]).unwrap(), [1, 2]);
    }
    for x in [1, 2] {
        let lines = captured.lines_with(&format!("logged inside the sandbox {x}"));
        assert_eq!(lines.len(), 2, "{}", captured.text());
    }
}

#[test]
fn logs_are_forwarded_from_inside() {
    crate::in_child(logs_are_forwarded_from_inside_body);
}

/// The user the sandbox tests run as again, when run as root.
const NOBODY: &str = "65534";

#[test]
fn an_unprivileged_user_is_sandboxed_the_same() {
    // SAFETY: geteuid has no preconditions and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: not root, so the tests beside this one ran unprivileged already");
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: no `setpriv` (util-linux) to run the tests as another user");
        return;
    }
    // A copy of this binary that is the user's own, as a build of theirs would be, wherever
    // this one lives.
    let dir = Scene::new();
    let exe = dir.root.join("it");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    let nobody: u32 = NOBODY.parse().unwrap();
    for path in [&dir.root, &exe] {
        std::os::unix::fs::chown(path, Some(nobody), Some(nobody)).unwrap();
    }
    let output = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--",
        ])
        .arg(&exe)
        .args(["sandbox::", "--skip", "an_unprivileged_user"])
        .env("TMPDIR", "/tmp")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // Every test of this file but this one ran, and none was skipped inside.
    let ran = stdout
        .lines()
        .find_map(|line| line.strip_prefix("test result: ok. "))
        .and_then(|rest| rest.split(' ').next()?.parse::<usize>().ok());
    let here = include_str!("sandbox.rs").matches("\n#[test]\n").count();
    assert_eq!(ran, Some(here - 1), "{stdout}");
    assert!(!stderr.contains("skipped"), "{stderr}");
}

/// Sends `out` to the datagram socket at `path` from every socket descriptor the worker holds
/// (its channel, and its log socket when the parent logs); how many sends went through.
#[process_fn]
fn send_to_from_held_sockets(path: String) -> usize {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let mut sent = 0;
    for fd in 3..1024 {
        // SAFETY: `fd` is only borrowed for the send: `into_raw_fd` gives it back unclosed,
        // and the socket methods fail harmlessly on a descriptor that is no socket or closed.
        let socket = unsafe { UnixDatagram::from_raw_fd(fd) };
        if socket.send_to(b"out", &path).is_ok() {
            sent += 1;
        }
        let _ = socket.into_raw_fd();
    }
    sent
}

/// The log socket a worker holds while the parent logs reaches only the parent's relay, also
/// when a task names another address (a datagram socket would send there: `/dev/log`).
#[test]
fn the_log_socket_reaches_only_the_parent() {
    crate::in_child(log_socket_reaches_only_the_parent);
}

#[process_fn]
fn log_socket_reaches_only_the_parent() {
    struct Quiet;
    impl log::Log for Quiet {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, _: &log::Record<'_>) {}
        fn flush(&self) {}
    }
    log::set_logger(&Quiet).unwrap();
    log::set_max_level(log::LevelFilter::Info);
    let scene = Scene::new();
    let path = scene.root.join("outside/log.sock");
    let receiver = UnixDatagram::bind(&path).unwrap();
    receiver.set_nonblocking(true).unwrap();
    let path = path.to_string_lossy().into_owned();
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let boxed = pool(Some(scene.sandbox()), method);
        boxed
            .apply(send_to_from_held_sockets, (path.clone(),))
            .unwrap();
        let mut buf = [0; 16];
        let got = receiver.recv(&mut buf);
        assert!(
            got.is_err(),
            "a sandboxed worker ({method:?}) sent {got:?} to a datagram socket outside"
        );
    }
}
