//! Values to bytes and back: the only module that knows bincode.
//!
//! Everything that crosses a process boundary (arguments, results, the messages of the worker
//! protocol) goes through [`encode`] and [`decode`], so the wire format can change in one place.
//!
//! The format is bincode 2's (little endian, fixed-size integers), written and read through
//! [`fast`](super::fast), which moves a sequence of plain numbers (`Vec<u8>`, `Vec<f64>`, ...)
//! as one byte string instead of one call per element in the caller's crate.
//!
//! Handles (pipes, queues, locks, shared memory) cross as file descriptors beside the bytes:
//! while [`encode_with_fds`] runs, a handle's `Serialize` gives a duplicate of its descriptor to
//! [`serialize_fd`], which writes its index; while [`decode_with_fds`] runs, `Deserialize` takes
//! the received descriptor of that index back with [`deserialize_fd`]. Outside those two, a
//! handle refuses to encode, so a descriptor can never be silently dropped from a message.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::{BorrowedFd, OwnedFd};

use bincode::config::{Configuration, Fixint, LittleEndian};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::base::{Error, Result};
use crate::sys;
use crate::wire::fast::{Decoded, Fast};
use crate::wire::outgoing::Outgoing;

/// Little endian with fixed-size integers: a third faster than bincode's default varints for
/// maps of small values (measured with a 1M-task map), at a few bytes more on a local socket.
const CONFIG: Configuration<LittleEndian, Fixint> =
    bincode::config::standard().with_fixed_int_encoding();

/// Encodes `value` into a new buffer.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    bincode::serde::encode_into_writer(Fast(value), Append(&mut out), CONFIG)
        .map_err(encode_error)?;
    Ok(out)
}

/// Appends to a `Vec` without the `std::io::Write` detour.
struct Append<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for Append<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> std::result::Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Appends to a frame being encoded.
struct AppendOutgoing<'a>(&'a mut Outgoing);

impl bincode::enc::write::Writer for AppendOutgoing<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> std::result::Result<(), bincode::error::EncodeError> {
        match self.0.write(bytes) {
            Ok(()) => Ok(()),
            Err(inner) => Err(bincode::error::EncodeError::Io {
                inner,
                index: self.0.len(),
            }),
        }
    }
}

/// Appends the encoding of `value` to `out`; on error `out` keeps what it had before.
///
/// This and the decoding functions are inlined always: a map runs them once per item, in the
/// loop of [`call_each`](crate::runtime::worker::call_each), where a call would cost more than they do.
#[inline(always)]
pub(crate) fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Outgoing) -> Result<()> {
    let start = out.len();
    bincode::serde::encode_into_writer(Fast(value), AppendOutgoing(out), CONFIG).map_err(|e| {
        // Only a failed write to a file can fail this too; the error then says that one.
        let _ = out.truncate(start);
        encode_error(e)
    })
}

/// The error of a failed encode: the user's `Serialize`, no descriptor free for a handle, or
/// a failed write of a large frame's file (which is no fault of serde's).
#[cold]
fn encode_error(error: bincode::error::EncodeError) -> Error {
    match (DUP_FAILED.take(), error) {
        (Some(cause), _) => Error::io(
            "cannot pass a handle to another process: no file descriptor is free to duplicate \
             its descriptor (this process is at its limit of open files; raise it with `ulimit \
             -n`)",
            cause,
        ),
        (None, bincode::error::EncodeError::Io { inner, .. }) => Error::io(
            "cannot write a large value to the memory file it travels in (is the memory of \
             this process or of its cgroup at its limit?)",
            inner,
        ),
        (None, error) => Error::codec(error.to_string()),
    }
}

/// Decodes a value from the front of `bytes`; returns it and how many bytes it took.
#[inline(always)]
pub(crate) fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize)> {
    decode_bounded(bytes).map_err(decode_error::<T>)
}

/// The error of a failed decode: a handle's own (see [`handle_error`]), or the decoder's.
#[cold]
fn decode_error<T>(error: bincode::error::DecodeError) -> Error {
    HANDLE_FAILED.take().unwrap_or_else(|| {
        Error::codec(format!("{error} (decoding {})", std::any::type_name::<T>()))
    })
}

