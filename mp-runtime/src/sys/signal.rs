//! Signals: [`Signal`], the number of one; the dispositions a worker needs as `main` would
//! have them (SIGPIPE ignored, a stack overflow reported); and how much stack is left.
//!
//! # Stack overflow
//!
//! std's runtime set-up, which a worker never reaches (its early entry runs before `main` and
//! never returns), installs a SIGSEGV/SIGBUS handler on an alternate signal stack that tells a
//! stack overflow (a fault in the guard area below the thread's stack) from other faults. A
//! worker does the same for its main thread, the one that runs its tasks, and adds last words:
//! bytes armed beforehand (a reply saying the task overflowed its stack) that the handler sends
//! to the parent, with async-signal-safe calls only, before the process dies of the fault.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering};
use std::time::Duration;

/// A signal, by its number on this platform: the ones mp sends or explains are named, and a
/// process may die of any other.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Signal(i32);

impl Signal {
    /// Asks a process to end; it may clean up first (SIGTERM).
    pub(crate) const TERM: Signal = Signal(libc::SIGTERM);
    /// Ends a process at once; it cannot be caught (SIGKILL).
    pub(crate) const KILL: Signal = Signal(libc::SIGKILL);
    /// Ctrl-C (SIGINT).
    pub(crate) const INT: Signal = Signal(libc::SIGINT);
    /// `abort()`, a failed assertion in C code, or a Rust panic under `panic = "abort"`
    /// (SIGABRT).
    pub(crate) const ABRT: Signal = Signal(libc::SIGABRT);
    /// An invalid memory access, a stack overflow included (SIGSEGV).
    pub(crate) const SEGV: Signal = Signal(libc::SIGSEGV);
    /// A bad memory access: past the end of a mapped file, say (SIGBUS).
    pub(crate) const BUS: Signal = Signal(libc::SIGBUS);
    /// An arithmetic fault (SIGFPE).
    pub(crate) const FPE: Signal = Signal(libc::SIGFPE);
    /// An illegal instruction (SIGILL).
    pub(crate) const ILL: Signal = Signal(libc::SIGILL);
    /// A write to a pipe or socket that nobody reads any more (SIGPIPE).
    pub(crate) const PIPE: Signal = Signal(libc::SIGPIPE);

    /// The signal numbered `raw` (as a wait status or `ExitStatus::signal` gives it).
    pub(crate) const fn from_raw(raw: i32) -> Signal {
        Signal(raw)
    }

    /// The signal's number.
    pub(crate) const fn as_raw(self) -> i32 {
        self.0
    }

    /// The signal's name (`SIGTERM`), for the named ones.
    fn name(self) -> Option<&'static str> {
        Some(match self {
            Signal::TERM => "SIGTERM",
            Signal::KILL => "SIGKILL",
            Signal::INT => "SIGINT",
            Signal::ABRT => "SIGABRT",
            Signal::SEGV => "SIGSEGV",
            Signal::BUS => "SIGBUS",
            Signal::FPE => "SIGFPE",
            Signal::ILL => "SIGILL",
            Signal::PIPE => "SIGPIPE",
            _ => return None,
        })
    }
}

/// Its name (`SIGTERM`), or `signal N` for one without a name here.
impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "signal {}", self.0),
        }
    }
}

/// Ignores SIGPIPE, as std does before `main`: a write to a closed pipe or socket is then an
/// `Err(BrokenPipe)`, not the death of the process. Processes this one starts with
/// `std::process::Command` get the default back (std resets it in the child).
pub(crate) fn ignore_sigpipe() -> io::Result<()> {
    // SAFETY: SIG_IGN installs no code of ours; the call changes only this disposition.
    if unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's stack, from the C library: its lowest usable address and its size.
fn stack_bounds() -> Option<(usize, usize)> {
    // SAFETY: pthread_attr_t is plain data that pthread_getattr_np initialises; the attribute
    // object is destroyed after its two fields are read, and every pointer is to a live local.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr = std::ptr::null_mut();
        let mut size = 0;
        let got = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (got == 0 && !addr.is_null()).then_some((addr as usize, size))
    }
}

/// What a thread keeps free below its deepest decode, for the calls between two checks: this,
/// or a quarter of a smaller stack.
const STACK_MARGIN: usize = 128 * 1024;

thread_local! {
    /// The address below which a decode on this thread refuses to go deeper: its stack's end
    /// plus a margin. 0 until known; 1 when it cannot be known (then nothing is refused).
    static STACK_FLOOR: Cell<usize> = const { Cell::new(0) };
}

