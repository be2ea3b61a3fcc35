//! Worker logs in the parent: what a task logs with `log` or `tracing` reaches the logger or
//! subscriber that the parent's `main` set up, marked with the worker.
//!
//! Workers never run `main`, so nothing the user set up there exists in them. Instead, a parent
//! whose logging is set up when it starts a worker hands it the sending end of one datagram
//! socket (one for all its workers) and its level filter; the worker installs a `log` logger
//! and a `tracing` subscriber that send each record at or above that level as one datagram.
//! In the parent, a relay thread reads them and passes each to the parent's own logger or
//! subscriber, whose filters then apply as to its own records.
//!
//! Datagrams arrive whole, so records of several workers never interleave, and a record sent
//! before a worker died is not lost with it. Order with results: a worker sends its records
//! before its reply, and the parent passes on every record queued before it delivers a reply
//! ([`drain`]), so what a task logged is logged before its caller has the result.

#[cfg(any(feature = "log", feature = "tracing"))]
use serde::{Deserialize, Serialize};

#[cfg(any(feature = "log", feature = "tracing"))]
mod forward;
#[cfg(any(feature = "log", feature = "tracing"))]
mod relay;

#[cfg(any(feature = "log", feature = "tracing"))]
pub(crate) use forward::install;
#[cfg(any(feature = "log", feature = "tracing"))]
pub(crate) use relay::{drain, for_child};

/// Without the `log` and `tracing` features: nothing to relay.
#[cfg(not(any(feature = "log", feature = "tracing")))]
mod off {
    use std::os::fd::OwnedFd;

    pub(crate) fn install(_socket: OwnedFd, _level: u8) {}

    pub(crate) fn drain() {}

    pub(crate) fn for_child() -> Option<(u8, OwnedFd)> {
        None
    }
}
#[cfg(not(any(feature = "log", feature = "tracing")))]
pub(crate) use off::{drain, for_child, install};

/// The most bytes one record takes on the socket; a longer message is cut, and says so.
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
#[derive(Serialize, Deserialize)]
struct Record {
    origin: Origin,
    /// 1 (error) to 5 (trace), as `log::Level`.
    level: u8,
    /// The worker's name and pid, which the parent's record shows.
    worker: String,
    target: String,
    module_path: Option<String>,
    file: Option<String>,
    line: Option<u32>,
    message: String,
}
