//! This process and its children: [`Pid`], this process's id (kept across forks), its
//! executable, parent-death signal, resource limits, thread identity, fork, and whether this is
//! a secure-execution (setuid) process; and what the kernel tells of other processes.

use std::fmt;
use std::io;
use std::num::NonZeroI32;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::process::{Resource, Rlimit};

/// The id of a process that a call acts on (signals it, waits for it, opens it): never 0, which
/// `kill` would take for this process's whole group, nor negative, a group's id there.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Pid(NonZeroI32);

impl Pid {
    /// The process numbered `raw`, as the public API and `std` show pids; `None` for 0 and for
    /// numbers no pid can have.
    pub(crate) fn from_raw(raw: u32) -> Option<Pid> {
        i32::try_from(raw).ok().and_then(NonZeroI32::new).map(Pid)
    }

    /// The process `child` started.
    pub(crate) fn of(child: &std::process::Child) -> Pid {
        Pid::from_raw(child.id()).expect("the kernel gives a child a positive pid")
    }

    /// The pid's number.
    pub(crate) fn as_raw(self) -> u32 {
        self.0.get().unsigned_abs()
    }

    pub(super) fn to_rustix(self) -> rustix::process::Pid {
        rustix::process::Pid::from_raw(self.0.get()).expect("positive")
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// This process's id, kept by [`track_pid`] so that [`pid`] need not ask the kernel: a handle
/// checks it on every call to learn whether it is in a forked copy of the process that made
/// it. 0 until tracked, or where the C library would not take the handler that keeps it.
static PID: AtomicU32 = AtomicU32::new(0);

/// Starts keeping this process's id for [`pid`]: now, and again in the child of every fork
/// through the C library (`fork`, `daemon`, `nix::unistd::fork`: a `pthread_atfork` handler)
/// and of [`fork_sibling`]. Called once, before `main`, while the process has one thread.
pub(crate) fn track_pid() {
    // SAFETY: registers a plain `extern "C" fn()` for the C library to call in the child after
    // each fork; it only makes a system call and stores to an atomic, which is safe in the
    // child of a multi-threaded process (async-signal-safe).
    if unsafe { libc::pthread_atfork(None, None, Some(forked)) } == 0 {
        PID.store(kernel_pid(), Ordering::Relaxed);
    }
}

/// The `pthread_atfork` child handler: the copy has an id of its own.
unsafe extern "C" fn forked() {
    PID.store(kernel_pid(), Ordering::Relaxed);
}

fn kernel_pid() -> u32 {
    rustix::process::getpid()
        .as_raw_nonzero()
        .get()
        .unsigned_abs()
}

/// This process's id: a load where [`track_pid`] keeps it, else a system call. A copy made
/// without the C library (a raw `clone` system call) would see its original's id.
pub(crate) fn pid() -> u32 {
    match PID.load(Ordering::Relaxed) {
        0 => kernel_pid(),
        pid => pid,
    }
}

/// The path that names this process's own executable file, whatever became of the file's
/// name since it started (removed, or replaced by a new build).
pub(crate) fn exe_path() -> &'static Path {
    Path::new("/proc/self/exe")
}

/// Arms SIGKILL for when this process's parent (the thread that started it) ends.
pub(crate) fn die_with_parent() -> io::Result<()> {
    Ok(rustix::process::set_parent_process_death_signal(Some(
        rustix::process::Signal::KILL,
    ))?)
}

/// Whether a process with this pid exists (a zombie counts), as far as a signal 0 can tell.
pub(crate) fn exists(pid: Pid) -> bool {
    match rustix::process::test_kill_process(pid.to_rustix()) {
        Ok(()) => true,
        // It exists, and is not ours to signal.
        Err(errno) => errno != rustix::io::Errno::SRCH,
    }
}

/// Whether `pid` is a child of this process that has not exited (a zombie has; a pid that is
/// no child of ours, reaped by someone else and perhaps reused, is not one). The kernel
/// answers for the pid as this process sees it, also in a pid namespace whose `/proc` shows
/// another namespace's processes under those numbers.
pub(crate) fn is_running_child(pid: Pid) -> bool {
    use rustix::process::{WaitId, WaitIdOptions};
    // NOWAIT: an exited child is looked at, not reaped; its owner reaps it.
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    loop {
        match rustix::process::waitid(WaitId::Pid(pid.to_rustix()), options) {
            Ok(status) => return status.is_none(),
            Err(rustix::io::Errno::INTR) => continue,
            // ECHILD: not a child of this process.
            Err(_) => return false,
        }
    }
}

/// Whether the calling thread is the process's main thread (the one whose end ends it).
pub(crate) fn is_main_thread() -> bool {
    rustix::thread::gettid() == rustix::process::getpid()
}

/// Whether this process runs with privileges its starter does not have (setuid, setgid or
/// file capabilities): the kernel's AT_SECURE, as the dynamic loader sees it.
pub(crate) fn is_secure_execution() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector the kernel gave this process, which
    // lives as long as it; an unknown type is 0, which here means "not secure".
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// The hard limit on this process's data segment (RLIMIT_DATA), in bytes; `None` when there
/// is none.
pub(crate) fn data_limit_hard() -> Option<u64> {
    rustix::process::getrlimit(Resource::Data).maximum
}

/// Whether this process may raise a hard resource limit (it holds CAP_SYS_RESOURCE), as its
/// re-executed children, of the same user and binary, then may too.
pub(crate) fn may_raise_hard_limits() -> bool {
    rustix::thread::capabilities(None).is_ok_and(|sets| {
        sets.effective
            .contains(rustix::thread::CapabilitySet::SYS_RESOURCE)
    })
}

/// The program this process runs, when it was started by running the dynamic loader with the
/// program as its argument (`/lib64/ld-linux-x86-64.so.2 ./prog`): then /proc/self/exe is the
/// loader, not the program. `None` when /proc/self/exe is the program itself, or when there is
/// no /proc to tell.
///
/// The kernel tells where the loader was loaded (AT_BASE) only when it started the loader for
/// a program; run as a program of its own, the loader is loaded at 0, as a static binary is.
/// Only then is the file that holds this code compared with /proc/self/exe.
pub(crate) fn program_behind_loader() -> io::Result<Option<std::path::PathBuf>> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: getauxval only reads the auxiliary vector the kernel gave this process, which
    // lives as long as it; an unknown type is 0.
    if unsafe { libc::getauxval(libc::AT_BASE) } != 0 {
        return Ok(None);
    }
    let here = program_behind_loader as *const () as usize;
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        // No /proc: starting /proc/self/exe fails anyway, with its own error.
        return Ok(None);
    };
    let mapping = maps.lines().find_map(|line| {
        // start-end perms offset major:minor inode path
        let mut fields = line.splitn(6, ' ');
        let (start, end) = fields.next()?.split_once('-')?;
        let (start, end) = (
            usize::from_str_radix(start, 16).ok()?,
            usize::from_str_radix(end, 16).ok()?,
        );
        if !(start..end).contains(&here) {
            return None;
        }
        let (_, _) = (fields.next()?, fields.next()?);
        let (major, minor) = fields.next()?.split_once(':')?;
        let device = rustix::fs::makedev(
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?,
        );
        let inode: u64 = fields.next()?.parse().ok()?;
        let path = fields.next()?.trim_start();
        Some((device, inode, path.to_string()))
    });
    let not_found = || {
        io::Error::new(
            io::ErrorKind::NotFound,
            "the file of this program is not in /proc/self/maps",
        )
    };
    let (device, inode, path) = mapping.ok_or_else(not_found)?;
    let exe = std::fs::metadata(exe_path())?;
    if exe.dev() == device && exe.ino() == inode {
        return Ok(None);
    }
    // The kernel marks a removed file " (deleted)", and writes a newline in a name as `\012`:
    // the path is the program's only when the file there is the one mapped.
    let same_file = std::fs::metadata(&path)
        .is_ok_and(|file| path.starts_with('/') && file.dev() == device && file.ino() == inode);
    if !same_file {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("the file of this program ({path}) is gone or cannot be named"),
        ));
    }
    Ok(Some(path.into()))
}