/// Fails the decode of a handle with `error`, its own (a barrier's holder limit, shared memory
/// that cannot be mapped): the decode returns that error, not one that blames serde.
pub(crate) fn handle_error<E: serde::de::Error>(error: Error) -> E {
    let custom = E::custom(&error);
    HANDLE_FAILED.set(Some(error));
    custom
}

/// Decodes from the front of `bytes` without ever allocating more than `bytes` could fill.
///
/// bincode allocates a string or byte buffer at the length its prefix announces before reading
/// it, so a corrupt prefix of 2^60 would abort the process. Its limit counts what a decode
/// claims: a string its length, an integer its size in memory (at most 16 bytes, from at least
/// one byte on the wire). So an honest message claims at most 16 times its own length, and we
/// claim all the rest of the limit up front: a prefix longer than that is a `LimitExceeded`
/// error, not an allocation.
#[inline(always)]
fn decode_bounded<T: DeserializeOwned>(
    bytes: &[u8],
) -> std::result::Result<(T, usize), bincode::error::DecodeError> {
    use bincode::de::{BorrowDecode, BorrowDecoder, Decoder, DecoderImpl};
    let budget = bytes.len().saturating_mul(MAX_CLAIM_PER_BYTE);
    let rest = Rest {
        bytes,
        stack_floor: sys::signal::stack_floor(),
    };
    let mut decoder = DecoderImpl::new(rest, CONFIG.with_limit::<{ usize::MAX }>(), ());
    decoder.claim_bytes_read(usize::MAX - budget)?;
    // Borrowing: strings and numbers' bytes are copied once, from `bytes` to their value.
    let bincode::serde::BorrowCompat(Decoded(value)) = BorrowDecode::borrow_decode(&mut decoder)?;
    Ok((value, bytes.len() - decoder.borrow_reader().bytes.len()))
}

/// The most a decode claims for one byte of input: a `u128` or `i128` in one varint byte.
const MAX_CLAIM_PER_BYTE: usize = 16;

/// A bincode reader over a slice that tells how much is left, and that bounds how deep a
/// value may nest.
///
/// bincode's serde decoder recurses once per level of a value, without limit: a value nested
/// a million deep (4 MB of `Some`s) would overflow the stack, which no error can report. Every
/// level reads at least a tag before it goes deeper, so the reader checks the stack as it
/// reads: a value that would take the stack within a margin of its end is refused with an
/// error. That bounds the depth by what the thread can afford, and costs one comparison per
/// read.
struct Rest<'a> {
    bytes: &'a [u8],
    /// The lowest stack address a read may happen at (see [`sys::signal::stack_floor`]).
    stack_floor: usize,
}

impl<'a> Rest<'a> {
    /// The next `n` bytes.
    #[inline]
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], bincode::error::DecodeError> {
        if sys::signal::stack_pointer() < self.stack_floor {
            return Err(bincode::error::DecodeError::Other(
                "the value is nested too deeply to decode on this thread's stack",
            ));
        }
        let Some((head, tail)) = self.bytes.split_at_checked(n) else {
            return Err(bincode::error::DecodeError::UnexpectedEnd {
                additional: n - self.bytes.len(),
            });
        };
        self.bytes = tail;
        Ok(head)
    }
}

impl<'a> bincode::de::read::BorrowReader<'a> for Rest<'a> {
    #[inline]
    fn take_bytes(
        &mut self,
        n: usize,
    ) -> std::result::Result<&'a [u8], bincode::error::DecodeError> {
        self.take(n)
    }
}

impl bincode::de::read::Reader for Rest<'_> {
    #[inline]
    fn read(&mut self, out: &mut [u8]) -> std::result::Result<(), bincode::error::DecodeError> {
        out.copy_from_slice(self.take(out.len())?);
        Ok(())
    }

    #[inline]
    fn peek_read(&mut self, n: usize) -> Option<&[u8]> {
        self.bytes.get(..n)
    }

    #[inline]
    fn consume(&mut self, n: usize) {
        self.bytes = self.bytes.get(n..).unwrap_or_default();
    }
}

