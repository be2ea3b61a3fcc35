//! The child's side: the protocol between parent and worker, and the loop that serves calls.
//!
//! A worker reads [`Request`]s, runs each call under `catch_unwind`, and answers each request
//! with one frame of [`Outcomes`], in order. A reader thread drains the socket while calls run, so a parent that sends
//! the next call while this one is replying can never deadlock with it.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::channel::{Channel, Frame};
use crate::codec;
use crate::error::{Error, ExitReason, Kind, Result};
use crate::registry;

/// From parent to worker. In a frame, a `Call` is followed by its arguments: one record
/// (see [`codec::begin_record`]) per call, so a chunk of a map crosses as one buffer; the
/// descriptors of the handles among all of them go beside the frame.
#[derive(Serialize, Deserialize)]
pub(crate) enum Request<'a> {
    /// Call `function` once per argument record that follows; answered by one reply frame.
    Call { function: Cow<'a, str>, count: u32 },
    /// Exit once the calls before this one have been answered.
    Exit,
    /// Keep this process's private memory (heap and anonymous maps) under `bytes`: an
    /// allocation past it fails, which ends the process (Rust aborts on allocation failure).
    LimitMemory { bytes: u64 },
}

/// Encoded argument tuples, one record each, and the descriptors of the handles among them.
/// A pool keeps it until the task is done, so it can be sent again to a new worker.
#[derive(Default)]
pub(crate) struct Args {
    bytes: Vec<u8>,
    count: u32,
    fds: Vec<OwnedFd>,
}

impl Args {
    /// Encodes each tuple of `inputs` as a record.
    pub(crate) fn encode<T: Serialize>(inputs: impl IntoIterator<Item = T>) -> Result<Args> {
        let mut args = Args::default();
        let (result, fds) = codec::with_fds(Vec::new(), || {
            for input in inputs {
                let at = codec::begin_record(&mut args.bytes);
                codec::encode_into(&input, &mut args.bytes)?;
                codec::end_record(&mut args.bytes, at)?;
                args.count += 1;
            }
            Ok::<(), Error>(())
        });
        result?;
        args.fds = fds;
        Ok(args)
    }

    /// Arguments that arrived already encoded (from rank 0 of an MPI job): `count` records.
    #[cfg(feature = "mpi")]
    pub(crate) fn from_bytes(bytes: Vec<u8>, count: u32) -> Args {
        Args {
            bytes,
            count,
            fds: Vec::new(),
        }
    }

    /// The argument records, encoded.
    #[cfg(feature = "mpi")]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
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

    /// Sends `function` called on these arguments, keeping them.
    pub(crate) fn send(&self, channel: &mut Channel, function: &str) -> Result<()> {
        let header = codec::encode(&Request::Call {
            function: Cow::Borrowed(function),
            count: self.count,
        })?;
        let fds: Vec<BorrowedFd<'_>> = self.fds.iter().map(AsFd::as_fd).collect();
        channel
            .send_parts(&[&header, &self.bytes], &fds)
            .map_err(|e| Error::io("cannot send a call to a worker", e))
    }

    /// Closes the descriptors now, rather than when the arguments are dropped.
    pub(crate) fn close_fds(&mut self) {
        self.fds.clear();
    }
}

/// The first byte of each outcome record.
const VALUE: u8 = 0;
const PANIC: u8 = 1;
const FAILED: u8 = 2;

/// The answer to one `Call`, as received: one outcome record per call (a tag byte, then the
/// encoded value, the panic's message and location, or the [`Failure`]), and the descriptors
/// of the handles in the values.
pub(crate) struct Outcomes {
    frame: Frame,
    count: usize,
    fds: Vec<OwnedFd>,
}

impl Outcomes {
    /// Checks that a received frame holds `count` well-formed outcome records.
    pub(crate) fn parse(mut frame: Frame, count: usize) -> Result<Outcomes> {
        let fds = std::mem::take(&mut frame.fds);
        let mut seen = 0;
        for record in codec::records(&frame) {
            if !matches!(record?.first(), Some(&(VALUE | PANIC | FAILED))) {
                return Err(Error::protocol("a worker sent an outcome of unknown kind"));
            }
            seen += 1;
        }
        if seen != count {
            return Err(Error::protocol(format!(
                "a worker answered {count} calls with {seen} outcomes"
            )));
        }
        Ok(Outcomes { frame, count, fds })
    }

    /// How many calls this answers.
    pub(crate) fn len(&self) -> usize {
        self.count
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
        codec::records(&self.frame)
            .filter_map(|record| error_of(record.ok()?, function))
            .next()
    }

