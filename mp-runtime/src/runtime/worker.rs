//! The child's side: the loop that serves calls.
//!
//! A worker reads [`Request`]s, runs each call under `catch_unwind`, and answers each request
//! with one frame of outcome records, in order, all on one thread: while a reply waits for room
//! in the socket, the parent's next requests are read into memory, so the two sides can never
//! deadlock. A pool's worker is sent rings in shared memory once it is set up (`wire/ring`): its
//! requests and replies then go through them, and the socket carries the rest.

use std::cell::Cell;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::Serialize;

use crate::base::{Error, ExitReason, Kind, Result};
use crate::runtime::logs;
use crate::runtime::registry;
use crate::runtime::sandbox;
use crate::sys;
use crate::wire::codec;
use crate::wire::frame::{Channel, Frame};
use crate::wire::outgoing::{Encoded, Outgoing};
use crate::wire::panics::{self, Panic};
use crate::wire::protocol::{FAILED, Failure, PANIC, Request, VALUE};
use crate::wire::ring::Rings;
use crate::wire::ring::link::{Interrupted, Link, Side};

thread_local! {
    /// Under `panic = "abort"`: the index, in its request, of the call running on this thread.
    static CALL: Cell<usize> = const { Cell::new(0) };
}

/// A panic as a PANIC outcome record carries it: message, `file:line:column`, and the
/// backtrace when `RUST_BACKTRACE` or `RUST_LIB_BACKTRACE` enables one.
type PanicReport = (String, String, Option<String>);

/// The PANIC record's payload for `panic`.
fn report_of(panic: Panic) -> PanicReport {
    let location = panic
        .location
        .unwrap_or_else(|| "an unknown location".to_string());
    (panic.message, location, panic.backtrace)
}

/// Under `panic = "abort"`, from the panic hook: answers the request in flight, in place of
/// the last words armed for it, as a worker's death fails a whole request: the panicking call
/// gets `panic`, and the others of its chunk (whose values die with the process, or which
/// never run) the same panic without the backtrace, since it is what ended them. Then the
/// process aborts as usual, and the parent has its answer. Returns whether it was sent.
#[cold]
fn send_panic_reply(panic: &Panic) -> bool {
    let location = panic.location.as_deref().unwrap_or("an unknown location");
    let report = (&panic.message, location, &panic.backtrace);
    let records = record_of(PANIC, &report).and_then(|own| {
        let others = record_of(PANIC, &(&panic.message, location, None::<String>))?;
        Ok((own, others))
    });
    let Ok((own, others)) = records else {
        return false;
    };
    let panicking = CALL.get();
    // What the task printed reaches the terminal before the parent hears back, as it would.
    let _ = std::io::stdout().flush();
    sys::signal::say_last_words(|calls| {
        let len = own.len() + calls.saturating_sub(1) * others.len();
        let head = Channel::header_of(len);
        let mut words = Vec::with_capacity(head.len() + len);
        words.extend_from_slice(&head);
        for call in 0..calls {
            words.extend_from_slice(if call == panicking { &own } else { &others });
        }
        words
    })
}

/// Runs `call` once per argument record of `args`, appending one outcome record per call to
/// `out`: the value `call` encoded, or the panic or error that stands in its place. Returns
/// whether a call panicked.
///
/// `#[process_fn]` instantiates it with each function's own `call`, so the loop over a chunk
/// compiles with decode, call and encode inlined: a tiny task costs a few instructions around
/// the function, not an indirect call and a decoder set-up apart.
#[doc(hidden)]
pub fn call_each<F>(args: &[u8], out: &mut Outgoing, mut call: F) -> Result<bool>
where
    F: FnMut(&[u8], &mut Outgoing) -> Result<()>,
{
    let mut panicked = false;
    for (index, record) in codec::records(args).enumerate() {
        if cfg!(panic = "abort") {
            CALL.set(index);
        }
        let args = match record {
            Ok(args) => args,
            Err(error) => {
                write_failure(error, out)?;
                continue;
            }
        };
        let at = codec::begin_record(out)?;
        write(out, &[VALUE])?;
        let body = out.len();
        // Every arm takes its part of the result, so the common one drops nothing.
        match panics::catch(|| call(args, out)) {
            Ok(Ok(())) => {}
            Ok(Err(error)) => replace_with_failure(FAILED, Failure::from(error), out, body)?,
            Err(panic) => {
                replace_with_failure(PANIC, report_of(panic), out, body)?;
                panicked = true;
            }
        }
        codec::end_record(out, at)?;
    }
    Ok(panicked)
}