/// The lowest stack address down to which code on this thread may safely recurse, keeping a
/// margin for the work between two checks (see [`stack_pointer`]).
///
/// Inlined: every decode asks, once per value of a map's items; only a thread's first ask
/// looks the stack up.
#[inline]
pub(crate) fn stack_floor() -> usize {
    match STACK_FLOOR.get() {
        0 => first_stack_floor(),
        floor => floor,
    }
}

#[cold]
fn first_stack_floor() -> usize {
    let floor = stack_bounds().map_or(1, floor_of);
    STACK_FLOOR.set(floor);
    floor
}

fn floor_of((low, size): (usize, usize)) -> usize {
    low.saturating_add(STACK_MARGIN.min(size / 4))
}

/// An address in the caller's stack frame: compared with [`stack_floor`], whether the caller
/// may go deeper.
#[inline(always)]
pub(crate) fn stack_pointer() -> usize {
    let here = 0u8;
    std::hint::black_box(&raw const here) as usize
}

/// The guard area of the main thread's stack: a fault there is a stack overflow.
static GUARD_START: AtomicUsize = AtomicUsize::new(0);
static GUARD_END: AtomicUsize = AtomicUsize::new(0);

/// The last words armed by [`with_last_words`]: socket (-1: none), head, and a unit sent
/// `LAST_TIMES` times after it.
static LAST_SOCKET: AtomicI32 = AtomicI32::new(-1);
static LAST_HEAD: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static LAST_HEAD_LEN: AtomicUsize = AtomicUsize::new(0);
static LAST_UNIT: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static LAST_UNIT_LEN: AtomicUsize = AtomicUsize::new(0);
static LAST_TIMES: AtomicUsize = AtomicUsize::new(0);

/// Size of the alternate signal stack the handler runs on (the thread's own is exhausted).
const SIGNAL_STACK: usize = 64 * 1024;

