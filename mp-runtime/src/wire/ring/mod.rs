//! Two one-way rings of records in one shared memory file: the calls a pool sends one worker,
//! and the answers the worker sends back (the protocol is in `README.md` beside this file).
//!
//! Each ring has one writer and one reader, each in its own process. The writer copies a
//! record into free space and only then moves the ring's `tail` past it, so a record is
//! visible whole or not at all: a writer killed in the middle leaves nothing half-written to
//! read. The reader takes every record up to `tail` in one go and moves `head`, which gives
//! their space back. A reader about to sleep says so in the ring's `sleeps` word, and the
//! writer that publishes a record next rings it awake ([`Writer::push`] says when); the
//! ringing itself is the [`Link`](link::Link)'s, over the socket beside the rings. Each side
//! writes only its own words: `tail` is the writer's, `head` and `sleeps` the reader's.
//!
//! Each side keeps its own copy of what it wrote (the writer's `tail`, the reader's `head`)
//! and checks what it reads of the other's against it: a peer that scribbles over the shared
//! memory makes its messages fail, never this side read out of bounds.

pub(crate) mod link;
#[cfg(all(test, loom))]
mod loom_tests;
mod memory;

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use crate::base::sync;
use crate::base::sync::atomic::{Ordering, fence};
use memory::Memory;

/// Bytes of record space in each ring. Records of one call or answer at a time are a few dozen
/// bytes; a chunk of a map of tiny tasks, some kilobytes. A message that does not fit goes
/// through the socket (see [`link`]). Under loom, room for a few records of a few bytes.
#[cfg(not(loom))]
const CAPACITY: u64 = 256 << 10;
#[cfg(loom)]
const CAPACITY: u64 = 128;
/// Where the records of the first ring start in the file: past the page of control words.
const DATA: u64 = 4096;
/// The file's length: the control page and two rings.
#[cfg(any(not(loom), test))]
const FILE_LEN: u64 = DATA + 2 * CAPACITY;

/// A record's header: its length (the low 32 bits) and its kind (the high 32).
const HEADER: u64 = 8;
/// Record kinds: bytes that follow in the ring, or a message that comes through the socket.
const INLINE: u64 = 0;
const ON_SOCKET: u64 = 1;

/// The most messages a side sends that the other has not taken out of its ring yet, plus the
/// few that ask for no answer: the room kept free for that many markers ([`ON_SOCKET`]
/// records, [`HEADER`] bytes each) means a marker always fits. A pool sends a worker at most
/// this many calls before it reads their answers.
#[cfg(not(loom))]
pub(crate) const MAX_UNREAD: u64 = 256;
#[cfg(loom)]
pub(crate) const MAX_UNREAD: u64 = 1;
const RESERVE: u64 = (MAX_UNREAD + 8) * HEADER;

/// Where each ring's words and records are. Each word is on a cache line of its own: the
/// writer's `tail` and the reader's `head` are written by different processes.
#[derive(Clone, Copy)]
struct Place {
    tail: usize,
    head: usize,
    sleeps: usize,
    data: u64,
}

/// The ring of calls, from the parent to the worker.
const CALLS: Place = Place {
    tail: 0,
    head: 64,
    sleeps: 128,
    data: DATA,
};
/// The ring of answers, from the worker to the parent.
const ANSWERS: Place = Place {
    tail: 192,
    head: 256,
    sleeps: 320,
    data: DATA + CAPACITY,
};
/// How long the worker may spin for its next call before it sleeps, in nanoseconds: the
/// parent's word, set as it sends (0 when the machine has no core to spare).
const WORKER_SPIN: usize = 384;

/// An error for shared memory that is not as this side left it.
fn corrupt(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the shared memory of a worker's channel is corrupt: {what}"),
    )
}

/// The bytes a record of `len` bytes takes: its header and bytes, to the next multiple of 8,
/// so that a header never wraps around the end of the ring.
fn record_size(len: u64) -> u64 {
    (HEADER + len).next_multiple_of(8)
}

