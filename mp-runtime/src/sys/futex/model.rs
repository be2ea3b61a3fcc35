//! Futexes under loom. A waiter sleeps on loom's condition variable, listed in a table of
//! sleepers by the address of its word, until a wake takes it off the list. The wait checks
//! the word and lists itself under the table's lock, as the kernel checks the word and queues
//! the waiter under its hash bucket's lock: a wake after the word changed cannot fall between
//! the two and be lost.

use std::io;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::Instant;

use loom::sync::{Condvar, Mutex};

/// The word a futex waits on: loom's, so that loom sees every access to it.
pub(crate) use loom::sync::atomic::AtomicU32;

/// The threads asleep on a futex.
struct Sleepers {
    /// The address of the word each waits on, and its ticket; the oldest first, as the kernel
    /// wakes them.
    asleep: Vec<(usize, u64)>,
    next_ticket: u64,
}

loom::lazy_static! {
    // One per model run: loom builds it anew for each interleaving.
    static ref SLEEPERS: (Mutex<Sleepers>, Condvar) = (
        Mutex::new(Sleepers { asleep: Vec::new(), next_ticket: 0 }),
        Condvar::new(),
    );
}

fn address(word: &AtomicU32) -> usize {
    std::ptr::from_ref(word) as usize
}

/// Sleeps while `word` is `expected`, until woken; as the real `wait`, except that time stands
/// still under loom: a wait with a deadline waits for its wake as one without.
pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> io::Result<bool> {
    let _ = deadline;
    let (sleepers, woken) = &*SLEEPERS;
    let mut table = sleepers.lock().unwrap_or_else(PoisonError::into_inner);
    if word.load(Ordering::SeqCst) != expected {
        return Ok(true);
    }
    let ticket = table.next_ticket;
    table.next_ticket += 1;
    table.asleep.push((address(word), ticket));
    while table.asleep.iter().any(|&(_, t)| t == ticket) {
        table = woken.wait(table).unwrap_or_else(PoisonError::into_inner);
    }
    Ok(true)
}

/// Wakes up to `n` sleepers on `word`, the oldest first.
pub(crate) fn wake(word: &AtomicU32, n: u32) {
    let (sleepers, woken) = &*SLEEPERS;
    let mut table = sleepers.lock().unwrap_or_else(PoisonError::into_inner);
    let mut left = n;
    table.asleep.retain(|&(at, _)| {
        let wake = left > 0 && at == address(word);
        left -= u32::from(wake);
        !wake
    });
    if left < n {
        woken.notify_all();
    }
}
