//! The worker's side: a `log` logger and a `tracing` subscriber that send records to the
//! parent, or (feature `mpi`) from a worker rank to rank 0.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use super::{MAX_RECORD, Origin, Record, Sent};
use crate::sys;
use crate::wire::codec;

/// Where records go.
enum Sink {
    /// The sending end of this worker's log socket to the parent.
    Socket(OwnedFd),
    /// MPI messages to rank 0, by the function given; false when one was not sent.
    #[cfg(feature = "mpi")]
    RankZero(fn(&[u8]) -> bool),
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// The most verbose level forwarded, 0 (none) to 5 (trace); `log`'s own filter says the same
/// for `log` records.
static LEVEL: AtomicU8 = AtomicU8::new(0);

/// Records this worker could not send since it last said so (the parent's socket stayed full
/// for [`SEND_WAIT`](super::SEND_WAIT)): said before the next record, and before each reply.
static UNSENT: AtomicU32 = AtomicU32::new(0);

/// Makes this worker send its `log` records and `tracing` events at or above `level` (1 error
/// to 5 trace) to the parent, on `socket`. Once per process: a worker is told once.
///
/// A logger or subscriber that the worker set up itself (in a pool's initializer, which runs
/// before this) is kept: forwarding takes only the library left free, so setting up one's own
/// never fails for finding mp's there.
pub(crate) fn install(socket: OwnedFd, level: u8) {
    if SINK.set(Sink::Socket(socket)).is_ok() {
        take_free(level);
    }
}

/// Makes this worker rank send its `log` records and `tracing` events at or above `level` (0
/// none to 5 trace) to rank 0 with `send`, and the records its relay passes on
/// ([`to_rank_zero`]). Called at each pool rank 0 opens here, with rank 0's level then: the
/// first call with a level installs, later ones change the level, as new workers of the
/// rank's pools learn it at their start.
#[cfg(feature = "mpi")]
pub(crate) fn forward_to_rank_zero(level: u8, send: fn(&[u8]) -> bool) {
    if SINK.get().is_none() {
        if level == 0 {
            return;
        }
        if SINK.set(Sink::RankZero(send)).is_ok() {
            take_free(level);
            return;
        }
    }
    if !matches!(SINK.get(), Some(Sink::RankZero(_))) {
        return;
    }
    if LEVEL.swap(level, Ordering::Relaxed) == level {
        return;
    }
    #[cfg(feature = "log")]
    if LOG_TAKEN.load(Ordering::Relaxed) {
        log::set_max_level(log_side::filter(level));
    }
    // Call sites cached as disabled at the old level are asked again.
    #[cfg(feature = "tracing")]
    tracing_core::callsite::rebuild_interest_cache();
}

/// Set once the forwarding `log` logger is installed.
#[cfg(all(feature = "mpi", feature = "log"))]
static LOG_TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Installs the forwarding logger and subscriber where no other is set.
fn take_free(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
    #[cfg(feature = "log")]
    if log::set_boxed_logger(Box::new(log_side::Forward)).is_ok() {
        log::set_max_level(log_side::filter(level));
        #[cfg(feature = "mpi")]
        LOG_TAKEN.store(true, Ordering::Relaxed);
    }
    // A global subscriber already set (by the initializer) is left as it is.
    #[cfg(feature = "tracing")]
    let _ = tracing_core::dispatcher::set_global_default(tracing_core::Dispatch::new(
        tracing_side::Forward::new(),
    ));
}

/// Passes what this rank's relay took from `worker` (its mark there) to rank 0: true when this
/// process forwards to rank 0, which then has it (or it is counted unsent).
#[cfg(feature = "mpi")]
pub(super) fn to_rank_zero(sent: &Sent, worker: &str) -> bool {
    if !matches!(SINK.get(), Some(Sink::RankZero(_))) {
        return false;
    }
    if !say_unsent() || !transmit_as(sent.clone(), Some(worker.to_string())) {
        UNSENT.fetch_add(1, Ordering::Relaxed);
    }
    true
}

/// Records not sent and not yet said, now counted as said: for a worker rank at the job's end,
/// when nothing more will be sent.
#[cfg(feature = "mpi")]
pub(crate) fn take_unsent() -> u32 {
    UNSENT.swap(0, Ordering::Relaxed)
}

/// Tells the parent how many records this worker dropped, if any: called before a reply is
/// sent and before the worker exits, so that no count is lost with the last record. When even
/// that cannot be sent, it is said on standard error.
pub(crate) fn flush_unsent() {
    if !say_unsent() {
        let unsent = UNSENT.swap(0, Ordering::Relaxed);
        eprintln!(
            "mp worker: {unsent} log records could not be sent to the parent (its log socket \
             stayed full) and were dropped"
        );
    }
}

/// Sends the count of records dropped so far, if any; whether nothing is left unsaid.
fn say_unsent() -> bool {
    let unsent = UNSENT.swap(0, Ordering::Relaxed);
    if unsent == 0 {
        return true;
    }
    if transmit(&Sent::Unsent(unsent)) {
        return true;
    }
    UNSENT.fetch_add(unsent, Ordering::Relaxed);
    false
}

/// Sends one record to the parent. A record the parent's socket has no room for within
/// [`SEND_WAIT`](super::SEND_WAIT) is counted, and the count is sent before the next one (or
/// by [`flush_unsent`]).
fn send(
    origin: Origin,
    level: u8,
    target: &str,
    (module_path, file, line): (Option<&str>, Option<&str>, Option<u32>),
    message: String,
) {
    if SINK.get().is_none() {
        return;
    }
    if !say_unsent() {
        UNSENT.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut sent = Sent::Record(Record {
        origin,
        level,
        target: target.to_string(),
        module_path: module_path.map(str::to_string),
        file: file.map(str::to_string),
        line,
        message,
    });
    let len = codec::encode(&sent).map_or(0, |bytes| bytes.len());
    if let Sent::Record(record) = &mut sent
        && len > MAX_RECORD
    {
        cut(record, len - MAX_RECORD);
    }
    if !transmit(&sent) {
        UNSENT.fetch_add(1, Ordering::Relaxed);
    }
}

/// Encodes and sends one record or count; whether it went.
fn transmit(sent: &Sent) -> bool {
    match SINK.get() {
        None => false,
        Some(Sink::Socket(socket)) => codec::encode(sent)
            .is_ok_and(|bytes| sys::fd::send(socket.as_fd(), &bytes, false).is_ok()),
        #[cfg(feature = "mpi")]
        Some(Sink::RankZero(_)) => transmit_as(sent.clone(), None),
    }
}

/// Sends `sent` to rank 0, as `worker`'s (`None`: this rank's own); whether it went.
#[cfg(feature = "mpi")]
fn transmit_as(sent: Sent, worker: Option<String>) -> bool {
    let Some(Sink::RankZero(send)) = SINK.get() else {
        return false;
    };
    codec::encode(&super::FromRank { sent, worker }).is_ok_and(|bytes| send(&bytes))
}

/// Shortens the record by at least `over` bytes: the target, module path and file each to at
/// most [`MAX_FIELD`] bytes, then the message as far as needed, each saying how much was cut.
fn cut(record: &mut Record, over: usize) {
    let mut left = over;
    for field in [
        Some(&mut record.target),
        record.module_path.as_mut(),
        record.file.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        left = left.saturating_sub(shorten(field, field.len().saturating_sub(MAX_FIELD)));
    }
    if left > 0 {
        shorten(&mut record.message, left);
    }
}

/// Cuts at least `over` bytes off the end of `text` (none when `over` is 0), and says how many
/// with a note of at most [`NOTE`] bytes; returns how much shorter `text` became.
fn shorten(text: &mut String, over: usize) -> usize {
    if over == 0 {
        return 0;
    }
    let before = text.len();
    let mut keep = before.saturating_sub(over + NOTE);
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    let cut = before - keep;
    text.truncate(keep);
    text.push_str(&format!(" [... {cut} more bytes cut by mp]"));
    before.saturating_sub(text.len())
}

/// The longest note [`shorten`] leaves.
const NOTE: usize = 64;

/// The most bytes a record's target, module path or file keeps; the message keeps the rest.
const MAX_FIELD: usize = 4096;

#[cfg(feature = "log")]
mod log_side {
    use super::{Origin, send};

    /// The level filter `level` (0 off to 5 trace) stands for.
    pub(super) fn filter(level: u8) -> log::LevelFilter {
        log::LevelFilter::iter()
            .nth(usize::from(level))
            .unwrap_or(log::LevelFilter::Trace)
    }

    /// The worker's `log` logger.
    pub(super) struct Forward;

    impl log::Log for Forward {
        fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
            metadata.level() <= log::max_level()
        }

        fn log(&self, record: &log::Record<'_>) {
            if !self.enabled(record.metadata()) {
                return;
            }
            send(
                Origin::Log,
                record.level() as u8,
                record.target(),
                (record.module_path(), record.file(), record.line()),
                record.args().to_string(),
            );
        }

        fn flush(&self) {}
    }
}

#[cfg(feature = "tracing")]
mod tracing_side {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::fmt::{Debug, Write};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, PoisonError};

