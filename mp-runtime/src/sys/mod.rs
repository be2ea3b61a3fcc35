//! The one door to the OS: every system call, every error number, signal number and `/proc`
//! read, and every OS-facing `unsafe` of the crate, behind safe functions (or `unsafe fn`s
//! whose one promise is the caller's to make). The tiers above use only what this list names,
//! so a port to another OS is a new backend of these modules and touches nothing above them.
//!
//! Linux is the one backend, in these files: it uses `rustix` where rustix covers the call,
//! `libc` for the rest (robust pthread mutexes, fork, `close_range`, `getauxval`, signal
//! handlers, error numbers), and the MPI library's own calls for feature `mpi`. Uses nothing
//! else of this crate: failures are `io::Error`s (or `mpi::MpiError`).
//!
//! # What a platform supplies
//!
//! Processes ([`process`], [`pidfd`], [`signal`]):
//! * `Pid`: the id of a process a call acts on, never 0 or negative; `from_raw`, `of` a
//!   `Child`, `as_raw` (the `u32` the public API shows).
//! * `Signal`: a signal's number, with the ones mp sends or explains named (`TERM`, `KILL`,
//!   `INT`, `ABRT`, `SEGV`, `BUS`, `FPE`, `ILL`, `PIPE`); `Display` is the name.
//! * `process::pid`: this process's id, cheap (kept across forks by `track_pid`).
//! * `process::exe_path`: the path that always names this process's executable file.
//! * `process::program_behind_loader`, `original_command_line`: the program and command line
//!   when the dynamic loader was run as the program.
//! * `process::die_with_parent`: the parent-death signal (SIGKILL).
//! * `process::exists`, `is_running_child`, `is_alive_since`, `own_start_time`: what the
//!   kernel says of a pid.
//! * `process::is_main_thread`, `is_secure_execution`, `effective_uid`, `host_name`.
//! * `process::data_limit_hard`, `may_raise_hard_limits`, `limit_data`: RLIMIT_DATA.
//! * `process::thread_count`, `program_files`, `forbid_new_privileges`,
//!   `drop_capabilities`: what a process checks and gives up as it enters a sandbox.
//! * `process::fork_sibling` (`Forked`): a fork whose child is this process's parent's.
//! * `process::take_var_before_main`, `set_var_before_main` (`mpi`): the environment before
//!   `main`.
//! * `process::at_exit`, `exit_now` (`mpi`): an exit handler, and an exit that runs none.
//! * `pidfd::open`, `send_signal`, `has_exited`, `wait_readable`: process descriptors.
//! * `pidfd::kill_pid`, `reap`: signalling and reaping by pid, where there is no descriptor.
//! * `signal::ignore_sigpipe`, `report_stack_overflow`, `with_last_words`, `say_last_words`:
//!   what a worker does about signals before `main` would run.
//! * `signal::stack_floor`, `stack_pointer`: how deep code on this thread may recurse.
//!
//! Errors ([`error`]):
//! * `Cause`: what an `io::Error` means where callers tell cases apart (`of`, `is`, `error`).
//!
//! Descriptors ([`fd`], [`file`](mod@file)):
//! * `fd::send`, `send_with_fds`, `recv_appending`, `FDS_PER_MESSAGE`: bytes and
//!   descriptors over a Unix stream socket (SCM_RIGHTS).
//! * `fd::packet_pair`, `recv_packet` (`Packet`): packets that say their sender.
//! * `fd::poll` (`Interest`, `Ready`), `ReadableSet`: waiting for descriptors.
//! * `fd::socket_peer`: who made the other end of a socket.
//! * `fd::open_missing_stdio`, `stdin_to_null`, `close_inherited_descriptors`: a worker's
//!   descriptors as it starts.
//! * `file::identity`: what tells one open file from another.
//!
//! Shared memory ([`memfd`], [`mmap`], [`futex`], [`mutex`]):
//! * `memfd::create`, `set_len`, `len`, `seal_size`, `seal_all`, `is_sealed_all`: anonymous
//!   memory files; `open_named`, `unlink_named`: named ones (`/dev/shm`).
//! * `mmap::Mapping`: a shared mapping, reached only through `InMapping` types (`get`),
//!   atomics (`bytes`, `words`, `read`, `write`), or slices under the caller's promise
//!   (`as_slice`, `as_mut_slice`); `leak`.
//! * `mmap::Sealed`: a read-only mapping of a sealed file; `PAGE`, `advise_huge_pages`.
//! * `futex::wait`, `wake`: sleeping on a word in shared memory.
//! * `mutex::Monitor` (`MonitorGuard`, `Taken`, `LockFailure`): a robust, process-shared
//!   mutex with the fields, or the slice (`Monitor<[T]>::in_mapping`), it guards;
//!   `mutex::Condvar`: a condition variable for it.
//!
//! Sandboxing ([`landlock`], [`seccomp`]):
//! * `landlock::abi`, `Ruleset` (`new`, `allow` with an `Access`, `restrict_self`): the
//!   paths, TCP ports and scopes a process keeps to.
//! * `seccomp::probe`, `restrict`: the system calls a sandboxed worker may not make.
//!
//! MPI (`mpi`, feature `mpi`):
//! * `init`, `send`, `try_match` (`Matched`), `abort`, `barrier_and_finalize`, `MpiError`.

pub(crate) mod error;
pub(crate) mod fd;
pub(crate) mod file;
pub(crate) mod futex;
pub(crate) mod landlock;
pub(crate) mod memfd;
pub(crate) mod mmap;
#[cfg(feature = "mpi")]
pub(crate) mod mpi;
pub(crate) mod mutex;
pub(crate) mod pidfd;
pub(crate) mod process;
pub(crate) mod seccomp;
pub(crate) mod signal;

pub(crate) use process::Pid;
pub(crate) use signal::Signal;
