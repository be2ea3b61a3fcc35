//! The crash matrix: `spawn!` under the ForkServer start method, for every misbehaviour
//! of the task (see `tests/it/adversarial/crash_matrix.rs` for the other entry points). It runs in
//! a child of its own because it sets the process-wide start method.

use mp_runtime::{StartMethod, process_fn, set_start_method};

use crate::adversarial::matrix;

/// The body of [`spawn_macro_under_forkserver`], in a process of its own.
#[process_fn]
fn spawn_macro_under_forkserver_alone() {
    set_start_method(StartMethod::ForkServer);
    matrix::matrix(StartMethod::ForkServer, matrix::Entry::Spawn);
}

/// Runs [`spawn_macro_under_forkserver_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn spawn_macro_under_forkserver() {
    crate::in_child(spawn_macro_under_forkserver_alone);
}