/// Replaces the value begun at `body` (after its tag byte) with `payload`, the panic or error
/// that stands in its place, tagged `tag`. Apart from [`call_each`]'s loop, which it would only
/// slow down.
#[cold]
fn replace_with_failure(
    tag: u8,
    payload: impl Serialize,
    out: &mut Outgoing,
    body: usize,
) -> Result<()> {
    out.truncate(body)
        .and_then(|()| out.patch(body - 1, &[tag]))
        .map_err(|e| Error::io("cannot write a reply", e))?;
    codec::encode_into(&payload, out)
}

/// Appends an outcome record that says `error`.
#[cold]
fn write_failure(error: Error, out: &mut Outgoing) -> Result<()> {
    write_failure_payload(Failure::from(error), out)
}

/// Appends an outcome record that says `failure`.
fn write_failure_payload(failure: Failure, out: &mut Outgoing) -> Result<()> {
    let at = codec::begin_record(out)?;
    write(out, &[FAILED])?;
    codec::encode_into(&failure, out)?;
    codec::end_record(out, at)
}

/// Appends `bytes` to a reply.
#[inline]
fn write(out: &mut Outgoing, bytes: &[u8]) -> Result<()> {
    out.write(bytes)
        .map_err(|e| Error::io("cannot write a reply", e))
}

/// The answer to one request.
pub(crate) struct Answer {
    pub reply: Encoded,
    pub fds: Vec<OwnedFd>,
    /// Whether a call panicked.
    pub panicked: bool,
    /// Whether the request was refused as a whole (an unknown function): then the parent is
    /// not one this worker can serve, and the worker ends after replying.
    pub refused: bool,
}

/// Runs the calls of one request.
pub(crate) fn run_calls(function: &str, args: &[u8], fds: Vec<OwnedFd>) -> Result<Answer> {
    let mut out = Outgoing::default();
    let mut refused = false;
    let (result, out_fds) = codec::with_fds(fds, || match registry::lookup_id(function) {
        Ok(entry) => (entry.invoke)(args, &mut out),
        Err(error) => {
            // Answered once, however many calls came: a parent of this build never sends an
            // unknown id, so this is not one, and its request must not get a reply larger
            // than itself.
            refused = true;
            write_failure(error, &mut out)?;
            Ok(false)
        }
    });
    let panicked = result?;
    let reply = out
        .finish()
        .map_err(|e| Error::io("cannot write a reply", e))?;
    Ok(Answer {
        reply,
        fds: out_fds,
        panicked,
        refused,
    })
}

/// The reply that stands for a whole request if a call of it overflows the stack: one record
/// per call saying so, as any death of the worker fails the whole request in flight. Armed on
/// the request's socket, where a panic under `panic = "abort"` sends its own reply instead.
struct OverflowReply {
    /// The function whose record `record` is.
    function: String,
    record: Vec<u8>,
}

impl OverflowReply {
    /// The largest reply armed: the socket takes it at once, from inside a signal handler.
    const MAX: usize = 64 * 1024;

    /// Runs the calls of one request with this reply armed for the fault handler.
    fn run_armed(
        &mut self,
        channel: &Channel,
        function: &str,
        args: &[u8],
        fds: Vec<OwnedFd>,
    ) -> Result<Answer> {
        if self.function != function {
            self.record = overflow_record(function)?;
            self.function = function.to_string();
        }
        // Counted only as far as a reply that can be armed goes: a map's long chunk is not
        // walked twice.
        let most = Self::MAX / self.record.len().max(1);
        let calls = codec::records(args).take(most + 1).count();
        let len = calls.saturating_mul(self.record.len());
        let head = Channel::header_of(len);
        // A reply too large to send from a signal handler is armed empty: an overflow then
        // sends nothing, but a panic's hook, which is no signal handler, still finds the socket.
        let (head, unit) = if len > Self::MAX {
            (&head[..0], &self.record[..0])
        } else {
            (&head[..], &self.record[..])
        };
        sys::signal::with_last_words(channel.stream().as_fd(), head, unit, calls, || {
            run_calls(function, args, fds)
        })
    }
}

