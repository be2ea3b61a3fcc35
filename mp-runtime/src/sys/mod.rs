//! Every system call and OS-facing `unsafe` of the crate, behind safe functions: the layers
//! above are safe Rust. A port to another Unix would touch this folder only.
//!
//! Uses `rustix` where it covers the call, `libc` for the rest (robust pthread mutexes, fork,
//! `close_range`, `getauxval`), and the MPI library's own calls for feature `mpi` (`mpi`).
//! Uses nothing else of this crate: failures are `io::Error`s (or `mpi::MpiError`).

pub(crate) mod fd;
pub(crate) mod file;
pub(crate) mod futex;
pub(crate) mod memfd;
pub(crate) mod mmap;
#[cfg(feature = "mpi")]
pub(crate) mod mpi;
pub(crate) mod mutex;
pub(crate) mod pidfd;
pub(crate) mod plain;
pub(crate) mod process;
pub(crate) mod signal;
