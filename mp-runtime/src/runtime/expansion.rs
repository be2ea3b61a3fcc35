//! What `#[process_fn]` expands to, reached through the crate's `__private` path: the
//! registration ([`Entry`], `inventory`), the identity of a fn item, and a child's call —
//! decoding its arguments, encoding its result, one call after another ([`call_each`]). Not a
//! public API: it may change in any release.

use std::any::TypeId;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::base::Result;
use crate::wire::codec;

pub use super::registry::Entry;
pub use super::worker::call_each;
pub use crate::wire::outgoing::Outgoing;
pub use inventory;

/// The `TypeId` of a value's type: for a fn item, the function's identity.
pub fn type_id_of<T: 'static>(_: &T) -> TypeId {
    TypeId::of::<T>()
}

/// Decodes a function's argument tuple.
#[inline(always)]
pub fn decode_args<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    codec::decode(bytes)
}

/// Appends a function's encoded result to `out`.
#[inline(always)]
pub fn encode_result<T: Serialize>(value: &T, out: &mut Outgoing) -> Result<()> {
    codec::encode_into(value, out)
}

/// Fails to compile, on the type, when it cannot cross a process boundary.
pub fn assert_transferable<T: Serialize + DeserializeOwned + 'static>() {}