/// This process's command line as the kernel started it (/proc/self/cmdline), before the
/// dynamic loader, when it was run as a program, took its own arguments off `argv`.
pub(crate) fn original_command_line() -> io::Result<Vec<std::ffi::OsString>> {
    use std::os::unix::ffi::OsStringExt;
    let line = std::fs::read("/proc/self/cmdline")?;
    // Each word ends with a NUL.
    let words = line.strip_suffix(&[0]).unwrap_or(&line);
    Ok(words
        .split(|&byte| byte == 0)
        .map(|word| std::ffi::OsString::from_vec(word.to_vec()))
        .collect())
}

/// Caps the process's data segment (RLIMIT_DATA: heap and private anonymous maps).
pub(crate) fn limit_data(bytes: u64) -> io::Result<()> {
    let limit = Rlimit {
        current: Some(bytes),
        maximum: Some(bytes),
    };
    Ok(rustix::process::setrlimit(Resource::Data, limit)?)
}

/// Which side of a [`fork_sibling`] this is, or why there was none.
pub(crate) enum Forked {
    Child,
    Parent,
    /// This process has this many threads: a child would inherit locks held by threads it
    /// does not have, and could deadlock on the first allocation.
    Refused {
        threads: usize,
    },
}

/// Forks this process, if it has one thread, so that the child is its *parent's* child
/// (`CLONE_PARENT`): the parent, not this process, then waits for it and gets its signals, and
/// its pid cannot be reused until the parent reaps it. The child is a full copy that may run
/// anything.
///
/// The C library's `fork` cannot take `CLONE_PARENT`, so this calls `clone3` (or `clone` where
/// a seccomp filter or an old kernel refuses `clone3`) and does for the child what glibc's
/// `fork` does in the kernel: the thread id that glibc keeps in the thread's control block is
/// written by the kernel (`CLONE_CHILD_SETTID`, at the address glibc registered with
/// `set_tid_address`, read back with `PR_GET_TID_ADDRESS`), and the robust-mutex list is
/// registered again (the kernel does not copy it). Without the first, pthread mutexes the child
/// locks (mp's locks, robust and recursive) would name the wrong owner. Handlers registered
/// with `pthread_atfork` do not run: they exist to repair locks held across a fork by other
/// threads, and this process has none.
pub(crate) fn fork_sibling() -> io::Result<Forked> {
    let threads = thread_count()?;
    if threads != 1 {
        return Ok(Forked::Refused { threads });
    }
    let tid_address = thread_id_address()?;
    let robust = robust_list();
    let flags = (libc::CLONE_PARENT | libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID) as u64;
    let args = CloneArgs {
        flags,
        child_tid: tid_address as u64,
        ..CloneArgs::default()
    };
    // SAFETY: this process has one thread, the caller (counted above; no other thread can
    // have started since, for there is none to start it), so no lock is held by a thread the
    // child lacks, and the child may run any code. Without CLONE_VM the child gets a copy of
    // the address space, so `tid_address` (a live int in this thread's control block, checked
    // by `thread_id_address`) is the same int in the child's copy; `args` is a live, fully
    // initialised `clone_args` of the size given.
    let mut pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            size_of::<CloneArgs>(),
        )
    };
    if pid == -1 && matches!(errno(), libc::ENOSYS | libc::EPERM) {
        pid = clone_fallback(flags as libc::c_ulong, tid_address);
    }
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            // No `pthread_atfork` handler ran: the child's id is kept here.
            if PID.load(Ordering::Relaxed) != 0 {
                PID.store(kernel_pid(), Ordering::Relaxed);
            }
            if let Some((head, len)) = robust {
                // SAFETY: `head` is this thread's robust-list head, registered by the C
                // library in the parent at the same address of the copied address space.
                unsafe { libc::syscall(libc::SYS_set_robust_list, head, len) };
            }
            Ok(Forked::Child)
        }
        _ => Ok(Forked::Parent),
    }
}

