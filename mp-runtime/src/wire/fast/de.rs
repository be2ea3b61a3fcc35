//! The deserializing half of [`super`]: [`Fast`] around a serde `Deserializer`.
//!
//! serde's `Vec<P>` hands `deserialize_seq` a visitor that takes one element per call, in the
//! caller's crate. The visitor's type is private to serde, but it can be learned: deserializing
//! a `Vec<P>` from a [`Probe`] records it. Given that visitor, a sequence of plain numbers is
//! made here, with one copy of the bytes the inner deserializer lends.
//!
//! Nothing here allocates more than the input holds: the numbers are copied from bytes the
//! inner deserializer has already checked are there, and the rest (lengths, depth) is left to
//! it as before.

use std::any::TypeId;
use std::fmt;
use std::marker::PhantomData;
use std::sync::OnceLock;

use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, Error as _, IntoDeserializer, MapAccess,
    SeqAccess, VariantAccess, Visitor,
};

use super::plain::{self, Plain};
use super::{Tag, each_plain};

/// A value of `T` read through [`Fast`]: what the codec asks its deserializer for.
pub(crate) struct Decoded<T>(pub(crate) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Decoded<T> {
    #[inline]
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(Fast(deserializer)).map(Decoded)
    }
}

/// A deserializer whose sequences of plain numbers are read whole (see [`super`]); the rest
/// goes to the one inside, with what it hands to nested values wrapped again.
struct Fast<D>(D);

/// A seed, or a visitor, whose deserializers are wrapped in [`Fast`].
struct Wrap<T>(T);

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for Wrap<T> {
    type Value = T::Value;
    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T::Value, D::Error> {
        self.0.deserialize(Fast(deserializer))
    }
}

/// The methods that only hand the visitor over, wrapped.
macro_rules! forward {
    ($($method:ident),*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method(Wrap(visitor))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Fast<D> {
    type Error = D::Error;

    forward!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_bytes,
        deserialize_option,
        deserialize_unit,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any
    );

    /// Borrows the string and copies it once, into memory that suits a large one.
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_str(Owned(visitor))
    }
    #[inline]
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_bytes(Owned(visitor))
    }
    #[inline]
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, Wrap(visitor))
    }
    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, Wrap(visitor))
    }
    /// A tag, then the sequence (see [`super`]): read as the parts of a tuple of unknown
    /// length, which the format reads one after the other with nothing around them.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(usize::MAX, Sequence(visitor))
    }
    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, Wrap(visitor))
    }
    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, Wrap(visitor))
    }
    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct(name, fields, Wrap(visitor))
    }
    #[inline]
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, Wrap(visitor))
    }
    #[inline]
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// The visit methods that carry no deserializer: handed over as they are.
macro_rules! visit {
    ($($method:ident($t:ty)),*) => {$(
        #[inline]
        fn $method<E: de::Error>(self, v: $t) -> Result<V::Value, E> {
            self.0.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    visit!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>)
    );

    #[inline]
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_none()
    }
    #[inline]
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit()
    }
    #[inline]
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.0.visit_some(Fast(deserializer))
    }
    #[inline]
    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        self.0.visit_newtype_struct(Fast(deserializer))
    }
    #[inline]
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(Wrap(seq))
    }
    #[inline]
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(Wrap(map))
    }
    #[inline]
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.0.visit_enum(Wrap(data))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Wrap<A> {
    type Error = A::Error;
    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Wrap(seed))
    }
    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Wrap<A> {
    type Error = A::Error;
    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(Wrap(seed))
    }
    #[inline]
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(Wrap(seed))
    }
    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Wrap<A> {
    type Error = A::Error;
    type Variant = Wrap<A::Variant>;
    #[inline]
    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Wrap<A::Variant>), A::Error> {
        let (value, variant) = self.0.variant_seed(seed)?;
        Ok((value, Wrap(variant)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Wrap<A> {
    type Error = A::Error;
    #[inline]
    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }
    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Wrap(seed))
    }
    #[inline]
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Wrap(visitor))
    }
    #[inline]
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, Wrap(visitor))
    }
}

/// A visitor of a `String` or `Vec<u8>` given borrowed bytes, which it copies once.
struct Owned<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for Owned<V> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }
    #[inline]
    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.0.visit_string(plain::string_from(v))
    }
    #[inline]
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        self.0
            .visit_byte_buf(plain::from_le_bytes::<u8>(v).unwrap_or_default())
    }
}