/// Starts a record in `out`: a 4-byte length to be filled in by [`end_record`]. Records let
/// many values travel in one buffer and be found again without decoding them.
#[inline]
pub(crate) fn begin_record(out: &mut Outgoing) -> Result<usize> {
    let at = out.len();
    out.write(&[0; RECORD_HEADER])
        .map_err(|e| Error::io("cannot write a message", e))?;
    Ok(at)
}

/// Ends the record begun at `at`: writes its length.
#[inline]
pub(crate) fn end_record(out: &mut Outgoing, at: usize) -> Result<()> {
    let len = out.len() - at - RECORD_HEADER;
    let len = u32::try_from(len).map_err(|_| {
        Error::codec(format!(
            "one value of {len} bytes is over the 4 GiB a call can carry: split it, or put it \
             in a SharedMemory"
        ))
    })?;
    out.patch(at, &len.to_le_bytes())
        .map_err(|e| Error::io("cannot write a message", e))
}

const RECORD_HEADER: usize = 4;

/// The records of a buffer written with [`begin_record`] and [`end_record`], in order.
pub(crate) fn records(mut bytes: &[u8]) -> impl Iterator<Item = Result<&[u8]>> {
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        let Some((header, rest)) = bytes.split_first_chunk::<RECORD_HEADER>() else {
            bytes = &[];
            return Some(Err(Error::protocol("a record's length is cut off")));
        };
        let len = u32::from_le_bytes(*header) as usize;
        if rest.len() < len {
            bytes = &[];
            return Some(Err(Error::protocol("a record is cut off")));
        }
        let (record, rest) = rest.split_at(len);
        bytes = rest;
        Some(Ok(record))
    })
}

/// Decodes a whole buffer; bytes left over are an error, since they mean the two sides disagree
/// on the type.
#[inline(always)]
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let (value, used) = decode_prefix::<T>(bytes)?;
    if used != bytes.len() {
        return Err(Error::codec(format!(
            "{} bytes left over after decoding {}: parent and child disagree on the type",
            bytes.len() - used,
            std::any::type_name::<T>()
        )));
    }
    Ok(value)
}

/// The descriptors of the handles in the value being encoded, in index order, and the index
/// each open file got: a handle that appears many times in one message (clones of one `Value`
/// in every input of a map) crosses as one descriptor, not one each.
#[derive(Default)]
struct Handles {
    fds: Vec<OwnedFd>,
    index: HashMap<(u64, u64, u32), u32>,
}

thread_local! {
    /// The handles of the value being encoded on this thread.
    static OUTGOING: RefCell<Option<Handles>> = const { RefCell::new(None) };
    /// Why the last duplication of a handle's descriptor failed on this thread, for the error.
    static DUP_FAILED: RefCell<Option<std::io::Error>> = const { RefCell::new(None) };
    /// The descriptors received with the value being decoded on this thread; taken ones are `None`.
    static INCOMING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
    /// Why the last handle decoded on this thread could not be opened, for the error.
    static HANDLE_FAILED: RefCell<Option<Error>> = const { RefCell::new(None) };
}

/// Puts back what a scope replaced, also when the code inside it panics.
struct Restore {
    outgoing: Option<Option<Handles>>,
    incoming: Option<Option<Vec<Option<OwnedFd>>>>,
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(saved) = self.outgoing.take() {
            OUTGOING.set(saved);
        }
        if let Some(saved) = self.incoming.take() {
            INCOMING.set(saved);
        }
    }
}

/// Runs `f` with `incoming` as the descriptors a decode may take, and collects the descriptors
/// that encodes inside it give; what `f` leaves of `incoming` is closed.
pub(crate) fn with_fds<R>(incoming: Vec<OwnedFd>, f: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    // A failure that some `Serialize` or `Deserialize` swallowed must not explain a later error.
    DUP_FAILED.take();
    HANDLE_FAILED.take();
    let restore = Restore {
        outgoing: Some(OUTGOING.replace(Some(Handles::default()))),
        incoming: Some(INCOMING.replace(Some(incoming.into_iter().map(Some).collect()))),
    };
    let result = f();
    let outgoing = OUTGOING.take().unwrap_or_default().fds;
    // Puts the outer lists back; the descriptors `f` did not take are closed here.
    drop(restore);
    (result, outgoing)
}

