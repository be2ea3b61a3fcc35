//! The crash matrix: every misbehaviour of a task (panic, abort, `exit(3)`, SIGSEGV, an
//! error in `Serialize`/`Deserialize` on the argument and on the result side, a panicking
//! `Deserialize` on both sides) through every pool entry point and `spawn!`, under Spawn and
//! ForkServer (`spawn!` under ForkServer is in `alone/adversarial_forkserver.rs`, as it sets
//! the process-wide start method): the task's error with the right predicate, the other tasks
//! unaffected, the pool working afterwards, nothing hanging.

use mp_runtime::StartMethod::{ForkServer, Spawn};

use super::matrix::{Entry, matrix};

macro_rules! matrix_tests {
    ($($name:ident: $method:ident, $entry:ident;)*) => {$(
        // One entry point under one start method: each crash is that task's error, never a
        // hang.
        #[test]
        fn $name() {
            matrix($method, Entry::$entry);
        }
    )*};
}

matrix_tests! {
    spawn_macro_under_spawn: Spawn, Spawn;
    apply_under_spawn: Spawn, Apply;
    apply_async_under_spawn: Spawn, ApplyAsync;
    map_under_spawn: Spawn, Map;
    map_async_under_spawn: Spawn, MapAsync;
    imap_under_spawn: Spawn, Imap;
    imap_unordered_under_spawn: Spawn, ImapUnordered;
    starmap_under_spawn: Spawn, Starmap;
    apply_under_forkserver: ForkServer, Apply;
    apply_async_under_forkserver: ForkServer, ApplyAsync;
    map_under_forkserver: ForkServer, Map;
    map_async_under_forkserver: ForkServer, MapAsync;
    imap_under_forkserver: ForkServer, Imap;
    imap_unordered_under_forkserver: ForkServer, ImapUnordered;
    starmap_under_forkserver: ForkServer, Starmap;
}
