//! The one-line forms: [`spawn!`](crate::spawn) and [`pool_map!`](crate::pool_map), and the
//! shared pools behind `pool_map!`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use crate::error::Result;
use crate::pool::Pool;
use crate::registry::ProcessFn;

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
/// The pool of each size is started on first use and kept for the life of the program, so
/// calling `pool_map!` in a loop does not start new processes each time.
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
    ($function:expr, $inputs:expr $(,)?) => {
        $crate::__private::pool_map($function, $inputs, ::core::option::Option::None)
    };
    ($function:expr, $inputs:expr, processes = $processes:expr $(,)?) => {
        $crate::__private::pool_map($function, $inputs, ::core::option::Option::Some($processes))
    };
}

/// The body of `pool_map!`: maps on the shared pool of the given size.
pub fn pool_map<F, A, I>(f: F, inputs: I, processes: Option<usize>) -> Result<Vec<F::Output>>
where
    F: ProcessFn<(A,)>,
    I: IntoIterator<Item = A>,
    A: Serialize,
{
    shared_pool(processes.unwrap_or_else(crate::context::cpu_count))?.map(f, inputs)
}

/// The program-wide pool of `processes` workers, started on first use.
fn shared_pool(processes: usize) -> Result<Arc<Pool>> {
    static POOLS: Mutex<Option<HashMap<usize, Arc<Pool>>>> = Mutex::new(None);
    let mut pools = POOLS.lock().unwrap_or_else(PoisonError::into_inner);
    let pools = pools.get_or_insert_with(HashMap::new);
    if let Some(pool) = pools.get(&processes) {
        return Ok(pool.clone());
    }
    let pool = Arc::new(Pool::new(processes)?);
    pools.insert(processes, pool.clone());
    Ok(pool)
}
