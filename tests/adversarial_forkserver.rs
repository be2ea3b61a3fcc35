//! Issue 11, crash matrix: `spawn!` under the ForkServer start method, for every misbehaviour
//! of the task (see `tests/it/adversarial/crash_matrix.rs` for the other entry points). Alone in
//! its binary because it sets the process-wide start method.

#[allow(dead_code)]
#[path = "it/adversarial/bounded.rs"]
mod bounded;
#[allow(dead_code)]
#[path = "it/adversarial/matrix.rs"]
mod matrix;
#[path = "it/adversarial/misbehave.rs"]
mod misbehave;

use mp_runtime::{StartMethod, set_start_method};

// Issue 11, crash matrix: spawn! under ForkServer.
#[test]
fn spawn_macro_under_forkserver() {
    set_start_method(StartMethod::ForkServer);
    matrix::matrix(StartMethod::ForkServer, matrix::Entry::Spawn);
}
