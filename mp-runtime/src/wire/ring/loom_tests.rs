//! Every interleaving of a worker and its parent on the real ring code (`--cfg loom`; README
//! beside this file). The rings are in ordinary memory of loom's atomics, which loom's threads
//! share as the two processes share the mapping; the doorbell, which is the socket in the
//! real link, is a count of rings under loom's mutex, with a condition variable to sleep on:
//! like the socket, it keeps a ring that comes before the sleep. A reader left asleep with a
//! record published and no one to ring it is a deadlock, which loom reports; a record read
//! before it was whole shows as wrong bytes.

use super::*;
use loom::sync::{Condvar, Mutex};
use loom::thread;

/// The socket's part: rings not yet heard (and all there were), and a way to sleep until one
/// comes.
#[derive(Default)]
struct Doorbell {
    rings: Mutex<(usize, usize)>,
    rung: Condvar,
}

impl Doorbell {
    fn ring(&self) {
        let mut rings = self.rings.lock().unwrap();
        rings.0 += 1;
        rings.1 += 1;
        self.rung.notify_one();
    }

    /// Sleeps until a ring comes, and hears it.
    fn sleep(&self) {
        let mut rings = self.rings.lock().unwrap();
        while rings.0 == 0 {
            rings = self.rung.wait(rings).unwrap();
        }
        rings.0 -= 1;
    }
}

fn check(preemptions: usize, model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemptions);
    builder.check(model);
}

/// What the reader of `Link::recv` does: takes what is published, and waits while nothing is,
/// until it has `count` records.
fn read(reader: &mut Reader, doorbell: &Doorbell, count: usize) -> Vec<Record> {
    let mut got = VecDeque::new();
    loop {
        reader.take_all(&mut got).unwrap();
        if got.len() >= count {
            return got.into();
        }
        reader.wait(Duration::ZERO, || true, || doorbell.sleep());
    }
}

/// A call published while the worker goes to sleep wakes it, and is read whole.
#[test]
fn a_record_published_while_the_reader_goes_to_sleep_is_read_whole() {
    check(3, || {
        let rings = Arc::new(Rings::in_memory());
        let doorbell = Arc::new(Doorbell::default());
        let worker = {
            let (rings, doorbell) = (rings.clone(), doorbell.clone());
            thread::spawn(move || {
                let (_, mut calls) = rings.worker_ends();
                read(&mut calls, &doorbell, 1)
            })
        };
        let (mut calls, _) = rings.parent_ends();
        assert!(calls.fits(3).unwrap());
        if calls.push(b"abc") {
            doorbell.ring();
        }
        assert_eq!(worker.join().unwrap(), [Record::Bytes(b"abc".to_vec())]);
    });
}

/// Two records and a marker in a row, to a reader that may sleep between them: every one is
/// read, in order, and the reader is rung at most once per sleep.
#[test]
fn records_in_a_row_are_read_in_order_with_one_ring_per_sleep() {
    check(2, || {
        let rings = Arc::new(Rings::in_memory());
        let doorbell = Arc::new(Doorbell::default());
        let parent = {
            let (rings, doorbell) = (rings.clone(), doorbell.clone());
            thread::spawn(move || {
                let (_, mut answers) = rings.parent_ends();
                let got = read(&mut answers, &doorbell, 3);
                // How many times it said it would sleep.
                (got, answers.sleeps.div_ceil(2))
            })
        };
        let (mut answers, _) = rings.worker_ends();
        for bytes in [&b"one"[..], b"two"] {
            assert!(answers.fits(bytes.len()).unwrap());
            if answers.push(bytes) {
                doorbell.ring();
            }
        }
        // The marker's message through the socket wakes the reader, as a ring does.
        answers.push_marker().unwrap();
        doorbell.ring();
        let (got, sleeps) = parent.join().unwrap();
        assert_eq!(
            got,
            [
                Record::Bytes(b"one".to_vec()),
                Record::Bytes(b"two".to_vec()),
                Record::OnSocket
            ]
        );
        // One ring per sleep the reader said it would take (some it did not, finding a record
        // on its last look), besides the marker's message.
        let rung = doorbell.rings.lock().unwrap().1;
        assert!(
            rung <= sleeps as usize + 1,
            "{rung} rings for {sleeps} sleeps"
        );
    });
}

/// The writer reuses the space of records the reader took: never before the reader is done
/// with them (a record overwritten while read would show as wrong bytes).
#[test]
fn space_is_reused_only_after_its_record_was_read() {
    check(2, || {
        let rings = Arc::new(Rings::in_memory());
        let doorbell = Arc::new(Doorbell::default());
        let worker = {
            let (rings, doorbell) = (rings.clone(), doorbell.clone());
            thread::spawn(move || {
                let (_, mut calls) = rings.worker_ends();
                let mut got = Vec::new();
                while got.len() < 2 {
                    got.extend(read(&mut calls, &doorbell, 1));
                }
                got
            })
        };
        let (mut calls, _) = rings.parent_ends();
        // Two records that do not fit in the ring together: the second waits for the first's
        // space (under loom the ring holds 128 bytes, and keeps some for markers).
        let records = [[1u8; 24], [2u8; 24]];
        for bytes in &records {
            while !calls.fits(bytes.len()).unwrap() {
                thread::yield_now();
            }
            if calls.push(bytes) {
                doorbell.ring();
            }
        }
        let got = worker.join().unwrap();
        assert_eq!(
            got,
            records.map(|bytes| Record::Bytes(bytes.to_vec())),
            "a record was read torn"
        );
    });
}