/// The shared file of one worker's two rings, mapped here.
pub(crate) struct Rings {
    memory: Arc<Memory>,
}

impl Rings {
    /// Makes the file (zeroed: both rings empty, nobody asleep) and maps it; returns it with
    /// the descriptor to hand to the worker. Its size is sealed, so the worker cannot shrink it
    /// under this side's mapping.
    #[cfg(not(loom))]
    pub(crate) fn create() -> io::Result<(Rings, OwnedFd)> {
        let (memory, fd) = Memory::create(FILE_LEN)?;
        Ok((
            Rings {
                memory: Arc::new(memory),
            },
            fd,
        ))
    }

    /// Maps the file that the parent made.
    #[cfg(not(loom))]
    pub(crate) fn open(fd: OwnedFd) -> io::Result<Rings> {
        Ok(Rings {
            memory: Arc::new(Memory::open(fd, FILE_LEN)?),
        })
    }

    /// Under loom there is no memory file: links keep to the socket.
    #[cfg(loom)]
    pub(crate) fn create() -> io::Result<(Rings, OwnedFd)> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Under loom there is no memory file to map.
    #[cfg(loom)]
    pub(crate) fn open(_: OwnedFd) -> io::Result<Rings> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Rings in ordinary memory, for loom's threads to share.
    #[cfg(all(loom, test))]
    pub(crate) fn in_memory() -> Rings {
        Rings {
            memory: Arc::new(Memory::zeroed(FILE_LEN)),
        }
    }

    /// The parent's ends: it writes calls and reads answers.
    fn parent_ends(&self) -> (Writer, Reader) {
        (
            Writer::new(self.memory.clone(), CALLS),
            Reader::new(self.memory.clone(), ANSWERS),
        )
    }

    /// The worker's ends: it reads calls and writes answers.
    fn worker_ends(&self) -> (Writer, Reader) {
        (
            Writer::new(self.memory.clone(), ANSWERS),
            Reader::new(self.memory.clone(), CALLS),
        )
    }

    /// Sets how long the worker may spin for its next call.
    fn set_worker_spin(&self, nanos: u64) {
        let word = self.memory.word(WORKER_SPIN);
        if word.load(Ordering::Relaxed) != nanos {
            word.store(nanos, Ordering::Relaxed);
        }
    }

    /// How long the parent says the worker may spin for its next call.
    fn worker_spin(&self) -> u64 {
        self.memory.word(WORKER_SPIN).load(Ordering::Relaxed)
    }
}

/// One record as read: bytes, or word that the message comes through the socket.
#[derive(Debug, PartialEq)]
pub(crate) enum Record {
    Bytes(Vec<u8>),
    OnSocket,
}

/// The writing end of a ring.
pub(crate) struct Writer {
    memory: Arc<Memory>,
    place: Place,
    /// The end of what this side has published: its own copy, never read back.
    tail: u64,
    /// The reader's `head` as last read, checked.
    head: u64,
    /// The reader's last sleep that this side rang for (see [`Reader::wait`]).
    rung: u64,
}

impl Writer {
    fn new(memory: Arc<Memory>, place: Place) -> Writer {
        Writer {
            memory,
            place,
            tail: 0,
            head: 0,
            rung: 0,
        }
    }

    /// Free bytes now, as the reader's `head` says; an error if it says what cannot be (it
    /// went back, or past what was written).
    fn free(&mut self) -> io::Result<u64> {
        let head = self.memory.word(self.place.head).load(Ordering::Acquire);
        if head < self.head || head > self.tail {
            return Err(corrupt("a ring's reader went back or ahead of its writer"));
        }
        self.head = head;
        Ok(CAPACITY - (self.tail - head))
    }

