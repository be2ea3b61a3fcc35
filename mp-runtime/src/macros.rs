//! The one-line forms: [`spawn!`](crate::spawn) and [`pool_map!`](crate::pool_map), and the
//! shared pools behind `pool_map!`.
//!
//! A public room: uses `base`, `sys`, the runtime tier and `pool`; used by users through the
//! macros.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::base::{Error, Handle, Kind, Result};
use crate::pool::Pool;
use crate::runtime::registry::ProcessFn;
use crate::runtime::spawn::Owner;
use crate::sys;

/// Starts a `#[process_fn]` function in a new child process: `spawn!(f)`, `spawn!(f, a)`,
/// `spawn!(f, a, b, ..)`.
///
/// Returns `mp_runtime::Result<Process<R>>` where `R` is what `f` returns; the call starts at
/// once. The same as [`Process::start`](crate::Process::start)`(f, (a, b, ..))`.
///
/// # Examples
///
/// ```
/// use mp_runtime::{process_fn, spawn};
///
/// #[process_fn]
/// fn add(a: i32, b: i32) -> i32 {
///     a + b
/// }
///
/// #[process_fn]
/// fn hello() {
///     println!("hello from process {}", std::process::id());
/// }
///
/// let p = spawn!(add, 2, 3).unwrap();
/// assert_eq!(p.join().unwrap(), 5);
/// spawn!(hello).unwrap().join().unwrap();
/// ```
#[macro_export]
macro_rules! spawn {
    // A closure cannot be found in the child: refused here, before it builds and fails at
    // run time.
    (|| $($rest:tt)*) => { $crate::__private::closure_refused!() };
    (| $($rest:tt)*) => { $crate::__private::closure_refused!() };
    (move $($rest:tt)*) => { $crate::__private::closure_refused!() };
    (async $($rest:tt)*) => { $crate::__private::closure_refused!() };
    ($function:expr $(,)?) => {
        $crate::Process::start($function, ())
    };
    ($function:expr, $($arg:expr),+ $(,)?) => {
        $crate::Process::start($function, ($($arg,)+))
    };
}

/// Maps a `#[process_fn]` function over inputs on a shared pool, in one line:
/// `pool_map!(f, inputs)` uses one process per CPU, `pool_map!(f, inputs, processes = n)` uses
/// `n`.
///
/// Returns `mp_runtime::Result<Vec<R>>` in input order, as [`Pool::map`](crate::Pool::map).
/// The inputs may be owned or borrowed (`&v`, `v.iter()`). The shared pool is started on first
/// use and kept while it is used, so calling `pool_map!` in a loop does not start new
/// processes each time; after 300 seconds unused its workers exit, and the next call starts
/// them again (see [`set_shared_pool_idle_timeout`](crate::set_shared_pool_idle_timeout)). A
/// call with another number of processes resizes it ([`Pool::resize`](crate::Pool::resize)),
/// keeping its workers; only a call made while another call uses the pool with a different
/// number starts a second pool beside it.
///
/// The shared pools are the process's own: in a copy made by `fork()`, `pool_map!` starts
/// pools of the copy's own and leaves the original's workers alone.
///
/// # Examples
///
/// ```
/// use mp_runtime::{pool_map, process_fn};
///
/// #[process_fn]
/// fn cubes(n: u64) -> u64 {
///     n * n * n
/// }
///
/// assert_eq!(pool_map!(cubes, vec![3, 4, 5]).unwrap(), vec![27, 64, 125]);
/// assert_eq!(pool_map!(cubes, 1..=2, processes = 2).unwrap(), vec![1, 8]);
/// ```
#[macro_export]
macro_rules! pool_map {
    (|| $($rest:tt)*) => {
        $crate::__private::closure_refused!()
    };
    (| $($rest:tt)*) => {
        $crate::__private::closure_refused!()
    };
    (move $($rest:tt)*) => {
        $crate::__private::closure_refused!()
    };
    (async $($rest:tt)*) => {
        $crate::__private::closure_refused!()
    };
    ($function:expr, $inputs:expr $(,)?) => {
        $crate::__private::pool_map($function, $inputs, ::core::option::Option::None)
    };
    ($function:expr, $inputs:expr, processes = $processes:expr $(,)?) => {
        $crate::__private::pool_map($function, $inputs, ::core::option::Option::Some($processes))
    };
}

