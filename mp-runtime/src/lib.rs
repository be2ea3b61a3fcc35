//! Python's `multiprocessing` for Rust: run ordinary functions in other processes, or over a
//! pool of worker processes, in one line.
//!
//! ```
//! use mp_runtime::{pool_map, process_fn, spawn, Pool};
//!
//! #[process_fn]
//! fn cubes(n: u64) -> u64 {
//!     n * n * n
//! }
//!
//! #[process_fn]
//! fn add(a: i32, b: i32) -> i32 {
//!     a + b
//! }
//!
//! fn main() -> mp_runtime::Result<()> {
//!     let p = spawn!(add, 2, 3)?; // a child process starts now
//!     assert_eq!(p.join()?, 5);
//!     assert_eq!(pool_map!(cubes, vec![3, 4, 5])?, vec![27, 64, 125]);
//!     let pool = Pool::new(2)?;
//!     assert_eq!(pool.map(cubes, vec![3, 4, 5])?, vec![27, 64, 125]);
//!     assert_eq!(cubes(2), 8); // still an ordinary function
//!     Ok(())
//! }
//! ```
//!
//! # Processes
//!
//! [`spawn!`] starts a child [`Process`] that runs one call and sends its result back;
//! [`Process::join`] returns it, typed. The child is this same program: it is started again
//! and becomes a worker before `main` runs, so nothing needs to be set up in `main`, in tests,
//! doctests, examples or benches. With [`StartMethod::ForkServer`] (per pool, or for the whole
//! process with [`set_start_method`]) children are instead forked by a single-threaded helper
//! process, which is faster to start. A child never outlives its parent: when the parent
//! dies, however it dies, its children are killed with it.
//!
//! # Pools
//!
//! [`Pool`] keeps worker processes alive and hands them work: [`Pool::map`], [`Pool::imap`],
//! [`Pool::imap_unordered`], [`Pool::starmap`], [`Pool::apply`], [`Pool::apply_async`],
//! [`Pool::map_async`], with [`AsyncResult`] to wait on (or `.await`, or follow with
//! [`AsyncResult::progress`], or have a callback called with,
//! [`AsyncResult::add_done_callback`]). Inputs may be owned or borrowed (`pool.map(f, &v)`); an
//! [`IMap`] knows its length for progress bars and has [`IMap::next_timeout`]. A task may be
//! given a time limit ([`PoolBuilder::task_timeout`], [`CallOptions::timeout`]): past it, its
//! worker is killed and replaced and the task fails with [`Error::is_timeout`]. Any call takes
//! its options (chunk size, time limit, read-ahead) from one [`CallOptions`] value:
//! `pool.with(&options).map(f, xs)` ([`Pool::with`], [`Calls`]). [`pool_map!`]
//! maps on a pool shared by the whole program, whose workers exit after a while unused
//! ([`set_shared_pool_idle_timeout`]). [`wait`] waits on several [`Connection`]s,
//! [`Process`]es and [`AsyncResult`]s at once.
//!
//! # Communication
//!
//! [`pipe`] ([`Connection`]), [`Queue`], [`JoinableQueue`], [`Lock`], [`RLock`],
//! [`Semaphore`], [`BoundedSemaphore`], [`Event`], [`Condition`], [`Barrier`], [`Value`],
//! [`Array`] and [`SharedMemory`] are handles: pass them to [`spawn!`] and to pool tasks,
//! return them, send them through pipes. They cross as file descriptors beside the message
//! (SCM_RIGHTS), so nothing is copied and nothing leaks. Locks are robust: a process that dies
//! holding one makes the next `acquire` fail with [`Error::is_owner_died`] instead of hanging.
//! [`current_process`], [`parent_process`] and [`active_children`] say who is who.
//!
//! ```
//! use mp_runtime::{process_fn, Pool, Queue};
//!
//! #[process_fn]
//! fn square_into(out: Queue<u64>, x: u64) {
//!     out.put(&(x * x)).unwrap();
//! }
//!
//! let out = Queue::new().unwrap();
//! let pool = Pool::new(2).unwrap();
//! pool.starmap(square_into, (1..=3).map(|x| (out.clone(), x))).unwrap();
//! let mut got: Vec<u64> = (0..3).map(|_| out.get().unwrap()).collect();
//! got.sort();
//! assert_eq!(got, [1, 4, 9]);
//! ```
//!
//! # Panics and crashes
//!
//! A panic in a child comes back as an [`Error`] whose [`is_panic`](Error::is_panic) is true,
//! with the panic's message and `file:line:column`. A child that crashes, exits or is killed
//! before it answers gives [`is_died`](Error::is_died), with its exit code or signal. In a pool,
//! either fails only the call concerned: a dead worker is replaced and the pool goes on.
//!
//! With `panic = "abort"` (in a release profile, say) the error is the same: the worker's
//! panic hook sends it to the parent before the process aborts. The calls that shared the
//! worker's chunk of a `map` get the same panic, since it ended them; the pool replaces the
//! worker. Run with `RUST_BACKTRACE=1` (or `RUST_LIB_BACKTRACE=1`), which children inherit, and
//! the error also carries the child's backtrace: [`Error::panic_backtrace`], shown by `Debug`
//! (what `unwrap` prints).
//!
//! # Logging
//!
//! Workers never run `main`, so a logger or subscriber set up there does not exist in them.
//! mp carries their records to it instead: set up `tracing_subscriber::fmt().init()` or
//! `env_logger::init()` in `main`, before the first process or pool starts, and what tasks log
//! with `tracing` or `log` appears there, marked `[worker-name pid]`, with its own level,
//! target, file and line, so the parent's filters apply to it. A worker sends only records at
//! or above the parent's most verbose level; what a task logged is logged before its caller
//! has the result. The features `log` and `tracing` (on by default) turn this on. The README's
//! Logging section has the details.
//!
//! # Serialization
//!
//! Arguments and results cross the process boundary encoded with bincode through serde: any
//! type that implements `Serialize` and `Deserialize` (derive them), of any size. References
//! cannot cross; `#[process_fn]` says so at compile time. Inputs may be passed by reference:
//! `pool.map(f, &inputs)` encodes from the borrowed values.
//!
//! How to pass big data fast:
//! - By value, a value is copied twice on its way: encoded into the message, decoded out of
//!   it. A message of 1 MiB or more is written into a memfd that the receiver maps, rather
//!   than through the socket, which would copy it twice more.
//! - To share instead of copy, pass a handle: [`Array`], [`Value`] or [`SharedMemory`] cross
//!   as a file descriptor, and the worker maps the same pages (no copy at all, whatever the
//!   size). The README's Speed table shows both.
//! - Large results of many tasks: [`Pool::imap`] hands each over as it comes, so the parent
//!   never holds them all at once.
//!
//! A `String`, and a `Vec` (or boxed slice) of `u8`..`u64`, `i8`..`i64`, `f32` or `f64`, at
//! any depth of a value, crosses as one block of bytes copied whole, not one call per element
//! in your crate: about half as fast as copying it there and back with `memcpy`, in a release
//! build and in the default debug build alike. Other sequences (of strings, of structs) go
//! element by element.
//!
//! # Async code
//!
//! An [`AsyncResult`] is a `Future`: `.await` it on tokio, async-std or any executor. Waiting
//! does not block the executor's thread: the pool's own thread wakes the task when the result
//! is in. [`Pool::apply`], [`Pool::map`] and [`Process::join`] block; in async code call
//! the `_async` forms (or run the blocking ones with `tokio::task::spawn_blocking`).
//!
//! ```
//! use std::future::Future;
//! use std::sync::Arc;
//! use std::task::{Context, Poll, Wake, Waker};
//!
//! use mp_runtime::{process_fn, Pool};
//!
//! #[process_fn]
//! fn double(x: u64) -> u64 {
//!     2 * x
//! }
//!
//! /// The smallest executor: polls one future on this thread, parking between polls.
//! fn block_on<F: Future>(future: F) -> F::Output {
//!     struct Unpark(std::thread::Thread);
//!     impl Wake for Unpark {
//!         fn wake(self: Arc<Self>) {
//!             self.0.unpark();
//!         }
//!     }
//!     let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
//!     let mut future = std::pin::pin!(future);
//!     loop {
//!         match future.as_mut().poll(&mut Context::from_waker(&waker)) {
//!             Poll::Ready(value) => return value,
//!             Poll::Pending => std::thread::park_timeout(std::time::Duration::from_millis(50)),
//!         }
//!     }
//! }
//!
//! let pool = Pool::new(2).unwrap();
//! let total = block_on(async {
//!     let a = pool.apply_async(double, (20,));
//!     let b = pool.map_async(double, vec![1, 2]);
//!     a.await.unwrap() + b.await.unwrap().iter().sum::<u64>()
//! });
//! assert_eq!(total, 46);
//! ```
//!
//! # Testing
//!
//! Functions marked `#[process_fn]` run in other processes from unit tests, integration tests,
//! doctests, examples and benches with no set-up: the test binary's own children become
//! workers before its test harness starts, so they run the called function and never the
//! tests. `cargo nextest run` works the same way, but nextest does not run doctests: run
//! `cargo test --doc` as well. A test that changes process-wide state (resource limits, signal
//! dispositions, the start method) belongs in an integration-test file of its own, since the
//! harness runs the tests of one binary on several threads of one process.
//!
//! # What the child inherits
//!
//! The environment, the working directory, standard output and standard error (what a child
//! prints appears, and is flushed before its result is sent). Standard input is `/dev/null`.
//! The parent's channel is a private socket pair; no network socket is opened.
//!
//! # Platform support
//!
//! Linux. The child is started from `/proc/self/exe` and becomes a worker from an
//! `.init_array` constructor; macOS would use `_NSGetExecutablePath` and `__mod_init_func`.
//! Communication uses memfd, robust pthread mutexes and futexes; on macOS it would use
//! `shm_open` regions unlinked at once, and pid-owned lock words waited on with
//! `os_sync_wait_on_address`. On any target but Linux the crate does not build: a
//! `compile_error!` says so.

