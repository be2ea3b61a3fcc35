//! The messages between parent and worker, for both sides: a [`Request`] and its argument
//! records ([`Args`]) from parent to worker, the reply's outcome records ([`Outcomes`]) back,
//! and [`Failure`], an error in a form that crosses the wire.
//!
//! A reply holds one outcome record per call: a tag byte ([`VALUE`], [`PANIC`] or [`FAILED`])
//! and then the encoded value, the panic's message and location, or the [`Failure`].

use std::borrow::Cow;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::codec;
use super::frame::{Channel, Frame};
use super::outgoing::{Encoded, Outgoing};
use super::panics;
use super::ring::link::Link;
use crate::base::{Error, Kind, Location, Result};

/// From parent to worker. In a frame, a `Call` is followed by its arguments: one record
/// (see [`codec::begin_record`]) per call, so a chunk of a map crosses as one buffer; the
/// descriptors of the handles among all of them go beside the frame.
#[derive(Serialize, Deserialize)]
pub(crate) enum Request<'a> {
    /// Call `function` once per argument record that follows; answered by one reply frame.
    Call { function: Cow<'a, str> },
    /// Exit once the calls before this one have been answered.
    Exit,
    /// Keep this process's private memory (heap and anonymous maps) under `bytes`: an
    /// allocation past it fails, which ends the process (Rust aborts on allocation failure).
    LimitMemory { bytes: u64 },
    /// Send `log` records and `tracing` events at or above `level` (1 error to 5 trace) to
    /// the parent, on the socket that comes beside this message.
    Logging { level: u8 },
    /// Enter a sandbox that allows what `rules` says, before any call; answered by one frame,
    /// the sandbox's report or why it could not be entered (then the worker exits).
    Sandbox { rules: SandboxRules },
    /// From now on, requests and replies go through the rings in the memory file that comes
    /// beside this message (and the socket: see `ring::link`).
    Rings,
}

/// What a sandboxed worker may reach: the public `Sandbox` as it crosses to a worker (and to
/// an MPI rank, for its workers).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SandboxRules {
    /// Paths below which files may be read, as the OS's bytes (a path need not be UTF-8).
    pub read_only: Vec<Vec<u8>>,
    /// Paths below which files may be read and written.
    pub read_write: Vec<Vec<u8>>,
    /// Whether sockets may be made and connected.
    pub network: bool,
    /// Whether to enter with what the kernel can enforce, rather than refuse what it cannot.
    pub best_effort: bool,
}

/// A call of one function, encoded: the request and one argument record per call, and the
/// descriptors of the handles among the arguments. A pool keeps it until the task is done, so
/// it can be sent again to a new worker.
pub(crate) struct Args {
    frame: Encoded,
    /// Where the argument records start in the frame, after the request.
    #[cfg_attr(
        not(feature = "mpi"),
        allow(dead_code, reason = "read by the MPI pool only")
    )]
    records_at: usize,
    count: u32,
    fds: Vec<OwnedFd>,
}

impl Args {
    /// Encodes a call of `function` on each tuple of `inputs`.
    pub(crate) fn encode<T: Serialize>(
        function: &str,
        inputs: impl IntoIterator<Item = T>,
    ) -> Result<Args> {
        let mut out = Outgoing::default();
        let mut count = 0;
        let call = Request::Call {
            function: Cow::Borrowed(function),
        };
        codec::encode_into(&call, &mut out)?;
        let records_at = out.len();
        let (result, fds) = codec::with_fds(Vec::new(), || {
            user_code(function, || {
                for input in inputs {
                    let at = codec::begin_record(&mut out)?;
                    codec::encode_into(&input, &mut out)?;
                    codec::end_record(&mut out, at)?;
                    count += 1;
                }
                Ok(())
            })
        });
        result?;
        let frame = out
            .finish()
            .map_err(|e| Error::io("cannot write a call's arguments", e))?;
        Ok(Args {
            frame,
            records_at,
            count,
            fds,
        })
    }

