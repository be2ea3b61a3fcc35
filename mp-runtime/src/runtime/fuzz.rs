//! Entry points for the fuzz targets in `fuzz/` (README.md, Reliability): they reach the parsers
//! of the wire protocol, which are private to the crate. Not a public API.

use std::io::Write;
use std::os::unix::net::UnixStream;

use crate::runtime::worker;
use crate::wire::codec;
use crate::wire::frame::{Channel, Frame};
use crate::wire::protocol::{Outcomes, Request};

/// Feeds `bytes` to a channel as a peer would send them, and every frame it yields to the
/// parsers on both sides: the worker's request decoding and the parent's outcome parsing.
/// Errors are expected; a panic, an abort or an allocation past the frame limit is a bug.
pub fn wire(bytes: &[u8]) {
    for frame in frames(bytes) {
        requests(&frame);
    }
    for frame in frames(bytes) {
        outcomes(frame);
    }
}

/// Feeds `bytes` to the record splitter and decodes each record as an argument tuple.
pub fn records(bytes: &[u8]) {
    for record in codec::records(bytes) {
        let Ok(record) = record else { break };
        let _ = codec::decode::<(String, Vec<u8>, u64, Option<i128>)>(record);
    }
}

/// The frames a channel makes of `bytes`, up to the end or the first error.
fn frames(bytes: &[u8]) -> Vec<Frame> {
    let (mut peer, ours) = UnixStream::pair().expect("a socket pair");
    let input = bytes.to_vec();
    // Written from a thread: the socket's buffer may be smaller than the input.
    let writer = std::thread::spawn(move || {
        let _ = peer.write_all(&input);
    });
    let mut channel = Channel::new(ours);
    let mut frames = Vec::new();
    while let Ok(Some(frame)) = channel.recv() {
        frames.push(frame);
    }
    drop(channel);
    writer.join().expect("the writer does not panic");
    frames
}

/// What a worker does with a frame from its parent, up to running the calls (of no registered
/// function: each argument record is answered with an error).
fn requests(frame: &Frame) {
    if let Ok((Request::Call { function, .. }, used)) =
        codec::decode_prefix::<Request<'static>>(frame)
    {
        let _ = worker::run_calls(&function, &frame[used..], Vec::new());
    }
}

/// What a parent does with a frame from a worker.
fn outcomes(frame: Frame) {
    let count = codec::records(&frame).count();
    let outcomes = Outcomes::new(frame, count);
    let _ = outcomes.first_error("fuzz");
    let _ = outcomes.decode_each::<(String, Vec<u8>, u64)>("fuzz");
}

#[cfg(test)]
mod tests {
    /// The fuzz targets run on a few inputs here, so a change that breaks them fails a test
    /// and not only the next fuzzing session.
    #[test]
    fn the_entry_points_take_any_bytes() {
        let inputs: [&[u8]; 4] = [b"", &[0xff; 64], &[4, 0, 0, 0, 0, 0, 0, 0], &[0; 300]];
        for bytes in inputs {
            super::wire(bytes);
            super::records(bytes);
        }
    }
}
