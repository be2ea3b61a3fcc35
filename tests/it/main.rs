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