    /// A call of `function` on arguments that arrived already encoded (from rank 0 of an MPI
    /// job): `count` records.
    #[cfg(feature = "mpi")]
    pub(crate) fn from_records(function: &str, records: &[u8], count: u32) -> Result<Args> {
        let mut out = Outgoing::default();
        codec::encode_into(
            &Request::Call {
                function: Cow::Borrowed(function),
            },
            &mut out,
        )?;
        let records_at = out.len();
        let written = out.write(records).and_then(|()| out.finish());
        Ok(Args {
            frame: written.map_err(|e| Error::io("cannot write a call's arguments", e))?,
            records_at,
            count,
            fds: Vec::new(),
        })
    }

    /// The argument records, encoded (read back from the file a large call is in).
    #[cfg(feature = "mpi")]
    pub(crate) fn records(&self) -> Result<Cow<'_, [u8]>> {
        match &self.frame {
            Encoded::Bytes(bytes) => Ok(Cow::Borrowed(&bytes[self.records_at..])),
            Encoded::File(file, len) => {
                use std::os::unix::fs::FileExt;
                let mut records = vec![0; len - self.records_at];
                file.try_clone()
                    .and_then(|file| {
                        std::fs::File::from(file)
                            .read_exact_at(&mut records, self.records_at as u64)
                    })
                    .map_err(|e| Error::io("cannot read a call's arguments back", e))?;
                Ok(Cow::Owned(records))
            }
        }
    }

    /// Whether handles are among the arguments (their descriptors cannot leave this machine).
    #[cfg(feature = "mpi")]
    pub(crate) fn has_fds(&self) -> bool {
        !self.fds.is_empty()
    }

    /// How many calls these are the arguments of.
    pub(crate) fn len(&self) -> usize {
        self.count as usize
    }

    /// Sends the call, keeping it.
    pub(crate) fn send(&self, channel: &mut Channel) -> Result<()> {
        let fds: Vec<BorrowedFd<'_>> = self.fds.iter().map(AsFd::as_fd).collect();
        channel
            .send_encoded(&self.frame, &fds)
            .map_err(|e| Error::io("cannot send a call to a worker", e))
    }

    /// Sends the call to a pool's worker, keeping it.
    pub(crate) fn send_on(&self, link: &mut Link) -> Result<()> {
        let fds: Vec<BorrowedFd<'_>> = self.fds.iter().map(AsFd::as_fd).collect();
        link.send_encoded(&self.frame, &fds)
            .map_err(|e| Error::io("cannot send a call to a worker", e))
    }

    /// Closes the descriptors, and the file a large call travels in, now rather than when the
    /// arguments are dropped: whoever hears that the task is done may count descriptors.
    pub(crate) fn close_fds(&mut self) {
        self.fds.clear();
        self.frame = Encoded::Bytes(Vec::new());
    }
}

/// The first byte of each outcome record.
pub(crate) const VALUE: u8 = 0;
pub(crate) const PANIC: u8 = 1;
pub(crate) const FAILED: u8 = 2;

/// The answer to one `Call`, as received: one outcome record per call (a tag byte, then the
/// encoded value, the panic's message and location, or the [`Failure`]), and the descriptors
/// of the handles in the values. The records are checked as they are decoded, in one pass: a
/// reply that is not `count` well-formed outcomes is a protocol error.
pub(crate) struct Outcomes {
    frame: Frame,
    count: usize,
    fds: Vec<OwnedFd>,
}

impl Outcomes {
    /// A received frame that answers `count` calls.
    pub(crate) fn new(mut frame: Frame, count: usize) -> Outcomes {
        let fds = std::mem::take(&mut frame.fds);
        Outcomes { frame, count, fds }
    }

    /// How many calls this answers.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Whether one of the calls panicked. Under `panic = "abort"` that reply is its worker's
    /// last: the process aborts once it is sent.
    /// Whether the reply holds a call whose worker died running it (a stack overflow, said by
    /// the fault handler as the worker's last words): the worker is ending.
    pub(crate) fn has_death(&self) -> bool {
        codec::records(&self.frame).any(|record| {
            record.is_ok_and(|record| {
                record.first() == Some(&FAILED)
                    && error_of(record, "").is_some_and(|error| error.is_died())
            })
        })
    }

