//! The serializing half of [`super`]: [`Fast`] around a serde `Serializer`.

use serde::ser::{self, Serialize, SerializeTuple as _};

use super::plain;
use super::{Tag, each_plain};

/// A serializer, or one of its compound parts, whose sequences of plain numbers are written
/// whole (see [`super`]); everything else goes to the one inside unchanged. As a `Serialize`,
/// `Fast(&value)` is `value` written through such a serializer.
pub(crate) struct Fast<S>(pub(crate) S);

impl<T: Serialize + ?Sized> Serialize for Fast<&T> {
    #[inline]
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(Fast(serializer))
    }
}

/// Little-endian bytes, written as the format writes bytes: one call, one copy.
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    #[inline]
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl<S: ser::Serializer> Fast<S> {
    /// Writes the slice `iter` walks over whole when it is a slice of plain numbers, or gives
    /// the serializer back.
    #[inline]
    fn try_plain<I>(self, iter: &I) -> Result<Result<S::Ok, S::Error>, Self> {
        each_plain!(P, TAG => {
            if let Some(bytes) = plain::remaining_slice::<I, P>(iter).and_then(plain::as_le_bytes)
            {
                return Ok(self.plain(TAG, bytes));
            }
        });
        Err(self)
    }

    fn plain(self, tag: Tag, bytes: &[u8]) -> Result<S::Ok, S::Error> {
        // A tuple is its parts one after the other, with nothing around them.
        let mut parts = self.0.serialize_tuple(2)?;
        parts.serialize_element(&tag.0)?;
        parts.serialize_element(&Bytes(bytes))?;
        parts.end()
    }
}