    /// Decodes every outcome: a value, or the error it stands for.
    pub(crate) fn decode_each<R: DeserializeOwned>(self, function: &str) -> Vec<Result<R>> {
        codec::with_fds(self.fds, || {
            codec::records(&self.frame)
                .map(|record| decode_outcome(record?, function))
                .collect()
        })
        .0
    }

    /// Decodes every value into `out`; stops at the first error.
    pub(crate) fn decode_all<R: DeserializeOwned>(
        self,
        function: &str,
        out: &mut Vec<R>,
    ) -> Result<()> {
        codec::with_fds(self.fds, || {
            for record in codec::records(&self.frame) {
                out.push(decode_outcome(record?, function)?);
            }
            Ok(())
        })
        .0
    }
}

fn decode_outcome<R: DeserializeOwned>(record: &[u8], function: &str) -> Result<R> {
    match record.split_first() {
        Some((&VALUE, value)) => codec::decode(value),
        _ => Err(error_of(record, function)
            .unwrap_or_else(|| Error::protocol("a worker sent an empty outcome"))),
    }
}

/// The error an outcome record stands for; `None` for a value.
fn error_of(record: &[u8], function: &str) -> Option<Error> {
    let (&tag, payload) = record.split_first()?;
    let error = match tag {
        VALUE => return None,
        PANIC => match codec::decode::<(String, String)>(payload) {
            Ok((message, location)) => Error::new(Kind::Panic {
                function: function.to_string(),
                message,
                location,
            }),
            Err(error) => error,
        },
        _ => match codec::decode::<Failure>(payload) {
            Ok(failure) => failure.into_error(),
            Err(error) => error,
        },
    };
    Some(error)
}

/// An error raised in the worker, in a form that crosses the wire.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) enum Failure {
    UnknownId {
        id: String,
        binary: String,
        known: Vec<String>,
    },
    DuplicateId {
        id: String,
        first: String,
        second: String,
    },
    Codec(String),
    /// A pool worker died running the call (a pool on another MPI rank reports it this way).
    Died {
        function: String,
        exit: ExitReason,
    },
    OutOfMemory {
        function: String,
        exit: ExitReason,
        limit: u64,
    },
    Closed,
    Cancelled,
    Usage(String),
    Other(String),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        match error.kind() {
            Kind::UnknownId { id, binary, known } => Failure::UnknownId {
                id: id.clone(),
                binary: binary.clone(),
                known: known.clone(),
            },
            Kind::DuplicateId { id, first, second } => Failure::DuplicateId {
                id: id.clone(),
                first: first.clone(),
                second: second.clone(),
            },
            Kind::Codec(message) => Failure::Codec(message.clone()),
            Kind::Died { function, exit } => Failure::Died {
                function: function.clone(),
                exit: *exit,
            },
            Kind::OutOfMemory {
                function,
                exit,
                limit,
            } => Failure::OutOfMemory {
                function: function.clone(),
                exit: *exit,
                limit: *limit,
            },
            Kind::Closed => Failure::Closed,
            Kind::Cancelled => Failure::Cancelled,
            Kind::Usage(message) => Failure::Usage(message.clone()),
            _ => Failure::Other(error.to_string()),
        }
    }
}

impl Failure {
    pub(crate) fn into_error(self) -> Error {
        match self {
            Failure::UnknownId { id, binary, known } => {
                Error::new(Kind::UnknownId { id, binary, known })
            }
            Failure::DuplicateId { id, first, second } => {
                Error::new(Kind::DuplicateId { id, first, second })
            }
            Failure::Codec(message) => Error::codec(message),
            Failure::Died { function, exit } => Error::new(Kind::Died { function, exit }),
            Failure::OutOfMemory {
                function,
                exit,
                limit,
            } => Error::new(Kind::OutOfMemory {
                function,
                exit,
                limit,
            }),
            Failure::Closed => Error::new(Kind::Closed),
            Failure::Cancelled => Error::new(Kind::Cancelled),
            Failure::Usage(message) => Error::new(Kind::Usage(message)),
            Failure::Other(message) => Error::protocol(message),
        }
    }
}

thread_local! {
    /// Set on the thread that runs calls: its panics are reported to the parent, not printed.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    /// The last panic captured on this thread: message and location.
    static LAST_PANIC: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

fn install_panic_hook() {
    let default = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if !CAPTURING.get() {
            // A thread the task started: print as usual.
            return default(info);
        }
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("Box<dyn Any>")
            .to_string();
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_else(|| "an unknown location".to_string());
        LAST_PANIC.set(Some((message, location)));
    }));
}