#[cfg(not(target_os = "linux"))]
compile_error!(
    "mp-runtime supports Linux only (it starts workers from /proc/self/exe and communicates \
     through memfd, futexes and robust pthread mutexes); build on Linux, or in a Linux \
     container or VM"
);

// The tiers, from the bottom up: each uses only those below it (README.md, Layout).
mod base;
mod runtime;
mod sys;
mod wire;
// The public rooms, and the early entry that dispatches to every tier.
mod entry;
mod ipc;
mod macros;
mod pool;
mod process;

pub use base::{
    Error, ErrorKind, Location, ProcessInfo, Result, active_children, cpu_count, current_process,
    mpi_rank, parent_process,
};
pub use ipc::{
    Array, ArrayGuard, Barrier, BoundedSemaphore, Condition, ConditionGuard, Connection, Event,
    JoinableQueue, Lock, LockGuard, Pod, Queue, RLock, Semaphore, SemaphoreGuard, SharedMemory,
    Value, ValueGuard, pipe, pipe_oneway,
};
pub use macros::set_shared_pool_idle_timeout;
pub use pool::{
    AsyncResult, CallOptions, Calls, IMap, Pool, PoolBuilder, Waitable, lost_mpi_ranks, wait,
};
pub use process::{Process, ProcessBuilder};
pub use runtime::registry::ProcessFn;
pub use runtime::sandbox::{Restriction, Sandbox, SandboxReport};
pub use runtime::spawn::{StartMethod, get_start_method, set_start_method};