    /// Whether a record of `len` bytes fits now, leaving the room that markers need.
    pub(crate) fn fits(&mut self, len: usize) -> io::Result<bool> {
        let free = self.free()?;
        Ok(u64::try_from(len).is_ok_and(|len| record_size(len) + RESERVE <= free))
    }

    /// Writes a record of `bytes` (which must [fit](Writer::fits)) and publishes it. Returns
    /// whether the reader sleeps, or is about to, and must be rung.
    #[must_use = "a reader that sleeps must be rung"]
    pub(crate) fn push(&mut self, bytes: &[u8]) -> bool {
        let len = bytes.len() as u64;
        self.write(self.tail, &(len | INLINE << 32).to_le_bytes());
        self.write(self.tail + HEADER, bytes);
        self.publish(record_size(len));
        self.reader_sleeps()
    }

    /// Writes and publishes a marker: the next message through the socket is the next one in
    /// order (and wakes the reader, so none is rung for it). Fails only if the reader broke the
    /// ring: there is always room for a marker.
    pub(crate) fn push_marker(&mut self) -> io::Result<()> {
        if self.free()? < HEADER {
            return Err(corrupt("a ring has no room for a marker"));
        }
        self.write(self.tail, &(ON_SOCKET << 32).to_le_bytes());
        self.publish(HEADER);
        self.reader_sleeps();
        Ok(())
    }

    /// Copies `bytes` into the ring at position `at`, wrapping at its end.
    fn write(&self, at: u64, bytes: &[u8]) {
        let offset = at % CAPACITY;
        let first = bytes.len().min((CAPACITY - offset) as usize);
        self.memory.write(self.place.data + offset, &bytes[..first]);
        self.memory.write(self.place.data, &bytes[first..]);
    }

    /// Moves `tail` past the record just written: only now can the reader see it.
    fn publish(&mut self, size: u64) {
        self.tail += size;
        self.memory
            .word(self.place.tail)
            .store(self.tail, Ordering::Release);
    }

    /// Whether the reader sleeps, or is about to, and was not rung for this sleep yet: then
    /// it must be rung, once, however many records follow.
    fn reader_sleeps(&mut self) -> bool {
        // Between the store of `tail` and this load, as in `Reader::wait` between its store
        // of `sleeps` and its load of `tail`: of the two stores, one side sees the other's, or
        // both do (README, "Waking").
        fence(Ordering::SeqCst);
        let sleep = self.memory.word(self.place.sleeps).load(Ordering::Relaxed);
        if sleep % 2 == 0 || sleep == self.rung {
            return false;
        }
        self.rung = sleep;
        true
    }
}

/// The reading end of a ring.
pub(crate) struct Reader {
    memory: Arc<Memory>,
    place: Place,
    /// Where the next record starts: this side's own copy of `head`.
    head: u64,
    /// This side's `sleeps` word: odd while it sleeps (or is about to), one more for each
    /// sleep and each waking, so that the writer tells one sleep from the next.
    sleeps: u64,
}

impl Reader {
    fn new(memory: Arc<Memory>, place: Place) -> Reader {
        Reader {
            memory,
            place,
            head: 0,
            sleeps: 0,
        }
    }

    /// Whether the writer has published nothing new. Cheap: for spinning.
    pub(crate) fn is_empty(&self) -> bool {
        self.memory.word(self.place.tail).load(Ordering::Acquire) == self.head
    }