/// Encodes `value` and returns the descriptors of the handles inside it with the bytes.
pub(crate) fn encode_with_fds<T: Serialize + ?Sized>(value: &T) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
    let (bytes, fds) = with_fds(Vec::new(), || encode(value));
    Ok((bytes?, fds))
}

/// Decodes a value whose handles' descriptors are `fds`; descriptors it does not take are closed.
pub(crate) fn decode_with_fds<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T> {
    with_fds(fds, || decode(bytes)).0
}

/// Serializes a handle's descriptor: a duplicate goes beside the message, its index into it.
pub(crate) fn serialize_fd<S: Serializer>(
    fd: BorrowedFd<'_>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::Error as _;
    let index = OUTGOING.with_borrow_mut(|outgoing| {
        let Some(outgoing) = outgoing else {
            return Err(S::Error::custom(
                "a handle (pipe, queue, lock, shared memory) can go to another process only as an \
                 argument or result of a #[process_fn] call or through a pipe",
            ));
        };
        // The same file with the same flags: the same handle, or a clone of it, which one
        // descriptor serves as well as many. (A pipe's two ends share a file but not their
        // flags.) Without its identity, the handle gets a descriptor of its own.
        let key = crate::sys::file::identity(fd).ok();
        if let Some(&index) = key.as_ref().and_then(|key| outgoing.index.get(key)) {
            return Ok(index);
        }
        let dup = fd.try_clone_to_owned().map_err(|e| {
            let message = format!("cannot duplicate a handle's descriptor: {e}");
            DUP_FAILED.set(Some(e));
            S::Error::custom(message)
        })?;
        outgoing.fds.push(dup);
        let index = u32::try_from(outgoing.fds.len() - 1).map_err(S::Error::custom)?;
        if let Some(key) = key {
            outgoing.index.insert(key, index);
        }
        Ok(index)
    })?;
    serializer.serialize_u32(index)
}