    pub(crate) fn has_panic(&self) -> bool {
        codec::records(&self.frame)
            .any(|record| record.is_ok_and(|record| record.first() == Some(&PANIC)))
    }

    /// The outcome records, encoded.
    #[cfg(feature = "mpi")]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.frame
    }

    /// Whether handles are among the values (their descriptors cannot leave this machine).
    #[cfg(feature = "mpi")]
    pub(crate) fn has_fds(&self) -> bool {
        !self.fds.is_empty()
    }

    /// The error of the first call that did not return a value, if any.
    pub(crate) fn first_error(&self, function: &str) -> Option<Error> {
        let mut seen = 0;
        for record in codec::records(&self.frame) {
            let error = match record {
                Ok(record) => error_of(record, function),
                Err(error) => Some(error),
            };
            if error.is_some() {
                return error;
            }
            seen += 1;
        }
        check_count(self.count, seen).err()
    }

    /// Decodes every outcome: a value, or the error it stands for. A malformed reply gives its
    /// error for every call.
    pub(crate) fn decode_each<R: DeserializeOwned>(self, function: &str) -> Vec<Result<R>> {
        let count = self.count;
        let (outcomes, malformed) = codec::with_fds(self.fds, || {
            let mut outcomes = Vec::with_capacity(count);
            for record in codec::records(&self.frame) {
                match record {
                    Ok(record) => {
                        outcomes.push(user_code(function, || decode_outcome(record, function)))
                    }
                    Err(error) => return (outcomes, Some(error)),
                }
            }
            let malformed = check_count(count, outcomes.len()).err();
            (outcomes, malformed)
        })
        .0;
        match malformed {
            Some(error) => (0..count).map(|_| Err(error.clone())).collect(),
            None => outcomes,
        }
    }

    /// Decodes every value into `out`; stops at the first error.
    pub(crate) fn decode_all<R: DeserializeOwned>(
        self,
        function: &str,
        out: &mut Vec<R>,
    ) -> Result<()> {
        let start = out.len();
        codec::with_fds(self.fds, || {
            user_code(function, || {
                for record in codec::records(&self.frame) {
                    out.push(decode_outcome(record?, function)?);
                }
                Ok(())
            })
        })
        .0?;
        check_count(self.count, out.len() - start)
    }
}

/// Runs `f`, in which the user's `Serialize` or `Deserialize` code runs for calls of
/// `function`, so that a panic in it (an `unwrap` in a custom `Deserialize`, say) becomes that
/// call's error, with its message and location, and never unwinds the thread: a pool thread
/// that unwound would lose its worker and the task's answer.
fn user_code<T>(function: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    panics::catch(f).unwrap_or_else(|panic| {
        Err(Error::new(Kind::Panic {
            function: function.to_string(),
            message: panic.message,
            location: panic.location.as_deref().and_then(Location::parse),
            // A backtrace in an error is the child's: this panic was in this process.
            backtrace: None,
        }))
    })
}

/// Whether `seen` outcomes answer `count` calls.
fn check_count(count: usize, seen: usize) -> Result<()> {
    if seen == count {
        return Ok(());
    }
    Err(Error::protocol(format!(
        "a worker answered {count} calls with {seen} outcomes"
    )))
}

#[inline]
fn decode_outcome<R: DeserializeOwned>(record: &[u8], function: &str) -> Result<R> {
    match record.split_first() {
        Some((&VALUE, value)) => codec::decode(value),
        _ => Err(error_of(record, function).expect("a record that is not a value is an error")),
    }
}

/// The error an outcome record stands for; `None` for a value.
#[cold]
fn error_of(record: &[u8], function: &str) -> Option<Error> {
    let Some((&tag, payload)) = record.split_first() else {
        return Some(Error::protocol("a worker sent an empty outcome"));
    };
    let error = match tag {
        VALUE => return None,
        PANIC => match codec::decode::<(String, String, Option<String>)>(payload) {
            Ok((message, location, backtrace)) => Error::new(Kind::Panic {
                function: function.to_string(),
                message,
                location: Location::parse(&location),
                backtrace,
            }),
            Err(error) => error,
        },
        FAILED => match codec::decode::<Failure>(payload) {
            Ok(failure) => failure.into_error(),
            Err(error) => error,
        },
        _ => Error::protocol("a worker sent an outcome of unknown kind"),
    };
    Some(error)
}