/// The visitor of a sequence's parts: its tag, then its elements or its numbers' bytes.
struct Sequence<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for Sequence<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    #[inline]
    fn visit_seq<A: SeqAccess<'de>>(self, mut parts: A) -> Result<V::Value, A::Error> {
        let cut = || A::Error::custom("a sequence is cut off");
        let tag = Tag(parts.next_element::<u8>()?.ok_or_else(cut)?);
        if tag == Tag::ELEMENTS {
            let count = parts.next_element::<u64>()?.ok_or_else(cut)?;
            return self.0.visit_seq(Elements { parts, left: count });
        }
        let bytes = parts.next_element_seed(Borrowed)?.ok_or_else(cut)?;
        each_plain!(P, TAG => {
            if tag == TAG {
                return numbers::<P, V, A::Error>(TAG, self.0, bytes);
            }
        });
        Err(A::Error::custom(format!(
            "{} is not the tag of a sequence",
            tag.0
        )))
    }
}

/// A sequence of plain numbers from their bytes: a `Vec<P>` whole when `visitor` is serde's
/// for one, else one number at a time.
fn numbers<'de, P, V, E>(tag: Tag, visitor: V, bytes: &'de [u8]) -> Result<V::Value, E>
where
    P: Plain + IntoDeserializer<'de, E>,
    V: Visitor<'de>,
    E: de::Error,
{
    let torn = || {
        E::custom(format!(
            "{} bytes are not a whole number of {}",
            bytes.len(),
            std::any::type_name::<P>()
        ))
    };
    if typeid::of::<V>() == vec_visitor(tag) {
        let values = plain::from_le_bytes::<P>(bytes).ok_or_else(torn)?;
        return plain::same_type::<V::Value, Vec<P>>(values)
            .map_err(|_| E::custom("serde's Vec visitor made something other than a Vec"));
    }
    if bytes.len() % size_of::<P>() != 0 {
        return Err(torn());
    }
    visitor.visit_seq(Numbers::<P, E> {
        chunks: bytes.chunks_exact(size_of::<P>()),
        number: PhantomData,
    })
}

/// The elements of a sequence written one by one: `left` more of the tuple's parts.
struct Elements<A> {
    parts: A,
    left: u64,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Elements<A> {
    type Error = A::Error;
    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        self.parts.next_element_seed(Wrap(seed))
    }
    #[inline]
    fn size_hint(&self) -> Option<usize> {
        // What the count says, as the format tells it (serde's own visitors reserve at most
        // a cautious part of it).
        Some(usize::try_from(self.left).unwrap_or(usize::MAX))
    }
}

/// The numbers of a sequence written whole, one at a time, for a type other than `Vec<P>`.
struct Numbers<'de, P, E> {
    chunks: std::slice::ChunksExact<'de, u8>,
    number: PhantomData<(P, E)>,
}

impl<'de, P: Plain + IntoDeserializer<'de, E>, E: de::Error> SeqAccess<'de> for Numbers<'de, P, E> {
    type Error = E;
    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, E> {
        match self.chunks.next() {
            Some(chunk) => seed
                .deserialize(P::from_le(chunk).into_deserializer())
                .map(Some),
            None => Ok(None),
        }
    }
    #[inline]
    fn size_hint(&self) -> Option<usize> {
        Some(self.chunks.len())
    }
}

/// Bytes borrowed from the input, which the format has checked are there.
struct Borrowed;

impl<'de> DeserializeSeed<'de> for Borrowed {
    type Value = &'de [u8];
    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<&'de [u8], D::Error> {
        deserializer.deserialize_bytes(self)
    }
}

impl<'de> Visitor<'de> for Borrowed {
    type Value = &'de [u8];
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the bytes of a sequence of numbers")
    }
    #[inline]
    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<&'de [u8], E> {
        Ok(v)
    }
}

/// The type of the visitor serde's `Vec<P>` gives `deserialize_seq`, for the `P` of `tag`.
fn vec_visitor(tag: Tag) -> TypeId {
    static KNOWN: OnceLock<Vec<(Tag, TypeId)>> = OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        let mut known = Vec::new();
        each_plain!(P, TAG => {
            known.push((TAG, probe::<P>()));
        });
        known
    });
    known
        .iter()
        .find(|(known, _)| *known == tag)
        .map_or(TypeId::of::<Probe<'static>>(), |&(_, id)| id)
}

/// The visitor's type, or one that no visitor has if serde's `Vec` ever stops calling
/// `deserialize_seq` (then no `Vec` is made whole, and nothing breaks).
fn probe<P: Plain + for<'de> Deserialize<'de>>() -> TypeId {
    let seen = std::cell::Cell::new(TypeId::of::<Probe<'static>>());
    let _ = Vec::<P>::deserialize(Probe(&seen));
    seen.get()
}

/// A deserializer that only records the type of the visitor `deserialize_seq` is given.
struct Probe<'a>(&'a std::cell::Cell<TypeId>);

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = de::value::Error;
    #[inline]
    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(Self::Error::custom("probe"))
    }
    #[inline]
    fn deserialize_seq<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        self.0.set(typeid::of::<V>());
        Err(Self::Error::custom("probe"))
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct tuple tuple_struct map struct enum identifier
        ignored_any
    }
}