impl<S: ser::Serializer> ser::Serializer for Fast<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Fast<S::SerializeTuple>;
    type SerializeTuple = Fast<S::SerializeTuple>;
    type SerializeTupleStruct = Fast<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Fast<S::SerializeTupleVariant>;
    type SerializeMap = Fast<S::SerializeMap>;
    type SerializeStruct = Fast<S::SerializeStruct>;
    type SerializeStructVariant = Fast<S::SerializeStructVariant>;

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<S::Ok, S::Error> {
        self.0.serialize_bool(v)
    }
    #[inline]
    fn serialize_i8(self, v: i8) -> Result<S::Ok, S::Error> {
        self.0.serialize_i8(v)
    }
    #[inline]
    fn serialize_i16(self, v: i16) -> Result<S::Ok, S::Error> {
        self.0.serialize_i16(v)
    }
    #[inline]
    fn serialize_i32(self, v: i32) -> Result<S::Ok, S::Error> {
        self.0.serialize_i32(v)
    }
    #[inline]
    fn serialize_i64(self, v: i64) -> Result<S::Ok, S::Error> {
        self.0.serialize_i64(v)
    }
    #[inline]
    fn serialize_i128(self, v: i128) -> Result<S::Ok, S::Error> {
        self.0.serialize_i128(v)
    }
    #[inline]
    fn serialize_u8(self, v: u8) -> Result<S::Ok, S::Error> {
        self.0.serialize_u8(v)
    }
    #[inline]
    fn serialize_u16(self, v: u16) -> Result<S::Ok, S::Error> {
        self.0.serialize_u16(v)
    }
    #[inline]
    fn serialize_u32(self, v: u32) -> Result<S::Ok, S::Error> {
        self.0.serialize_u32(v)
    }
    #[inline]
    fn serialize_u64(self, v: u64) -> Result<S::Ok, S::Error> {
        self.0.serialize_u64(v)
    }
    #[inline]
    fn serialize_u128(self, v: u128) -> Result<S::Ok, S::Error> {
        self.0.serialize_u128(v)
    }
    #[inline]
    fn serialize_f32(self, v: f32) -> Result<S::Ok, S::Error> {
        self.0.serialize_f32(v)
    }
    #[inline]
    fn serialize_f64(self, v: f64) -> Result<S::Ok, S::Error> {
        self.0.serialize_f64(v)
    }
    #[inline]
    fn serialize_char(self, v: char) -> Result<S::Ok, S::Error> {
        self.0.serialize_char(v)
    }
    #[inline]
    fn serialize_str(self, v: &str) -> Result<S::Ok, S::Error> {
        self.0.serialize_str(v)
    }
    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<S::Ok, S::Error> {
        self.0.serialize_bytes(v)
    }
    #[inline]
    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_none()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&Fast(value))
    }
    #[inline]
    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit()
    }
    #[inline]
    fn serialize_unit_struct(self, name: &'static str) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit_struct(name)
    }
    #[inline]
    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit_variant(name, index, variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, &Fast(value))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, &Fast(value))
    }
    /// A sequence given element by element: the tag and the count, then the elements (a
    /// tuple: the parts one after the other, with nothing around them).
    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        let Some(len) = len else {
            return Err(ser::Error::custom(
                "a sequence of unknown length cannot be encoded: collect it first",
            ));
        };
        let mut parts = self.0.serialize_tuple(2 + len)?;
        parts.serialize_element(&Tag::ELEMENTS.0)?;
        parts.serialize_element(&(len as u64))?;
        Ok(Fast(parts))
    }
    #[inline]
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len).map(Fast)
    }
    #[inline]
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.0.serialize_tuple_struct(name, len).map(Fast)
    }
    #[inline]
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0
            .serialize_tuple_variant(name, index, variant, len)
            .map(Fast)
    }
    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.0.serialize_map(len).map(Fast)
    }
    #[inline]
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        self.0.serialize_struct(name, len).map(Fast)
    }
    #[inline]
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0
            .serialize_struct_variant(name, index, variant, len)
            .map(Fast)
    }

    /// serde's `Vec<T>`, `[T]` and `Box<[T]>` come here with a slice iterator: a slice of
    /// plain numbers is written whole.
    fn collect_seq<I>(self, iter: I) -> Result<S::Ok, S::Error>
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        let iter = iter.into_iter();
        let this = match self.try_plain(&iter) {
            Ok(written) => return written,
            Err(this) => this,
        };
        let len = match iter.size_hint() {
            (low, Some(high)) if low == high => Some(low),
            _ => None,
        };
        let mut seq = ser::Serializer::serialize_seq(this, len)?;
        for item in iter {
            ser::SerializeSeq::serialize_element(&mut seq, &item)?;
        }
        ser::SerializeSeq::end(seq)
    }

    fn collect_str<T: std::fmt::Display + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.collect_str(value)
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// The parts of compound values: each part wrapped, so that its sequences are fast too.
macro_rules! compound {
    ($($trait:ident :: $method:ident ($($key:ident)?)),*) => {$(
        impl<S: ser::$trait> ser::$trait for Fast<S> {
            type Ok = S::Ok;
            type Error = S::Error;
            #[inline]
            fn $method<T: Serialize + ?Sized>(
                &mut self,
                $($key: &'static str,)?
                value: &T,
            ) -> Result<(), S::Error> {
                self.0.$method($($key,)? &Fast(value))
            }
            #[inline]
            fn end(self) -> Result<S::Ok, S::Error> {
                self.0.end()
            }
        }
    )*};
}
compound!(
    SerializeTuple::serialize_element(),
    SerializeTupleStruct::serialize_field(),
    SerializeTupleVariant::serialize_field(),
    SerializeStruct::serialize_field(key),
    SerializeStructVariant::serialize_field(key)
);

/// A sequence's elements, written as the parts of the tuple `serialize_seq` began.
impl<S: ser::SerializeTuple> ser::SerializeSeq for Fast<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
        self.0.serialize_element(&Fast(value))
    }
    #[inline]
    fn end(self) -> Result<S::Ok, S::Error> {
        self.0.end()
    }
}

impl<S: ser::SerializeMap> ser::SerializeMap for Fast<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), S::Error> {
        self.0.serialize_key(&Fast(key))
    }
    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
        self.0.serialize_value(&Fast(value))
    }
    #[inline]
    fn end(self) -> Result<S::Ok, S::Error> {
        self.0.end()
    }
}