/// An error raised in the worker, as it crosses the wire: whole, whatever its kind.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct Failure(Kind);

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure(error.details().clone())
    }
}

impl Failure {
    pub(crate) fn into_error(self) -> Error {
        Error::new(self.0)
    }
}

/// The parser of replies answers corrupt input with an error, never a panic or a wrong count.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// `bytes` as a received frame.
    fn frame(bytes: &[u8]) -> Frame {
        Frame::from_bytes(bytes.to_vec())
    }

    /// A reply of `values`, as a worker writes it.
    fn reply(values: &[std::result::Result<String, String>]) -> Vec<u8> {
        let mut out = Outgoing::default();
        for value in values {
            let at = codec::begin_record(&mut out).unwrap();
            match value {
                Ok(value) => {
                    out.write(&[VALUE]).unwrap();
                    codec::encode_into(value, &mut out).unwrap();
                }
                Err(message) => {
                    out.write(&[FAILED]).unwrap();
                    codec::encode_into(&Failure::from(Error::protocol(message.clone())), &mut out)
                        .unwrap();
                }
            }
            codec::end_record(&mut out, at).unwrap();
        }
        out.into_bytes()
    }

    fn values() -> impl Strategy<Value = Vec<std::result::Result<String, String>>> {
        proptest::collection::vec(
            prop_oneof![".{0,20}".prop_map(Ok), ".{0,20}".prop_map(Err)],
            0..6,
        )
    }

    proptest! {
        #[test]
        fn any_reply_parses_or_is_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..512), count in 0usize..8) {
            let outcomes = Outcomes::new(frame(&bytes), count);
            prop_assert_eq!(outcomes.len(), count);
            let _ = outcomes.first_error("f");
            prop_assert_eq!(outcomes.decode_each::<(String, u64)>("f").len(), count);
            let mut values = Vec::new();
            let _ = Outcomes::new(frame(&bytes), count).decode_all::<(String, u64)>("f", &mut values);
        }

        #[test]
        fn a_reply_round_trips(values in values()) {
            let outcomes = Outcomes::new(frame(&reply(&values)), values.len());
            let decoded: Vec<std::result::Result<String, String>> = outcomes
                .decode_each::<String>("f")
                .into_iter()
                .map(|r| r.map_err(|e| e.to_string()))
                .collect();
            prop_assert_eq!(decoded.len(), values.len());
            for (got, sent) in decoded.iter().zip(&values) {
                match (got, sent) {
                    (Ok(got), Ok(sent)) => prop_assert_eq!(got, sent),
                    (Err(got), Err(sent)) => prop_assert!(got.contains(sent.as_str())),
                    _ => prop_assert!(false, "{:?} decoded as {:?}", sent, got),
                }
            }
        }

        #[test]
        fn a_truncated_or_miscounted_reply_is_an_error(values in values(), cut in any::<prop::sample::Index>(), extra in 1usize..3) {
            let bytes = reply(&values);
            let malformed = |bytes: &[u8], count: usize| {
                let first = Outcomes::new(frame(bytes), count).first_error("f");
                let each = Outcomes::new(frame(bytes), count).decode_each::<String>("f");
                let all = Outcomes::new(frame(bytes), count).decode_all::<String>("f", &mut Vec::new());
                first.is_some() && each.len() == count && each.iter().all(Result::is_err) && all.is_err()
            };
            prop_assert!(malformed(&bytes, values.len() + extra));
            if !bytes.is_empty() {
                let cut = cut.index(bytes.len());
                prop_assert!(malformed(&bytes[..cut], values.len()), "a reply cut at {} of {} decoded", cut, bytes.len());
            }
        }
    }
}
