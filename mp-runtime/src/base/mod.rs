//! The base tier: the crate's one error type ([`error`]), facts about this process and its
//! children ([`context`]), and the switch between std's synchronization and loom's ([`sync`]).
//! Uses only `sys`; every tier above uses it.

mod context;
mod error;
pub(crate) mod sync;

#[cfg(feature = "mpi")]
pub(crate) use context::RANK_VAR;
#[cfg(test)]
pub(crate) use context::is_known_child;
pub use context::{
    ProcessInfo, active_children, cpu_count, current_process, mpi_rank, parent_process,
};
pub(crate) use context::{child_ended, child_started, current_binary, depth, set_identity};
pub use error::{Error, ErrorKind, Location, Result};
pub(crate) use error::{ExitReason, Handle, Kind};
