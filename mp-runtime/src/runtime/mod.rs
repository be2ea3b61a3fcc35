//! The runtime tier: what makes a call run in another process. The table of callable functions
//! ([`registry`]), the worker's sandbox ([`sandbox`]), its serve loop ([`worker`]) and what the
//! macros expand to ([`expansion`]), starting children ([`spawn`]), their logs ([`logs`]) and
//! the MPI job ([`cluster`]). Uses `base`, `sys` and `wire`; used by the public rooms (process,
//! pool, ipc, macros) and the early entry.

#[cfg(feature = "mpi")]
pub(crate) mod cluster;
pub(crate) mod expansion;
#[cfg(any(fuzzing, test))]
pub mod fuzz;
pub(crate) mod logs;
pub(crate) mod registry;
pub(crate) mod sandbox;
pub(crate) mod spawn;
pub(crate) mod worker;