/// One outcome record saying that the worker running `function` (this process) overflowed its
/// stack.
fn overflow_record(function: &str) -> Result<Vec<u8>> {
    let failure = Failure::from(Error::new(Kind::Died {
        function: function.to_string(),
        pid: std::process::id(),
        exit: ExitReason::StackOverflow,
        said: None,
    }));
    record_of(FAILED, &failure)
}

/// One outcome record, tagged `tag`, of `payload`, as bytes to send outside the channel.
fn record_of(tag: u8, payload: &impl Serialize) -> Result<Vec<u8>> {
    let mut out = Outgoing::default();
    let at = codec::begin_record(&mut out)?;
    write(&mut out, &[tag])?;
    codec::encode_into(payload, &mut out)?;
    codec::end_record(&mut out, at)?;
    match out
        .finish()
        .map_err(|e| Error::io("cannot write a reply", e))?
    {
        Encoded::Bytes(bytes) => Ok(bytes),
        Encoded::File(..) => Err(Error::protocol(
            "an outcome record sent outside the channel must be small",
        )),
    }
}

/// What the parent asks of the worker next.
enum Incoming {
    /// A call: the function's id, the argument records, and their handles' descriptors.
    Call(String, Frame, usize, Vec<OwnedFd>),
    Exit,
    /// The parent closed the channel, or sent something unreadable.
    End(Option<String>),
}

/// Serves calls on `channel` until told to exit or the parent goes away; returns the exit code.
///
/// One thread reads the requests and runs them: while a reply does not fit in the socket, the
/// channel reads the parent's next requests into its buffer, so a parent that sends while this
/// worker replies can never deadlock with it.
pub(crate) fn serve_calls(channel: Channel) -> i32 {
    panics::answer_before_abort(send_panic_reply);
    let mut link = Link::new(channel.reading_while_sending());
    let mut overflow = OverflowReply {
        function: String::new(),
        record: Vec::new(),
    };
    let mut panicked = false;
    loop {
        match next_incoming(&mut link) {
            Incoming::Call(function, frame, start, fds) => {
                let answered = overflow.run_armed(link.channel(), &function, &frame[start..], fds);
                let answer = match answered {
                    Ok(answer) => answer,
                    Err(error) => {
                        return farewell(
                            link.channel_mut(),
                            &format!("cannot answer a call of `{function}`: {error}"),
                        );
                    }
                };
                // The arguments go before the reply is sent, not while the next call runs.
                drop(frame);
                panicked |= answer.panicked;
                // What the function printed reaches the terminal, and a count of the log
                // records it dropped reaches the parent, before the parent hears back.
                let _ = std::io::stdout().flush();
                logs::flush_unsent();
                let fds: Vec<BorrowedFd<'_>> = answer.fds.iter().map(AsFd::as_fd).collect();
                if link.send_encoded(&answer.reply, &fds).is_err() {
                    return 1;
                }
                if answer.refused {
                    eprintln!(
                        "mp worker: the parent called `{function}`, which this build does not have; exiting"
                    );
                    return 1;
                }
            }
            Incoming::Exit => return if panicked { 101 } else { 0 },
            Incoming::End(None) => return 0,
            Incoming::End(Some(problem)) => return farewell(link.channel_mut(), &problem),
        }
    }
}

/// Says why this worker exits, on standard error and to the parent (whose error for the call
/// then says it too); returns the exit code.
fn farewell(channel: &mut Channel, why: &str) -> i32 {
    eprintln!("mp worker: {why}");
    // A parent that cannot hear it has the message on standard error.
    let _ = channel.send_farewell(why);
    1
}

/// Why a worker's wait for its next request ended without one.
enum Stop {
    /// The parent closed the channel.
    Closed,
    Failed(std::io::Error),
}

impl From<std::io::Error> for Stop {
    fn from(error: std::io::Error) -> Stop {
        Stop::Failed(error)
    }
}

impl Interrupted for Stop {
    fn lasts(&self) -> bool {
        matches!(self, Stop::Closed)
    }
}

