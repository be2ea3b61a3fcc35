//! The handles users pass between processes: pipes ([`pipe`]), queues ([`queue`]), locks and
//! the other synchronisation primitives ([`sync`]), shared values, arrays and named regions
//! ([`shared`]), all built on shared memory regions ([`shm`]). How processes wait on them is
//! written down in `README.md` here, with the loom tests that check it.
//!
//! A public room: uses `base`, `sys` and `wire`; used by users, and by `pool` for `wait`.

pub(crate) mod pipe;
pub(crate) mod queue;
pub(crate) mod shared;
pub(crate) mod shm;
pub(crate) mod sync;