/// The first fields of the kernel's `struct clone_args` (`CLONE_ARGS_SIZE_VER0`), the same on
/// every architecture.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
}

/// The plain `clone` call with the same effect as `clone3` in [`fork_sibling`]; its result.
#[cfg(not(target_arch = "s390x"))]
fn clone_fallback(flags: libc::c_ulong, tid_address: *mut i32) -> libc::c_long {
    // After the flags and the stack (0: the child runs on a copy of this one), most
    // architectures take the parent-tid pointer, the child-tid pointer and the TLS, and some
    // (arm, aarch64, x86, ...) swap the last two. Without CLONE_SETTLS the TLS is ignored, so
    // the child-tid address in both places is right for either order.
    //
    // SAFETY: as for `clone3` in `fork_sibling`, whose caller checks made the same promises.
    unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            0usize,
            0usize,
            tid_address,
            tid_address,
        )
    }
}

/// s390x takes the stack before the flags; it gets `clone3` (Linux 5.3) or nothing.
#[cfg(target_arch = "s390x")]
fn clone_fallback(_flags: libc::c_ulong, _tid_address: *mut i32) -> libc::c_long {
    -1
}

/// Where the C library keeps this thread's id: the address it gave the kernel with
/// `set_tid_address` (glibc's `tid` in the thread's control block). Checked to hold this
/// thread's id, so that a C library that keeps it elsewhere (musl) makes the fork fail
/// cleanly rather than have the kernel write over something else.
fn thread_id_address() -> io::Result<*mut i32> {
    let mut address: *mut i32 = std::ptr::null_mut();
    // SAFETY: PR_GET_TID_ADDRESS writes one pointer to the live local given.
    if unsafe { libc::prctl(libc::PR_GET_TID_ADDRESS, &mut address as *mut *mut i32) } != 0 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this kernel does not tell where the C library keeps the thread id \
             (PR_GET_TID_ADDRESS needs CONFIG_CHECKPOINT_RESTORE)",
        ));
    }
    let unsupported = || {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "the C library does not keep the thread id where glibc does",
        )
    };
    if address.is_null() || !address.is_aligned() {
        return Err(unsupported());
    }
    // SAFETY: the address is the one this thread's C library registered with the kernel, to be
    // cleared at the thread's exit: an aligned int of this thread that lives as long as it.
    let held = unsafe { address.read_volatile() };
    if held != rustix::thread::gettid().as_raw_nonzero().get() {
        return Err(unsupported());
    }
    Ok(address)
}

