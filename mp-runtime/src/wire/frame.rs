//! Length-prefixed frames over a private Unix stream socket: one channel per child process.
//!
//! A frame is an 8-byte little-endian header and as many bytes as it says: the low 48 bits
//! are the length, the high 16 the number of file descriptors that travel with the frame
//! (SCM_RIGHTS, attached to its first bytes, so they always arrive no later than the frame).
//! Reads are buffered, so a run of small frames costs one system call, and may wait with a
//! deadline: a partly read frame is kept and finished by the next call.
//!
//! A frame of `FILE_FRAME` bytes or more does not go through the socket: its bytes are written
//! to a sealed memfd, which travels as the frame's last descriptor beside an empty frame whose
//! header says so, and the receiver maps the file. That is one copy instead of two, and no
//! fresh receive buffer to fault in.
//!
//! A frame whose header has the `FAREWELL` bit is the sender's last words: why it cannot go
//! on, as text, sent just before it exits (a worker that cannot start says why this way).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::ops::Deref;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::sys::mmap::Sealed;
use crate::sys::{self, fd::Interest};
use crate::wire::outgoing::{Encoded, FILE_FRAME};

/// The largest frame a channel accepts unless told otherwise: far above any real argument, far
/// below what would exhaust memory when a corrupt length arrives.
pub(crate) const DEFAULT_MAX_FRAME: u64 = 1 << 36;

const HEADER: usize = 8;
/// Where the descriptor count starts in the header.
const FDS_SHIFT: u32 = 48;
/// Header bit: the frame's bytes are in its last descriptor, a sealed memfd, not in the stream.
const IN_FILE: u64 = 1 << 47;
/// Header bit: the frame is the sender's farewell, why it exits, as text.
const FAREWELL: u64 = 1 << 46;
/// The header bits that hold the frame's length.
const LEN_MASK: u64 = FAREWELL - 1;

/// The most descriptors one `sendmsg` may carry.
const FDS_PER_MESSAGE: usize = sys::fd::FDS_PER_MESSAGE;
/// How much to ask the kernel for at once when no large frame is pending.
const READ_CHUNK: usize = 64 * 1024;
/// Frames up to this size (header included) without descriptors are copied into one buffer
/// and sent with one plain `send`.
const SMALL_FRAME: usize = 512;
/// Growth step for a large frame, so a corrupt length never allocates ahead of the data.
const GROW_CHUNK: usize = 16 * 1024 * 1024;

/// One received frame; derefs to its bytes.
pub(crate) struct Frame {
    bytes: Bytes,
    /// The descriptors that came with it, in the order they were sent.
    pub(crate) fds: Vec<OwnedFd>,
    /// Whether it is the sender's farewell ([`Channel::send_farewell`]).
    farewell: bool,
}

impl Frame {
    /// A frame that arrived another way (through a ring, from an MPI rank, or made by a test),
    /// without descriptors.
    pub(crate) fn from_bytes(buf: Vec<u8>) -> Frame {
        Frame {
            bytes: Bytes::Read { buf, start: 0 },
            fds: Vec::new(),
            farewell: false,
        }
    }

    /// The sender's farewell, if this frame is one: why it exits, cut to a few lines.
    pub(crate) fn farewell(&self) -> Option<String> {
        /// The most of a farewell that is kept: enough for any reason mp gives.
        const MOST: usize = 4096;
        self.farewell
            .then(|| String::from_utf8_lossy(&self[..self.len().min(MOST)]).into_owned())
    }
}

/// Where a frame's bytes are.
enum Bytes {
    /// Read from the stream: `buf[start..]`.
    Read { buf: Vec<u8>, start: usize },
    /// Sent in a memfd.
    Mapped(Sealed),
}

impl Deref for Frame {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Read { buf, start } => &buf[*start..],
            Bytes::Mapped(mapping) => mapping,
        }
    }
}

