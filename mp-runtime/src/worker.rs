//! The child's side: the protocol between parent and worker, and the loop that serves calls.
//!
//! A worker reads [`Request`]s, runs each call under `catch_unwind`, and answers each with one
//! [`Reply`] in order. A reader thread drains the socket while calls run, so a parent that sends
//! the next call while this one is replying can never deadlock with it.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::channel::Channel;
use crate::codec;
use crate::error::{Error, Kind, Result};
use crate::registry;

/// From parent to worker. It borrows when sent, so a pool can keep a task's arguments in case
/// the task must be sent again.
#[derive(Serialize, Deserialize)]
pub(crate) enum Request<'a> {
    /// Call `function` once for each item of encoded arguments; answered by one `Reply`.
    Call {
        function: Cow<'a, str>,
        items: Cow<'a, [ByteBuf]>,
        /// How many of the frame's descriptors belong to each item, in order; empty when none.
        fds: Cow<'a, [u32]>,
    },
    /// Exit once the calls before this one have been answered.
    Exit,
}

/// From worker to parent: the outcomes of one `Request::Call`, one per item.
#[derive(Serialize, Deserialize)]
pub(crate) struct Reply {
    pub outcomes: Vec<Outcome>,
    /// How many of the frame's descriptors belong to each outcome; empty when none.
    fds: Vec<u32>,
}

impl Reply {
    /// Encodes a reply; the descriptors of the values' handles go beside it.
    pub(crate) fn encode(outcomes: Vec<Outcome>) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
        let mut counts = Vec::new();
        let mut fds = Vec::new();
        let mut outcomes = outcomes;
        if outcomes
            .iter()
            .any(|o| matches!(o, Outcome::Value(_, fds) if !fds.is_empty()))
        {
            for outcome in &mut outcomes {
                let taken = match outcome {
                    Outcome::Value(_, fds) => std::mem::take(fds),
                    _ => Vec::new(),
                };
                counts.push(taken.len() as u32);
                fds.extend(taken);
            }
        }
        let bytes = codec::encode(&Reply {
            outcomes,
            fds: counts,
        })?;
        Ok((bytes, fds))
    }

    /// Decodes a received reply and gives each value its descriptors.
    pub(crate) fn decode(frame: crate::channel::Frame) -> Result<Vec<Outcome>> {
        let reply: Reply = codec::decode(&frame)?;
        let mut outcomes = reply.outcomes;
        let split = split_fds(frame.fds, &reply.fds, outcomes.len())?;
        for (outcome, fds) in outcomes.iter_mut().zip(split) {
            if let Outcome::Value(_, own) = outcome {
                *own = fds;
            }
        }
        Ok(outcomes)
    }
}

/// Splits the descriptors that came with a frame into one list per item, `counts[i]` each.
pub(crate) fn split_fds(
    fds: Vec<OwnedFd>,
    counts: &[u32],
    items: usize,
) -> Result<Vec<Vec<OwnedFd>>> {
    if counts.is_empty() && fds.is_empty() {
        return Ok((0..items).map(|_| Vec::new()).collect());
    }
    let total: usize = counts.iter().map(|&n| n as usize).sum();
    if counts.len() != items || total != fds.len() {
        return Err(Error::protocol(
            "a message's descriptors do not match what it announced",
        ));
    }
    let mut fds = fds.into_iter();
    Ok(counts
        .iter()
        .map(|&n| fds.by_ref().take(n as usize).collect())
        .collect())
}

/// The per-item descriptor counts and the flat list of borrowed descriptors to send with a
/// call of `items`; both empty when no item has any.
pub(crate) fn flatten_fds(per_item: &[Vec<OwnedFd>]) -> (Vec<u32>, Vec<BorrowedFd<'_>>) {
    if per_item.iter().all(Vec::is_empty) {
        return (Vec::new(), Vec::new());
    }
    let counts = per_item.iter().map(|fds| fds.len() as u32).collect();
    let fds = per_item.iter().flatten().map(AsFd::as_fd).collect();
    (counts, fds)
}

/// What one call gave.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Outcome {
    /// The encoded return value, and the descriptors of the handles in it (beside the frame).
    Value(ByteBuf, #[serde(skip)] Vec<OwnedFd>),
    /// The function panicked.
    Panic { message: String, location: String },
    /// The call could not be made or its result not sent.
    Failed(Failure),
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
            _ => Failure::Other(error.to_string()),
        }
    }
}

impl Outcome {
    /// The value's bytes, or the error this outcome stands for; `function` names the callee
    /// in messages.
    pub(crate) fn into_bytes(self, function: &str) -> Result<ByteBuf> {
        self.into_parts(function).map(|(bytes, _)| bytes)
    }