    /// Takes every record published so far into `out`, in order, and gives their space back
    /// at once; an error (and nothing taken) if the ring is not as a writer leaves it.
    pub(crate) fn take_all(&mut self, out: &mut VecDeque<Record>) -> io::Result<()> {
        let tail = self.memory.word(self.place.tail).load(Ordering::Acquire);
        if tail < self.head || tail - self.head > CAPACITY {
            return Err(corrupt("a ring's writer went back or past its reader"));
        }
        let mut at = self.head;
        let taken = out.len();
        while at < tail {
            let mut header = [0; HEADER as usize];
            self.read(at, &mut header);
            let header = u64::from_le_bytes(header);
            let (len, kind) = (header & u64::from(u32::MAX), header >> 32);
            let size = record_size(len);
            let record = match kind {
                _ if size > tail - at => None,
                // No message is empty (an empty frame on the socket is a doorbell): an empty
                // record is a forgery, and taking it would shift answers onto later calls.
                INLINE if len > 0 => {
                    let mut bytes = vec![0; len as usize];
                    self.read(at + HEADER, &mut bytes);
                    Some(Record::Bytes(bytes))
                }
                ON_SOCKET if len == 0 => Some(Record::OnSocket),
                _ => None,
            };
            let Some(record) = record else {
                out.truncate(taken);
                return Err(corrupt("a record is cut short or of no known kind"));
            };
            out.push_back(record);
            at += size;
        }
        if at != self.head {
            self.head = at;
            self.memory
                .word(self.place.head)
                .store(self.head, Ordering::Release);
        }
        Ok(())
    }

    /// Copies `out.len()` bytes out of the ring from position `at`, wrapping at its end.
    fn read(&self, at: u64, out: &mut [u8]) {
        let offset = at % CAPACITY;
        let first = out.len().min((CAPACITY - offset) as usize);
        let (start, rest) = out.split_at_mut(first);
        self.memory.read(self.place.data + offset, start);
        self.memory.read(self.place.data, rest);
    }

    /// Waits for the writer's next record, once none is left to take: spins for `spin` while
    /// `keep_spinning` says so, then says that this side sleeps, looks once more, and calls
    /// `sleep` (which blocks until the writer rings, or something else this side watches
    /// happens). Returns what `sleep` returned, or `None` if a record came without it.
    pub(crate) fn wait<T>(
        &mut self,
        spin: Duration,
        keep_spinning: impl Fn() -> bool,
        sleep: impl FnOnce() -> T,
    ) -> Option<T> {
        sync::spin(spin, || !self.is_empty() || !keep_spinning());
        self.say_asleep(true);
        // See `Writer::reader_sleeps`.
        fence(Ordering::SeqCst);
        let tail = self.memory.word(self.place.tail).load(Ordering::Acquire);
        if tail != self.head {
            self.say_asleep(false);
            return None;
        }
        let woken = sleep();
        self.say_asleep(false);
        Some(woken)
    }

    /// Moves this side's `sleeps` word on to the next sleep (odd) or waking (even).
    fn say_asleep(&mut self, asleep: bool) {
        debug_assert_eq!(self.sleeps % 2 == 1, !asleep);
        self.sleeps += 1;
        self.memory
            .word(self.place.sleeps)
            .store(self.sleeps, Ordering::Relaxed);
    }
}

/// The longest a side spins for the next message before it sleeps, while messages come
/// quickly: waking a sleeping process costs more than this on many machines (tens of
/// microseconds in a virtual machine), so a reply that comes sooner is taken without one.
pub(crate) const SPIN: Duration = Duration::from_micros(50);

/// Parent links that wait for an answer now (sent more than they received): each such
/// worker is busy, on a core of its own if it can have one.
static BUSY: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether the machine has a core to spare for a spinning thread: each busy worker runs on a
/// core, and a spinner (its driver, the worker itself between calls, a caller waiting for a
/// result) would take another. Past that a spinner takes a core that a worker needs, and a
/// sleeper is woken cheaply anyway, since no core is idle.
pub(crate) fn a_core_is_free() -> bool {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(crate::base::cpu_count);
    2 * BUSY.load(std::sync::atomic::Ordering::Relaxed) <= cores
}