/// The error of `spawn!` and `pool_map!` given a closure: the child process finds a function
/// by its `#[process_fn]` registration, which a closure does not have.
#[doc(hidden)]
#[macro_export]
macro_rules! __closure_refused {
    () => {
        ::core::compile_error!(
            "a closure cannot run in another process: write a `#[process_fn]` fn, pass its name, \
             and pass what the closure captured as its arguments"
        )
    };
}

/// The body of `pool_map!`: maps on the shared pool of the given size.
pub fn pool_map<F, A, I>(f: F, inputs: I, processes: Option<usize>) -> Result<Vec<F::Output>>
where
    F: ProcessFn<(A,)>,
    I: IntoIterator,
    I::Item: Borrow<A>,
    A: Serialize,
{
    let processes = processes.unwrap_or_else(crate::base::cpu_count);
    if processes == 0 {
        // Before any shared pool is touched: one of another size is not resized for nothing.
        return Err(Error::usage(
            "a pool needs at least one process; pass `processes = 1` or more to `pool_map!`",
        ));
    }
    let pool = shared_pool(processes)?;
    let result = pool.map(f, inputs);
    // Idle from now: the retirer counts its idle time from here, not from the start of a
    // long map.
    if let Ok(mut pools) = lock_pools() {
        if let Some(shared) = pools.pools.get_mut(&processes) {
            shared.last_used = Instant::now();
        }
    }
    drop(pool);
    CHANGED.notify_all();
    result
}

/// How long a shared pool may go unused before its workers are retired, as loky's reusable
/// executor does (also 300 s there).
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The pools `pool_map!` uses, by size, and when they retire.
struct SharedPools {
    pools: BTreeMap<usize, SharedPool>,
    idle_timeout: Duration,
    /// Whether the thread that retires idle pools is running.
    retirer: bool,
    /// The process these pools and the retirer belong to; `None` before the first pool.
    owner: Option<Owner>,
}

struct SharedPool {
    pool: Arc<Pool>,
    last_used: Instant,
}

static POOLS: Mutex<SharedPools> = Mutex::new(SharedPools {
    pools: BTreeMap::new(),
    idle_timeout: DEFAULT_IDLE_TIMEOUT,
    retirer: false,
    owner: None,
});

/// The pid of the process that last took [`POOLS`] over (0: none yet), read without its lock:
/// in that process a held lock is held by a live thread, and is waited for.
static POOLS_OWNER: AtomicU32 = AtomicU32::new(0);

/// How long a forked copy waits for the shared pools' lock before it concludes that a thread
/// of the original held it at the fork, and so for ever.
const INHERITED_LOCK_WAIT: Duration = Duration::from_secs(5);

/// Signalled when a shared pool is used or the idle timeout changes: the retirer looks again.
static CHANGED: Condvar = Condvar::new();

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sets how long the shared pools behind [`pool_map!`](crate::pool_map) may sit unused before
/// their workers exit; the next `pool_map!` of that size starts them again. By default 300
/// seconds, as loky's reusable executor, so that a long-running program that called
/// `pool_map!` once does not keep its workers forever while a loop of calls reuses them.
/// `Duration::MAX` keeps them for the life of the program. Pools you build yourself are not
/// affected.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mp_runtime::{pool_map, process_fn};
///
/// #[process_fn]
/// fn double(x: u32) -> u32 {
///     x * 2
/// }
///
/// mp_runtime::set_shared_pool_idle_timeout(Duration::from_millis(50));
/// assert_eq!(pool_map!(double, [1, 2], processes = 1).unwrap(), [2, 4]);
/// std::thread::sleep(Duration::from_millis(200)); // the pool's worker exits meanwhile
/// assert_eq!(pool_map!(double, [3], processes = 1).unwrap(), [6]); // and starts again
/// ```
pub fn set_shared_pool_idle_timeout(timeout: Duration) {
    // Fails only in a forked copy whose original held the lock at the fork: there no shared
    // pool can be used at all, and `pool_map!` says so.
    if let Ok(mut pools) = lock_pools() {
        pools.idle_timeout = timeout;
    }
    CHANGED.notify_all();
}

