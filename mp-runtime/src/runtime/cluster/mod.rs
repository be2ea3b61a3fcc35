//! The MPI job this process belongs to (feature `mpi`): joining it before `main` when a launcher
//! (`mpirun`, `mpiexec`, `srun`) started this process, the identity check between ranks, and the
//! one transport that pools use across ranks: byte messages, split into pieces that MPI's `int`
//! counts can carry.
//!
//! Every rank joins in the early entry (see [`crate::entry`]). Rank 0 goes on to run `main`;
//! every other rank serves pools (see [`crate::pool::remote`]) and exits when rank 0 does. Rank 0
//! ends the job from an exit handler, so it ends however `main` returns: it tells each rank to
//! stop, drains what they still send until each says goodbye, and finalizes MPI.
//!
//! MPI is joined with `MPI_THREAD_MULTIPLE`: each pool thread talks to its own rank. Receives
//! poll (`MPI_Improbe`) rather than block, so that a thread waiting for a long task neither
//! burns a core nor holds MPI when the job ends; see [`Backoff`].
//!
//! Log records of worker ranks cross on a tag of their own ([`TAG_LOG`]), one record a
//! message; on rank 0 a thread of their own takes them into the log relay (see
//! [`crate::runtime::logs`]), so that a rank's sends never wait on rank 0's logger.
//!
//! Uses `base`, `sys`, `wire` and `logs`, `registry`, `spawn` of its tier; used by `pool` and
//! `entry`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::base::{Error, Kind, Result};
use crate::sys;
use crate::sys::mpi::{self, Matched, MpiError};
use crate::wire::codec;

/// Variables that launchers set in each process they start: MPICH's hydra and Slurm's PMI-2
/// (`PMI_RANK`), Open MPI (`OMPI_COMM_WORLD_RANK`), PMIx (`PMIX_RANK`) and Slurm's `srun`.
/// Without one of them this process was started by hand and joins no job.
const LAUNCHER_VARS: [&str; 4] = [
    "PMI_RANK",
    "OMPI_COMM_WORLD_RANK",
    "PMIX_RANK",
    "SLURM_PROCID",
];

/// How many processes the launcher started, as each launcher says it: MPICH's hydra and PMI-2
/// (Slurm's too), Open MPI, and any Slurm step.
const LAUNCHER_SIZE_VARS: [&str; 3] = ["PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS"];

/// `off` (or `0`) keeps mp out of the job: a program that uses MPI itself, and mp only for
/// local pools, sets it; then every rank runs `main`.
const OPT_OUT_VAR: &str = "MP_RUNTIME_MPI";

/// The largest single MPI message, in bytes; a larger payload crosses in pieces. MPI counts are
/// C `int`s, so a message stops short of 2 GiB.
const PIECE_VAR: &str = "MP_MPI_PIECE_BYTES";
const DEFAULT_PIECE: usize = 1 << 30;

/// Payloads up to this size travel in one message with their header (one copy of at most this
/// much); larger ones are sent from and received into place, in pieces.
const INLINE_MAX: usize = 1 << 20;

/// Tags, so that each receiver takes only its own messages: rank 0 to a worker rank (every
/// pool's requests, and the order to stop); a worker rank's greeting, goodbye and log
/// records; and from [`FIRST_POOL_TAG`] on, one tag per pool for replies.
pub(crate) const TAG_TO_RANK: i32 = 1;
const TAG_HELLO: i32 = 2;
const TAG_BYE: i32 = 3;
const TAG_LOG: i32 = 4;
pub(crate) const FIRST_POOL_TAG: i32 = 16;
/// Tags every MPI library must support: pool tags wrap below this.
pub(crate) const TAG_LIMIT: i32 = 32767;

/// Polls spin (yielding the core) this long after the last message, then sleep: a busy pool
/// keeps round trips short, an idle one costs almost nothing.
const SPIN_FOR: Duration = Duration::from_millis(2);
const FIRST_SLEEP: Duration = Duration::from_micros(50);
const LONGEST_SLEEP: Duration = Duration::from_millis(1);

/// The job, as this process joined it.
pub(crate) struct World {
    pub(crate) rank: i32,
    pub(crate) size: i32,
    /// One sender at a time per destination, so that the pieces of two messages to the same
    /// rank never interleave.
    sending: Vec<Mutex<()>>,
    piece: usize,
}

