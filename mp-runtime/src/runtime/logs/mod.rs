//! Worker logs in the parent: what a task logs with `log` or `tracing` reaches the logger or
//! subscriber that the parent's `main` set up, marked with the worker.
//!
//! Workers never run `main`, so nothing the user set up there exists in them. Instead, a parent
//! whose logging is set up when it starts a worker hands it its level filter and the sending
//! end of a packet socket (Unix, sequenced-packet) of that worker's own; the worker installs a
//! `log` logger and a `tracing` subscriber that send each record at or above that level as one
//! packet. One
//! socket per worker, so that nothing a task does to its socket (shut it down, fill it)
//! reaches another worker's records.
//!
//! In the parent, two threads of the relay's own take them from there, so that the user's
//! logger never runs where results are delivered or time limits kept:
//! - the *reader* (mp's code only) reads each packet as it comes, marks it with the worker
//!   whose socket it came on, or with the pid the kernel gives (SO_PASSCRED) when another
//!   process sent it (one a task forked), and queues it, up to a bound; what does not fit is
//!   counted;
//! - the *logger* thread passes queued records to the parent's logger or subscriber, one at a
//!   time, and says how many were dropped once it catches up (or every second while it
//!   cannot).
//!
//! Order with results: a worker sends its records before its reply, and before a reply is
//! delivered, the thread delivering it reads that worker's socket and waits until its records
//! are passed on ([`settle`]), for at most [`ORDER_WAIT`] in all. A logger that takes longer
//! has fallen behind: no reply waits for it again until it has caught up.
//!
//! Packets arrive whole, so records of several workers never interleave, and a record sent
//! before a worker died is not lost with it.
//!
//! Across MPI ranks (feature `mpi`), rank 0 tells each worker rank its level when it opens a
//! pool there. The rank process then forwards as a worker does, with MPI messages to rank 0
//! for a sink ([`forward_to_rank_zero`]): the records of its own pool's workers (which reach
//! its relay, as above) and its own. On rank 0, each message is queued into the same relay
//! queue, marked with the rank that MPI says sent it ([`from_rank`]), and a rank's reply waits
//! for that rank's records as a worker's does ([`settle_rank`]).
//!
//! Uses `base`, `sys` and `wire`; used by the rest of its tier and by `pool`.

#[cfg(any(feature = "log", feature = "tracing"))]
use std::time::Duration;

#[cfg(any(feature = "log", feature = "tracing"))]
use serde::{Deserialize, Serialize};

#[cfg(any(feature = "log", feature = "tracing"))]
mod forward;
#[cfg(any(feature = "log", feature = "tracing"))]
mod relay;

#[cfg(any(feature = "log", feature = "tracing"))]
pub(crate) use forward::{flush_unsent, install};
#[cfg(all(feature = "mpi", any(feature = "log", feature = "tracing")))]
pub(crate) use forward::{forward_to_rank_zero, take_unsent};
#[cfg(all(feature = "mpi", any(feature = "log", feature = "tracing")))]
pub(crate) use relay::{flush, for_ranks, from_rank, settle_rank};
#[cfg(any(feature = "log", feature = "tracing"))]
pub(crate) use relay::{for_child, settle, worker_ended};

/// Without the `log` and `tracing` features: nothing to relay.
#[cfg(not(any(feature = "log", feature = "tracing")))]
mod off {
    use std::os::fd::OwnedFd;

    pub(crate) fn install(_socket: OwnedFd, _level: u8) {}

    pub(crate) fn flush_unsent() {}

    pub(crate) fn settle(_pid: u32) {}

    pub(crate) fn worker_ended(_pid: u32) {}

    pub(crate) fn for_child(_pid: u32, _name: &str) -> Option<(u8, OwnedFd)> {
        None
    }

    #[cfg(feature = "mpi")]
    pub(crate) fn for_ranks() -> u8 {
        0
    }

    #[cfg(feature = "mpi")]
    pub(crate) fn forward_to_rank_zero(_level: u8, _send: fn(&[u8]) -> bool) {}

    #[cfg(feature = "mpi")]
    pub(crate) fn from_rank(_rank: i32, _message: &[u8]) {}

    #[cfg(feature = "mpi")]
    pub(crate) fn settle_rank(_rank: i32) {}

    #[cfg(feature = "mpi")]
    pub(crate) fn flush(_limit: std::time::Duration) {}

    #[cfg(feature = "mpi")]
    pub(crate) fn take_unsent() -> u32 {
        0
    }
}
#[cfg(all(feature = "mpi", not(any(feature = "log", feature = "tracing"))))]
pub(crate) use off::{flush, for_ranks, forward_to_rank_zero, from_rank, settle_rank, take_unsent};
#[cfg(not(any(feature = "log", feature = "tracing")))]
pub(crate) use off::{flush_unsent, for_child, install, settle, worker_ended};

/// The longest a reply waits for the records its worker sent before it to be logged.
#[cfg(any(feature = "log", feature = "tracing"))]
const ORDER_WAIT: Duration = Duration::from_millis(50);

/// The longest a worker waits for room on the parent's socket before it drops a record (and
/// counts it): the parent's reader empties it as records come, whatever its logger does.
#[cfg(any(feature = "log", feature = "tracing"))]
const SEND_WAIT: Duration = Duration::from_millis(100);

/// The most bytes one record takes on the socket; a longer one is cut, and says so.
#[cfg(any(feature = "log", feature = "tracing"))]
const MAX_RECORD: usize = 64 * 1024;

/// Which library a record was logged through in the worker: the parent passes it to the
/// same one when it has both set up.
#[cfg(any(feature = "log", feature = "tracing"))]
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Origin {
    Log,
    Tracing,
}

/// One log record, as a worker sends it.
#[cfg(any(feature = "log", feature = "tracing"))]
#[derive(Clone, Serialize, Deserialize)]
struct Record {
    origin: Origin,
    /// 1 (error) to 5 (trace), as `log::Level`.
    level: u8,
    target: String,
    module_path: Option<String>,
    file: Option<String>,
    line: Option<u32>,
    message: String,
}

/// What a worker sends on its log socket: one packet each.
#[cfg(any(feature = "log", feature = "tracing"))]
#[derive(Clone, Serialize, Deserialize)]
enum Sent {
    Record(Record),
    /// This many records were dropped in the worker, finding no room on the socket.
    Unsent(u32),
}

/// What a worker rank sends rank 0 (feature `mpi`): one message each.
#[cfg(all(feature = "mpi", any(feature = "log", feature = "tracing")))]
#[derive(Serialize, Deserialize)]
struct FromRank {
    sent: Sent,
    /// The worker of the rank's own pool that sent it, as the rank's relay marked it; `None`
    /// for the rank process itself. Rank 0 puts the rank, as MPI says, before it.
    worker: Option<String>,
}