/// This thread's robust-mutex list as registered with the kernel: its head and length.
fn robust_list() -> Option<(usize, usize)> {
    let mut head = 0usize;
    let mut len = 0usize;
    // SAFETY: get_robust_list(0, ...) writes the calling thread's head pointer and length to
    // the two live locals given.
    let got = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            0,
            &mut head as *mut usize,
            &mut len as *mut usize,
        )
    };
    (got == 0 && head != 0).then_some((head, len))
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// How many threads this process has, from /proc/self/task.
pub(crate) fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// This process's effective user id.
pub(crate) fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Reads and removes the environment variable `name`, so that processes this one starts do
/// not inherit it. Only for the early entry, before `main`.
pub(crate) fn take_var_before_main(name: &str) -> Option<std::ffi::OsString> {
    let value = std::env::var_os(name)?;
    // SAFETY: constructors run on the main thread before `main`: no thread of this crate or of
    // std exists to read the environment concurrently (a thread a user constructor started is
    // the documented exception of `std::env::remove_var`, and its reads through std take the
    // same lock as this write).
    unsafe { std::env::remove_var(name) };
    Some(value)
}

/// Sets the environment variable `name` in a child forked by the fork server, before it serves.
pub(crate) fn set_var_in_fork_child(name: &std::ffi::OsStr, value: &std::ffi::OsStr) {
    // SAFETY: the fork server forks only while it has one thread (`fork_sibling` refuses
    // otherwise), and its child runs no code of ours or the user's that starts a thread before
    // it serves: this process has one thread, so nothing reads the environment meanwhile.
    unsafe { std::env::set_var(name, value) };
}

/// Sets the environment variable `name` for this process and those it starts. Only for the
/// early entry, before `main`.
#[cfg(feature = "mpi")]
pub(crate) fn set_var_before_main(name: &str, value: &str) {
    // SAFETY: as in `take_var_before_main`: before `main`, on the main thread, no thread of
    // this crate or of std reads the environment concurrently (MPI starts none that does).
    unsafe { std::env::set_var(name, value) };
}

/// Has `run` called once when this process exits, with the status given to `exit` where the C
/// library tells it (glibc's `on_exit`), else 0. One function per process: a second is refused.
#[cfg(feature = "mpi")]
pub(crate) fn at_exit(run: fn(i32)) -> io::Result<()> {
    static RUN: std::sync::OnceLock<fn(i32)> = std::sync::OnceLock::new();
    RUN.set(run)
        .map_err(|_| io::Error::other("an exit handler is registered already"))?;
    #[cfg(target_env = "gnu")]
    {
        unsafe extern "C" {
            fn on_exit(
                function: extern "C" fn(libc::c_int, *mut libc::c_void),
                argument: *mut libc::c_void,
            ) -> libc::c_int;
        }
        extern "C" fn handler(status: libc::c_int, _: *mut libc::c_void) {
            if let Some(run) = RUN.get() {
                run(status);
            }
        }
        // SAFETY: `on_exit` is glibc's, with this signature; it registers a plain C function
        // that the C runtime calls once, at exit, with the status; the argument is unused.
        if unsafe { on_exit(handler, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::other(
                "the C library has no room for an exit handler",
            ));
        }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        extern "C" fn handler() {
            if let Some(run) = RUN.get() {
                run(0);
            }
        }
        // SAFETY: registers a plain `extern "C" fn()` that the C runtime calls once, at exit.
        if unsafe { libc::atexit(handler) } != 0 {
            return Err(io::Error::other(
                "the C library has no room for an exit handler",
            ));
        }
    }
    Ok(())
}