/// What a rank tells rank 0 when it joins.
#[derive(Serialize, Deserialize)]
struct Member {
    /// The build identity of its binary; see [`crate::runtime::registry::build_id`].
    build: String,
    host: String,
}

static WORLD: OnceLock<World> = OnceLock::new();

/// True while MPI may be called. Held for reading around every call, and taken for writing
/// once, to finalize: after that no thread calls MPI again.
static OPEN: RwLock<bool> = RwLock::new(false);

/// The job, if this process joined one.
pub(crate) fn world() -> Option<&'static World> {
    WORLD.get()
}

/// What [`join_job`] found.
pub(crate) enum Joined {
    /// No launcher started this process, or mp was told to stay out of the job.
    NoJob,
    /// Rank 0: it runs `main`, and ends the job when it exits.
    RankZero,
    /// Another rank, greeted by rank 0: it serves pools, then calls [`leave_job`].
    WorkerRank,
}

/// Joins the job when a launcher started this process. Called from the early entry, on the
/// main thread, before `main`. A rank that cannot join ends the process.
pub(crate) fn join_job() -> Joined {
    let launched = LAUNCHER_VARS
        .iter()
        .any(|var| std::env::var_os(var).is_some());
    let opted_out = matches!(std::env::var(OPT_OUT_VAR).as_deref(), Ok("off" | "0"));
    if !launched || opted_out {
        return Joined::NoJob;
    }
    if sys::process::is_secure_execution() {
        // A setuid or setgid program must not serve calls from whoever set up the job: it runs
        // as an ordinary program, with local pools only.
        eprintln!(
            "mp: this is a setuid, setgid or file-capability program: it does not serve MPI \
             ranks; its pools stay local"
        );
        return Joined::NoJob;
    }
    let world = match join() {
        Ok(world) => world,
        Err(error) => abort(&format!("cannot join the MPI job: {error}"), 2),
    };
    sys::process::set_var_before_main(crate::base::RANK_VAR, &world.rank.to_string());
    if world.rank == 0 {
        if let Err(error) = greet_all(&world) {
            abort(&error.to_string(), 2);
        }
        WORLD.get_or_init(|| world);
        if let Err(error) = sys::process::at_exit(end_job) {
            eprintln!("mp: {error}: the other ranks will not be told when this one exits");
        }
        return Joined::RankZero;
    }
    let world = WORLD.get_or_init(|| world);
    if let Err(error) = greet_rank_zero() {
        eprintln!("mp: rank {}: {error}", world.rank);
        leave_job(70);
    }
    Joined::WorkerRank
}

/// A worker rank's end: finalizes MPI and exits with `code`.
pub(crate) fn leave_job(code: i32) -> ! {
    finalize(code);
    std::process::exit(code);
}

/// `MPI_Init_thread`, and what the job looks like from here.
fn join() -> Result<World> {
    let (rank, size, multiple) = mpi::init().map_err(mpi_error)?;
    *OPEN.write().unwrap_or_else(PoisonError::into_inner) = true;
    if size == 1 {
        if let Some((var, launched)) = launched_size() {
            return Err(mismatch(var, launched));
        }
    }
    if !multiple {
        return Err(Error::usage(
            "this MPI library does not support MPI_THREAD_MULTIPLE, which mp needs (one pool \
             thread talks to each rank); build or load an MPI with thread support (MPICH and \
             Open MPI have it)",
        ));
    }
    let piece = std::env::var(PIECE_VAR)
        .ok()
        .and_then(|bytes| bytes.parse::<usize>().ok())
        .unwrap_or(DEFAULT_PIECE)
        .clamp(64, i32::MAX as usize);
    Ok(World {
        rank,
        size,
        sending: (0..size).map(|_| Mutex::new(())).collect(),
        piece,
    })
}

/// The number of processes the launcher says it started, when more than one, and the
/// variable that says it.
fn launched_size() -> Option<(&'static str, usize)> {
    LAUNCHER_SIZE_VARS.into_iter().find_map(|var| {
        let size = std::env::var(var).ok()?.trim().parse::<usize>().ok()?;
        (size > 1).then_some((var, size))
    })
}

