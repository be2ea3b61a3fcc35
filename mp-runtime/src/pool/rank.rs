//! A worker rank's life (feature `mpi`): it serves rank 0's pools until the job ends. Each of
//! rank 0's pools becomes a local pool here, whose tasks come from rank 0 over MPI and whose
//! outcomes go back to it, still encoded; see [`super::remote`] for rank 0's side.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::Pool;
use super::remote::{FromRank, Settings, ToRank, reply_to, tag_of};
use super::scheduler::{Control, Sink, Task};
use crate::base::{Error, Result};
use crate::runtime::cluster;
use crate::runtime::logs;
use crate::runtime::registry;
use crate::runtime::sandbox::Sandbox;
use crate::runtime::spawn::StartMethod;
use crate::wire::codec;
use crate::wire::protocol::{Args, Failure, Outcomes};

/// A worker rank's life: serves pools for rank 0 until the job ends. Returns the exit code.
pub(crate) fn serve_rank() -> i32 {
    let mut pools = Pools::default();
    let code = loop {
        let message = match cluster::next_request() {
            Ok(Some(message)) => message,
            Ok(None) => break 0,
            Err(error) => {
                eprintln!("mp: an MPI worker rank lost rank 0: {error}");
                break 70;
            }
        };
        match codec::decode::<ToRank>(&message.header) {
            Ok(ToRank::Open { pool, settings }) => pools.open(pool, &settings, message.payload),
            Ok(ToRank::Task {
                pool,
                seq,
                function,
                count,
            }) => pools.run(pool, seq, &function, count, &message.payload),
            Ok(ToRank::Close { pool, terminate }) => pools.close(pool, terminate),
            Err(error) => {
                eprintln!("mp: an MPI worker rank got a request it cannot read: {error}");
                break 70;
            }
        }
    };
    pools.end();
    // The records of the pools' workers go to rank 0 before the goodbye, after which it takes
    // no more.
    logs::flush(cluster::LOG_FLUSH);
    if let Err(error) = cluster::say_goodbye() {
        eprintln!("mp: an MPI worker rank could not say goodbye to rank 0: {error}");
    }
    let unsent = logs::take_unsent();
    if unsent > 0 {
        eprintln!("mp: an MPI worker rank could not send {unsent} log records to rank 0");
    }
    code
}

/// This rank's local pools, one for each of rank 0's pools, by rank 0's pool number.
#[derive(Default)]
struct Pools {
    open: HashMap<u32, Arc<Pool>>,
    /// Pools being closed, each by its own thread.
    closers: Vec<(u32, JoinHandle<()>)>,
}

impl Pools {
    /// Opens pool `pool` here and tells rank 0 how many workers it has, or why it failed.
    fn open(&mut self, pool: u32, settings: &Settings, init_args: Vec<u8>) {
        // Before the pool's workers start: each learns at its start the level to send at.
        logs::forward_to_rank_zero(settings.log_level, cluster::send_log);
        let reply = match open_local(settings, init_args) {
            Ok(local) => {
                let workers = local.processes() as u32;
                let sandbox = local.sandbox_report().cloned();
                self.open.insert(pool, Arc::new(local));
                FromRank::Opened { workers, sandbox }
            }
            Err(error) => FromRank::Failed {
                seq: 0,
                failure: Failure::from(error),
            },
        };
        reply_to(tag_of(pool), &reply, &[]);
    }

    /// Runs task `seq` (`count` calls of `function`) in pool `pool`; its outcomes, or why it
    /// could not run, go back to rank 0.
    fn run(&self, pool: u32, seq: u64, function: &str, count: u32, records: &[u8]) {
        let sink = Arc::new(Reply { tag: tag_of(pool) });
        let submitted = match (self.open.get(&pool), registry::lookup_id(function)) {
            (Some(local), Ok(entry)) => Args::from_records(entry.id, records, count).map(|args| {
                let task = Task::new(
                    entry,
                    args,
                    seq as usize,
                    sink.clone(),
                    Arc::new(Control::default()),
                    None,
                );
                // A task the pool refuses delivers the pool's closing error itself, as it is
                // dropped.
                let _refused = local.shared.submit([task]);
            }),
            (None, _) => Err(Error::protocol(format!(
                "rank 0 sent a task for pool {pool}, which this rank does not have"
            ))),
            (_, Err(error)) => Err(error),
        };
        if let Err(error) = submitted {
            sink.deliver(seq as usize, Err(error));
        }
    }

    /// Closes pool `pool` (terminating its work first with `terminate`) beside the request
    /// loop, since its work may take long; rank 0 hears `Closed` when it is done.
    fn close(&mut self, pool: u32, terminate: bool) {
        // Pools whose closing finished are gone for good.
        let open = &mut self.open;
        self.closers.retain(|(id, closer)| {
            let running = !closer.is_finished();
            if !running {
                open.remove(id);
            }
            running
        });
        let Some(local) = self.open.get(&pool).cloned() else {
            return;
        };
        if terminate {
            local.terminate();
        }
        if !self.closers.iter().any(|(id, _)| *id == pool) {
            let closer = std::thread::spawn(move || {
                local.close();
                let _ = local.join();
                reply_to(tag_of(pool), &FromRank::Closed, &[]);
            });
            self.closers.push((pool, closer));
        }
    }

    /// The job ends: pools stop now; their tasks' failures go to rank 0, which drops them.
    fn end(self) {
        for local in self.open.values() {
            local.terminate();
        }
        drop(self.open);
        for (_, closer) in self.closers {
            let _ = closer.join();
        }
    }
}

/// Builds this rank's local pool for one of rank 0's pools.
fn open_local(settings: &Settings, init_args: Vec<u8>) -> Result<Pool> {
    let mut builder = Pool::builder().local().retries(settings.retries);
    builder.processes = settings.processes.map(|n| n as usize);
    builder.max_tasks_per_child = settings.max_tasks_per_child.map(|n| n as usize);
    builder.memory_limit = settings.memory_limit;
    builder.max_memory_growth = settings.max_memory_growth;
    for (name, value) in &settings.env {
        builder = builder.env(OsStr::from_bytes(name), OsStr::from_bytes(value));
    }
    if settings.fork_server {
        builder = builder.start_method(StartMethod::ForkServer);
    } else {
        builder = builder.start_method(StartMethod::Spawn);
    }
    if let Some(rules) = &settings.sandbox {
        builder = builder.sandbox(Sandbox::from_rules(rules));
    }
    if let Some((id, count)) = &settings.initializer {
        builder.initializer = Some(
            registry::lookup_id(id)
                .and_then(|entry| Ok((entry, Args::from_records(entry.id, &init_args, *count)?))),
        );
    }
    builder.build()
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
                let failure = Failure::from(Error::usage(
                    "a result holds a handle (pipe, queue, lock or shared memory), which cannot \
                     cross to another MPI rank; return plain data from tasks of an MPI pool",
                ));
                reply_to(self.tag, &FromRank::Failed { seq, failure }, &[]);
            }
            Err(error) => {
                let failure = Failure::from(error);
                reply_to(self.tag, &FromRank::Failed { seq, failure }, &[]);
            }
        }
    }
}
