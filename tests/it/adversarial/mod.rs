//! Issue 11's adversarial suite, one binary: the crash matrix (every misbehaviour × every entry
//! point × Spawn/ForkServer), result decoders that panic in the parent (item 1), tasks that
//! fork and exit (item 2), and a `join_timeout` after the reply (item 5). Tests that change
//! process-wide state (rlimits, SIGCHLD, the start method) are in `tests/adversarial_*.rs`.

pub(crate) mod bounded;
mod crash_matrix;
mod decode_panic;
mod hangs;
pub(crate) mod matrix;
pub(crate) mod misbehave;
mod unruly;