/// Locks the table of shared pools, and takes it over in a forked copy: the pools in it are
/// the original's (their drop leaves them alone, see [`Pool`]) and so is the retirer thread.
///
/// A thread of the original may have held the lock at the fork; then the copy would wait for
/// ever. So, until this process has taken the table over, the wait is bounded, and past it
/// the error says what to do.
fn lock_pools() -> Result<MutexGuard<'static, SharedPools>> {
    let deadline = Instant::now() + INHERITED_LOCK_WAIT;
    let mut pools = loop {
        match POOLS.try_lock() {
            Ok(pools) => break pools,
            Err(TryLockError::Poisoned(poisoned)) => break poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {}
        }
        let owner = POOLS_OWNER.load(Ordering::Relaxed);
        if owner == sys::process::pid() {
            break lock(&POOLS);
        }
        if Instant::now() >= deadline {
            return Err(Error::new(Kind::ForeignProcess {
                handle: Handle::SharedPools,
                owner,
                here: sys::process::pid(),
            }));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    if !pools.owner.is_some_and(Owner::is_here) {
        let owner = Owner::this_process();
        POOLS_OWNER.store(owner.pid(), Ordering::Relaxed);
        pools.owner = Some(owner);
        pools.pools.clear();
        pools.retirer = false;
    }
    Ok(pools)
}

/// The program-wide pool of `processes` workers, started on first use (again after it was
/// retired).
fn shared_pool(processes: usize) -> Result<Arc<Pool>> {
    let mut pools = lock_pools()?;
    let now = Instant::now();
    if let Some(shared) = pools.pools.get_mut(&processes) {
        shared.last_used = now;
        return Ok(shared.pool.clone());
    }
    // A pool of another size that no call uses now is resized, so that its workers serve this
    // size too instead of a second pool starting beside it.
    let unused = (pools.pools.iter())
        .find(|(_, shared)| Arc::strong_count(&shared.pool) == 1)
        .map(|(&size, _)| size);
    if let Some(shared) = unused.and_then(|size| pools.pools.remove(&size)) {
        // A pool that could not grow is dropped, which ends its workers; the next call starts
        // afresh.
        shared.pool.resize(processes)?;
        pools.pools.insert(
            processes,
            SharedPool {
                pool: shared.pool.clone(),
                last_used: now,
            },
        );
        return Ok(shared.pool);
    }
    let pool = Arc::new(Pool::new(processes)?);
    pools.pools.insert(
        processes,
        SharedPool {
            pool: pool.clone(),
            last_used: now,
        },
    );
    if !pools.retirer {
        // Without the thread the pools live as long as the program, as they did before idle
        // pools were retired: nothing fails.
        pools.retirer = std::thread::Builder::new()
            .name("mp-shared-pool-retirer".into())
            .spawn(retire_idle_pools)
            .is_ok();
    }
    Ok(pool)
}

/// Retires each shared pool that nobody is using once it has been unused for the idle timeout;
/// ends when no shared pool is left (the next one starts it again).
fn retire_idle_pools() {
    let mut pools = lock(&POOLS);
    loop {
        if pools.pools.is_empty() {
            pools.retirer = false;
            return;
        }
        let now = Instant::now();
        let timeout = pools.idle_timeout;
        // A pool `pool_map!` holds (more than our reference) is in use, whatever its age.
        let retire_at = |shared: &SharedPool| {
            let unused = Arc::strong_count(&shared.pool) == 1;
            unused
                .then(|| shared.last_used.checked_add(timeout))
                .flatten()
        };
        let idle: Vec<usize> = (pools.pools.iter())
            .filter(|(_, shared)| retire_at(shared).is_some_and(|at| at <= now))
            .map(|(&processes, _)| processes)
            .collect();
        if !idle.is_empty() {
            let retired: Vec<SharedPool> = (idle.iter())
                .filter_map(|processes| pools.pools.remove(processes))
                .collect();
            drop(pools);
            for shared in retired {
                // Idle workers exit when asked; dropping the pool then reaps them.
                shared.pool.close();
                let _ = shared.pool.join();
            }
            pools = lock(&POOLS);
            continue;
        }
        // Until the next pool may be retired; a use or a new timeout wakes us to look again.
        let next = pools.pools.values().filter_map(retire_at).min();
        let wait = next.map_or(timeout, |at| at.saturating_duration_since(now));
        pools = CHANGED
            .wait_timeout(pools, wait)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}
