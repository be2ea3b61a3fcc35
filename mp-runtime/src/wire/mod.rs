//! What crosses between processes: a frame being built ([`outgoing`]), values encoded
//! ([`codec`], the only module that knows bincode, with [`fast`] around it to move sequences of
//! numbers whole), frames sent and received over a socket with
//! their descriptors ([`frame`]), the messages of parent and worker ([`protocol`]), the rings
//! in shared memory that carry them between a pool and its workers ([`ring`]), and the user's
//! panics in either caught as values ([`panics`]).
//!
//! The wire tier: uses `base` and `sys`; used by the runtime tier and the public rooms.

pub(crate) mod codec;
mod fast;
pub(crate) mod frame;
pub(crate) mod outgoing;
pub(crate) mod panics;
pub(crate) mod protocol;
pub(crate) mod ring;
