//! Length-prefixed frames over a private Unix stream socket: one channel per child process.
//!
//! A frame is an 8-byte little-endian length and that many bytes. Reads are buffered, so a run of
//! small frames costs one system call, and may wait with a deadline: a partly read frame is kept
//! and finished by the next call.

use std::io::{self, IoSlice, Read, Write};
use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Instant;

/// The largest frame a channel accepts unless told otherwise: far above any real argument, far
/// below what would exhaust memory when a corrupt length arrives.
pub(crate) const DEFAULT_MAX_FRAME: u64 = 1 << 36;

const HEADER: usize = 8;
/// How much to ask the kernel for at once when no large frame is pending.
const READ_CHUNK: usize = 64 * 1024;
/// Growth step for a large frame, so a corrupt length never allocates ahead of the data.
const GROW_CHUNK: usize = 16 * 1024 * 1024;

/// One received frame; derefs to its bytes.
pub(crate) struct Frame {
    buf: Vec<u8>,
    start: usize,
}

impl Deref for Frame {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf[self.start..]
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
}

impl Channel {
    pub(crate) fn new(stream: UnixStream) -> Self {
        Channel {
            stream,
            buf: Vec::new(),
            pos: 0,
            end: 0,
            max_frame: DEFAULT_MAX_FRAME,
        }
    }

    /// Sends one frame, without copying `payload`.
    pub(crate) fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        let header = (payload.len() as u64).to_le_bytes();
        let mut slices = [IoSlice::new(&header), IoSlice::new(payload)];
        let mut slices: &mut [IoSlice<'_>] = &mut slices;
        while !slices.is_empty() {
            match self.stream.write_vectored(slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut slices, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
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
        let header = &self.buf[self.pos..self.pos + HEADER];
        let len = u64::from_le_bytes(header.try_into().expect("8 bytes"));
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
        Ok(Some(len as usize))
    }

    fn take_frame(&mut self) -> io::Result<Option<Frame>> {
        let Some(len) = self.pending_len()? else {
            return Ok(None);
        };
        let frame_end = self.pos + HEADER + len;
        if self.end < frame_end {
            return Ok(None);
        }
        let frame = if self.pos == 0 && frame_end == self.end && len > READ_CHUNK {
            // The buffer holds exactly this one large frame: hand it over instead of copying.
            self.buf.truncate(frame_end);
            self.end = 0;
            Frame {
                buf: std::mem::take(&mut self.buf),
                start: HEADER,
            }
        } else {
            let frame = Frame {
                buf: self.buf[self.pos + HEADER..frame_end].to_vec(),
                start: 0,
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
        let room = match self.pending_len()? {
            Some(len) => (HEADER + len - self.end).clamp(READ_CHUNK, GROW_CHUNK),
            None => READ_CHUNK,
        };
        if self.buf.len() < self.end + room {
            self.buf.resize(self.end + room, 0);
        }
        loop {
            match self.stream.read(&mut self.buf[self.end..]) {
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

/// Blocks until `stream` has data or end-of-file, or `deadline` passes.
fn wait_readable(stream: &UnixStream, deadline: Instant) -> io::Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let mut fds = libc::pollfd {
            fd: stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // Round up so a wait of less than a millisecond still waits.
        let millis = left.as_millis().saturating_add(1).min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is one valid pollfd that lives across the call.
        let ready = unsafe { libc::poll(&mut fds, 1, millis) };
        match ready {
            -1 => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
            0 => {}
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pair() -> (Channel, Channel) {
        let (a, b) = UnixStream::pair().unwrap();
        (Channel::new(a), Channel::new(b))
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
        let payload: Vec<u8> = (0..10_000_000u32).map(|i| i as u8).collect();
        let sent = payload.clone();
        let writer = std::thread::spawn(move || a.send(&sent).unwrap());
        assert_eq!(&*b.recv().unwrap().unwrap(), &payload[..]);
        writer.join().unwrap();
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
        a.stream.write_all(&(1u64 << 60).to_le_bytes()).unwrap();
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