/// Reads the next message (settings such as a memory limit are applied here, in order with
/// the calls).
fn next_incoming(link: &mut Link) -> Incoming {
    loop {
        let received = link.recv(|channel| match channel.recv() {
            Ok(Some(frame)) => Ok(frame),
            Ok(None) => Err(Stop::Closed),
            Err(error) => Err(Stop::Failed(error)),
        });
        return match received {
            Ok(mut frame) => match codec::decode_prefix::<Request<'static>>(&frame) {
                Ok((Request::Call { function, .. }, used)) => {
                    let fds = std::mem::take(&mut frame.fds);
                    Incoming::Call(function.into_owned(), frame, used, fds)
                }
                Ok((Request::Exit, _)) => Incoming::Exit,
                Ok((Request::Logging { level }, _)) => {
                    if let Some(socket) = std::mem::take(&mut frame.fds).into_iter().next() {
                        logs::install(socket, level);
                    }
                    continue;
                }
                Ok((Request::LimitMemory { bytes }, _)) => match limit_memory(bytes) {
                    // Set here, for the whole process, before the calls that follow are read.
                    Ok(()) => continue,
                    Err(error) => Incoming::End(Some(format!(
                        "this worker cannot limit its memory to {bytes} bytes ({error}); the \
                         hard limit on its private memory (RLIMIT_DATA) is {}: lower \
                         `memory_limit`, or raise the hard limit (`ulimit -Hd`, as root)",
                        sys::process::data_limit_hard()
                            .map_or("none".to_string(), |hard| format!("{hard} bytes"))
                    ))),
                },
                Ok((Request::Sandbox { rules }, _)) => {
                    let entered = sandbox::enter(&rules);
                    // The parent waits for this answer; a worker that could not enter ends
                    // after it, quietly: the parent's error says why.
                    let answered = codec::encode(&entered).is_ok_and(|a| link.send(&a).is_ok());
                    if answered && entered.is_ok() {
                        continue;
                    }
                    Incoming::End(None)
                }
                Ok((Request::Rings, _)) => {
                    let file = std::mem::take(&mut frame.fds).into_iter().next();
                    let rings = file.map(Rings::open);
                    match rings {
                        Some(Ok(rings)) if !link.has_rings() => {
                            link.use_rings(rings, Side::Worker);
                            continue;
                        }
                        Some(Err(error)) => Incoming::End(Some(format!(
                            "this worker cannot map the memory its parent shared ({error})"
                        ))),
                        _ => Incoming::End(Some(
                            "the parent sent rings without their memory, or twice".to_string(),
                        )),
                    }
                }
                Err(error) => Incoming::End(Some(format!(
                    "the parent sent a message this worker cannot read ({error}); parent and \
                     worker must be the same build"
                ))),
            },
            Err(Stop::Closed) => Incoming::End(None),
            Err(Stop::Failed(error)) => {
                Incoming::End(Some(format!("reading from the parent failed: {error}")))
            }
        };
    }
}

/// Caps the process's data segment (RLIMIT_DATA: heap and private anonymous maps, what
/// allocations use). Unlike RLIMIT_AS it does not count reserved address space, such as thread
/// stacks and malloc's arena reservations, so a small limit still lets a worker run.
fn limit_memory(bytes: u64) -> std::io::Result<()> {
    sys::process::limit_data(bytes)
}

/// Requests from a parent, however corrupt, are answered or refused, never a panic.
#[cfg(test)]
mod proptests {
    use super::*;
    use crate::wire::protocol::Outcomes;
    use proptest::prelude::*;

    /// `bytes` as a received frame.
    fn frame(bytes: &[u8]) -> Frame {
        Frame::from_bytes(bytes.to_vec())
    }

    proptest! {
        #[test]
        fn any_request_is_decoded_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok((Request::Call { function, .. }, used)) = codec::decode_prefix::<Request<'static>>(&bytes) {
                prop_assert!(used <= bytes.len());
                // No function has this id here: the request is answered with one error.
                let answer = run_calls(&function, &bytes[used..], Vec::new()).unwrap();
                prop_assert!(answer.fds.is_empty() && !answer.panicked && answer.refused);
                let Encoded::Bytes(reply) = answer.reply else {
                    panic!("a reply to at most 512 bytes of calls is small");
                };
                let count = codec::records(&reply).count();
                prop_assert!(Outcomes::new(frame(&reply), count).first_error("f").is_some() || count == 0);
            }
        }
    }
}
