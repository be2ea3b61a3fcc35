//! The adversarial suite, which breaks every side of every call on purpose: the crash matrix
//! (every misbehaviour × every entry point × Spawn/ForkServer), result decoders that panic in
//! the parent, tasks that fork and exit, a `join_timeout` after the reply, and workers killed
//! in the middle of their rings' protocol or scribbling over them. Tests that
//! change process-wide state (rlimits, SIGCHLD, the start method) run in a process of their own
//! (`alone/`).

pub(crate) mod bounded;
mod crash_matrix;
mod decode_panic;
mod forged_parent;
mod hangs;
pub(crate) mod matrix;
pub(crate) mod misbehave;
mod panic_edges;
mod pool_vocabulary;
mod ring;
mod ring_review;
mod sandbox_escapes;
mod unruly;
