//! Facts about this process and machine.

/// The number of CPUs this process may run on: its CPU affinity and its cgroup's CPU quota
/// are respected (Python's `os.cpu_count()` counts every CPU of the machine instead). At
/// least 1.
///
/// # Examples
///
/// ```
/// assert!(mp_runtime::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
