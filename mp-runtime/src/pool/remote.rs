//! A pool whose workers are the other ranks of an MPI job (feature `mpi`).
//!
//! On rank 0, one driver thread per rank takes tasks from the pool's queue (the same queue and
//! tasks as a local pool) and sends each, still encoded, to its rank. Each rank runs the tasks
//! in a local pool of its own, on its own node, so a task that crashes its worker becomes that
//! task's error and the rank lives on; the rank sends back the encoded outcomes, or the error,
//! and the driver hands them to the task's sink as a local worker's reply would be. So results,
//! order, errors and panics are the local pool's.
//!
//! Rank 0 tags each pool's replies with the pool's own tag, so that drivers of several pools
//! talking to one rank each get their own.

use std::borrow::Cow;
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use super::scheduler::{Next, Placement, Shared, Slot, Task, wait_started};
use crate::base::{Error, Kind, Result};
use crate::runtime::cluster::{self, Backoff, FIRST_POOL_TAG, TAG_LIMIT, TAG_TO_RANK};
use crate::runtime::sandbox::SandboxReport;
use crate::runtime::spawn::StartMethod;
use crate::wire::codec;
use crate::wire::protocol::{Failure, Outcomes, SandboxRules};

/// From rank 0 to a worker rank. Payloads (argument records, an initializer's arguments)
/// travel beside the encoded request.
#[derive(Serialize, Deserialize)]
pub(super) enum ToRank<'a> {
    /// Start a local pool for pool `pool`; the payload is the initializer's arguments.
    Open { pool: u32, settings: Settings },
    /// Run `function` on each argument record in the payload; answer with `seq`.
    Task {
        pool: u32,
        seq: u64,
        function: Cow<'a, str>,
        count: u32,
    },
    /// Let the pool's work finish (or stop it now, with `terminate`), then answer `Closed`.
    Close { pool: u32, terminate: bool },
}

/// From a worker rank to rank 0, on the pool's tag.
#[derive(Serialize, Deserialize)]
pub(super) enum FromRank {
    /// The local pool runs, with this many processes, whose kernel enforces this of the
    /// pool's sandbox.
    Opened {
        workers: u32,
        sandbox: Option<SandboxReport>,
    },
    /// The outcome records of task `seq` are the payload.
    Reply { seq: u64 },
    /// Task `seq` (or, for `Open`, the pool) failed as a whole.
    Failed { seq: u64, failure: Failure },
    /// The pool is gone; nothing more comes on its tag.
    Closed,
}

/// A pool's settings, as each rank builds its local pool from them.
#[derive(Serialize, Deserialize, Clone)]
pub(super) struct Settings {
    /// Processes per rank; by default each rank's cores.
    pub(super) processes: Option<u64>,
    pub(super) max_tasks_per_child: Option<u64>,
    pub(super) retries: u32,
    pub(super) memory_limit: Option<u64>,
    /// The initializer's id and argument count (its arguments are the payload).
    pub(super) initializer: Option<(String, u32)>,
    pub(super) fork_server: bool,
    /// Rank 0's log level, 0 (none) to 5 (trace): the rank sends it records at or above it.
    pub(super) log_level: u8,
    /// Variables set in the workers' environment, as bytes.
    pub(super) env: Vec<(Vec<u8>, Vec<u8>)>,
    pub(super) max_memory_growth: Option<u64>,
    /// The sandbox of the rank's workers (the rank itself is not sandboxed).
    pub(super) sandbox: Option<SandboxRules>,
}

/// The tag of a pool's replies.
pub(super) fn tag_of(pool: u32) -> i32 {
    FIRST_POOL_TAG + (pool % (TAG_LIMIT - FIRST_POOL_TAG) as u32) as i32
}

