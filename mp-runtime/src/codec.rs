//! Values to bytes and back: the only module that knows bincode.
//!
//! Everything that crosses a process boundary (arguments, results, the messages of the worker
//! protocol) goes through [`encode`] and [`decode`], so the wire format can change in one place.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// bincode's standard configuration: little endian, variable-length integers.
const CONFIG: bincode::config::Configuration = bincode::config::standard();

/// Encodes `value` into a new buffer.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Appends the encoding of `value` to `out`; on error `out` keeps what it had before.
pub(crate) fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    bincode::serde::encode_into_std_write(value, out, CONFIG).map_err(|e| {
        out.truncate(start);
        Error::codec(e.to_string())
    })?;
    Ok(())
}

/// Decodes a whole buffer; bytes left over are an error, since they mean the two sides disagree
/// on the type.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, CONFIG)
        .map_err(|e| Error::codec(format!("{e} (decoding {})", std::any::type_name::<T>())))?;
    if used != bytes.len() {
        return Err(Error::codec(format!(
            "{} bytes left over after decoding {}: parent and child disagree on the type",
            bytes.len() - used,
            std::any::type_name::<T>()
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_nested_values() {
        let value = (7u64, "seven".to_string(), vec![Some(1.5f64), None]);
        let bytes = encode(&value).unwrap();
        assert_eq!(
            decode::<(u64, String, Vec<Option<f64>>)>(&bytes).unwrap(),
            value
        );
    }

    #[test]
    fn a_tuple_of_references_encodes_like_the_owned_tuple() {
        let owned = encode(&(5u32, "x".to_string())).unwrap();
        let borrowed = encode(&(&5u32, &"x".to_string())).unwrap();
        assert_eq!(owned, borrowed);
    }

    #[test]
    fn leftover_bytes_are_an_error() {
        let bytes = encode(&(1u8, 2u8)).unwrap();
        let err = decode::<u8>(&bytes).unwrap_err();
        assert!(err.is_codec());
        assert!(err.to_string().contains("left over"), "{err}");
    }

    #[test]
    fn truncated_input_is_an_error() {
        let bytes = encode(&"a string of some length".to_string()).unwrap();
        assert!(decode::<String>(&bytes[..5]).unwrap_err().is_codec());
    }
}