/// Registers a function so that it can run in another process.
///
/// The function stays as it is and can still be called directly. Its arguments and result
/// must be serde types (`Serialize + Deserialize`, owned, `'static`); it may take from 0 to 12
/// arguments, with any patterns.
///
/// Its id (what parent and child agree on) is `module_path::name`; give another with
/// `#[process_fn(name = "my_id")]`, which two functions of the same path in one binary need.
/// A crate that re-exports mp may say where: `#[process_fn(crate = my_crate::mp)]`.
///
/// `async fn`, generic functions, methods, `impl Trait` or reference arguments, `unsafe fn`
/// and variadics cannot cross a process boundary: each gives a compile error that says what
/// to write instead.
///
/// # Examples
///
/// ```
/// use mp_runtime::{process_fn, spawn};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// struct Point {
///     x: i64,
///     y: i64,
/// }
///
/// #[process_fn(name = "geometry::mirror")]
/// fn mirror(Point { x, y }: Point) -> Point {
///     Point { x: y, y: x }
/// }
///
/// let p = spawn!(mirror, Point { x: 1, y: 2 }).unwrap();
/// assert_eq!(p.join().unwrap(), Point { x: 2, y: 1 });
/// ```
pub use mp_macros::process_fn;

/// Entry points for the fuzz targets, built only by `cargo fuzz` (which sets `--cfg fuzzing`)
/// and this crate's own tests: not in users' builds.
#[cfg(any(fuzzing, test))]
#[doc(hidden)]
pub use runtime::fuzz as __fuzz;

/// What the macros expand to. Not a public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::__closure_refused as closure_refused;
    pub use crate::macros::pool_map;
    pub use crate::runtime::expansion::*;
}
