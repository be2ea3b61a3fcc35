//! [`Link`]: one side's end of the connection between a parent and a pool worker, a socket
//! ([`Channel`]) and, once shared, the two rings (README.md beside this file).
//!
//! With rings, a message goes into the sender's ring when it fits and carries no descriptors;
//! otherwise a marker goes into the ring and the message through the socket, so that the
//! receiver takes every message in the order sent, and descriptors and large messages (memfd
//! frames) travel as before. The socket is also the doorbell (an empty frame wakes a reader
//! that sleeps), and it is where a side waits, so what else a waiter watches (the parent: the
//! worker's exit, a time limit) stays as it was.

use std::collections::VecDeque;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{BUSY, Reader, Record, Rings, SPIN, Writer, a_core_is_free};
use crate::wire::frame::{Channel, Frame};
use crate::wire::outgoing::Encoded;

/// Which end of the connection a link is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The parent: sends calls, reads answers.
    Parent,
    /// The worker: reads calls, sends answers.
    Worker,
}

/// One side's end: the socket, and the rings once shared.
pub(crate) struct Link {
    channel: Channel,
    ends: Option<Ends>,
    /// Records taken from the ring and not yet handed out.
    inbox: VecDeque<Record>,
    /// Frames that came through the socket before the marker that announced them was taken,
    /// or that no marker announces (a worker's last words: sent as it dies, after everything
    /// in its ring).
    early: VecDeque<Frame>,
    /// Whether the last message came within [`SPIN`] of the wait for it: only then is spinning
    /// for the next one likely to pay.
    hot: bool,
    /// A parent's messages sent and not yet answered (with rings): while there are some, its
    /// worker counts as busy in [`BUSY`].
    unanswered: usize,
}

struct Ends {
    rings: Rings,
    side: Side,
    out: Writer,
    into: Reader,
}

impl Link {
    /// A link over `channel` alone, until [`use_rings`](Link::use_rings).
    pub(crate) fn new(channel: Channel) -> Link {
        Link {
            channel,
            ends: None,
            inbox: VecDeque::new(),
            early: VecDeque::new(),
            hot: true,
            unanswered: 0,
        }
    }

    /// From now on, messages go through `rings` as well: the other side must have been told
    /// (through the socket, before anything else it reads through them).
    pub(crate) fn use_rings(&mut self, rings: Rings, side: Side) {
        let (out, into) = match side {
            Side::Parent => rings.parent_ends(),
            Side::Worker => rings.worker_ends(),
        };
        self.ends = Some(Ends {
            rings,
            side,
            out,
            into,
        });
    }

    /// Whether the rings are in use.
    pub(crate) fn has_rings(&self) -> bool {
        self.ends.is_some()
    }

    /// The socket.
    pub(crate) fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The socket, for what goes only through it (a farewell).
    pub(crate) fn channel_mut(&mut self) -> &mut Channel {
        &mut self.channel
    }