/// Whether a pool built with `placement` runs on the other ranks.
pub(super) fn wanted(placement: Placement) -> Result<bool> {
    let ranks = cluster::world().map(|world| (world.rank, world.size));
    match (placement, ranks) {
        (Placement::Local, _) => Ok(false),
        // Ranks that were lost are left out; with none left, a pool is local.
        (Placement::Auto, Some((0, _))) => Ok(!cluster::live_worker_ranks().is_empty()),
        (Placement::Auto, _) => Ok(false),
        (Placement::Mpi, Some((0, _))) if !cluster::live_worker_ranks().is_empty() => Ok(true),
        (Placement::Mpi, Some((0, size))) if size > 1 => Err(Error::usage(format!(
            "an MPI pool needs worker ranks, and every one of this job's was lost (ranks {:?})",
            cluster::lost_ranks()
        ))),
        (Placement::Mpi, Some((0, _))) => Err(Error::usage(
            "an MPI pool needs worker ranks, and this job has only rank 0: start it with \
             `mpirun -n N` and N of 2 or more",
        )),
        (Placement::Mpi, Some((rank, _))) => Err(Error::usage(format!(
            "an MPI pool is built on rank 0; this is rank {rank}, which serves pools"
        ))),
        (Placement::Mpi, None) => Err(Error::usage(
            "an MPI pool needs an MPI launcher: run the program as `mpirun -n N ./app` (or \
             `srun`), or use `Pool::builder().local()`",
        )),
    }
}

/// An MPI pool's drivers, as [`start`] left them.
pub(super) struct Started {
    pub(super) drivers: Vec<JoinHandle<()>>,
    /// The worker processes over the ranks, less those of a rank lost later.
    pub(super) processes: Arc<AtomicUsize>,
    /// The first failure to start, if any.
    pub(super) failure: Option<Error>,
}

/// Opens the pool on every other rank, with `per_rank` processes on each (by default each
/// rank's cores), and starts one driver thread per rank.
pub(super) fn start(per_rank: Option<usize>, shared: &Arc<Shared>) -> Result<Started> {
    static POOLS: AtomicU32 = AtomicU32::new(0);
    let pool = POOLS.fetch_add(1, Ordering::Relaxed);
    let (initializer, init_args) = match &shared.config.initializer {
        Some((entry, args)) if args.has_fds() => {
            return Err(Error::usage(format!(
                "the initializer `{}` of an MPI pool takes a handle (pipe, queue, lock or shared \
                 memory), which cannot cross to another machine",
                entry.path
            )));
        }
        Some((entry, args)) => (
            Some((entry.id.to_string(), args.len() as u32)),
            args.records()?.into_owned(),
        ),
        None => (None, Vec::new()),
    };
    let settings = Settings {
        processes: per_rank.map(|n| n as u64),
        max_tasks_per_child: shared.config.max_tasks_per_child.map(|n| n as u64),
        retries: shared.config.retries,
        memory_limit: shared.config.memory_limit,
        initializer,
        fork_server: shared.config.start_method == StartMethod::ForkServer,
        log_level: cluster::log_level_for_ranks(),
        env: (shared.config.env.iter())
            .map(|(name, value)| (name.as_bytes().to_vec(), value.as_bytes().to_vec()))
            .collect(),
        max_memory_growth: shared.config.max_memory_growth,
        sandbox: (shared.config.sandbox.as_ref()).map(|s| s.sandbox.rules()),
    };
    let open = Arc::new((codec::encode(&ToRank::Open { pool, settings })?, init_args));
    let workers = Arc::new(AtomicUsize::new(0));
    let (ready, started) = mpsc::channel();
    let mut drivers = Vec::new();
    let mut failure = None;
    for rank in cluster::live_worker_ranks() {
        let driver = RankDriver {
            shared: shared.clone(),
            slot: shared.add_slot(),
            rank,
            pool,
            tag: tag_of(pool),
        };
        let (open, ready, workers) = (open.clone(), ready.clone(), workers.clone());
        match std::thread::Builder::new()
            .name(format!("mp-pool-rank-{rank}"))
            .spawn(move || driver.run(&open, ready, &workers))
        {
            Ok(handle) => drivers.push(handle),
            Err(e) => {
                failure = Some(Error::io("cannot start a pool thread", e));
                break;
            }
        }
    }
    drop(ready);
    wait_started(&started, drivers.len(), &mut failure);
    Ok(Started {
        drivers,
        processes: workers,
        failure,
    })
}

/// Rank 0's side of one pool on one rank.
struct RankDriver {
    shared: Arc<Shared>,
    /// The driver's slot in the pool.
    slot: Arc<Slot>,
    rank: i32,
    pool: u32,
    tag: i32,
}