/// Deserializes a handle's descriptor: takes the received descriptor its index names.
pub(crate) fn deserialize_fd<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<OwnedFd, D::Error> {
    use serde::de::Error as _;
    let index = u32::deserialize(deserializer)? as usize;
    INCOMING.with_borrow_mut(|incoming| {
        let slot = incoming.as_mut().and_then(|fds| fds.get_mut(index));
        // One descriptor may stand for many handles (see `Handles`): each gets a duplicate,
        // and the received one closes with the message; with no descriptor free for that, the
        // received one goes to the handle (then only one handle can have it).
        slot.and_then(|fd| match fd.as_ref().map(OwnedFd::try_clone) {
            Some(Ok(dup)) => Some(dup),
            _ => fd.take(),
        })
        .ok_or_else(|| {
            D::Error::custom(format!(
                "the descriptor of a handle (index {index}) did not come with the message; \
                     handles can be decoded only from an mp call, result or pipe"
            ))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_handle_many_times_in_a_message_crosses_as_one_descriptor() {
        struct Handle<'a>(BorrowedFd<'a>);
        impl Serialize for Handle<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serialize_fd(self.0, s)
            }
        }
        let (read, write) = std::io::pipe().unwrap();
        use std::os::fd::AsFd;
        let value = [read.as_fd(), read.as_fd(), write.as_fd(), read.as_fd()].map(Handle);
        let (bytes, fds) = encode_with_fds(&value).unwrap();
        assert_eq!(fds.len(), 2, "the pipe's two ends, once each");
        assert_eq!(decode::<[u32; 4]>(&bytes).unwrap(), [0, 0, 1, 0]);
        struct Received(OwnedFd);
        impl<'de> Deserialize<'de> for Received {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                deserialize_fd(d).map(Received)
            }
        }
        let handles: [Received; 4] = decode_with_fds(&bytes, fds).unwrap();
        let ends = handles.map(|h| crate::sys::file::identity(h.0.as_fd()).unwrap());
        assert!(ends[0] == ends[1] && ends[0] == ends[3] && ends[0] != ends[2]);
    }

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
    fn a_huge_length_prefix_is_an_error_not_an_allocation() {
        // A string of 2^60 bytes announced by a 9-byte input (varint: 0xFD, then a u64).
        let mut bytes = vec![0xFD];
        bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
        let err = decode::<String>(&bytes).unwrap_err();
        assert!(err.is_codec(), "{err}");
        let err = decode_prefix::<(u8, Vec<u8>)>(&[&[7][..], &bytes].concat()).unwrap_err();
        assert!(err.is_codec(), "{err}");
    }

    /// A value as deep as its sender likes.
    #[derive(Deserialize)]
    enum Tree {
        Leaf,
        Node(Box<Tree>),
    }

    impl Tree {
        fn depth(&self) -> usize {
            match self {
                Tree::Leaf => 0,
                Tree::Node(below) => 1 + below.depth(),
            }
        }
    }

    // A million-deep value is an error, not a stack overflow: a worker decodes what any parent
    // sends, so the depth is bounded before the stack is.
    #[test]
    fn a_value_nested_deeper_than_the_stack_allows_is_an_error() {
        let mut bytes = 1u32.to_le_bytes().repeat(1_000_000);
        bytes.extend(0u32.to_le_bytes());
        let outcome = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || match decode::<Tree>(&bytes) {
                Ok(tree) => {
                    // Dropping it would recurse as deeply: not what is tested here.
                    std::mem::forget(tree);
                    None
                }
                Err(error) => Some(error.to_string()),
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(outcome.unwrap().contains("nested too deeply"));
        let shallow = [1u32.to_le_bytes(), 1u32.to_le_bytes(), 0u32.to_le_bytes()].concat();
        assert_eq!(decode::<Tree>(&shallow).unwrap().depth(), 2);
    }

    #[test]
    fn a_slice_of_numbers_crosses_as_its_bytes() {
        let floats: Vec<f64> = (0..1000).map(f64::from).collect();
        let bytes = encode(&floats).unwrap();
        // A tag, the length of the bytes, the bytes.
        assert_eq!(bytes.len(), 1 + 8 + 8000);
        assert_eq!(decode::<Vec<f64>>(&bytes).unwrap(), floats);
        assert_eq!(decode::<Box<[f64]>>(&bytes).unwrap()[..], floats[..]);
    }

    #[test]
    fn sequences_cross_between_types_that_write_and_read_them_differently() {
        use std::collections::VecDeque;
        let floats = vec![1.5f64, -2.0, 3.25];
        // Written whole, read one by one; written one by one, read whole.
        let deque: VecDeque<f64> = decode(&encode(&floats).unwrap()).unwrap();
        assert_eq!(deque, floats);
        assert_eq!(
            decode::<Vec<f64>>(&encode(&deque).unwrap()).unwrap(),
            floats
        );

        /// Written as `Vec` writes (a slice iterator), read with a visitor of its own, as
        /// `arrayvec::ArrayVec` does.
        #[derive(Debug, PartialEq)]
        struct Stack(Vec<u16>);
        impl Serialize for Stack {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter())
            }
        }
        impl<'de> Deserialize<'de> for Stack {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Each;
                impl<'de> serde::de::Visitor<'de> for Each {
                    type Value = Stack;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("numbers")
                    }
                    fn visit_seq<A: serde::de::SeqAccess<'de>>(
                        self,
                        mut seq: A,
                    ) -> Result<Stack, A::Error> {
                        let mut out = Vec::new();
                        while let Some(n) = seq.next_element()? {
                            out.push(n);
                        }
                        Ok(Stack(out))
                    }
                }
                d.deserialize_seq(Each)
            }
        }
        let stack = Stack(vec![1, 2, 65535]);
        assert_eq!(decode::<Stack>(&encode(&stack).unwrap()).unwrap(), stack);
    }

    #[test]
    fn a_corrupt_sequence_of_numbers_is_an_error() {
        let tag = encode(&vec![0.5f64]).unwrap()[0];
        // 2^60 bytes announced, none there: refused before any allocation.
        let huge = [&[tag][..], &(1u64 << 60).to_le_bytes()].concat();
        assert!(decode::<Vec<f64>>(&huge).unwrap_err().is_codec());
        // Three bytes are not a whole number of f64s.
        let torn = [&[tag][..], &3u64.to_le_bytes(), &[1, 2, 3]].concat();
        let err = decode::<Vec<f64>>(&torn).unwrap_err();
        assert!(err.to_string().contains("whole number"), "{err}");
        assert!(decode::<std::collections::VecDeque<f64>>(&torn).is_err());
        let unknown = [&[200][..], &0u64.to_le_bytes()].concat();
        let err = decode::<Vec<f64>>(&unknown).unwrap_err();
        assert!(err.to_string().contains("not the tag"), "{err}");
    }

    #[test]
    fn truncated_input_is_an_error() {
        let bytes = encode(&"a string of some length".to_string()).unwrap();
        assert!(decode::<String>(&bytes[..5]).unwrap_err().is_codec());
    }

    /// A value that carries one descriptor, as handles do.
    #[derive(Debug)]
    struct Carrier(OwnedFd);

    impl Serialize for Carrier {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use std::os::fd::AsFd;
            serialize_fd(self.0.as_fd(), s)
        }
    }

    impl<'de> Deserialize<'de> for Carrier {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            deserialize_fd(d).map(Carrier)
        }
    }

    #[test]
    fn descriptors_travel_beside_the_bytes() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let (bytes, fds) = encode_with_fds(&(1u8, Carrier(file.into()), 2u8)).unwrap();
        assert_eq!(fds.len(), 1);
        let (a, _carrier, b) = decode_with_fds::<(u8, Carrier, u8)>(&bytes, fds).unwrap();
        assert_eq!((a, b), (1, 2));
    }

    #[test]
    fn a_handle_outside_a_call_is_refused_with_a_reason() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let err = encode(&Carrier(file.into())).unwrap_err();
        assert!(err.to_string().contains("#[process_fn]"), "{err}");
        let (bytes, _fds) =
            encode_with_fds(&Carrier(std::fs::File::open("/dev/null").unwrap().into())).unwrap();
        assert!(
            decode::<Carrier>(&bytes)
                .unwrap_err()
                .to_string()
                .contains("did not come")
        );
    }
}