/// On the main thread: makes a stack overflow of this thread print std's message and send the
/// armed last words before the process dies of it. Other faults, and faults on other threads,
/// end the process as they would have. Forked children inherit all of it.
pub(crate) fn report_stack_overflow() -> io::Result<()> {
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    let (low, size) =
        stack_bounds().ok_or_else(|| io::Error::other("the stack's bounds are unknown"))?;
    // Known now, at the cost of reading /proc/self/maps (which is how the C library finds the
    // main thread's stack): kept for `stack_floor`, so that neither this worker's first decode
    // nor a child forked from this process (the fork server's) reads it again.
    STACK_FLOOR.with(|floor| floor.set(floor_of((low, size))));
    // The kernel refuses to grow the main stack past its limit: the faulting access is then
    // just below its lowest address, the one the C library computes from that limit.
    GUARD_START.store(low - page, Ordering::Relaxed);
    GUARD_END.store(low + page, Ordering::Relaxed);
    // Leaked: the handler may run at any time until the process ends.
    let stack: &'static mut [u8] = Vec::leak(vec![0u8; SIGNAL_STACK]);
    let alternate = libc::stack_t {
        ss_sp: stack.as_mut_ptr().cast(),
        ss_flags: 0,
        ss_size: stack.len(),
    };
    // SAFETY: `alternate` describes memory that lives until the process ends and that nothing
    // else uses.
    if unsafe { libc::sigaltstack(&alternate, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for signal in [libc::SIGSEGV, libc::SIGBUS] {
        // SAFETY: sigaction is plain data, valid all-zero; sa_sigaction is a handler of the
        // three-argument shape SA_SIGINFO asks for, which runs only async-signal-safe code.
        unsafe {
            let mut previous: libc::sigaction = std::mem::zeroed();
            libc::sigaction(signal, std::ptr::null(), &mut previous);
            // A handler someone installed before us (a sanitizer, a user constructor) stays.
            if previous.sa_sigaction != libc::SIG_DFL {
                continue;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_fault as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Runs `f`; if the main thread overflows its stack meanwhile, the fault handler sends `head`
/// and then `unit` `times` times on `socket` before the process dies.
pub(crate) fn with_last_words<R>(
    socket: BorrowedFd<'_>,
    head: &[u8],
    unit: &[u8],
    times: usize,
    f: impl FnOnce() -> R,
) -> R {
    // Armed only where the handler reports: so while it reads them, `f` is still running on
    // the thread it interrupted, and `head` and `unit` are alive. Asked once per thread, not
    // per request: a thread never becomes or stops being the main one (a forked child's only
    // thread is the one that forked, main in both, as the fork server forks from its main).
    thread_local! {
        static ON_MAIN: bool = crate::sys::process::is_main_thread();
    }
    if !ON_MAIN.with(|on_main| *on_main) {
        return f();
    }
    /// Disarms when `f` returns or unwinds, while `socket`, `head` and `unit` are still alive.
    struct Armed;
    impl Drop for Armed {
        fn drop(&mut self) {
            LAST_SOCKET.store(-1, Ordering::SeqCst);
        }
    }
    LAST_HEAD.store(head.as_ptr().cast_mut(), Ordering::Relaxed);
    LAST_HEAD_LEN.store(head.len(), Ordering::Relaxed);
    LAST_UNIT.store(unit.as_ptr().cast_mut(), Ordering::Relaxed);
    LAST_UNIT_LEN.store(unit.len(), Ordering::Relaxed);
    LAST_TIMES.store(times, Ordering::Relaxed);
    LAST_SOCKET.store(socket.as_raw_fd(), Ordering::SeqCst);
    let _armed = Armed;
    f()
}

/// Writes `bytes` to descriptor `fd` with async-signal-safe calls only, giving up after a few
/// seconds of a full socket or at the first error.
fn write_all_now(fd: i32, mut bytes: &[u8], socket: bool) -> bool {
    let mut waits = 0;
    while !bytes.is_empty() {
        // SAFETY: `bytes` is readable for its length; send and write are async-signal-safe.
        let sent = unsafe {
            if socket {
                libc::send(
                    fd,
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            } else {
                libc::write(fd, bytes.as_ptr().cast(), bytes.len())
            }
        };
        if sent > 0 {
            bytes = &bytes[sent as usize..];
            // A reader that makes progress is waited for; only a stalled one is given up on.
            waits = 0;
            continue;
        }
        let error = io::Error::last_os_error().raw_os_error();
        if error == Some(libc::EINTR) {
            continue;
        }
        if error != Some(libc::EAGAIN) || waits == 20 {
            return false;
        }
        waits += 1;
        let mut ready = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd that lives across the call; poll is async-signal-safe.
        unsafe { libc::poll(&mut ready, 1, Duration::from_millis(100).as_millis() as i32) };
    }
    true
}

/// The SIGSEGV/SIGBUS handler (async-signal-safe code only).
extern "C" fn on_fault(signal: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for a handler installed with SA_SIGINFO.
    let address = unsafe { (*info).si_addr() } as usize;
    let guard = GUARD_START.load(Ordering::Relaxed)..GUARD_END.load(Ordering::Relaxed);
    if guard.contains(&address) && crate::sys::process::is_main_thread() {
        write_all_now(
            2,
            b"\nthread 'main' has overflowed its stack\nfatal runtime error: stack overflow\n",
            false,
        );
        send_last_words();
    }
    // SAFETY: restores the default action. A fault then ends the process when the handler
    // returns and the faulting access runs again; a signal that was sent (`raise`, `kill`),
    // with no access to run again, is sent again, and ends it once the handler returns (it
    // is blocked until then). Either way as if no handler had been installed. All three calls
    // are async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(signal, &action, std::ptr::null_mut());
        if (*info).si_code <= 0 {
            libc::raise(signal);
        }
    }
}

/// For a death the caller sees coming (a panic about to abort the process): disarms the last
/// words armed by [`with_last_words`] and sends `words(times)` in their place on the same
/// socket, where `times` is the count they were armed with. Ordinary code, not a signal
/// handler, so `words` may allocate. Returns whether words were armed and all sent.
pub(crate) fn say_last_words(words: impl FnOnce(usize) -> Vec<u8>) -> bool {
    // Armed only on the main thread: elsewhere, `with_last_words`'s call may already be over.
    if !crate::sys::process::is_main_thread() {
        return false;
    }
    let socket = LAST_SOCKET.swap(-1, Ordering::SeqCst);
    if socket < 0 {
        return false;
    }
    // The socket stays open while armed: `with_last_words` borrows it for the whole call,
    // which is still running (this is called from inside it, on its thread).
    write_all_now(socket, &words(LAST_TIMES.load(Ordering::Relaxed)), true)
}

/// Sends the armed last words, if any.
fn send_last_words() {
    let socket = LAST_SOCKET.swap(-1, Ordering::SeqCst);
    if socket < 0 {
        return;
    }
    // SAFETY: armed by `with_last_words` on this thread (it arms only on the main thread, the
    // only one whose overflow gets here), whose `f` is still running, interrupted by this
    // signal: `head` and `unit`, borrowed for the whole call, are alive and unchanged.
    let (head, unit) = unsafe {
        (
            std::slice::from_raw_parts(
                LAST_HEAD.load(Ordering::Relaxed),
                LAST_HEAD_LEN.load(Ordering::Relaxed),
            ),
            std::slice::from_raw_parts(
                LAST_UNIT.load(Ordering::Relaxed),
                LAST_UNIT_LEN.load(Ordering::Relaxed),
            ),
        )
    };
    if !write_all_now(socket, head, true) {
        return;
    }
    for _ in 0..LAST_TIMES.load(Ordering::Relaxed) {
        if !write_all_now(socket, unit, true) {
            return;
        }
    }
}