/// Runs one call into `out` as an outcome record: decode, call, encode, with panics caught.
fn call(entry: &registry::Entry, args: &[u8], out: &mut Vec<u8>) -> Result<bool> {
    let at = codec::begin_record(out);
    out.push(VALUE);
    let body = out.len();
    let result = panic::catch_unwind(AssertUnwindSafe(|| (entry.invoke)(args, out)));
    let panicked = result.is_err();
    let failure = match result {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some((FAILED, codec::encode(&Failure::from(error)))),
        Err(_) => {
            let (message, location) = LAST_PANIC
                .take()
                .unwrap_or_else(|| ("a panic".to_string(), "an unknown location".to_string()));
            Some((PANIC, codec::encode(&(message, location))))
        }
    };
    if let Some((tag, payload)) = failure {
        out.truncate(body);
        out[body - 1] = tag;
        out.extend_from_slice(&payload?);
    }
    codec::end_record(out, at)?;
    Ok(panicked)
}

/// Runs the calls of one request; returns the reply frame, its descriptors, and whether a
/// call panicked.
pub(crate) fn run_calls(
    function: &str,
    args: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<(Vec<u8>, Vec<OwnedFd>, bool)> {
    let mut out = Vec::new();
    let mut panicked = false;
    let entry = registry::lookup_id(function);
    let (result, out_fds) = codec::with_fds(fds, || {
        for record in codec::records(args) {
            let error = match (&entry, record) {
                (Ok(entry), Ok(args)) => {
                    panicked |= call(entry, args, &mut out)?;
                    continue;
                }
                (Err(error), _) => error.clone(),
                (_, Err(error)) => error,
            };
            let at = codec::begin_record(&mut out);
            out.push(FAILED);
            codec::encode_into(&Failure::from(error), &mut out)?;
            codec::end_record(&mut out, at)?;
        }
        Ok::<(), Error>(())
    });
    result?;
    Ok((out, out_fds, panicked))
}

/// What the reader thread hands the serving thread.
enum Incoming {
    /// A call: the function's id, the argument records, and their handles' descriptors.
    Call(String, Frame, usize, Vec<OwnedFd>),
    Exit,
    /// The parent closed the channel, or sent something unreadable.
    End(Option<String>),
}

/// Serves calls on `stream` until told to exit or the parent goes away; returns the exit code.
pub(crate) fn serve(stream: UnixStream) -> i32 {
    install_panic_hook();
    CAPTURING.set(true);
    let reader = match stream.try_clone() {
        Ok(reader) => reader,
        Err(e) => {
            eprintln!("mp worker: cannot clone the channel to the parent: {e}");
            return 1;
        }
    };
    let mut reader = Channel::new(reader);
    let (incoming, requests) = mpsc::channel();
    // A lone process is sent its call and its exit at once: when both are here, serve them
    // without a reader thread (which only a pool's pipelined calls need), saving its start.
    let first = next_incoming(&mut reader);
    let one_shot = matches!(first, Incoming::Call(..)) && reader.has_frame();
    let _ = incoming.send(first);
    if one_shot {
        let second = next_incoming(&mut reader);
        let exits = matches!(second, Incoming::Exit);
        let _ = incoming.send(second);
        if !exits {
            start_reader(reader, incoming.clone());
        }
    } else {
        start_reader(reader, incoming.clone());
    }
    drop(incoming);

    let mut replies = Channel::new(stream);
    let mut panicked = false;
    for incoming in requests {
        match incoming {
            Incoming::Call(function, frame, start, fds) => {
                let (reply, fds, any_panic) = match run_calls(&function, &frame[start..], fds) {
                    Ok(done) => done,
                    Err(error) => {
                        eprintln!("mp worker: cannot answer a call of `{function}`: {error}");
                        return 1;
                    }
                };
                panicked |= any_panic;
                // What the function printed reaches the terminal before the parent hears back.
                let _ = std::io::stdout().flush();
                let fds: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
                if replies.send_with_fds(&reply, &fds).is_err() {
                    return 1;
                }
            }
            Incoming::Exit => return if panicked { 101 } else { 0 },
            Incoming::End(None) => return 0,
            Incoming::End(Some(problem)) => {
                eprintln!("mp worker: {problem}");
                return 1;
            }
        }
    }
    0
}

/// Starts the thread that drains the channel while calls run, so a parent that sends the next
/// call while this one replies can never deadlock with it. A worker that cannot start it ends.
fn start_reader(reader: Channel, incoming: mpsc::Sender<Incoming>) {
    let reading = std::thread::Builder::new()
        .name("mp-worker-reader".into())
        .spawn(move || read_requests(reader, incoming));
    if let Err(e) = reading {
        eprintln!("mp worker: cannot start the reader thread: {e}");
        std::process::exit(1);
    }
}

/// Reads the next message for the serving thread (settings such as a memory limit are applied
/// here, in order with the calls).
fn next_incoming(channel: &mut Channel) -> Incoming {
    loop {
        return match channel.recv() {
            Ok(Some(mut frame)) => match codec::decode_prefix::<Request<'static>>(&frame) {
                Ok((Request::Call { function, .. }, used)) => {
                    let fds = std::mem::take(&mut frame.fds);
                    Incoming::Call(function.into_owned(), frame, used, fds)
                }
                Ok((Request::Exit, _)) => Incoming::Exit,
                Ok((Request::LimitMemory { bytes }, _)) => match limit_memory(bytes) {
                    // Set here, for the whole process, before the calls that follow are read.
                    Ok(()) => continue,
                    Err(error) => Incoming::End(Some(format!(
                        "cannot limit memory to {bytes} bytes: {error}"
                    ))),
                },
                Err(error) => Incoming::End(Some(format!(
                    "the parent sent a message this worker cannot read ({error}); parent and \
                     worker must be the same build"
                ))),
            },
            Ok(None) => Incoming::End(None),
            Err(error) => Incoming::End(Some(format!("reading from the parent failed: {error}"))),
        };
    }
}

