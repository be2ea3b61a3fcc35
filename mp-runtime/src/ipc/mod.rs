//! The handles users pass between processes: pipes ([`pipe`]), queues ([`queue`]), locks and
//! the other synchronisation primitives ([`sync`]), shared values, arrays and named regions
//! ([`shared`]), all built on shared memory regions ([`shm`]). How processes wait on them is
//! written down in `README.md` here, with the loom tests that check it.
//!
//! A public room: uses `base`, `sys` and `wire`; used by users, and by `pool` for `wait`.

mod pipe;
mod queue;
mod shared;
mod shm;
mod sync;

pub use pipe::{Connection, pipe, pipe_oneway};
pub use queue::{JoinableQueue, Queue};
pub use shared::{Array, ArrayGuard, Pod, SharedMemory, Value, ValueGuard};
pub use sync::{
    Barrier, BoundedSemaphore, Condition, ConditionGuard, Event, Lock, LockGuard, RLock, Semaphore,
    SemaphoreGuard,
};