/// A stream socket that carries frames.
pub(crate) struct Channel {
    stream: UnixStream,
    /// Receive buffer: `buf[pos..end]` holds bytes not yet returned as frames; the rest is room.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    max_frame: u64,
    /// Descriptors received and not yet handed out with their frames.
    fds: VecDeque<OwnedFd>,
    /// Whether a send that finds the socket full reads what the peer sends meanwhile.
    read_while_sending: bool,
    /// Whether the peer has closed its end (seen while reading during a send).
    peer_closed: bool,
}

impl Channel {
    pub(crate) fn new(stream: UnixStream) -> Self {
        Channel {
            stream,
            buf: Vec::new(),
            pos: 0,
            end: 0,
            max_frame: DEFAULT_MAX_FRAME,
            fds: VecDeque::new(),
            read_while_sending: false,
            peer_closed: false,
        }
    }

    /// Makes a send that finds the socket full read what the peer sends meanwhile into the
    /// receive buffer, so that one thread can both serve requests and answer them: a peer that
    /// sends while this side sends can never deadlock with it.
    pub(crate) fn reading_while_sending(mut self) -> Self {
        self.read_while_sending = true;
        self
    }

    /// The header of a frame of `len` bytes sent in the stream, without descriptors: for bytes
    /// that must go out without this channel (from a signal handler).
    pub(crate) fn header_of(len: usize) -> [u8; HEADER] {
        (len as u64).to_le_bytes()
    }

    /// The socket, to wait on or shut down.
    pub(crate) fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Whether nothing received is waiting in the buffer (bytes or descriptors).
    pub(crate) fn is_drained(&self) -> bool {
        self.pos == self.end && self.fds.is_empty()
    }

    /// Whether reading would not block now: bytes, end-of-file or an error are waiting. From a
    /// peer that owes us nothing, such as an idle worker, that means it is gone.
    pub(crate) fn readable_now(&self) -> bool {
        if !self.is_drained() {
            return true;
        }
        sys::fd::poll(
            [(self.stream.as_fd(), Interest::Read)],
            Some(Duration::ZERO),
        )
        .is_ok_and(|[ready]| ready.readable || ready.broken)
    }

    /// Whether a whole frame is already buffered, so `recv` would not block.
    pub(crate) fn has_frame(&self) -> bool {
        match self.pending_len() {
            Ok(Some(len)) => self.end - self.pos >= HEADER + len,
            Ok(None) => false,
            // `recv` returns the error at once.
            Err(_) => true,
        }
    }

    /// Sends `why` as this side's farewell: the last frame it sends, saying why it exits.
    pub(crate) fn send_farewell(&mut self, why: &str) -> io::Result<()> {
        self.send_frame(why.len() as u64 | FAREWELL, &[why.as_bytes()], &[])
    }