    use tracing_core::field::{Field, Visit};
    use tracing_core::span::{Attributes, Id, Record};
    use tracing_core::subscriber::Interest;
    use tracing_core::{Event, Level, LevelFilter, Metadata, Subscriber};

    use super::{LEVEL, Origin, send};

    thread_local! {
        /// The spans this thread is in, outermost first.
        static ENTERED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    }

    /// A span's name and fields, as an event inside it shows them.
    struct Span {
        name: &'static str,
        fields: String,
        handles: usize,
    }

    /// The worker's `tracing` subscriber: each event becomes one line, prefixed with the spans
    /// it is in (`outer{a=1}:inner: message b=2`, as `tracing_subscriber::fmt` writes them).
    /// Its level is [`LEVEL`].
    pub(super) struct Forward {
        spans: Mutex<HashMap<u64, Span>>,
        next_id: AtomicU64,
    }

    impl Forward {
        pub(super) fn new() -> Forward {
            Forward {
                spans: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
            }
        }

        fn max() -> LevelFilter {
            match LEVEL.load(Ordering::Relaxed) {
                0 => LevelFilter::OFF,
                1 => LevelFilter::ERROR,
                2 => LevelFilter::WARN,
                3 => LevelFilter::INFO,
                4 => LevelFilter::DEBUG,
                _ => LevelFilter::TRACE,
            }
        }