/// Why a process that a launcher started among others finds itself alone in its MPI world:
/// the launcher speaks to another MPI library than the one this program was built with.
/// Every process would run `main` on its own, the job `launched` times over; refused instead.
fn mismatch(var: &str, launched: usize) -> Error {
    Error::usage(format!(
        "the launcher started {launched} processes ({var}={launched}), but the MPI library this \
         program was built with sees a job of one: the launcher and the library do not match \
         (an MPICH build under Open MPI's mpirun or the reverse, or `srun --mpi=none`), so each \
         process would run `main` alone. Start it with the launcher of the MPI it was built \
         against (`mpichversion` or `ompi_info` says which), or with `srun --mpi=pmi2` (MPICH) \
         or `srun --mpi=pmix` (Open MPI); to run the processes apart on purpose, set \
         {OPT_OUT_VAR}=off"
    ))
}

/// This rank's identity.
fn me() -> Member {
    let host = crate::sys::process::host_name().unwrap_or_else(|| "unknown".to_string());
    Member {
        build: crate::runtime::registry::build_id().to_string(),
        host,
    }
}

fn greet_rank_zero() -> Result<()> {
    send(0, TAG_HELLO, &codec::encode(&me())?, &[])
}

/// Hears from every rank and checks that each runs this very build.
fn greet_all(world: &World) -> Result<()> {
    let build = crate::runtime::registry::build_id();
    for _ in 1..world.size {
        let (source, message) = recv_any(TAG_HELLO)?;
        let member: Member = codec::decode(&message.header)?;
        if member.build != build {
            return Err(Error::new(Kind::Usage(format!(
                "MPI rank {source} (on {}) runs a different build of this program than rank 0 \
                 (build {} against {}): every rank must run the same binary; copy it to every \
                 node, or build it on a shared filesystem",
                member.host, member.build, build
            ))));
        }
    }
    Ok(())
}

/// A received message: a short header, and a payload of any size.
pub(crate) struct Message {
    pub(crate) header: Vec<u8>,
    pub(crate) payload: Vec<u8>,
}

/// The trailer of every first message: the header's and the payload's lengths.
const TRAILER: usize = 4 + 8;

/// Sends `header` and `payload` to `dest` with `tag`. A payload up to [`INLINE_MAX`] goes in
/// the same message; a larger one follows in pieces of at most the piece size, sent in place.
pub(crate) fn send(dest: i32, tag: i32, header: &[u8], payload: &[u8]) -> Result<()> {
    let open = open()?;
    let result = send_open(dest, tag, header, payload);
    drop(open);
    result
}

fn send_open(dest: i32, tag: i32, header: &[u8], payload: &[u8]) -> Result<()> {
    let world = WORLD
        .get()
        .ok_or_else(|| Error::protocol("MPI send before the job was joined"))?;
    let _one_at_a_time = world.sending[dest as usize]
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let inline =
        payload.len() <= INLINE_MAX && payload.len() + header.len() + TRAILER <= world.piece;
    let mut first =
        Vec::with_capacity(header.len() + TRAILER + if inline { payload.len() } else { 0 });
    // The payload first, so that the receiver keeps it where it landed and copies out only
    // the header.
    if inline {
        first.extend_from_slice(payload);
    }
    first.extend_from_slice(header);
    first.extend_from_slice(&(header.len() as u32).to_le_bytes());
    first.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    raw_send(dest, tag, &first)?;
    if !inline {
        for piece in payload.chunks(world.piece) {
            raw_send(dest, tag, piece)?;
        }
    }
    Ok(())
}

fn raw_send(dest: i32, tag: i32, bytes: &[u8]) -> Result<()> {
    mpi::send(dest, tag, bytes, false).map_err(mpi_error)
}

/// An MPI failure as the crate's error.
fn mpi_error(error: MpiError) -> Error {
    Error::new(Kind::Mpi(error.to_string()))
}

/// The order to stop, from rank 0 to every other rank when the job ends: an empty header, which
/// no pool request is.
const STOP: &[u8] = &[];

/// The payload of [`STOP`] when ranks were lost: the job must not wait for them at its end.
const STOP_WITHOUT_LOST: &[u8] = &[1];