/// Corrupt or truncated bytes decode to an error: never a panic, never an allocation larger
/// than the input can justify.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    type Sample = (u64, String, Vec<u8>, Option<i128>, Vec<String>);

    fn sample() -> impl Strategy<Value = Sample> {
        (
            any::<u64>(),
            ".{0,40}",
            proptest::collection::vec(any::<u8>(), 0..100),
            any::<Option<i128>>(),
            proptest::collection::vec(".{0,10}", 0..5),
        )
    }

    /// A value with sequences of every kind at any depth: numbers written whole (`Vec<f64>`,
    /// `Vec<u8>`, `Box<[i8]>`), written one by one (`VecDeque`, `Vec<String>`), in options,
    /// enum variants and structs.
    #[derive(Clone, Debug, Serialize, Deserialize)]
    enum Shape {
        Unit,
        Floats(Vec<f64>),
        Record {
            name: String,
            bytes: Vec<u8>,
            singles: Vec<f32>,
            maybe: Option<Vec<i16>>,
        },
        Mixed(std::collections::VecDeque<u64>, Box<[i8]>, Vec<String>),
        Nested(Vec<Vec<u32>>, Option<Box<Shape>>, Vec<Shape>),
    }

    fn shape() -> impl Strategy<Value = Shape> {
        use proptest::collection::vec;
        let leaf = prop_oneof![
            Just(Shape::Unit),
            vec(any::<f64>(), 0..40).prop_map(Shape::Floats),
            (
                ".{0,20}",
                vec(any::<u8>(), 0..40),
                vec(any::<f32>(), 0..10),
                proptest::option::of(vec(any::<i16>(), 0..10)),
            )
                .prop_map(|(name, bytes, singles, maybe)| Shape::Record {
                    name,
                    bytes,
                    singles,
                    maybe
                }),
            (
                vec(any::<u64>(), 0..5),
                vec(any::<i8>(), 0..10),
                vec(".{0,5}", 0..4),
            )
                .prop_map(|(a, b, c)| Shape::Mixed(a.into(), b.into(), c)),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            (
                vec(vec(any::<u32>(), 0..6), 0..4),
                proptest::option::of(inner.clone().prop_map(Box::new)),
                vec(inner, 0..3),
            )
                .prop_map(|(a, b, c)| Shape::Nested(a, b, c))
        })
    }

    fn in_records(values: &[Sample]) -> Vec<u8> {
        let mut out = Outgoing::default();
        for value in values {
            let at = begin_record(&mut out).unwrap();
            encode_into(value, &mut out).unwrap();
            end_record(&mut out, at).unwrap();
        }
        out.into_bytes()
    }

    proptest! {
        #[test]
        fn any_bytes_decode_to_a_value_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Sample>(&bytes);
            let _ = decode::<String>(&bytes);
            let _ = decode_prefix::<Vec<Vec<u8>>>(&bytes);
            for record in records(&bytes) {
                match record {
                    Ok(record) => prop_assert!(record.len() <= bytes.len()),
                    Err(error) => prop_assert!(error.to_string().contains("cut off")),
                }
            }
        }

        #[test]
        fn nested_sequences_round_trip(shapes in proptest::collection::vec(shape(), 0..4)) {
            let bytes = encode(&shapes).unwrap();
            let decoded: Vec<Shape> = decode(&bytes).unwrap();
            // Compared by their encoding: NaNs are not equal to themselves.
            prop_assert_eq!(encode(&decoded).unwrap(), bytes);
        }

        #[test]
        fn corrupt_nested_sequences_are_an_error_or_a_value(
            shapes in proptest::collection::vec(shape(), 1..4),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            len in any::<u64>(),
        ) {
            let bytes = encode(&shapes).unwrap();
            let at = at.index(bytes.len());
            let mut changed = bytes.clone();
            changed[at] = byte;
            let _ = decode::<Vec<Shape>>(&changed);
            // A length of anything (up to 2^64) where any length or tag could be.
            let mut spliced = bytes[..at].to_vec();
            spliced.extend_from_slice(&len.to_le_bytes());
            spliced.extend_from_slice(&bytes[at..]);
            let _ = decode::<Vec<Shape>>(&spliced);
            prop_assert!(decode::<Vec<Shape>>(&bytes[..at]).unwrap_err().is_codec());
        }

        #[test]
        fn values_round_trip_through_records(values in proptest::collection::vec(sample(), 0..6)) {
            let bytes = in_records(&values);
            let decoded: Vec<Sample> = records(&bytes).map(|r| decode(r.unwrap()).unwrap()).collect();
            prop_assert_eq!(decoded, values);
        }

        #[test]
        fn a_truncated_value_is_an_error(value in sample(), cut in any::<prop::sample::Index>()) {
            let bytes = encode(&value).unwrap();
            let cut = cut.index(bytes.len());
            prop_assert!(decode::<Sample>(&bytes[..cut]).unwrap_err().is_codec());
        }

        #[test]
        fn truncated_records_end_with_an_error(values in proptest::collection::vec(sample(), 1..4), cut in any::<prop::sample::Index>()) {
            let bytes = in_records(&values);
            let cut = cut.index(bytes.len());
            let parsed: Vec<Result<&[u8]>> = records(&bytes[..cut]).collect();
            let whole = parsed.iter().take_while(|r| r.is_ok()).count();
            // Every record but the last one read is whole; a cut inside a record is an error.
            prop_assert!(parsed.len() - whole <= 1);
            prop_assert!(whole < values.len());
        }

        #[test]
        fn a_huge_length_anywhere_is_an_error(value in sample(), at in any::<prop::sample::Index>(), len in (1u64 << 32)..) {
            let mut bytes = encode(&value).unwrap();
            let at = at.index(bytes.len());
            bytes.truncate(at);
            bytes.push(0xFD);
            bytes.extend_from_slice(&len.to_le_bytes());
            let _ = decode::<Sample>(&bytes);
        }
    }
}