        fn spans(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Span>> {
            self.spans.lock().unwrap_or_else(PoisonError::into_inner)
        }

        /// `outer{a=1}:inner: ` for the spans this thread is in; empty outside any.
        fn scope(&self) -> String {
            ENTERED.with_borrow(|entered| {
                if entered.is_empty() {
                    return String::new();
                }
                let spans = self.spans();
                let mut scope = String::new();
                for id in entered {
                    if let Some(span) = spans.get(id) {
                        if !scope.is_empty() {
                            scope.push(':');
                        }
                        scope.push_str(span.name);
                        if !span.fields.is_empty() {
                            let _ = write!(scope, "{{{}}}", span.fields);
                        }
                    }
                }
                scope.push_str(": ");
                scope
            })
        }
    }

    /// Fields as text: the `message` field alone, the others as `name=value`.
    #[derive(Default)]
    struct Fields {
        message: String,
        others: String,
    }

    impl Visit for Fields {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "message" {
                self.message.push_str(value);
            } else {
                self.record_debug(field, &value);
            }
        }

        fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
            if field.name() == "message" {
                let _ = write!(self.message, "{value:?}");
            } else {
                if !self.others.is_empty() {
                    self.others.push(' ');
                }
                let _ = write!(self.others, "{}={value:?}", field.name());
            }
        }
    }

    fn level_number(level: &Level) -> u8 {
        match *level {
            Level::ERROR => 1,
            Level::WARN => 2,
            Level::INFO => 3,
            Level::DEBUG => 4,
            Level::TRACE => 5,
        }
    }

    impl Subscriber for Forward {
        fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
            if self.enabled(metadata) {
                Interest::always()
            } else {
                Interest::never()
            }
        }

        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            Self::max() >= *metadata.level()
        }

        fn max_level_hint(&self) -> Option<LevelFilter> {
            Some(Self::max())
        }

        fn new_span(&self, attributes: &Attributes<'_>) -> Id {
            let mut fields = Fields::default();
            attributes.record(&mut fields);
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let span = Span {
                name: attributes.metadata().name(),
                fields: fields.others,
                handles: 1,
            };
            self.spans().insert(id, span);
            Id::from_u64(id)
        }

        fn record(&self, span: &Id, values: &Record<'_>) {
            if let Some(span) = self.spans().get_mut(&span.into_u64()) {
                let mut fields = Fields {
                    message: String::new(),
                    others: std::mem::take(&mut span.fields),
                };
                values.record(&mut fields);
                span.fields = fields.others;
            }
        }

        fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

        fn event(&self, event: &Event<'_>) {
            let metadata = event.metadata();
            let mut fields = Fields::default();
            event.record(&mut fields);
            let mut message = self.scope();
            message.push_str(&fields.message);
            if !fields.others.is_empty() {
                if !fields.message.is_empty() {
                    message.push(' ');
                }
                message.push_str(&fields.others);
            }
            send(
                Origin::Tracing,
                level_number(metadata.level()),
                metadata.target(),
                (metadata.module_path(), metadata.file(), metadata.line()),
                message,
            );
        }

        fn enter(&self, span: &Id) {
            ENTERED.with_borrow_mut(|entered| entered.push(span.into_u64()));
        }

        fn exit(&self, span: &Id) {
            let id = span.into_u64();
            ENTERED.with_borrow_mut(|entered| {
                if let Some(at) = entered.iter().rposition(|&entered| entered == id) {
                    entered.remove(at);
                }
            });
        }

        fn clone_span(&self, span: &Id) -> Id {
            if let Some(span) = self.spans().get_mut(&span.into_u64()) {
                span.handles += 1;
            }
            span.clone()
        }

        fn try_close(&self, span: Id) -> bool {
            let mut spans = self.spans();
            let id = span.into_u64();
            let Some(state) = spans.get_mut(&id) else {
                return false;
            };
            state.handles -= 1;
            if state.handles == 0 {
                spans.remove(&id);
                return true;
            }
            false
        }
    }
}
