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
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use super::scheduler::{Control, Next, Shared, Sink, Task};
use super::{Placement, Pool, PoolBuilder};
use crate::bootstrap::StartMethod;
use crate::cluster::{self, Backoff, FIRST_POOL_TAG, TAG_LIMIT, TAG_TO_RANK};
use crate::codec;
use crate::error::{Error, Kind, Result};
use crate::registry;
use crate::worker::{Args, Failure, Outcomes};

/// From rank 0 to a worker rank. Payloads (argument records, an initializer's arguments)
/// travel beside the encoded request.
#[derive(Serialize, Deserialize)]
pub(crate) enum ToRank<'a> {
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
    /// The job ends: stop every pool and say goodbye.
    Shutdown,
}

/// From a worker rank to rank 0, on the pool's tag.
#[derive(Serialize, Deserialize)]
enum FromRank {
    /// The local pool runs, with this many processes.
    Opened { workers: u32 },
    /// The outcome records of task `seq` are the payload.
    Reply { seq: u64 },
    /// Task `seq` (or, for `Open`, the pool) failed as a whole.
    Failed { seq: u64, failure: Failure },
    /// The pool is gone; nothing more comes on its tag.
    Closed,
}

/// A pool's settings, as each rank builds its local pool from them.
#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct Settings {
    /// Processes per rank; by default each rank's cores.
    processes: Option<u64>,
    max_tasks_per_child: Option<u64>,
    retries: u32,
    memory_limit: Option<u64>,
    /// The initializer's id and argument count (its arguments are the payload).
    initializer: Option<(String, u32)>,
    fork_server: bool,
}

/// The tag of a pool's replies.
fn tag_of(pool: u32) -> i32 {
    FIRST_POOL_TAG + (pool % (TAG_LIMIT - FIRST_POOL_TAG) as u32) as i32
}

/// Whether a pool built with `placement` runs on the other ranks.
pub(super) fn wanted(placement: Placement) -> Result<bool> {
    let ranks = cluster::world().map(|world| (world.rank, world.size));
    match (placement, ranks) {
        (Placement::Local, _) => Ok(false),
        (Placement::Auto, Some((0, size))) => Ok(size > 1),
        (Placement::Auto, _) => Ok(false),
        (Placement::Mpi, Some((0, size))) if size > 1 => Ok(true),
        (Placement::Mpi, Some((0, _))) => Err(Error::new(Kind::Usage(
            "an MPI pool needs worker ranks, and this job has only rank 0: start it with \
             `mpirun -n N` and N of 2 or more"
                .into(),
        ))),
        (Placement::Mpi, Some((rank, _))) => Err(Error::new(Kind::Usage(format!(
            "an MPI pool is built on rank 0; this is rank {rank}, which serves pools"
        )))),
        (Placement::Mpi, None) => Err(Error::new(Kind::Usage(
            "an MPI pool needs an MPI launcher: run the program as `mpirun -n N ./app` (or \
             `srun`), or use `Pool::builder().local()`"
                .into(),
        ))),
    }
}