/// On a worker rank, waits for rank 0's next request to its pools; `None` when the job ends.
pub(crate) fn next_request() -> Result<Option<Message>> {
    let message = recv(0, TAG_TO_RANK)?;
    if message.header.as_slice() != STOP {
        return Ok(Some(message));
    }
    if message.payload.as_slice() == STOP_WITHOUT_LOST {
        // Some rank died: a world barrier or `MPI_Finalize` would wait for it.
        SOME_LOST.store(true, Ordering::SeqCst);
    }
    Ok(None)
}

/// Worker ranks found gone, on rank 0: left out of every later pool and of the job's end.
static LOST: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Whether a rank of the job was lost: then the job ends without a world barrier or
/// `MPI_Finalize`, which would wait for the dead.
static SOME_LOST: AtomicBool = AtomicBool::new(false);

/// On rank 0: `rank` cannot be reached any more (`why`). Said once on standard error; later
/// pools leave the rank out, and the job's end does not wait for it.
pub(crate) fn lose_rank(rank: i32, why: &str) {
    let mut lost = LOST.lock().unwrap_or_else(PoisonError::into_inner);
    if lost.contains(&rank) {
        return;
    }
    lost.push(rank);
    SOME_LOST.store(true, Ordering::SeqCst);
    eprintln!("mp: MPI rank {rank} was lost ({why}); the job goes on without it");
}

/// The worker ranks lost so far, in the order they were lost.
pub(crate) fn lost_ranks() -> Vec<i32> {
    LOST.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// The worker ranks a new pool can use: every rank but 0 and the lost ones.
pub(crate) fn live_worker_ranks() -> Vec<i32> {
    let lost = lost_ranks();
    world().map_or_else(Vec::new, |world| {
        (1..world.size)
            .filter(|rank| !lost.contains(rank))
            .collect()
    })
}

/// Waits for the next message from `source` with `tag`. Only one thread receives on each
/// source and tag, so pieces follow their first message.
pub(crate) fn recv(source: i32, tag: i32) -> Result<Message> {
    let mut backoff = Backoff::new();
    loop {
        if let Some(message) = try_recv(source, tag)? {
            return Ok(message);
        }
        backoff.wait();
    }
}

/// The next message from `source` with `tag` if one has arrived.
pub(crate) fn try_recv(source: i32, tag: i32) -> Result<Option<Message>> {
    let open = open()?;
    let Some((first, _)) = probe_recv(Some(source), tag)? else {
        return Ok(None);
    };
    let message = finish_recv(first, source, tag);
    drop(open);
    message.map(Some)
}

/// Waits for a message with `tag` from any rank; returns its sender too.
fn recv_any(tag: i32) -> Result<(i32, Message)> {
    let mut backoff = Backoff::new();
    loop {
        let open = open()?;
        if let Some((first, source)) = probe_recv(None, tag)? {
            let message = finish_recv(first, source, tag)?;
            drop(open);
            return Ok((source, message));
        }
        drop(open);
        backoff.wait();
    }
}

/// Splits a first message into header and payload, receiving the payload's pieces if it did
/// not come inline.
fn finish_recv(mut first: Vec<u8>, source: i32, tag: i32) -> Result<Message> {
    let malformed = || Error::protocol(format!("a malformed MPI message from rank {source}"));
    let trailer_at = first.len().checked_sub(TRAILER).ok_or_else(malformed)?;
    let header_len = u32::from_le_bytes(
        first[trailer_at..trailer_at + 4]
            .try_into()
            .unwrap_or_default(),
    ) as usize;
    let payload_len = u64::from_le_bytes(first[trailer_at + 4..].try_into().unwrap_or_default());
    let payload_len = usize::try_from(payload_len).map_err(|_| malformed())?;
    let header_at = trailer_at.checked_sub(header_len).ok_or_else(malformed)?;
    let header = first[header_at..trailer_at].to_vec();
    if header_at == payload_len {
        first.truncate(payload_len);
        return Ok(Message {
            header,
            payload: first,
        });
    }
    if header_at != 0 {
        return Err(malformed());
    }
    let mut payload = Vec::new();
    payload.try_reserve_exact(payload_len).map_err(|_| {
        Error::protocol(format!(
            "cannot allocate {payload_len} bytes for a message from rank {source}"
        ))
    })?;
    let mut backoff = Backoff::new();
    while payload.len() < payload_len {
        match probe_into(source, tag, &mut payload, payload_len)? {
            true => backoff = Backoff::new(),
            false => backoff.wait(),
        }
    }
    Ok(Message { header, payload })
}

/// Receives the next message from `source` (any rank if `None`) with `tag` into a new buffer,
/// if one has arrived; returns it and its sender.
fn probe_recv(source: Option<i32>, tag: i32) -> Result<Option<(Vec<u8>, i32)>> {
    let Some(matched) = try_match(source, Some(tag))? else {
        return Ok(None);
    };
    let source = matched.source;
    let mut buf = Vec::new();
    matched.receive_onto(&mut buf).map_err(mpi_error)?;
    Ok(Some((buf, source)))
}

/// Receives the next piece from `source` with `tag` onto the end of `payload`, if one has
/// arrived; false if none has yet.
fn probe_into(source: i32, tag: i32, payload: &mut Vec<u8>, total: usize) -> Result<bool> {
    let Some(matched) = try_match(Some(source), Some(tag))? else {
        return Ok(false);
    };
    if matched.len > total - payload.len() {
        return Err(Error::protocol(format!(
            "rank {source} sent more pieces than its message announced"
        )));
    }
    // The payload's whole length was reserved before the first piece: no reallocation here.
    matched.receive_onto(payload).map_err(mpi_error)?;
    Ok(true)
}

fn try_match(source: Option<i32>, tag: Option<i32>) -> Result<Option<Matched>> {
    mpi::try_match(source, tag).map_err(mpi_error)
}

/// A read hold on MPI: it stays initialized until the hold is dropped.
fn open() -> Result<RwLockReadGuard<'static, bool>> {
    let open = OPEN.read().unwrap_or_else(PoisonError::into_inner);
    if *open {
        Ok(open)
    } else {
        Err(Error::new(Kind::Closed))
    }
}