impl RankDriver {
    fn run(
        self,
        open: &(Vec<u8>, Vec<u8>),
        ready: mpsc::Sender<Result<()>>,
        workers: &AtomicUsize,
    ) {
        let opened =
            cluster::send(self.rank, TAG_TO_RANK, &open.0, &open.1).and_then(|()| self.recv());
        let workers_here = match opened {
            Ok((
                FromRank::Opened {
                    workers: n,
                    sandbox,
                },
                _,
            )) => {
                if let (Some(sandboxing), Some(report)) = (&self.shared.config.sandbox, sandbox) {
                    sandboxing.record(report);
                }
                n as usize
            }
            Ok((FromRank::Failed { failure, .. }, _)) => {
                let _ = ready.send(Err(failure.into_error()));
                return;
            }
            Ok(_) => {
                let _ = ready.send(Err(Error::protocol(format!(
                    "MPI rank {} answered a new pool out of turn",
                    self.rank
                ))));
                return;
            }
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        };
        workers.fetch_add(workers_here, Ordering::SeqCst);
        let _ = ready.send(Ok(()));
        // Enough in flight that the rank's workers never wait for the next task.
        let depth = 2 * workers_here + 2;
        let mut in_flight = HashMap::new();
        if let Err(error) = self.relay_tasks(depth, &mut in_flight) {
            if !error.is_closed() {
                // The pool counts only the workers of the ranks it still has.
                workers.fetch_sub(workers_here, Ordering::SeqCst);
            }
            self.lost(error, in_flight);
        }
    }

    /// Feeds the rank and hands back its replies until the pool is closed and the rank says
    /// so. On failure, `in_flight` holds the tasks the rank had.
    fn relay_tasks(&self, depth: usize, in_flight: &mut HashMap<u64, Task>) -> Result<()> {
        let slot = self.slot.clone();
        let mut next_seq = 0;
        // Whether `Close` was sent, and with `terminate`.
        let mut closing: Option<bool> = None;
        let mut backoff = Backoff::new();
        loop {
            while closing.is_none() && in_flight.len() < depth {
                match self.shared.next(in_flight.is_empty()) {
                    Next::Task(task) => {
                        if self.send(&slot, task, next_seq, in_flight)? {
                            next_seq += 1;
                            backoff = Backoff::new();
                        }
                    }
                    Next::Idle => break,
                    Next::Exit => {
                        closing = Some(self.shared.is_terminated());
                        self.close(closing == Some(true))?;
                    }
                }
            }
            if closing != Some(true) && self.shared.is_terminated() {
                // Terminated with tasks in flight: the rank stops them now.
                closing = Some(true);
                self.close(true)?;
            }
            if in_flight.is_empty() && closing.is_none() {
                continue;
            }
            match cluster::try_recv(self.rank, self.tag) {
                Ok(Some(message)) => {
                    backoff = Backoff::new();
                    if self.take(&slot, message, closing.is_some(), in_flight)? {
                        return Ok(());
                    }
                }
                Ok(None) => backoff.wait(),
                Err(error) => return Err(error),
            }
        }
    }

    /// Sends `task` to the rank as number `seq`, unless it was cancelled, holds handles (which
    /// cannot cross to another machine) or has a time limit (which a rank's pool does not
    /// enforce): then it fails at once. Whether it was sent.
    fn send(
        &self,
        slot: &Arc<Slot>,
        task: Task,
        seq: u64,
        in_flight: &mut HashMap<u64, Task>,
    ) -> Result<bool> {
        if !task.control.start(slot) {
            task.finish(Err(Error::new(Kind::Cancelled)));
            return Ok(false);
        }
        if task.args.has_fds() {
            task.control.stop(slot);
            let error = Error::usage(format!(
                "the arguments of `{}` hold a handle (pipe, queue, lock or shared memory), which \
                 cannot cross to another MPI rank; use `Pool::builder().local()` for tasks that \
                 take handles",
                task.function.path
            ));
            task.finish(Err(error));
            return Ok(false);
        }
        if task.timeout.is_some() {
            task.control.stop(slot);
            let error = Error::usage(format!(
                "`{}` was given a time limit, which works on local pools only; use \
                 `Pool::builder().local()` for tasks with a time limit",
                task.function.path
            ));
            task.finish(Err(error));
            return Ok(false);
        }
        let request = ToRank::Task {
            pool: self.pool,
            seq,
            function: Cow::Borrowed(task.function.id),
            count: task.args.len() as u32,
        };
        let sent = codec::encode(&request).and_then(|header| {
            let records = task.args.records()?;
            cluster::send(self.rank, TAG_TO_RANK, &header, &records)
        });
        // In flight even if the send failed: the rank is then lost, and so is the task.
        in_flight.insert(seq, task);
        sent.map(|()| true)
    }

