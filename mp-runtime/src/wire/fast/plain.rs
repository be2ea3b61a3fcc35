//! Slices of plain numbers as bytes and back, and telling a generic type apart at run time:
//! what lets the codec move a `Vec<f64>` with one copy instead of one call per element.
//!
//! The bytes are little endian, the wire's order. On a little-endian machine (every Linux
//! target mp is built for in practice) that is the memory of the slice, copied whole; on a
//! big-endian one [`as_le_bytes`] declines and [`from_le_bytes`] converts each number, so the
//! codec stays correct there, only slower.

use std::any::TypeId;
use std::mem::{ManuallyDrop, size_of};

/// A number type whose every bit pattern is a value and that has no padding, so its slices
/// can be read as bytes and written from any bytes.
pub(crate) trait Plain: Copy + 'static + private::Sealed {
    /// The number whose little-endian bytes are `bytes` (`size_of::<Self>()` of them).
    fn from_le(bytes: &[u8]) -> Self;
}

mod private {
    pub trait Sealed {}
}

macro_rules! plain {
    ($($t:ty),*) => {$(
        impl private::Sealed for $t {}
        impl Plain for $t {
            #[inline]
            fn from_le(bytes: &[u8]) -> Self {
                let mut array = [0; size_of::<$t>()];
                array.copy_from_slice(bytes);
                <$t>::from_le_bytes(array)
            }
        }
    )*};
}
plain!(u8, i8, u16, i16, u32, i32, u64, i64, f32, f64);

/// The elements `iter` has left, when it is a `std::slice::Iter<P>` (of any lifetime).
pub(crate) fn remaining_slice<I, P: Plain>(iter: &I) -> Option<&[P]> {
    if typeid::of::<I>() != TypeId::of::<std::slice::Iter<'static, P>>() {
        return None;
    }
    // SAFETY: `I` is `slice::Iter<'a, P>` for some `'a` (type ids ignore lifetimes only), and
    // `'a` outlives the borrow of `iter`, so reading it as a `slice::Iter` of the shorter
    // borrow is reading it as its own type; lifetimes do not change layout.
    let iter = unsafe { &*(iter as *const I).cast::<std::slice::Iter<'_, P>>() };
    Some(iter.as_slice())
}

/// The little-endian bytes of `values`, when they are its memory: on a little-endian machine.
pub(crate) fn as_le_bytes<P: Plain>(values: &[P]) -> Option<&[u8]> {
    if cfg!(target_endian = "big") {
        return None;
    }
    // SAFETY: a `Plain` type has no padding, so each of its bytes is initialised; `u8` needs
    // no alignment, and the length covers exactly the memory of `values`.
    Some(unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), size_of_val(values)) })
}

/// The values whose little-endian bytes are `bytes`, in a new vector; `None` when `bytes` is
/// not a whole number of values.
pub(crate) fn from_le_bytes<P: Plain>(bytes: &[u8]) -> Option<Vec<P>> {
    if bytes.len() % size_of::<P>() != 0 {
        return None;
    }
    let len = bytes.len() / size_of::<P>();
    if cfg!(target_endian = "big") {
        return Some(bytes.chunks_exact(size_of::<P>()).map(P::from_le).collect());
    }
    let mut values = Vec::<P>::with_capacity(len);
    if bytes.len() >= HUGE {
        crate::sys::mmap::advise_huge_pages(values.spare_capacity_mut());
    }
    // SAFETY: the vector has room for `len` values, that is `bytes.len()` bytes; the two do
    // not overlap (the vector is new); every bit pattern is a `P` and the machine is little
    // endian, so all `len` values are initialised, to the numbers meant, once copied. The
    // copy is one `memcpy`, fast in a build at any opt-level.
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            values.as_mut_ptr().cast::<u8>(),
            bytes.len(),
        );
        values.set_len(len);
    }
    Some(values)
}

/// A copy of `text` in a new `String`, in memory that asks for huge pages when large.
pub(crate) fn string_from(text: &str) -> String {
    let bytes = from_le_bytes::<u8>(text.as_bytes()).unwrap_or_default();
    // SAFETY: `bytes` is a copy of `text`, which is UTF-8.
    unsafe { String::from_utf8_unchecked(bytes) }
}

/// From this size on, a new buffer asks for huge pages: filling it then takes one fault per
/// 2 MiB instead of one per 4 KiB, which is most of what a fresh 64 MiB buffer costs.
const HUGE: usize = 4 << 20;

/// `value` as a `T`, when `T` is `U` (lifetimes aside); otherwise `value` back.
pub(crate) fn same_type<T, U: 'static>(value: U) -> Result<T, U> {
    if typeid::of::<T>() != TypeId::of::<U>() {
        return Err(value);
    }
    let value = ManuallyDrop::new(value);
    // SAFETY: `T` and `U` are one type up to lifetimes, and `U` is `'static`, so `T` holds
    // nothing shorter-lived than `U` does; the value is read once and the original never
    // dropped (`ManuallyDrop`), so it changes hands rather than being duplicated.
    Ok(unsafe { std::ptr::read((&*value as *const U).cast::<T>()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_back() {
        let values = [1.5f64, -2.0, f64::MAX];
        let bytes = as_le_bytes(&values).unwrap();
        assert_eq!(bytes, values.map(f64::to_le_bytes).concat());
        assert_eq!(from_le_bytes::<f64>(bytes).unwrap(), values);
        assert_eq!(from_le_bytes::<u16>(&[1, 0, 2]), None);
        assert_eq!(string_from("héllo"), "héllo");
    }

    #[test]
    fn a_slice_iterator_is_recognised_and_nothing_else() {
        let values = [1u32, 2, 3];
        let mut iter = values.iter();
        iter.next();
        assert_eq!(remaining_slice::<_, u32>(&iter), Some(&[2, 3][..]));
        assert_eq!(remaining_slice::<_, i32>(&iter), None);
        assert_eq!(remaining_slice::<_, u32>(&values.iter().rev()), None);
    }

    #[test]
    fn same_type_moves_only_between_equal_types() {
        assert_eq!(same_type::<Vec<u8>, _>(vec![1u8]), Ok(vec![1]));
        assert_eq!(same_type::<Vec<i8>, _>(vec![1u8]), Err(vec![1]));
    }
}
