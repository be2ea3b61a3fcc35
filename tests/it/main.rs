//! The integration tests, in one test binary (one link instead of one per file). A test that
//! changes or counts what belongs to the whole process (a resource limit, a signal
//! disposition, the start method, the standard descriptors, the global logger, open
//! descriptors or children) runs its body in a `spawn!`ed child of its own ([`in_child`]); one
//! that needs a process started in an unusual way runs this binary again with only that test
//! selected. The few that can do neither keep a binary of their own beside this folder
//! (`tests/*.rs`; README, Layout).

mod adversarial;
mod adversarial_ipc;
mod alone;
mod bootstrap;
mod callbacks;
mod cancel;
mod compile_fail;
mod ctrl_c;
mod handles;
mod logging;
mod options;
mod pipe;
mod pool;
mod process;
mod queue;
mod resize;
mod sandbox;
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