/// Says why on stderr, then ends the whole job with `code` (MPI_Abort): for errors that make
/// the job meaningless, such as ranks that run different builds.
fn abort(why: &str, code: i32) -> ! {
    use std::io::Write as _;
    // One write, then a moment before the abort: a launcher forwards a rank's stderr in its
    // own time, and MPICH's drops what it has not forwarded yet when the abort reaches it (CI
    // saw this message lost, or cut to "mp: ", 6 times in 100 under load).
    let _ = std::io::stderr().write_all(format!("mp: {why}\n").as_bytes());
    std::thread::sleep(ABORT_GRACE);
    mpi::abort(code)
}

/// How long a rank that aborts the job waits for its launcher to pass its last words on.
const ABORT_GRACE: Duration = Duration::from_millis(300);

/// Rank 0's exit handler: every other rank stops, and the job ends cleanly. `status` is the
/// process's exit status.
fn end_job(status: i32) {
    if WORLD.get().is_none() {
        return;
    }
    // Waits until no pool thread is inside MPI; after this none enters it again.
    let mut open = OPEN.write().unwrap_or_else(PoisonError::into_inner);
    if !*open {
        return;
    }
    let live = live_worker_ranks();
    let stop = if SOME_LOST.load(Ordering::SeqCst) {
        STOP_WITHOUT_LOST
    } else {
        &[]
    };
    for &rank in &live {
        let _ = send_open(rank, TAG_TO_RANK, STOP, stop);
    }
    // A rank that never says goodbye (stopped, or stuck in a task) must not keep rank 0 from
    // ending: past this, the job is finalized without it.
    let deadline = Instant::now() + Duration::from_secs(5);
    'ranks: for rank in live {
        // Replies still on their way are dropped: no one waits for them any more.
        let mut backoff = Backoff::new();
        loop {
            if Instant::now() >= deadline {
                eprintln!(
                    "mp: rank {rank} did not answer the end of the job in 5 s; ending anyway"
                );
                break 'ranks;
            }
            match try_match(Some(rank), None) {
                Ok(Some(matched)) => {
                    let (bye, log) = (matched.tag == TAG_BYE, matched.tag == TAG_LOG);
                    let mut message = Vec::new();
                    // Log records the rank sent before its goodbye are still logged.
                    if matched.receive_onto(&mut message).is_ok() && log {
                        crate::runtime::logs::from_rank(rank, &message);
                    }
                    if bye {
                        break;
                    }
                    backoff = Backoff::new();
                }
                Ok(None) => backoff.wait(),
                Err(_) => break,
            }
        }
    }
    *open = false;
    crate::runtime::logs::flush(LOG_FLUSH);
    end_mpi(status);
}