/// Spins for at most [`SPIN`] until `done`, if [a core is free](a_core_is_free): for a
/// result that usually comes within microseconds.
pub(crate) fn spin_if_a_core_is_free(done: impl FnMut() -> bool) {
    if a_core_is_free() {
        sync::spin(SPIN, done);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn pair() -> (Rings, Writer, Reader) {
        let (rings, _fd) = Rings::create().unwrap();
        let (writer, _) = rings.parent_ends();
        let (_, reader) = rings.worker_ends();
        (rings, writer, reader)
    }

    fn take(reader: &mut Reader) -> io::Result<Vec<Record>> {
        let mut out = VecDeque::new();
        reader.take_all(&mut out)?;
        Ok(out.into())
    }

    #[test]
    fn records_cross_in_order_and_wrap_around_the_end() {
        let (_rings, mut writer, mut reader) = pair();
        // Sizes that are not multiples of 8 walk the records across the end many times.
        for round in 0..2000u32 {
            let bytes: Vec<u8> = (0..round % 300 + 1).map(|i| (i ^ round) as u8).collect();
            assert!(writer.fits(bytes.len()).unwrap());
            assert!(!writer.push(&bytes));
            writer.push_marker().unwrap();
            assert_eq!(
                take(&mut reader).unwrap(),
                [Record::Bytes(bytes), Record::OnSocket]
            );
        }
    }

    #[test]
    fn a_full_ring_keeps_room_for_markers() {
        let (_rings, mut writer, mut reader) = pair();
        let mut pushed = 0;
        while writer.fits(1000).unwrap() {
            assert!(!writer.push(&[7; 1000]));
            pushed += 1;
        }
        for _ in 0..MAX_UNREAD {
            writer.push_marker().unwrap();
        }
        let records = take(&mut reader).unwrap();
        assert_eq!(records.len() as u64, pushed + MAX_UNREAD);
        assert!(writer.fits(1000).unwrap());
    }

    #[test]
    fn a_sleeper_is_rung_once_and_a_record_cancels_its_sleep() {
        let (_rings, mut writer, mut reader) = pair();
        // The writer publishes while the reader is asleep: rung for the first record only.
        let rung = reader.wait(
            Duration::ZERO,
            || true,
            || (writer.push(b"a"), writer.push(b"b")),
        );
        assert_eq!(rung, Some((true, false)));
        // A record there already: the reader does not sleep, and is not rung.
        assert_eq!(reader.wait(Duration::ZERO, || true, || ()), None);
        assert!(!writer.push(b"c"));
    }

    /// What a writer that scribbles over the shared words and bytes can make the reader do:
    /// fail, never read out of bounds or take a record twice.
    #[test]
    fn a_scribbled_ring_is_an_error_not_a_wild_read() {
        let (rings, mut writer, mut reader) = pair();
        assert!(!writer.push(b"first"));
        assert_eq!(
            take(&mut reader).unwrap(),
            [Record::Bytes(b"first".to_vec())]
        );
        let memory = &rings.memory;
        let tail = memory.word(CALLS.tail);
        let head = memory.word(CALLS.head);
        for (what, bad_tail, header) in [
            ("tail behind head", 0, None),
            ("tail past a whole ring", 16 + CAPACITY + 8, None),
            ("a length past tail", 16 + 16, Some(100u64)),
            ("an unknown kind", 16 + 8, Some(7 << 32)),
            ("a marker with bytes", 16 + 16, Some(1 | ON_SOCKET << 32)),
            ("a length near 4 GiB", 16 + 64, Some(u64::from(u32::MAX))),
        ] {
            if let Some(header) = header {
                memory.write(CALLS.data + 16, &header.to_le_bytes());
            }
            tail.store(bad_tail, Ordering::SeqCst);
            let error = take(&mut reader).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{what}");
            assert_eq!(reader.head, 16, "{what}: the reader moved");
        }
        // And a reader that scribbles over `head` makes the writer fail.
        head.store(CAPACITY * 3, Ordering::SeqCst);
        assert!(writer.fits(1).is_err());
        assert!(writer.push_marker().is_err());
    }
}