    /// Decodes the value, with its handles, or gives the error this outcome stands for.
    pub(crate) fn decode<R: serde::de::DeserializeOwned>(self, function: &str) -> Result<R> {
        let (bytes, fds) = self.into_parts(function)?;
        codec::decode_with_fds(&bytes, fds)
    }

    fn into_parts(self, function: &str) -> Result<(ByteBuf, Vec<OwnedFd>)> {
        match self {
            Outcome::Value(bytes, fds) => Ok((bytes, fds)),
            Outcome::Panic { message, location } => Err(Error::new(Kind::Panic {
                function: function.to_string(),
                message,
                location,
            })),
            Outcome::Failed(failure) => Err(match failure {
                Failure::UnknownId { id, binary, known } => {
                    Error::new(Kind::UnknownId { id, binary, known })
                }
                Failure::DuplicateId { id, first, second } => {
                    Error::new(Kind::DuplicateId { id, first, second })
                }
                Failure::Codec(message) => Error::codec(message),
                Failure::Other(message) => Error::protocol(message),
            }),
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

/// Runs one call: decode, call, encode, with panics caught. `fds` are the descriptors of the
/// handles among the arguments; those of the result's handles come back in the outcome.
fn call(entry: &registry::Entry, args: &[u8], fds: Vec<OwnedFd>) -> Outcome {
    let (result, out_fds) = codec::with_fds(fds, || {
        panic::catch_unwind(AssertUnwindSafe(|| (entry.invoke)(args)))
    });
    match result {
        Ok(Ok(bytes)) => Outcome::Value(ByteBuf::from(bytes), out_fds),
        Ok(Err(error)) => Outcome::Failed(error.into()),
        Err(_) => {
            let (message, location) = LAST_PANIC
                .take()
                .unwrap_or_else(|| ("a panic".to_string(), "an unknown location".to_string()));
            Outcome::Panic { message, location }
        }
    }
}

/// What the reader thread hands the serving thread.
enum Incoming {
    /// A request, and the descriptors of each item's handles.
    Request(Request<'static>, Vec<Vec<OwnedFd>>),
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
    let (incoming, requests) = mpsc::channel();
    let reading = std::thread::Builder::new()
        .name("mp-worker-reader".into())
        .spawn(move || read_requests(Channel::new(reader), incoming));
    if let Err(e) = reading {
        eprintln!("mp worker: cannot start the reader thread: {e}");
        return 1;
    }

    let mut replies = Channel::new(stream);
    let mut panicked = false;
    for incoming in requests {
        match incoming {
            Incoming::Request(
                Request::Call {
                    function, items, ..
                },
                fds,
            ) => {
                let outcomes: Vec<Outcome> = match registry::lookup_id(&function) {
                    Ok(entry) => items
                        .iter()
                        .zip(fds)
                        .map(|(args, fds)| call(entry, args, fds))
                        .collect(),
                    Err(error) => {
                        let failure = Failure::from(error);
                        items
                            .iter()
                            .map(|_| Outcome::Failed(failure.clone()))
                            .collect()
                    }
                };
                panicked |= outcomes.iter().any(|o| matches!(o, Outcome::Panic { .. }));
                // What the function printed reaches the terminal before the parent hears back.
                let _ = std::io::stdout().flush();
                if !send_reply(&mut replies, outcomes) {
                    return 1;
                }
            }
            Incoming::Request(Request::Exit, _) => return if panicked { 101 } else { 0 },
            Incoming::End(None) => return 0,
            Incoming::End(Some(problem)) => {
                eprintln!("mp worker: {problem}");
                return 1;
            }
        }
    }
    0
}

fn send_reply(channel: &mut Channel, outcomes: Vec<Outcome>) -> bool {
    // Outcomes are bytes and strings, which always encode.
    let (bytes, fds) = Reply::encode(outcomes).expect("a reply encodes");
    let fds: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
    channel.send_with_fds(&bytes, &fds).is_ok()
}

fn read_requests(mut channel: Channel, incoming: mpsc::Sender<Incoming>) {
    loop {
        let message = match channel.recv() {
            Ok(Some(frame)) => match codec::decode::<Request<'static>>(&frame).and_then(|request| {
                let fds = match &request {
                    Request::Call { items, fds, .. } => split_fds(frame.fds, fds, items.len())?,
                    Request::Exit => Vec::new(),
                };
                Ok((request, fds))
            }) {
                Ok((request, fds)) => Incoming::Request(request, fds),
                Err(error) => Incoming::End(Some(format!(
                    "the parent sent a message this worker cannot read ({error}); parent and \
                     worker must be the same build"
                ))),
            },
            Ok(None) => Incoming::End(None),
            Err(error) => Incoming::End(Some(format!("reading from the parent failed: {error}"))),
        };
        let end = matches!(message, Incoming::End(_));
        if incoming.send(message).is_err() || end {
            return;
        }
    }
}