/// How long a rank's end waits for the log records still queued to be passed on: on a worker
/// rank, sent to rank 0; on rank 0, to its logger.
pub(crate) const LOG_FLUSH: Duration = Duration::from_secs(1);

/// On a worker rank: sends one log record (encoded) to rank 0; false when it was not sent,
/// for the rank has said goodbye, or MPI failed. Rank 0 receives on a thread of its own,
/// whatever its logger does, so this does not wait on the logger.
pub(crate) fn send_log(record: &[u8]) -> bool {
    let closed = LOG_SENDS_CLOSED
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if *closed {
        return false;
    }
    let Ok(_open) = open() else {
        return false;
    };
    // Not under the destination's lock: a record is one message on a tag of its own, which
    // cannot interleave with the pieces of a reply.
    mpi::send(0, TAG_LOG, record, false).is_ok()
}

/// Set, on a worker rank, once no log record may be sent: rank 0 stops receiving from a
/// rank at its goodbye, so a record sent later could wait forever for it. Held while one is
/// sent, so that the goodbye follows every record sent.
static LOG_SENDS_CLOSED: Mutex<bool> = Mutex::new(false);

/// On rank 0: the level to tell worker ranks when a pool opens there, 0 (none) to 5 (trace):
/// its logging's, when that is set up and the thread that takes the ranks' records runs.
pub(crate) fn log_level_for_ranks() -> u8 {
    let level = crate::runtime::logs::for_ranks();
    if level == 0 || !start_log_reader() {
        return 0;
    }
    level
}

/// Whether the thread that takes worker ranks' records on rank 0 runs; started at the first
/// call. One that cannot start is said once on standard error.
fn start_log_reader() -> bool {
    *LOG_READER.get_or_init(|| {
        let started = std::thread::Builder::new()
            .name("mp-rank-logs".into())
            .spawn(read_logs_forever);
        if let Err(error) = &started {
            eprintln!("mp: the logs of MPI ranks cannot reach this process's logger: {error}");
        }
        started.is_ok()
    })
}

static LOG_READER: OnceLock<bool> = OnceLock::new();

/// Rank 0's thread that takes worker ranks' records as they come, until MPI ends. It runs
/// none of the user's code: records are queued for the relay's logger thread.
fn read_logs_forever() {
    let mut sleep = LOG_POLL_FIRST;
    loop {
        let taken = match receive_logs(None, LOG_BATCH) {
            Ok(taken) => taken,
            Err(error) if error.is_closed() => return,
            // A lost rank can fail a receive from any rank (under ULFM): ask the others.
            Err(_) => live_worker_ranks()
                .into_iter()
                .map(|rank| receive_logs(Some(rank), LOG_BATCH).unwrap_or(0))
                .sum(),
        };
        if taken > 0 {
            sleep = LOG_POLL_FIRST;
        } else {
            std::thread::sleep(sleep);
            sleep = (sleep * 2).min(LOG_POLL_LONGEST);
        }
    }
}

/// How the thread that takes ranks' records polls: soon after one came, then less often. A
/// rank's record waits for it at most this long only when MPI sends it by rendezvous (large),
/// and a reply of the rank takes its records first anyway ([`settle_logs`]).
const LOG_POLL_FIRST: Duration = Duration::from_micros(100);
const LOG_POLL_LONGEST: Duration = Duration::from_millis(10);

/// The most records one look takes while other threads wait for it.
const LOG_BATCH: usize = 256;