    /// Sends one frame, without copying `payload`.
    pub(crate) fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send_with_fds(payload, &[])
    }

    /// Sends one frame with file descriptors beside it (the receiver gets its own duplicates).
    /// A peer that is gone gives `BrokenPipe`, never SIGPIPE.
    pub(crate) fn send_with_fds(
        &mut self,
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<()> {
        self.send_parts(&[payload], fds)
    }

    /// Sends one frame made of `parts` one after another, without joining them first, with
    /// `fds` beside it.
    pub(crate) fn send_parts(&mut self, parts: &[&[u8]], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let len: usize = parts.iter().map(|part| part.len()).sum();
        if len >= FILE_FRAME {
            return self.send_encoded(&Encoded::of_parts(parts)?, fds);
        }
        self.send_frame(len as u64, parts, fds)
    }

    /// Sends a finished frame with `fds` beside it: a file as its last descriptor.
    pub(crate) fn send_encoded(
        &mut self,
        encoded: &Encoded,
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<()> {
        match encoded {
            Encoded::Bytes(bytes) => self.send_frame(bytes.len() as u64, &[bytes], fds),
            Encoded::File(file, len) => {
                let mut with_file = fds.to_vec();
                with_file.push(file.as_fd());
                self.send_frame(*len as u64 | IN_FILE, &[], &with_file)
            }
        }
    }

    /// Sends a frame whose header says `len` (with its flags) and whose stream bytes are
    /// `parts`, with `fds` beside it.
    fn send_frame(&mut self, len: u64, parts: &[&[u8]], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let stream_len: usize = parts.iter().map(|part| part.len()).sum();
        if fds.len() > usize::from(u16::MAX) || fds.len() > FDS_PER_MESSAGE * (HEADER + stream_len)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} handles in one message is too many; send them in several",
                    fds.len()
                ),
            ));
        }
        let header = (len | (fds.len() as u64) << FDS_SHIFT).to_le_bytes();
        if fds.is_empty() && HEADER + stream_len <= SMALL_FRAME {
            // The common small message: one contiguous `send`, which costs the kernel less
            // than a `sendmsg` of a vector (no message header to copy in, no iovec).
            let mut frame = [0u8; SMALL_FRAME];
            frame[..HEADER].copy_from_slice(&header);
            let mut at = HEADER;
            for part in parts {
                frame[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            let mut bytes = &frame[..at];
            while !bytes.is_empty() {
                let sent =
                    self.send_once(|socket, dont_wait| sys::fd::send(socket, bytes, dont_wait))?;
                bytes = &bytes[sent..];
            }
            return Ok(());
        }
        let mut slices: Vec<IoSlice<'_>> = std::iter::once(IoSlice::new(&header))
            .chain(
                parts
                    .iter()
                    .filter(|part| !part.is_empty())
                    .map(|part| IoSlice::new(part)),
            )
            .collect();
        let mut slices: &mut [IoSlice<'_>] = &mut slices;
        let mut fds = fds;
        while !slices.is_empty() {
            let batch = &fds[..fds.len().min(FDS_PER_MESSAGE)];
            let sent = if batch.len() < fds.len() {
                // More batches follow: this one gets a byte of its own, so that every batch
                // rides on bytes of this frame.
                let first = slices
                    .iter()
                    .find(|s| !s.is_empty())
                    .expect("bytes are left");
                let first = [IoSlice::new(&first[..1])];
                self.send_once(|socket, dont_wait| {
                    sys::fd::send_with_fds(socket, &first, batch, dont_wait)
                })?
            } else {
                self.send_once(|socket, dont_wait| {
                    sys::fd::send_with_fds(socket, slices, batch, dont_wait)
                })?
            };
            fds = &fds[batch.len()..];
            IoSlice::advance_slices(&mut slices, sent);
        }
        Ok(())
    }

    /// Runs one send call until it takes some bytes; returns how many. It is retried when
    /// interrupted and, on a channel that reads while sending, when the socket is full.
    fn send_once(
        &mut self,
        mut send: impl FnMut(BorrowedFd<'_>, bool) -> io::Result<usize>,
    ) -> io::Result<usize> {
        loop {
            match send(self.stream.as_fd(), self.read_while_sending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(sent) => return Ok(sent),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && self.read_while_sending => {
                    self.read_until_writable()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until the socket takes bytes again, reading what the peer sends meanwhile into
    /// the receive buffer (where `recv` finds it later).
    fn read_until_writable(&mut self) -> io::Result<()> {
        loop {
            let interest = if self.peer_closed {
                Interest::Write
            } else {
                Interest::ReadWrite
            };
            let [ready] = match sys::fd::poll([(self.stream.as_fd(), interest)], None) {
                Ok(ready) => ready,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if ready.writable || ready.broken {
                // Writable, or broken: the next send says which.
                return Ok(());
            }
            if self.fill()? == 0 {
                self.peer_closed = true;
            }
        }
    }

    /// Waits for the next frame. `Ok(None)` means the peer closed the channel between frames;
    /// closing in the middle of one is an `UnexpectedEof` error.
    pub(crate) fn recv(&mut self) -> io::Result<Option<Frame>> {
        self.recv_until(None)
    }

    /// Like [`recv`](Channel::recv), but gives up at `deadline` with a `TimedOut` error; the
    /// part of a frame read so far is kept for the next call.
    pub(crate) fn recv_until(&mut self, deadline: Option<Instant>) -> io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.take_frame()? {
                return Ok(Some(frame));
            }
            if let Some(deadline) = deadline {
                wait_readable(&self.stream, deadline)?;
            }
            if self.fill()? == 0 {
                return if self.pos == self.end {
                    Ok(None)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed the channel in the middle of a frame",
                    ))
                };
            }
        }
    }

    /// The length announced by the next frame, once its header is here.
    fn pending_len(&self) -> io::Result<Option<usize>> {
        if self.end - self.pos < HEADER {
            return Ok(None);
        }
        let header = self.header();
        let len = header & LEN_MASK;
        if len > self.max_frame {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a frame of {len} bytes was announced, more than the limit of {} bytes: the \
                     peer is not an mp process of this build, or the stream is corrupt",
                    self.max_frame
                ),
            ));
        }
        // A frame in a file has no bytes in the stream.
        Ok(Some(if header & IN_FILE != 0 {
            0
        } else {
            len as usize
        }))
    }

    /// The next frame's header; there must be one.
    fn header(&self) -> u64 {
        let header = &self.buf[self.pos..self.pos + HEADER];
        u64::from_le_bytes(header.try_into().expect("8 bytes"))
    }

    fn take_frame(&mut self) -> io::Result<Option<Frame>> {
        let Some(len) = self.pending_len()? else {
            return Ok(None);
        };
        let frame_end = self.pos + HEADER + len;
        if self.end < frame_end {
            return Ok(None);
        }
        let count = (self.header() >> FDS_SHIFT) as usize;
        if self.fds.len() < count {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a frame arrived without the descriptors it announced",
            ));
        }
        let mut fds: Vec<OwnedFd> = self.fds.drain(..count).collect();
        let farewell = self.header() & FAREWELL != 0;
        let frame = if self.header() & IN_FILE != 0 {
            let file = fds.pop().ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a frame sent in a file came without it",
                )
            })?;
            let len = (self.header() & LEN_MASK) as usize;
            self.pos = frame_end;
            Frame {
                bytes: Bytes::Mapped(Sealed::of_file(file.as_fd(), len)?),
                fds,
                farewell,
            }
        } else if self.pos == 0 && frame_end == self.end && len > READ_CHUNK {
            // The buffer holds exactly this one large frame: hand it over instead of copying.
            self.buf.truncate(frame_end);
            self.end = 0;
            Frame {
                bytes: Bytes::Read {
                    buf: std::mem::take(&mut self.buf),
                    start: HEADER,
                },
                fds,
                farewell,
            }
        } else {
            let frame = Frame {
                bytes: Bytes::Read {
                    buf: self.buf[self.pos + HEADER..frame_end].to_vec(),
                    start: 0,
                },
                fds,
                farewell,
            };
            self.pos = frame_end;
            frame
        };
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        }
        Ok(Some(frame))
    }

    /// Reads what the socket has (blocking until something is there); returns the byte count.
    fn fill(&mut self) -> io::Result<usize> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        self.buf.truncate(self.end);
        // A large frame is read up to its end and no further, so that it fills the buffer
        // alone and is handed over whole, not copied out (see `take_frame`).
        let (room, exact) = match self.pending_len()? {
            // Only while the frame is incomplete: once whole, a read of its rest would be
            // empty, which looks like the end of the stream.
            Some(len) if len > READ_CHUNK && self.end < HEADER + len => {
                ((HEADER + len - self.end).min(GROW_CHUNK), true)
            }
            _ => (READ_CHUNK, false),
        };
        // The kernel writes straight into the spare capacity: no zeroing of room it overwrites.
        self.buf.reserve(room);
        let most = if exact { room } else { usize::MAX };
        loop {
            match sys::fd::recv_appending(self.stream.as_fd(), &mut self.buf, most, &mut self.fds) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Blocks until `stream` has data or end-of-file, or `deadline` passes. A deadline that has
/// passed already still looks once.
pub(crate) fn wait_readable(stream: &UnixStream, deadline: Instant) -> io::Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Rounded up to the next millisecond, so a wait of less than one still waits.
        let wait = if left.is_zero() {
            left
        } else {
            Duration::from_millis(left.as_millis().saturating_add(1).min(u64::MAX as u128) as u64)
        };
        match sys::fd::poll([(stream.as_fd(), Interest::Read)], Some(wait)) {
            Ok([ready]) if ready.readable || ready.broken => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pair() -> (Channel, Channel) {
        let (a, b) = UnixStream::pair().unwrap();
        (Channel::new(a), Channel::new(b))
    }

    #[test]
    fn descriptors_arrive_with_their_frame() {
        let (mut a, mut b) = pair();
        let file = std::fs::File::open("/dev/null").unwrap();
        use std::os::fd::AsFd;
        a.send(b"before").unwrap();
        a.send_with_fds(b"with", &[file.as_fd(), file.as_fd()])
            .unwrap();
        a.send(b"after").unwrap();
        let first = b.recv().unwrap().unwrap();
        assert!(first.fds.is_empty());
        let second = b.recv().unwrap().unwrap();
        assert_eq!((&*second, second.fds.len()), (&b"with"[..], 2));
        assert!(b.recv().unwrap().unwrap().fds.is_empty());
    }

    #[test]
    fn many_descriptors_cross_in_batches() {
        use std::os::fd::AsFd;
        let (mut a, mut b) = pair();
        let file = std::fs::File::open("/dev/null").unwrap();
        for _ in 0..3 {
            let fds = vec![file.as_fd(); 600];
            a.send_with_fds(&[7u8; 600], &fds).unwrap();
            let frame = b.recv().unwrap().unwrap();
            assert_eq!(frame.fds.len(), 600);
        }
    }

    #[test]
    fn frames_keep_their_boundaries() {
        let (mut a, mut b) = pair();
        a.send(b"one").unwrap();
        a.send(b"").unwrap();
        a.send(b"three").unwrap();
        assert_eq!(&*b.recv().unwrap().unwrap(), b"one");
        assert_eq!(&*b.recv().unwrap().unwrap(), b"");
        assert_eq!(&*b.recv().unwrap().unwrap(), b"three");
    }

    #[test]
    fn a_large_frame_crosses_whole() {
        let (mut a, mut b) = pair();
        // Below the size that goes in a file: through the socket, handed over uncopied.
        let payload: Vec<u8> = (0..FILE_FRAME as u32 - 1).map(|i| i as u8).collect();
        let sent = payload.clone();
        let writer = std::thread::spawn(move || {
            a.send(&sent).unwrap();
            a.send(b"next").unwrap();
        });
        let frame = b.recv().unwrap().unwrap();
        assert!(matches!(frame.bytes, Bytes::Read { start: HEADER, .. }));
        assert_eq!(&*frame, &payload[..]);
        assert_eq!(&*b.recv().unwrap().unwrap(), b"next");
        writer.join().unwrap();
    }

    #[test]
    fn a_frame_of_a_mebibyte_or_more_crosses_in_a_file_beside_its_descriptors() {
        use std::os::fd::AsFd;
        let (mut a, mut b) = pair();
        let payload: Vec<u8> = (0..10_000_000u32).map(|i| (i ^ i >> 13) as u8).collect();
        let file = std::fs::File::open("/dev/null").unwrap();
        a.send(b"before").unwrap();
        a.send_parts(&[&payload[..5], &payload[5..]], &[file.as_fd()])
            .unwrap();
        a.send(b"after").unwrap();
        assert_eq!(&*b.recv().unwrap().unwrap(), b"before");
        let frame = b.recv().unwrap().unwrap();
        assert!(matches!(frame.bytes, Bytes::Mapped(_)));
        assert_eq!(frame.fds.len(), 1);
        assert_eq!(&*frame, &payload[..]);
        assert_eq!(&*b.recv().unwrap().unwrap(), b"after");
    }

    #[test]
    fn two_sides_that_send_large_frames_at_once_do_not_deadlock() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut reading = Channel::new(a).reading_while_sending();
        let mut plain = Channel::new(b);
        // Larger than a read, smaller than a file frame: they fill the socket both ways.
        let frame: Vec<u8> = (0..900_000u32).map(|i| (i >> 3) as u8).collect();
        let sent = frame.clone();
        let other = std::thread::spawn(move || {
            for _ in 0..20 {
                plain.send(&sent).unwrap();
            }
            for _ in 0..20 {
                assert!(*plain.recv().unwrap().unwrap() == sent[..]);
            }
        });
        for _ in 0..20 {
            reading.send(&frame).unwrap();
        }
        for _ in 0..20 {
            assert!(*reading.recv().unwrap().unwrap() == frame[..]);
        }
        other.join().unwrap();
    }

    /// Sends a header that says the frame's `len` bytes are in `file`.
    fn send_in_file(a: &mut Channel, file: std::os::fd::BorrowedFd<'_>, len: u64) {
        let header = (len | IN_FILE | 1 << FDS_SHIFT).to_le_bytes();
        sys::fd::send_with_fds(a.stream.as_fd(), &[IoSlice::new(&header)], &[file], false).unwrap();
    }

    #[test]
    fn a_frame_in_an_unsealed_or_short_file_is_refused() {
        use std::os::fd::AsFd;
        let (mut a, mut b) = pair();
        let unsealed = std::fs::File::from(crate::sys::memfd::create(c"test").unwrap());
        unsealed.set_len(4096).unwrap();
        send_in_file(&mut a, unsealed.as_fd(), 4096);
        let err = b.recv().err().unwrap();
        assert!(err.to_string().contains("not sealed"), "{err}");

        let (mut a, mut b) = pair();
        let Encoded::File(short, _) = Encoded::of_parts(&[&vec![1u8; FILE_FRAME]]).unwrap() else {
            panic!("a frame of FILE_FRAME bytes goes in a file");
        };
        send_in_file(&mut a, short.as_fd(), FILE_FRAME as u64 + 4096);
        let err = b.recv().err().unwrap();
        assert!(err.to_string().contains("shorter"), "{err}");
    }

    #[test]
    fn clean_close_is_none_and_torn_frame_is_an_error() {
        let (a, mut b) = pair();
        drop(a.stream.shutdown(std::net::Shutdown::Write));
        assert!(b.recv().unwrap().is_none());

        let (mut a, mut b) = pair();
        a.stream.write_all(&10u64.to_le_bytes()).unwrap();
        a.stream.write_all(b"abc").unwrap();
        drop(a);
        assert_eq!(b.recv().err().unwrap().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_huge_length_is_refused_without_allocating() {
        let (mut a, mut b) = pair();
        a.stream.write_all(&(1u64 << 40).to_le_bytes()).unwrap();
        let err = b.recv().err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("limit"), "{err}");
    }

    #[test]
    fn a_deadline_keeps_the_partial_frame() {
        let (mut a, mut b) = pair();
        a.stream.write_all(&5u64.to_le_bytes()).unwrap();
        a.stream.write_all(b"he").unwrap();
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(
            b.recv_until(Some(soon)).err().unwrap().kind(),
            io::ErrorKind::TimedOut
        );
        a.stream.write_all(b"llo").unwrap();
        let later = Instant::now() + Duration::from_secs(10);
        assert_eq!(&*b.recv_until(Some(later)).unwrap().unwrap(), b"hello");
    }
}

/// Whatever bytes a peer sends, the decoder answers with frames, an end or an error: it never
/// panics and never allocates ahead of the data.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    /// The frames a channel makes of `bytes` written by a peer in `chunks`, and how it ended.
    fn decode(bytes: &[u8], chunks: &[usize]) -> (Vec<Vec<u8>>, io::Result<()>) {
        let (mut peer, ours) = UnixStream::pair().unwrap();
        let input = bytes.to_vec();
        let chunks = chunks.to_vec();
        let writer = std::thread::spawn(move || {
            let mut rest = &input[..];
            for &size in chunks.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (now, later) = rest.split_at(size.clamp(1, rest.len()));
                if peer.write_all(now).is_err() {
                    break;
                }
                rest = later;
            }
        });
        let mut channel = Channel::new(ours);
        let mut frames = Vec::new();
        let end = loop {
            match channel.recv() {
                Ok(Some(frame)) => frames.push(frame.to_vec()),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        drop(channel);
        writer.join().unwrap();
        (frames, end)
    }

    fn encode(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for frame in frames {
            bytes.extend_from_slice(&(frame.len() as u64).to_le_bytes());
            bytes.extend_from_slice(frame);
        }
        bytes
    }

    fn chunks() -> impl Strategy<Value = Vec<usize>> {
        proptest::collection::vec(1usize..300, 1..8)
    }

    proptest! {
        #[test]
        fn frames_survive_any_split(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..8),
            chunks in chunks(),
        ) {
            let (got, end) = decode(&encode(&frames), &chunks);
            prop_assert!(end.is_ok());
            prop_assert_eq!(got, frames);
        }

        #[test]
        fn a_cut_inside_a_frame_is_unexpected_eof(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let bytes = encode(&frames);
            let cut = cut.index(bytes.len());
            let boundaries: Vec<usize> = frames
                .iter()
                .scan(0, |at, frame| { *at += HEADER + frame.len(); Some(*at) })
                .collect();
            let (got, end) = decode(&bytes[..cut], &[4096]);
            if cut == 0 || boundaries.contains(&cut) {
                prop_assert!(end.is_ok());
            } else {
                prop_assert_eq!(end.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
            }
            prop_assert_eq!(&got[..], &frames[..got.len()]);
        }

        #[test]
        fn a_length_over_the_limit_is_an_error_not_an_allocation(
            len in (DEFAULT_MAX_FRAME + 1)..FAREWELL,
            in_file in any::<bool>(),
            fds in any::<u16>(),
            tail in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let flag = if in_file { IN_FILE } else { 0 };
            let mut bytes = (len | flag | u64::from(fds) << FDS_SHIFT).to_le_bytes().to_vec();
            bytes.extend_from_slice(&tail);
            let (got, end) = decode(&bytes, &[4096]);
            prop_assert!(got.is_empty());
            let err = end.unwrap_err();
            prop_assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            prop_assert!(err.to_string().contains("limit"), "{}", err);
        }

        #[test]
        fn descriptors_announced_but_missing_are_an_error(
            fds in 1u16..,
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut bytes = (payload.len() as u64 | u64::from(fds) << FDS_SHIFT).to_le_bytes().to_vec();
            bytes.extend_from_slice(&payload);
            let (got, end) = decode(&bytes, &[4096]);
            prop_assert!(got.is_empty());
            let err = end.unwrap_err();
            prop_assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            prop_assert!(err.to_string().contains("descriptors"), "{}", err);
        }

        #[test]
        fn any_bytes_end_in_frames_an_end_or_an_error(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            chunks in chunks(),
        ) {
            let (got, _end) = decode(&bytes, &chunks);
            let total: usize = got.iter().map(|frame| HEADER + frame.len()).sum();
            prop_assert!(total <= bytes.len());
        }
    }
}
