//! The parent's side: the socket workers send records on, and the thread that passes them to
//! the parent's logger or subscriber.

use std::os::fd::{AsFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Mutex, OnceLock, PoisonError};

use super::{MAX_RECORD, Origin, Record};
use crate::sys;
use crate::sys::fd::Interest;
use crate::wire::codec;

/// The parent's log socket: the end it reads, and the end workers get copies of.
struct Relay {
    incoming: OwnedFd,
    outgoing: OwnedFd,
    /// Held while records are read and passed on, with the buffer they are read into: a
    /// [`drain`] that finds the socket empty knows that every record sent before it has
    /// been passed on, not merely read by the relay thread.
    reading: Mutex<Vec<u8>>,
}

static RELAY: OnceLock<Relay> = OnceLock::new();

/// What a new worker is given, when this process's logging is set up: the level filter (1
/// error to 5 trace) and a copy of the socket to send records on. `None` when no logger or
/// subscriber would take its records, so a program that logs nothing pays nothing.
pub(crate) fn for_child() -> Option<(u8, OwnedFd)> {
    let level = level();
    if level == 0 {
        return None;
    }
    let relay = relay()?;
    let socket = relay.outgoing.try_clone().ok()?;
    Some((level, socket))
}

/// Passes on every record queued now. Called before a reply from a worker is delivered, so
/// that what the task logged is logged first.
pub(crate) fn drain() {
    if let Some(relay) = RELAY.get() {
        relay.pass_on_queued();
    }
}

/// The most verbose level the parent's logger or subscriber takes: 0 (none) to 5 (trace).
fn level() -> u8 {
    // `log`'s filter counts in both builds: the parent passes records to its logger.
    let log = log::max_level() as u8;
    #[cfg(feature = "tracing")]
    if tracing_core::dispatcher::has_been_set() {
        use tracing_core::LevelFilter;
        let tracing = match LevelFilter::current() {
            LevelFilter::ERROR => 1,
            LevelFilter::WARN => 2,
            LevelFilter::INFO => 3,
            LevelFilter::DEBUG => 4,
            LevelFilter::TRACE => 5,
            _ => 0,
        };
        return log.max(tracing);
    }
    log
}

/// The relay, started on first use. A relay that cannot start (no descriptor or thread to
/// spare) is said once on standard error, and tried again at the next worker's start.
fn relay() -> Option<&'static Relay> {
    static STARTING: Mutex<()> = Mutex::new(());
    if let Some(relay) = RELAY.get() {
        return Some(relay);
    }
    let _starting = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(relay) = RELAY.get() {
        return Some(relay);
    }
    match start() {
        Ok(relay) => Some(relay),
        Err(error) => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                eprintln!(
                    "mp: the logs of worker processes cannot reach this process's logger: {error}"
                );
            });
            None
        }
    }
}

fn start() -> std::io::Result<&'static Relay> {
    let (incoming, outgoing) = sys::fd::datagram_pair()?;
    let relay = RELAY.get_or_init(|| Relay {
        incoming,
        outgoing,
        reading: Mutex::new(vec![0; MAX_RECORD]),
    });
    // Without its thread (none to spare), the relay still works: each reply drains it.
    std::thread::Builder::new()
        .name("mp-log-relay".into())
        .spawn(move || relay.run())?;
    Ok(relay)
}

impl Relay {
    /// The relay thread: waits for records and passes them on, for as long as the process
    /// lives (a later worker may log again).
    fn run(&self) {
        loop {
            match sys::fd::poll([(self.incoming.as_fd(), Interest::Read)], None) {
                Ok(_) => self.pass_on_queued(),
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    eprintln!("mp: the log relay stopped: {error}");
                    return;
                }
            }
        }
    }

    /// Reads every queued record and passes each on, in the order they came.
    fn pass_on_queued(&self) {
        let mut buf = self.reading.lock().unwrap_or_else(PoisonError::into_inner);
        while let Ok(Some(len)) = sys::fd::recv_datagram(self.incoming.as_fd(), &mut buf) {
            // Only workers of this build hold the other end, so a record always decodes.
            if let Ok(record) = codec::decode::<Record>(&buf[..len]) {
                // A logger that panics loses its record, not the thread that delivers
                // results (a pool's driver never unwinds).
                let _ = panic::catch_unwind(AssertUnwindSafe(|| pass_on(&record)));
            }
        }
    }
}

/// Passes `record` to the parent's subscriber or logger: to the one of the library it was
/// logged with when the parent has both, else to the one it has.
fn pass_on(record: &Record) {
    let Some(level) = log::Level::iter().nth(usize::from(record.level).saturating_sub(1)) else {
        return;
    };
    let origin = record.origin;
    deliver(
        &log::Record::builder()
            .args(format_args!("[{}] {}", record.worker, record.message))
            .level(level)
            .target(&record.target)
            .module_path(record.module_path.as_deref())
            .file(record.file.as_deref())
            .line(record.line)
            .build(),
        origin,
    );
}

#[cfg_attr(
    not(feature = "tracing"),
    allow(unused_variables, reason = "only `tracing` has a second destination")
)]
fn deliver(record: &log::Record<'_>, origin: Origin) {
    let to_log = log::max_level() != log::LevelFilter::Off;
    #[cfg(feature = "tracing")]
    if tracing_core::dispatcher::has_been_set() && (origin == Origin::Tracing || !to_log) {
        // As `tracing_log::LogTracer` passes on a `log` record: the subscriber's filters and
        // formatting see its own target, module, file and line.
        let _ = tracing_log::format_trace(record);
        return;
    }
    let logger = log::logger();
    if to_log && record.level() <= log::max_level() && logger.enabled(record.metadata()) {
        logger.log(record);
    }
}