/// Opens the pool on every other rank and starts one driver thread per rank.
pub(super) fn build(builder: PoolBuilder, shared: Arc<Shared>) -> Result<Pool> {
    static POOLS: AtomicU32 = AtomicU32::new(0);
    let pool = POOLS.fetch_add(1, Ordering::Relaxed);
    let (initializer, init_args) = match &shared.config.initializer {
        Some((entry, args)) if args.has_fds() => {
            return Err(Error::new(Kind::Usage(format!(
                "the initializer `{}` of an MPI pool takes a handle (pipe, queue, lock or shared \
                 memory), which cannot cross to another machine",
                entry.path
            ))));
        }
        Some((entry, args)) => (
            Some((entry.id.to_string(), args.len() as u32)),
            args.records()?.into_owned(),
        ),
        None => (None, Vec::new()),
    };
    let settings = Settings {
        processes: builder.processes.map(|n| n as u64),
        max_tasks_per_child: builder.max_tasks_per_child.map(|n| n as u64),
        retries: builder.retries,
        memory_limit: builder.memory_limit,
        initializer,
        fork_server: shared.config.start_method == StartMethod::ForkServer,
    };
    let open = Arc::new((codec::encode(&ToRank::Open { pool, settings })?, init_args));
    let workers = Arc::new(AtomicUsize::new(0));
    let (ready, started) = mpsc::channel();
    let mut drivers = Vec::new();
    let mut failure = None;
    let size = cluster::world().map_or(0, |world| world.size);
    for rank in 1..size {
        let driver = Driver {
            shared: shared.clone(),
            slot: rank as usize - 1,
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
    super::wait_started(&started, drivers.len(), &mut failure);
    let pool = Pool {
        processes: workers.load(Ordering::SeqCst),
        shared,
        drivers: std::sync::Mutex::new(drivers),
    };
    match failure {
        Some(error) => Err(error),
        None => Ok(pool),
    }
}

/// Rank 0's side of one pool on one rank.
struct Driver {
    shared: Arc<Shared>,
    /// The driver's slot in the pool (the rank's number less one).
    slot: usize,
    rank: i32,
    pool: u32,
    tag: i32,
}

impl Driver {
    fn run(
        self,
        open: &(Vec<u8>, Vec<u8>),
        ready: mpsc::Sender<Result<()>>,
        workers: &AtomicUsize,
    ) {
        let opened =
            cluster::send(self.rank, TAG_TO_RANK, &open.0, &open.1).and_then(|()| self.recv());
        let workers_here = match opened {
            Ok((FromRank::Opened { workers: n }, _)) => n as usize,
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
        if let Err(error) = self.serve(depth, &mut in_flight) {
            self.lost(error, in_flight);
        }
    }

    /// Feeds the rank and hands back its replies until the pool is closed and the rank says
    /// so. On failure, `in_flight` holds the tasks the rank had.
    fn serve(&self, depth: usize, in_flight: &mut HashMap<u64, Task>) -> Result<()> {
        let slot = self.shared.slots[self.slot].clone();
        let mut next_seq = 0;
        // Whether `Close` was sent, and with `terminate`.
        let mut closing: Option<bool> = None;
        let mut backoff = Backoff::new();
        loop {
            while closing.is_none() && in_flight.len() < depth {
                match self.shared.next(in_flight.is_empty()) {
                    Next::Task(task) => {
                        if !task.control.start(&slot) {
                            task.finish(Err(Error::new(Kind::Cancelled)));
                            continue;
                        }
                        if task.args.has_fds() {
                            task.control.stop(&slot);
                            let error = Error::new(Kind::Usage(format!(
                                "the arguments of `{}` hold a handle (pipe, queue, lock or \
                                 shared memory), which cannot cross to another MPI rank; use \
                                 `Pool::builder().local()` for tasks that take handles",
                                task.function.path
                            )));
                            task.finish(Err(error));
                            continue;
                        }
                        let request = ToRank::Task {
                            pool: self.pool,
                            seq: next_seq,
                            function: Cow::Borrowed(task.function.id),
                            count: task.args.len() as u32,
                        };
                        let sent = codec::encode(&request).and_then(|header| {
                            let records = task.args.records()?;
                            cluster::send(self.rank, TAG_TO_RANK, &header, &records)
                        });
                        in_flight.insert(next_seq, task);
                        next_seq += 1;
                        sent?;
                        backoff = Backoff::new();
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
                    let (seq, result) = match codec::decode::<FromRank>(&message.header) {
                        Ok(FromRank::Reply { seq }) => (seq, Ok(message.payload)),
                        Ok(FromRank::Failed { seq, failure }) => (seq, Err(failure.into_error())),
                        Ok(FromRank::Closed) if closing.is_some() => return Ok(()),
                        Ok(_) => {
                            let error = Error::protocol(format!(
                                "MPI rank {} sent a pool message out of turn",
                                self.rank
                            ));
                            return Err(error);
                        }
                        Err(error) => return Err(error),
                    };
                    let Some(task) = in_flight.remove(&seq) else {
                        let error = Error::protocol(format!(
                            "MPI rank {} answered a task it was not sent",
                            self.rank
                        ));
                        return Err(error);
                    };
                    let reply = result.map(|bytes| {
                        Outcomes::new(crate::channel::Frame::from_bytes(bytes), task.args.len())
                    });
                    if task.control.stop(&slot) {
                        task.finish(reply);
                    } else {
                        task.finish(Err(Error::new(Kind::Cancelled)));
                    }
                }
                Ok(None) => backoff.wait(),
                Err(error) => return Err(error),
            }
        }
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

    /// The rank can no longer be reached: its tasks in flight fail, and the pool goes on with
    /// the other ranks; with none left, it stops taking work.
    fn lost(&self, error: Error, in_flight: HashMap<u64, Task>) {
        let closed = error.is_closed();
        let mut tasks: Vec<(u64, Task)> = in_flight.into_iter().collect();
        tasks.sort_by_key(|(seq, _)| *seq);
        for (_, task) in tasks {
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
        if self.shared.lose_driver() {
            self.shared.terminate();
        }
    }
}

/// A worker rank's life: serves pools for rank 0 until the job ends. Returns the exit code.
pub(crate) fn serve_rank() -> i32 {
    let mut pools: HashMap<u32, Arc<Pool>> = HashMap::new();
    // Pools being closed, each by its own thread.
    let mut closers: Vec<(u32, JoinHandle<()>)> = Vec::new();
    let code = loop {
        let message = match cluster::recv(0, TAG_TO_RANK) {
            Ok(message) => message,
            Err(error) => {
                eprintln!("mp: an MPI worker rank lost rank 0: {error}");
                break 70;
            }
        };
        let request = match codec::decode::<ToRank>(&message.header) {
            Ok(request) => request,
            Err(error) => {
                eprintln!("mp: an MPI worker rank got a request it cannot read: {error}");
                break 70;
            }
        };
        match request {
            ToRank::Open { pool, settings } => {
                let reply = match open_local(&settings, message.payload) {
                    Ok(local) => {
                        let workers = local.processes() as u32;
                        pools.insert(pool, Arc::new(local));
                        FromRank::Opened { workers }
                    }
                    Err(error) => FromRank::Failed {
                        seq: 0,
                        failure: Failure::from(error),
                    },
                };
                reply_to(tag_of(pool), &reply, &[]);
            }
            ToRank::Task {
                pool,
                seq,
                function,
                count,
            } => {
                let sink = Arc::new(Reply { tag: tag_of(pool) });
                let submitted = match (pools.get(&pool), registry::lookup_id(&function)) {
                    (Some(local), Ok(entry)) => {
                        Args::from_records(entry.id, &message.payload, count).and_then(|args| {
                            local.shared.submit([Task {
                                function: entry,
                                args,
                                deaths: 0,
                                index: seq as usize,
                                sink: sink.clone(),
                                control: Arc::new(Control::default()),
                            }])
                        })
                    }
                    (None, _) => Err(Error::protocol(format!(
                        "rank 0 sent a task for pool {pool}, which this rank does not have"
                    ))),
                    (_, Err(error)) => Err(error),
                };
                if let Err(error) = submitted {
                    sink.deliver(seq as usize, Err(error));
                }
            }
            ToRank::Close { pool, terminate } => {
                // Pools whose closing finished are gone for good.
                closers.retain(|(id, closer)| {
                    let running = !closer.is_finished();
                    if !running {
                        pools.remove(id);
                    }
                    running
                });
                let Some(local) = pools.get(&pool).cloned() else {
                    continue;
                };
                if terminate {
                    local.terminate();
                }
                if !closers.iter().any(|(id, _)| *id == pool) {
                    // The pool's work may take long: close it beside this loop.
                    let closer = std::thread::spawn(move || {
                        local.close();
                        let _ = local.join();
                        reply_to(tag_of(pool), &FromRank::Closed, &[]);
                    });
                    closers.push((pool, closer));
                }
            }
            ToRank::Shutdown => break 0,
        }
    };
    // The job ends: pools stop now; their tasks' failures go to rank 0, which drops them.
    for local in pools.values() {
        local.terminate();
    }
    drop(pools);
    for (_, closer) in closers {
        let _ = closer.join();
    }
    if let Err(error) = cluster::say_goodbye() {
        eprintln!("mp: an MPI worker rank could not say goodbye to rank 0: {error}");
    }
    code
}

/// Builds this rank's local pool for one of rank 0's pools.
fn open_local(settings: &Settings, init_args: Vec<u8>) -> Result<Pool> {
    let mut builder = Pool::builder().local().retries(settings.retries);
    builder.processes = settings.processes.map(|n| n as usize);
    builder.max_tasks_per_child = settings.max_tasks_per_child.map(|n| n as usize);
    builder.memory_limit = settings.memory_limit;
    if settings.fork_server {
        builder = builder.start_method(StartMethod::ForkServer);
    } else {
        builder = builder.start_method(StartMethod::Spawn);
    }
    if let Some((id, count)) = &settings.initializer {
        builder.initializer = Some(
            registry::lookup_id(id)
                .and_then(|entry| Ok((entry, Args::from_records(entry.id, &init_args, *count)?))),
        );
    }
    builder.build()
}

/// Sends one message to rank 0; a failure is printed, since the job is ending anyway.
fn reply_to(tag: i32, reply: &FromRank, payload: &[u8]) {
    let sent = codec::encode(reply).and_then(|header| cluster::send(0, tag, &header, payload));
    if let Err(error) = sent {
        if !error.is_closed() {
            eprintln!("mp: an MPI worker rank could not reply to rank 0: {error}");
        }
    }
}

/// Where a worker rank's task results go: back to rank 0, on the pool's tag.
struct Reply {
    tag: i32,
}

impl Sink for Reply {
    fn deliver(&self, index: usize, result: Result<Outcomes>) {
        let seq = index as u64;
        match result {
            Ok(outcomes) if !outcomes.has_fds() => {
                reply_to(self.tag, &FromRank::Reply { seq }, outcomes.bytes());
            }
            Ok(_) => {
                let failure = Failure::Usage(
                    "a result holds a handle (pipe, queue, lock or shared memory), which cannot \
                     cross to another MPI rank; return plain data from tasks of an MPI pool"
                        .into(),
                );
                reply_to(self.tag, &FromRank::Failed { seq, failure }, &[]);
            }
            Err(error) => {
                let failure = Failure::from(error);
                reply_to(self.tag, &FromRank::Failed { seq, failure }, &[]);
            }
        }
    }
}