/// Ends this process at once with `status`, running no exit handler and flushing nothing: for a
/// process whose work is done but which is stuck where an ordinary exit would be stuck too.
#[cfg(feature = "mpi")]
pub(crate) fn exit_now(status: i32) -> ! {
    // SAFETY: `_exit` takes any status and never returns; it touches no memory of this process.
    unsafe { libc::_exit(status) }
}

/// This machine's host name (its UTS namespace's), `None` where it cannot be read.
#[cfg(feature = "mpi")]
pub(crate) fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(name.trim().to_string())
}

/// How much of the process `pid`'s own memory (its heap, stacks and other anonymous pages, not
/// the files it maps) is resident, in bytes: what a leak makes grow. `None` if it is gone.
pub(crate) fn anonymous_resident_bytes(pid: Pid) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("RssAnon:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// When the process `pid` started (in clock ticks since boot), `None` if it is gone or a
/// zombie: with the pid, this names a process even after its pid is reused. An error where
/// /proc does not say (hidden from a sandboxed process).
fn start_time(pid: u32) -> io::Result<Option<u64>> {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // The command name is in parentheses and may contain anything: parse after the last ')'.
    let mut fields = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace());
    let state = fields.as_mut().and_then(Iterator::next);
    if matches!(state, None | Some("Z" | "X")) {
        return Ok(None);
    }
    // Field 22 of the line is the start time; `fields` began at field 3.
    Ok(fields.and_then(|mut f| f.nth(18)?.parse().ok()))
}

/// This process's start time (see [`start_time`]), read once in each process (a forked child
/// reads its own): read before a sandbox hides /proc, it stays known inside. 0 when /proc does
/// not say.
pub(crate) fn own_start_time() -> u64 {
    static OWN: std::sync::Mutex<(u32, u64)> = std::sync::Mutex::new((0, 0));
    let me = pid();
    let mut own = OWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if own.0 != me {
        *own = (me, start_time(me).ok().flatten().unwrap_or(0));
    }
    own.1
}

/// Whether the process `pid` that started at `start` (its [`own_start_time`]) runs yet: not if
/// it ended, even when its pid was reused since. Where its start cannot be known (`start` is 0,
/// or /proc is hidden from this process by a sandbox), whether a process `pid` exists.
pub(crate) fn is_alive_since(pid: u32, start: u64) -> bool {
    match start_time(pid) {
        Ok(Some(now)) => start == 0 || now == start,
        Ok(None) => false,
        Err(_) => Pid::from_raw(pid).is_some_and(exists),
    }
}

/// The files of the code this process runs (its program and shared libraries, as mapped
/// now): read once more by a backtrace, for the names of functions.
pub(crate) fn program_files() -> io::Result<Vec<std::path::PathBuf>> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut files: Vec<std::path::PathBuf> = maps
        .lines()
        .filter_map(|line| {
            // start-end perms offset major:minor inode path
            let mut fields = line.splitn(6, ' ');
            let perms = fields.nth(1)?;
            let path = fields.nth(3)?.trim_start();
            // A removed file is marked " (deleted)"; memfds and the like are not paths.
            (perms.contains('x') && path.starts_with('/') && !path.ends_with(" (deleted)"))
                .then(|| path.into())
        })
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// Sets no-new-privileges: from now on this process and its children can gain no privilege by
/// executing a program (setuid bits and file capabilities are ignored); it cannot be unset.
pub(crate) fn forbid_new_privileges() -> io::Result<()> {
    Ok(rustix::thread::set_no_new_privs(true)?)
}

/// Drops every capability of the calling thread (effective, permitted, inheritable and
/// ambient): a process running as root keeps its user id, but no power beyond it.
pub(crate) fn drop_capabilities() -> io::Result<()> {
    use rustix::thread::{CapabilitySet, CapabilitySets};
    rustix::thread::clear_ambient_capability_set()?;
    Ok(rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        },
    )?)
}
