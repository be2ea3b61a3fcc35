//! Sequences of numbers moved whole: a serde layer around the codec's serializer and
//! deserializer.
//!
//! serde hands a format a `Vec<f64>` one element per call, in code instantiated in the
//! caller's crate at the caller's opt-level: a 64 MiB `Vec<u8>` took seconds in a debug
//! build. [`Fast`] wraps the format's serializer or deserializer (and, so that this holds at
//! any depth, every serializer or deserializer it hands to a nested value) and changes one
//! thing: a slice of plain numbers (`u8` to `u64`, `i8` to `i64`, `f32`, `f64`) crosses as
//! one byte string of its little-endian bytes, written and read with one copy. Strings were
//! already one byte string; the deserializer only borrows them to copy them once.
//!
//! That changes the format of every sequence, which is ours to choose (both ends are one
//! build): a one-byte [`Tag`] first, then
//! - [`Tag::ELEMENTS`]: the count as a `u64`, then the elements, as the format writes a
//!   sequence;
//! - a number type's tag: the numbers' little-endian bytes, as the format writes bytes.
//!
//! The tag tells the decoder which it reads, whatever type asks: a `Vec<f64>` is read whole,
//! and any other type (an `ArrayVec<f64>` whose `Serialize` shares `Vec`'s slice iterator but
//! whose `Deserialize` is its own) gets the numbers one by one.

pub(crate) mod de;
mod plain;
pub(crate) mod ser;

pub(crate) use de::Decoded;
pub(crate) use ser::Fast;

/// The first byte of a sequence: how its elements follow.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Tag(u8);

impl Tag {
    /// A count, then the elements one by one.
    const ELEMENTS: Tag = Tag(0);
}

/// Runs `$body` with `$t` bound to each plain number type and `$tag` to its [`Tag`]; the
/// one list of what crosses whole, so encoder and decoder cannot disagree on a tag.
macro_rules! each_plain {
    ($t:ident, $tag:ident => $body:block) => {{
        {
            type $t = u8;
            const $tag: Tag = Tag(1);
            $body
        }
        {
            type $t = i8;
            const $tag: Tag = Tag(2);
            $body
        }
        {
            type $t = u16;
            const $tag: Tag = Tag(3);
            $body
        }
        {
            type $t = i16;
            const $tag: Tag = Tag(4);
            $body
        }
        {
            type $t = u32;
            const $tag: Tag = Tag(5);
            $body
        }
        {
            type $t = i32;
            const $tag: Tag = Tag(6);
            $body
        }
        {
            type $t = u64;
            const $tag: Tag = Tag(7);
            $body
        }
        {
            type $t = i64;
            const $tag: Tag = Tag(8);
            $body
        }
        {
            type $t = f32;
            const $tag: Tag = Tag(9);
            $body
        }
        {
            type $t = f64;
            const $tag: Tag = Tag(10);
            $body
        }
    }};
}
use each_plain;
