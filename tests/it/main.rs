//! The integration tests that share one process, in one test binary (one link instead of one
//! per file): everything that changes no process-wide state, such as a resource limit, a
//! signal disposition, the start method, the standard descriptors or the global logger, and
//! counts no process-wide resource, such as open descriptors or children. Those keep a binary
//! of their own, beside this folder (`tests/*.rs`).

mod adversarial;
mod adversarial_ipc;
mod alone;
mod handles;
mod logging;
mod pipe;
mod pool;
mod process;
mod queue;
mod shared_memory;
mod shared_pool;
mod sync;
mod wait;

/// Runs `body` in a `spawn!`ed child of its own (mp's own isolation), for a test that changes or
/// counts what belongs to the whole process; fails as the body fails, with its message and
/// location. Every test's child is waited for at most 15 minutes.
fn in_child<F: mp_runtime::ProcessFn<(), Output = ()>>(body: F) {
    let mut child = mp_runtime::Process::start(body, ()).unwrap();
    child
        .join_timeout(std::time::Duration::from_secs(900))
        .unwrap();
}