    /// Hands a message of the rank to the task it answers; true when it is the rank's word
    /// that the pool is closed (after `closing`, when `Close` was sent).
    fn take(
        &self,
        slot: &Arc<Slot>,
        message: cluster::Message,
        closing: bool,
        in_flight: &mut HashMap<u64, Task>,
    ) -> Result<bool> {
        let (seq, result) = match codec::decode::<FromRank>(&message.header)? {
            FromRank::Reply { seq } => (seq, Ok(message.payload)),
            FromRank::Failed { seq, failure } => (seq, Err(failure.into_error())),
            FromRank::Closed if closing => return Ok(true),
            _ => {
                return Err(Error::protocol(format!(
                    "MPI rank {} sent a pool message out of turn",
                    self.rank
                )));
            }
        };
        let Some(task) = in_flight.remove(&seq) else {
            return Err(Error::protocol(format!(
                "MPI rank {} answered a task it was not sent",
                self.rank
            )));
        };
        // What the task logged is logged before its caller has the result.
        cluster::settle_logs(self.rank);
        let reply = result.map(|bytes| {
            Outcomes::new(
                crate::wire::frame::Frame::from_bytes(bytes),
                task.args.len(),
            )
        });
        if task.control.stop(slot) {
            task.finish(reply);
        } else {
            task.finish(Err(Error::new(Kind::Cancelled)));
        }
        Ok(false)
    }

    fn close(&self, terminate: bool) -> Result<()> {
        let request = ToRank::Close {
            pool: self.pool,
            terminate,
        };
        cluster::send(self.rank, TAG_TO_RANK, &codec::encode(&request)?, &[])
    }

    /// Waits for the rank's next message on this pool's tag.
    fn recv(&self) -> Result<(FromRank, Vec<u8>)> {
        let message = cluster::recv(self.rank, self.tag)?;
        Ok((codec::decode(&message.header)?, message.payload))
    }

    /// The rank can no longer be reached: it is left out of every later pool, its tasks in
    /// flight run again on the other ranks while `retries` allow (else each fails), and the
    /// pool goes on with the other ranks; with none left, it stops taking work.
    fn lost(&self, error: Error, in_flight: HashMap<u64, Task>) {
        let closed = error.is_closed();
        if !closed {
            cluster::lose_rank(self.rank, &error.to_string());
        }
        let mut tasks: Vec<(u64, Task)> = in_flight.into_iter().collect();
        tasks.sort_by_key(|(seq, _)| *seq);
        let slot = &self.slot;
        let mut again = Vec::new();
        for (_, mut task) in tasks {
            if !closed && task.deaths < self.shared.config.retries && task.control.stop(slot) {
                task.deaths += 1;
                again.push(task);
                continue;
            }
            let failure = if closed {
                // MPI ended: the program is exiting.
                Error::new(Kind::Closed)
            } else {
                Error::new(Kind::RankLost {
                    function: task.function.path.to_string(),
                    rank: self.rank,
                    why: error.to_string(),
                })
            };
            task.finish(Err(failure));
        }
        // Before this driver counts as gone: if it was the last, the queue is then closed
        // with these tasks in it, and they fail as the pool's end.
        self.shared.requeue(again.into_iter());
        if self.shared.lose_driver() {
            self.shared.terminate();
        }
    }
}

/// Sends one message to rank 0; a failure is printed, since the job is ending anyway.
pub(super) fn reply_to(tag: i32, reply: &FromRank, payload: &[u8]) {
    let sent = codec::encode(reply).and_then(|header| cluster::send(0, tag, &header, payload));
    if let Err(error) = sent {
        if !error.is_closed() {
            eprintln!("mp: an MPI worker rank could not reply to rank 0: {error}");
        }
    }
}