fn read_requests(mut channel: Channel, incoming: mpsc::Sender<Incoming>) {
    loop {
        let message = next_incoming(&mut channel);
        let end = matches!(message, Incoming::End(_));
        if incoming.send(message).is_err() || end {
            return;
        }
    }
}

/// Caps the process's data segment (RLIMIT_DATA: heap and private anonymous maps, what
/// allocations use). Unlike RLIMIT_AS it does not count reserved address space, such as thread
/// stacks and malloc's arena reservations, so a small limit still lets a worker run.
fn limit_memory(bytes: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: plain system call with a valid pointer to a filled-in rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_DATA, &limit) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The parsers of both sides of the protocol answer corrupt input with an error, never a
/// panic or a wrong count.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// `bytes` as a received frame.
    fn frame(bytes: &[u8]) -> Frame {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut a, mut b) = (Channel::new(a), Channel::new(b));
        a.send(bytes).unwrap();
        b.recv().unwrap().unwrap()
    }

    /// A reply of `values`, as a worker writes it.
    fn reply(values: &[std::result::Result<String, String>]) -> Vec<u8> {
        let mut out = Vec::new();
        for value in values {
            let at = codec::begin_record(&mut out);
            match value {
                Ok(value) => {
                    out.push(VALUE);
                    codec::encode_into(value, &mut out).unwrap();
                }
                Err(message) => {
                    out.push(FAILED);
                    codec::encode_into(&Failure::Other(message.clone()), &mut out).unwrap();
                }
            }
            codec::end_record(&mut out, at).unwrap();
        }
        out
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
            if let Ok(outcomes) = Outcomes::parse(frame(&bytes), count) {
                prop_assert_eq!(outcomes.len(), count);
                let _ = outcomes.first_error("f");
                prop_assert_eq!(outcomes.decode_each::<(String, u64)>("f").len(), count);
            }
        }

        #[test]
        fn a_reply_round_trips(values in values()) {
            let outcomes = Outcomes::parse(frame(&reply(&values)), values.len()).unwrap();
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
            prop_assert!(Outcomes::parse(frame(&bytes), values.len() + extra).is_err());
            if !bytes.is_empty() {
                let cut = cut.index(bytes.len());
                let error = Outcomes::parse(frame(&bytes[..cut]), values.len()).err();
                prop_assert!(error.is_some(), "a reply cut at {} of {} parsed", cut, bytes.len());
            }
        }

        #[test]
        fn any_request_is_decoded_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok((Request::Call { function, .. }, used)) = codec::decode_prefix::<Request<'static>>(&bytes) {
                prop_assert!(used <= bytes.len());
                // No function has this id here: each argument record is answered with an error.
                let (reply, fds, panicked) = run_calls(&function, &bytes[used..], Vec::new()).unwrap();
                prop_assert!(fds.is_empty() && !panicked);
                let count = codec::records(&reply).count();
                prop_assert!(Outcomes::parse(frame(&reply), count).unwrap().first_error("f").is_some() || count == 0);
            }
        }
    }
}