    /// Sends one message.
    pub(crate) fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send_with_fds(payload, &[])
    }

    /// Sends one message with descriptors beside it (through the socket).
    pub(crate) fn send_with_fds(
        &mut self,
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<()> {
        match &self.ends {
            None => self.channel.send_with_fds(payload, fds),
            Some(_) => self.send_encoded(&Encoded::of_parts(&[payload])?, fds),
        }
    }

    /// Sends a finished message with `fds` beside it: through the ring if it fits there and
    /// has no descriptors, else announced in the ring and sent through the socket. Rings the
    /// other side awake if it sleeps.
    pub(crate) fn send_encoded(
        &mut self,
        encoded: &Encoded,
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<()> {
        let Some(ends) = &mut self.ends else {
            return self.channel.send_encoded(encoded, fds);
        };
        if ends.side == Side::Parent {
            self.unanswered += 1;
            if self.unanswered == 1 {
                BUSY.fetch_add(1, Ordering::Relaxed);
            }
            // The worker may spin for its next call only while a core is free for it.
            let spin = if a_core_is_free() {
                SPIN.as_nanos() as u64
            } else {
                0
            };
            ends.rings.set_worker_spin(spin);
        }
        match encoded {
            Encoded::Bytes(bytes) if fds.is_empty() && ends.out.fits(bytes.len())? => {
                if ends.out.push(bytes) {
                    // The doorbell: an empty frame, which no message is.
                    self.channel.send(&[])?;
                }
                Ok(())
            }
            _ => {
                ends.out.push_marker()?;
                self.channel.send_encoded(encoded, fds)
            }
        }
    }

    /// The next message, in the order sent. `wait` blocks on the socket until a frame comes
    /// (or whatever else it watches happens, which it returns as its error); it is called only
    /// once nothing is left in the ring, after a short spin while messages come quickly.
    /// Messages published before `wait` fails for good (the sender died, a deadline passed)
    /// are handed out first: `wait` is called again, and fails again, once they are taken.
    pub(crate) fn recv<E: Interrupted>(
        &mut self,
        mut wait: impl FnMut(&mut Channel) -> Result<Frame, E>,
    ) -> Result<Frame, E> {
        if self.ends.is_none() {
            return wait(&mut self.channel);
        }
        let started = Instant::now();
        loop {
            if let Some(frame) = self.next_ready(&mut wait)? {
                self.hot = started.elapsed() < SPIN;
                self.answered();
                return Ok(frame);
            }
            let spin = self.spin();
            let ends = self.ends.as_mut().expect("checked above");
            let side = ends.side;
            let channel = &mut self.channel;
            let Some(waited) = ends.into.wait(spin, || may_spin(side), || wait(channel)) else {
                continue;
            };
            match waited {
                Ok(frame) if is_doorbell(&frame) => {}
                Ok(frame) => self.early.push_back(frame),
                // What was published before the sender died (or the deadline passed) first.
                Err(error) if error.lasts() && !ends.into.is_empty() => {}
                Err(error) => {
                    self.hot = false;
                    return Err(error);
                }
            }
        }
    }

    /// Counts a message received by a parent as the answer to one it sent.
    fn answered(&mut self) {
        if self.unanswered > 0 {
            self.unanswered -= 1;
            if self.unanswered == 0 {
                BUSY.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// How long to spin for the next message now.
    fn spin(&self) -> Duration {
        let Some(ends) = &self.ends else {
            return Duration::ZERO;
        };
        if !self.hot {
            return Duration::ZERO;
        }
        match ends.side {
            Side::Parent if a_core_is_free() => SPIN,
            Side::Parent => Duration::ZERO,
            // The parent's word, bounded: it is in memory the worker cannot trust either.
            Side::Worker => Duration::from_nanos(ends.rings.worker_spin()).min(SPIN),
        }
    }

    /// The next message that is here already: from the ring, or a frame it announces (which
    /// is waited for, being on its way), or one that came unannounced.
    fn next_ready<E: Interrupted>(
        &mut self,
        wait: &mut impl FnMut(&mut Channel) -> Result<Frame, E>,
    ) -> Result<Option<Frame>, E> {
        let ends = self.ends.as_mut().expect("only with rings");
        if self.inbox.is_empty() {
            ends.into.take_all(&mut self.inbox)?;
        }
        match self.inbox.pop_front() {
            Some(Record::Bytes(bytes)) => Ok(Some(Frame::from_bytes(bytes))),
            Some(Record::OnSocket) => {
                if let Some(frame) = self.early.pop_front() {
                    return Ok(Some(frame));
                }
                loop {
                    let frame = wait(&mut self.channel)?;
                    if !is_doorbell(&frame) {
                        return Ok(Some(frame));
                    }
                }
            }
            None => Ok(self.early.pop_front()),
        }
    }

    /// Whether the other side is gone, or broken, as far as can be told without waiting, from
    /// a side that it owes nothing (the parent of an idle worker): anything on the socket but a
    /// doorbell or two left from its last answers means it closed its end, died, or misbehaves.
    pub(crate) fn readable_now(&mut self) -> bool {
        /// More doorbells than a side's last sleeps can have left: a flood.
        const STALE_DOORBELLS: usize = 64;
        if self.ends.is_none() || !self.early.is_empty() {
            return self.channel.readable_now() || !self.early.is_empty();
        }
        for _ in 0..STALE_DOORBELLS {
            if !self.channel.readable_now() {
                return false;
            }
            match self.channel.recv_until(Some(Instant::now())) {
                Ok(Some(frame)) if is_doorbell(&frame) => {}
                // A part of a frame: what it is will be seen when it is whole.
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return false,
                Ok(Some(frame)) => {
                    self.early.push_back(frame);
                    return true;
                }
                Ok(None) | Err(_) => return true,
            }
        }
        true
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if self.unanswered > 0 {
            BUSY.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// How a wait on the socket ended, other than with a frame.
pub(crate) trait Interrupted: From<io::Error> {
    /// Whether waiting again would end the same way at once (the other side is gone, a
    /// deadline passed): then what the other side published before can be handed out first.
    /// A failed read is not: it may have taken bytes off the socket, which no wait brings back.
    fn lasts(&self) -> bool;
}

/// Whether a frame is a doorbell: empty, with no descriptors. No message is empty (a request
/// or an answer says at least what it is), so no message is taken for one.
fn is_doorbell(frame: &Frame) -> bool {
    frame.is_empty() && frame.fds.is_empty()
}

/// Whether a spin of `side` may go on: a parent's stops when the machine fills up.
fn may_spin(side: Side) -> bool {
    side == Side::Worker || a_core_is_free()
}