/// Takes up to `most` log records that have arrived from `source` (any rank if `None`) into
/// the log relay; returns how many. One thread at a time, so that records are queued in the
/// order they arrived.
fn receive_logs(source: Option<i32>, most: usize) -> Result<usize> {
    let _open = open()?;
    let _one_at_a_time = RECEIVING_LOGS
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let mut taken = 0;
    while taken < most {
        let Some(matched) = try_match(source, Some(TAG_LOG))? else {
            break;
        };
        let rank = matched.source;
        let mut message = Vec::new();
        matched.receive_onto(&mut message).map_err(mpi_error)?;
        crate::runtime::logs::from_rank(rank, &message);
        taken += 1;
    }
    Ok(taken)
}

static RECEIVING_LOGS: Mutex<()> = Mutex::new(());

/// The most records a reply takes before it is delivered: as many as the relay queues, so
/// that a rank that floods keeps no reply waiting.
const SETTLE_MOST: usize = 4096;

/// On rank 0, before a reply of `rank` is delivered: takes the records the rank sent before
/// it, and waits for them to be logged as a local worker's reply does (see
/// [`crate::runtime::logs::settle_rank`]). Nothing to do where no rank was told to send records.
pub(crate) fn settle_logs(rank: i32) {
    if LOG_READER.get() != Some(&true) {
        return;
    }
    if receive_logs(Some(rank), SETTLE_MOST).is_ok() {
        crate::runtime::logs::settle_rank(rank);
    }
}

/// A worker rank's goodbye: rank 0 stops draining it after this. A synchronous send, which
/// returns only once rank 0 has it: a buffered one may still be waiting in this rank's
/// transport (UCX over TCP) when `MPI_Finalize` blocks for rank 0, which would then never get
/// it.
pub(crate) fn say_goodbye() -> Result<()> {
    // After a record being sent, if any: rank 0 has every record sent before its goodbye.
    *LOG_SENDS_CLOSED
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = true;
    let _open = open()?;
    mpi::send(0, TAG_BYE, &[], true).map_err(mpi_error)
}

/// Ends MPI in a worker rank, once its pools are gone; `code` is the rank's exit code.
fn finalize(code: i32) {
    let mut open = OPEN.write().unwrap_or_else(PoisonError::into_inner);
    if *open {
        *open = false;
        end_mpi(code);
    }
}

/// Every rank meets the others, then finalizes. Called with MPI closed to every other thread.
///
/// The barrier keeps each rank's transport progressing until all have arrived. Even so, UCX's
/// TCP transport (UCX 1.13, as in Debian 12's MPICH) now and then never finishes closing its
/// connections in `MPI_Finalize` (openucx/ucx#8738): one rank spins there while the others
/// wait for it in the launcher. By then every task is done and every rank has said goodbye,
/// so past [`FINALIZE_GRACE`] the process leaves without MPI, with its own exit status,
/// rather than hold the job forever.
fn end_mpi(status: i32) {
    if SOME_LOST.load(Ordering::SeqCst) {
        // The barrier and `MPI_Finalize` would wait for the dead: leave without them. Open
        // MPI's launcher then reports the job's failure with the lost rank.
        return;
    }
    std::thread::spawn(move || {
        std::thread::sleep(FINALIZE_GRACE);
        eprintln!(
            "mp: MPI_Finalize did not return within {FINALIZE_GRACE:?} (a known hang of UCX's \
             TCP transport); exiting without it, with status {status}"
        );
        // Without running exit handlers again: the work is done and MPI is stuck.
        sys::process::exit_now(status);
    });
    // No other thread of this process is inside MPI or will call it again (the caller closed
    // OPEN), and every rank comes here once.
    mpi::barrier_and_finalize();
}

/// How long `MPI_Finalize` may take before a rank leaves without it; see [`end_mpi`].
const FINALIZE_GRACE: Duration = Duration::from_secs(5);

/// How a poll waits between tries: spinning at first, then sleeping longer each time.
pub(crate) struct Backoff {
    since: Instant,
    sleep: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff {
            since: Instant::now(),
            sleep: FIRST_SLEEP,
        }
    }

    pub(crate) fn wait(&mut self) {
        if self.since.elapsed() < SPIN_FOR {
            std::thread::yield_now();
        } else {
            std::thread::sleep(self.sleep);
            self.sleep = (self.sleep * 2).min(LONGEST_SLEEP);
        }
    }
}
