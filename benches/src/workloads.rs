//! The workloads, each on every system that can run it.

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mp_runtime::{
    Array, CallOptions, Connection, Pool, Queue, StartMethod, pipe, process_fn, set_start_method,
    spawn,
};
use rayon::prelude::*;
use serde_bytes::ByteBuf;

use crate::measure::{Figure, Row, median, time};
use crate::python;
use crate::{BARE_EXIT_VAR, Scale};

#[process_fn]
fn small() -> u64 {
    42
}

#[process_fn]
fn cube(x: u64) -> u64 {
    x * x * x
}

#[process_fn]
fn identity(data: ByteBuf) -> ByteBuf {
    data
}

/// Bytes as users pass them, a plain `Vec<u8>`, not `ByteBuf`: the speed users meet.
#[process_fn]
fn echo_bytes(data: Vec<u8>) -> Vec<u8> {
    data
}

#[process_fn]
fn echo_string(text: String) -> String {
    text
}

#[process_fn]
fn echo_floats(values: Vec<f64>) -> Vec<f64> {
    values
}

/// A struct of the three, as a user would derive it.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Record {
    name: String,
    bytes: Vec<u8>,
    samples: Vec<f32>,
}

impl Record {
    /// About `size` bytes in all: a third in each field.
    fn new(size: usize) -> Record {
        Record {
            name: "a".repeat(size / 3),
            bytes: vec![7; size / 3],
            samples: vec![0.5; size / 3 / 4],
        }
    }

    fn len(&self) -> usize {
        self.name.len() + self.bytes.len() + 4 * self.samples.len()
    }
}

#[process_fn]
fn echo_record(record: Record) -> Record {
    record
}

#[process_fn]
fn pid(_: u64) -> u32 {
    std::process::id()
}

/// Sums the shared array and writes each element back plus one: reads and writes it all.
#[process_fn]
fn sum_and_bump(array: Array<u64>) -> u64 {
    let mut elements = array.lock().unwrap();
    let mut sum = 0u64;
    for x in elements.iter_mut() {
        sum = sum.wrapping_add(*x);
        *x = x.wrapping_add(1);
    }
    sum
}

/// Sends back every message until the other end closes.
#[process_fn]
fn echo(conn: Connection<u64>) {
    while let Ok(message) = conn.recv() {
        if conn.send(&message).is_err() {
            return;
        }
    }
}

/// Puts `0..count`, then `None` to say it is done (python_bench.py's `producer`).
#[process_fn]
fn produce(queue: Queue<Option<u64>>, count: u64) {
    for i in 0..count {
        queue.put(&Some(i)).unwrap();
    }
    queue.put(&None).unwrap();
}

/// A CPU-bound task of `n` steps that the optimizer cannot skip.
#[process_fn]
fn spin(n: u64) -> u64 {
    let mut x = n;
    for i in 0..n {
        x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
    }
    x
}

/// Adds the Python rows of one workload, one per start method.
fn python_rows(
    rows: &mut Vec<Row>,
    workload: &'static str,
    methods: &[&str],
    repeats: usize,
    arg: u64,
    ops: f64,
    figure: Figure,
) {
    for method in methods {
        if let Some(sample) = python::run(method, python_name(workload), repeats, arg) {
            rows.push(Row::new(
                workload,
                format!("Python {method}"),
                sample.seconds,
                ops,
                figure,
            ));
        }
    }
}

/// The Python script's name for each workload.
fn python_name(workload: &str) -> &'static str {
    match workload {
        START_JOIN => "start_join",
        MAP_10K | MAP_1M => "map",
        ONE_AT_A_TIME => "imap1",
        APPLY => "apply",
        BYTES => "bytes",
        QUEUE => "queue",
        PIPE => "pipe",
        _ => "rss",
    }
}

pub const START_JOIN: &str = "start + join a process";
pub const MAP_10K: &str = "map 10,000 tiny tasks";
pub const MAP_1M: &str = "map 1,000,000 tiny tasks";
pub const ONE_AT_A_TIME: &str = "imap, chunk size 1, 10,000 tasks";
pub const APPLY: &str = "apply round trip";
/// The apply rows' floors: one message each way between two processes, by three means (see
/// [`socketpair_round_trips`] and [`futex_ping_pong`]).
pub const RAW_SOCKETPAIR: &str = "raw: socketpair round trip, two processes";
pub const RAW_FUTEX_SLEEPING: &str = "raw: futex ping-pong, the waiter sleeps";
pub const RAW_FUTEX_SPINNING: &str = "raw: futex ping-pong, the waiter spins 50 µs, then sleeps";
/// The imap rows' floor (see [`socketpair_pipelined`]).
pub const RAW_PIPELINED: &str = "raw: socketpair echo, 2 processes, 8 in flight";
pub const BYTES: &str = "64 MiB there and back";
pub const VEC_U8: &str = "64 MiB there and back: Vec<u8>";
pub const STRING: &str = "64 MiB there and back: String";
pub const VEC_F64: &str = "64 MiB there and back: Vec<f64>";
pub const RECORD: &str = "64 MiB there and back: struct { String, Vec<u8>, Vec<f32> }";
/// The systems of those rows; the goals divide the first by the second.
pub const BY_VALUE: &str = "mp Pool.apply";
pub const MEMCPY: &str = "raw: memcpy there and back";
/// The same two in a user's default debug build (`main.rs` runs it: everything at
/// `opt-level = 0`).
pub const DEV_BY_VALUE: &str = "dev build: mp Pool.apply";
pub const DEV_MEMCPY: &str = "dev build: raw memcpy there and back";
pub const SHARED: &str = "64 MiB through SharedMemory";
pub const QUEUE: &str = "queue, 100,000 small items";
pub const PIPE: &str = "pipe round trip";
pub const RSS: &str = "idle worker memory (RSS)";
pub const USS: &str = "idle worker memory (USS: private pages)";
pub const IDLE_CPU: &str = "idle worker, processor time in 1 s";
/// The MPI rows (see `cluster.rs`; measured when built with `--features mpi`).
pub const MPI_APPLY: &str = "MPI: apply round trip, rank 0 to rank 1";
pub const MPI_RAW: &str = "raw: rsmpi send + receive";
pub const MPI_OVER_RANKS: &str = "mp Pool over MPI ranks";
pub const MPI_LOCAL: &str = "mp local Pool";

pub fn start_join(scale: Scale, rows: &mut Vec<Row>) {
    let repeats = scale.repeats(200, 10);
    // Warm the page cache and the registry.
    spawn!(small).unwrap().join().unwrap();
    rows.push(Row::new(
        START_JOIN,
        "mp spawn",
        time(repeats, || {
            assert_eq!(spawn!(small).unwrap().join().unwrap(), 42)
        }),
        1.0,
        Figure::Time,
    ));
    set_start_method(StartMethod::ForkServer);
    // The first start also starts the zygote.
    spawn!(small).unwrap().join().unwrap();
    rows.push(Row::new(
        START_JOIN,
        "mp forkserver",
        time(repeats, || {
            assert_eq!(spawn!(small).unwrap().join().unwrap(), 42)
        }),
        1.0,
        Figure::Time,
    ));
    set_start_method(StartMethod::Spawn);
    rows.push(Row::new(
        START_JOIN,
        "raw: bare re-exec",
        time(repeats, || {
            let status = Command::new("/proc/self/exe")
                .env(BARE_EXIT_VAR, "1")
                .status()
                .unwrap();
            assert!(status.success());
        }),
        1.0,
        Figure::Time,
    ));
    rows.push(Row::new(
        START_JOIN,
        "raw: fork + exit + wait",
        time(repeats, fork_exit_wait),
        1.0,
        Figure::Time,
    ));
    rows.push(Row::new(
        START_JOIN,
        "procspawn",
        time(repeats, || {
            let handle = procspawn::spawn((), |()| 42u64);
            assert_eq!(handle.join().unwrap(), 42);
        }),
        1.0,
        Figure::Time,
    ));
    python_rows(
        rows,
        START_JOIN,
        &python::METHODS,
        scale.repeats(50, 5),
        0,
        1.0,
        Figure::Time,
    );
}

fn fork_exit_wait() {
    // SAFETY: the child only calls `_exit`, which is async-signal-safe, so forking a process
    // with other threads is sound here.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: ends the forked child at once, without running any of the parent's handlers.
        unsafe { libc::_exit(0) };
    }
    assert!(child > 0, "fork failed");
    let mut status = 0;
    // SAFETY: waits for the child just forked, with a valid out-pointer.
    unsafe { libc::waitpid(child, &mut status, 0) };
}

pub fn map_tiny(scale: Scale, rows: &mut Vec<Row>) {
    let pool = Pool::new(2).unwrap();
    pool.map(cube, 0..1000).unwrap();
    for (workload, n, repeats) in [
        (MAP_10K, 10_000u64, scale.repeats(20, 3)),
        (MAP_1M, 1_000_000, scale.repeats(5, 1)),
    ] {
        let n = if scale.quick && n > 10_000 {
            100_000
        } else {
            n
        };
        rows.push(Row::new(
            workload,
            "mp Pool(2).map",
            time(repeats, || {
                assert_eq!(pool.map(cube, 0..n).unwrap().len(), n as usize)
            }),
            n as f64,
            Figure::Rate,
        ));
        if n == 10_000 {
            // Workers are started before the clock runs: the start method changes little here.
            let forked = Pool::builder()
                .processes(2)
                .start_method(StartMethod::ForkServer)
                .build()
                .unwrap();
            forked.map(cube, 0..1000).unwrap();
            rows.push(Row::new(
                workload,
                "mp forkserver Pool(2).map",
                time(repeats, || {
                    assert_eq!(forked.map(cube, 0..n).unwrap().len(), n as usize)
                }),
                n as f64,
                Figure::Rate,
            ));
        }
        rows.push(Row::new(
            workload,
            "rayon (threads)",
            time(repeats, || {
                let out: Vec<u64> = (0..n)
                    .into_par_iter()
                    .map(|x| black_box(x * x * x))
                    .collect();
                assert_eq!(out.len(), n as usize);
            }),
            n as f64,
            Figure::Rate,
        ));
        if n == 10_000 {
            let procspawn_pool = procspawn::Pool::new(2).unwrap();
            rows.push(Row::new(
                workload,
                "procspawn Pool(2)",
                time(repeats.min(3), || {
                    // Each pending procspawn task holds descriptors: keep a bounded batch.
                    for batch in (0..n).collect::<Vec<_>>().chunks(256) {
                        let handles: Vec<_> = batch
                            .iter()
                            .map(|&x| procspawn_pool.spawn(x, |x| x * x * x))
                            .collect();
                        for handle in handles {
                            black_box(handle.join().unwrap());
                        }
                    }
                }),
                n as f64,
                Figure::Rate,
            ));
        }
        python_rows(
            rows,
            workload,
            &python::METHODS,
            repeats.min(5),
            n,
            n as f64,
            Figure::Rate,
        );
    }
}

pub fn one_at_a_time(scale: Scale, rows: &mut Vec<Row>) {
    let n = 10_000u64;
    let repeats = scale.repeats(10, 2);
    // The floor of any design that answers each task before running the next (so that a
    // worker's crash loses no answer): one message each way per task, nothing else.
    rows.push(Row::new(
        ONE_AT_A_TIME,
        RAW_PIPELINED,
        (0..repeats)
            .map(|_| socketpair_pipelined(n as usize))
            .collect(),
        n as f64,
        Figure::Rate,
    ));
    let pool = Pool::new(2).unwrap();
    pool.map(cube, 0..1000).unwrap();
    rows.push(Row::new(
        ONE_AT_A_TIME,
        "mp Pool(2).imap",
        time(repeats, || {
            let total: u64 = pool
                .imap(cube, 0..n)
                .map(Result::unwrap)
                .fold(0, u64::wrapping_add);
            black_box(total);
        }),
        n as f64,
        Figure::Rate,
    ));
    python_rows(
        rows,
        ONE_AT_A_TIME,
        &python::METHODS,
        repeats.min(5),
        n,
        n as f64,
        Figure::Rate,
    );
}

pub fn apply_round_trip(scale: Scale, rows: &mut Vec<Row>) {
    let n = 1000u64;
    let repeats = scale.repeats(10, 2);
    let pool = Pool::new(2).unwrap();
    pool.map(cube, 0..100).unwrap();
    rows.push(Row::new(
        APPLY,
        "mp Pool(2).apply",
        time(repeats, || {
            for i in 0..n {
                black_box(pool.apply(cube, (i,)).unwrap());
            }
        }),
        n as f64,
        Figure::Time,
    ));
    // The floors, in the same run: a message each way through a socket pair (each wakes
    // the other side), through shared memory with a futex wake-up of a sleeping waiter, and
    // through shared memory to a waiter that spins before it sleeps (no wake-up while hot).
    for (system, floor) in [
        (RAW_SOCKETPAIR, socketpair_round_trips as fn(usize) -> f64),
        (RAW_FUTEX_SLEEPING, |n| futex_ping_pong(n, Duration::ZERO)),
        (RAW_FUTEX_SPINNING, |n| {
            futex_ping_pong(n, Duration::from_micros(50))
        }),
    ] {
        rows.push(Row::new(
            APPLY,
            system,
            (0..repeats).map(|_| floor(n as usize)).collect(),
            n as f64,
            Figure::Time,
        ));
    }
    let procspawn_pool = procspawn::Pool::new(2).unwrap();
    rows.push(Row::new(
        APPLY,
        "procspawn Pool(2)",
        time(repeats.min(3), || {
            for i in 0..n {
                black_box(procspawn_pool.spawn(i, |x| x * x * x).join().unwrap());
            }
        }),
        n as f64,
        Figure::Time,
    ));
    python_rows(
        rows,
        APPLY,
        &["fork"],
        repeats.min(5),
        n,
        n as f64,
        Figure::Time,
    );
}

pub fn large_values(scale: Scale, rows: &mut Vec<Row>) {
    let size = 64usize << 20;
    let repeats = scale.repeats(10, 2);
    let data = ByteBuf::from(vec![7u8; size]);
    let pool = Pool::new(1).unwrap();
    natural_values(size, repeats, &pool, rows);
    // The row mp-bench had before the natural types: `serde_bytes::ByteBuf`, kept to compare.
    rows.push(Row::new(
        BYTES,
        "mp Pool.apply (serde_bytes::ByteBuf, an extra)",
        time(repeats, || {
            let back = pool.apply(identity, (data.clone(),)).unwrap();
            assert_eq!(back.len(), size);
        }),
        (2 * size) as f64,
        Figure::Bandwidth,
    ));
    rows.push(Row::new(
        BYTES,
        MEMCPY,
        time(repeats, || {
            let there = black_box(data.to_vec());
            let back = black_box(there.clone());
            assert_eq!(back.len(), size);
        }),
        (2 * size) as f64,
        Figure::Bandwidth,
    ));
    python_rows(
        rows,
        BYTES,
        &["fork"],
        repeats.min(5),
        size as u64,
        (2 * size) as f64,
        Figure::Bandwidth,
    );
    // The same bytes written into shared memory here, read and written back by a pool task.
    let values = vec![7u64; size / 8];
    let array = Array::<u64>::new(values.len()).unwrap();
    rows.push(Row::new(
        SHARED,
        "mp Array + Pool.apply",
        time(repeats, || {
            array.lock().unwrap().copy_from_slice(&values);
            let sum = pool.apply(sum_and_bump, (array.clone(),)).unwrap();
            assert_eq!(sum, 7 * values.len() as u64);
        }),
        (2 * size) as f64,
        Figure::Bandwidth,
    ));
}

/// The values users pass, alone: what the dev-profile rows run.
pub fn natural(scale: Scale, rows: &mut Vec<Row>) {
    let pool = Pool::new(1).unwrap();
    natural_values(64 << 20, scale.repeats(10, 2), &pool, rows);
}

/// Each value users pass, through `pool.apply` and back, beside a memcpy of it there and
/// back (two clones) in the same run.
fn natural_values(size: usize, repeats: usize, pool: &Pool, rows: &mut Vec<Row>) {
    fn both<T: Clone>(
        rows: &mut Vec<Row>,
        workload: &'static str,
        repeats: usize,
        value: &T,
        len: impl Fn(&T) -> usize,
        apply: impl Fn(T) -> T,
    ) {
        let bytes = (2 * len(value)) as f64;
        // Warm the worker and the allocator with one round trip off the clock.
        assert_eq!(len(&apply(value.clone())), len(value));
        let mut mp = Vec::new();
        let mut memcpy = Vec::new();
        // Interleaved, so both see the same moments of a noisy machine.
        for _ in 0..repeats {
            mp.extend(time(1, || {
                assert_eq!(len(&apply(value.clone())), len(value))
            }));
            memcpy.extend(time(1, || {
                let there = black_box(value.clone());
                let back = black_box(there.clone());
                assert_eq!(len(&back), len(value));
            }));
        }
        let (by_value, memcpy_system) = if cfg!(debug_assertions) {
            (DEV_BY_VALUE, DEV_MEMCPY)
        } else {
            (BY_VALUE, MEMCPY)
        };
        rows.push(Row::new(workload, by_value, mp, bytes, Figure::Bandwidth));
        rows.push(Row::new(
            workload,
            memcpy_system,
            memcpy,
            bytes,
            Figure::Bandwidth,
        ));
    }
    both(rows, VEC_U8, repeats, &vec![7u8; size], Vec::len, |v| {
        pool.apply(echo_bytes, (v,)).unwrap()
    });
    both(rows, STRING, repeats, &"a".repeat(size), String::len, |v| {
        pool.apply(echo_string, (v,)).unwrap()
    });
    both(
        rows,
        VEC_F64,
        repeats,
        &vec![0.5f64; size / 8],
        |v| 8 * v.len(),
        |v| pool.apply(echo_floats, (v,)).unwrap(),
    );
    both(
        rows,
        RECORD,
        repeats,
        &Record::new(size),
        Record::len,
        |v| pool.apply(echo_record, (v,)).unwrap(),
    );
}

pub fn channels(scale: Scale, rows: &mut Vec<Row>) {
    let round_trips = scale.repeats(10_000, 1000);
    let repeats = scale.repeats(5, 1);
    rows.push(Row::new(
        PIPE,
        "raw: socketpair, two processes",
        (0..repeats)
            .map(|_| socketpair_round_trips(round_trips))
            .collect(),
        round_trips as f64,
        Figure::Time,
    ));
    let (here, there) = pipe::<u64>().unwrap();
    let child = spawn!(echo, there).unwrap();
    here.send(&0).unwrap();
    here.recv().unwrap(); // the child is up
    rows.push(Row::new(
        PIPE,
        "mp Connection, spawned echo",
        time(repeats, || {
            for i in 0..round_trips as u64 {
                here.send(&i).unwrap();
                assert_eq!(here.recv().unwrap(), i);
            }
        }),
        round_trips as f64,
        Figure::Time,
    ));
    drop(here);
    child.join().unwrap();
    python_rows(
        rows,
        PIPE,
        &["fork"],
        repeats,
        round_trips as u64,
        round_trips as f64,
        Figure::Time,
    );
    let items = scale.repeats(100_000, 10_000);
    // As python_bench.py's "queue": a new queue and a started producer per repeat, the parent
    // consuming until the producer's `None`.
    rows.push(Row::new(
        QUEUE,
        "mp Queue, spawned producer",
        time(repeats.min(3), || {
            let queue = Queue::new().unwrap();
            let producer = spawn!(produce, queue.clone(), items as u64).unwrap();
            while queue.get().unwrap().is_some() {}
            producer.join().unwrap();
        }),
        items as f64,
        Figure::Rate,
    ));
    python_rows(
        rows,
        QUEUE,
        &["fork"],
        repeats.min(3),
        items as u64,
        items as f64,
        Figure::Rate,
    );
}

/// `count` messages of 16 bytes through two forked echo processes, one thread per process
/// here keeping eight messages in flight, one `write` and one `read` per message on
/// each side: what a pool of two workers costs at least when each task and each answer is one
/// message. Returns the seconds it took.
fn socketpair_pipelined(count: usize) -> f64 {
    const IN_FLIGHT: usize = 8;
    const MESSAGE: usize = 16;
    let (ours, theirs): (Vec<UnixStream>, Vec<UnixStream>) =
        (0..2).map(|_| UnixStream::pair().unwrap()).unzip();
    let mut children = Vec::new();
    for there in &theirs {
        // SAFETY: the child only reads, writes, closes and exits through raw system calls.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // Our end of every pair: a child that kept another's would hold that pair open,
            // and its worker would never hear the end.
            for here in &ours {
                // SAFETY: closes a descriptor this child never uses.
                unsafe { libc::close(here.as_raw_fd()) };
            }
            let mut there = there;
            let mut message = [0u8; MESSAGE];
            while there.read_exact(&mut message).is_ok() && there.write_all(&message).is_ok() {}
            // SAFETY: ends the forked child without running the parent's handlers.
            unsafe { libc::_exit(0) };
        }
        children.push(child);
    }
    drop(theirs);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for mut stream in &ours {
            scope.spawn(move || {
                let mut message = [1u8; MESSAGE];
                let share = count / 2;
                let mut sent = 0;
                for _ in 0..share {
                    while sent < share && sent < IN_FLIGHT {
                        stream.write_all(&message).unwrap();
                        sent += 1;
                    }
                    stream.read_exact(&mut message).unwrap();
                    if sent < share {
                        stream.write_all(&message).unwrap();
                        sent += 1;
                    }
                }
            });
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    drop(ours);
    for child in children {
        let mut status = 0;
        // SAFETY: waits for a child just forked, with a valid out-pointer.
        unsafe { libc::waitpid(child, &mut status, 0) };
    }
    elapsed
}

/// Round trips of one byte between this process and a forked echo; returns the seconds.
fn socketpair_round_trips(count: usize) -> f64 {
    let (mut here, mut there) = UnixStream::pair().unwrap();
    // SAFETY: the child only reads, writes and exits through raw system calls.
    let child = unsafe { libc::fork() };
    if child == 0 {
        drop(here);
        let mut byte = [0u8; 1];
        while there.read_exact(&mut byte).is_ok() && there.write_all(&byte).is_ok() {}
        // SAFETY: ends the forked child without running the parent's handlers.
        unsafe { libc::_exit(0) };
    }
    drop(there);
    let mut byte = [1u8; 1];
    let start = Instant::now();
    for _ in 0..count {
        here.write_all(&byte).unwrap();
        here.read_exact(&mut byte).unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(here);
    let mut status = 0;
    // SAFETY: waits for the child just forked, with a valid out-pointer.
    unsafe { libc::waitpid(child, &mut status, 0) };
    elapsed
}

/// `count` round trips between this process and a forked one through a word of shared memory:
/// each side writes the next number and waits for the other's. A waiter watches the word for
/// `spin` (with no system call), then sleeps on it with `FUTEX_WAIT`, having said so in a
/// second word, so that the writer makes a `FUTEX_WAKE` call only for a sleeper (and always for
/// one, however the two interleave: each writes its word, then reads the other's). Returns
/// the seconds.
fn futex_ping_pong(count: usize, spin: Duration) -> f64 {
    // SAFETY: a new shared anonymous page at an address the kernel picks, replacing nothing;
    // both processes use it only through the atomics below, and it is unmapped at the end.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(page, libc::MAP_FAILED, "mmap failed");
    // SAFETY: the page is mapped, zeroed, aligned, and outlives every use of these words (the
    // child exits before the parent unmaps it); atomics may be shared between processes.
    let words: &[AtomicU32; 3] = unsafe { &*page.cast::<[AtomicU32; 3]>() };
    let [turn, parent_sleeps, child_sleeps] = words;
    // The child answers odd numbers with the next even one, until it reads `u32::MAX`.
    // SAFETY: the child only touches the shared page and exits through `_exit`: atomics and
    // raw system calls, all async-signal-safe.
    let child = unsafe { libc::fork() };
    if child == 0 {
        let mut seen = 0;
        loop {
            seen = wait_for_change(turn, seen, child_sleeps, spin);
            if seen == u32::MAX {
                // SAFETY: ends the forked child without running the parent's handlers.
                unsafe { libc::_exit(0) };
            }
            seen += 1;
            hand_over(turn, seen, parent_sleeps);
        }
    }
    assert!(child > 0, "fork failed");
    let start = Instant::now();
    let mut at = 0u32;
    for _ in 0..count {
        hand_over(turn, at + 1, child_sleeps);
        at = wait_for_change(turn, at + 1, parent_sleeps, spin);
    }
    let elapsed = start.elapsed().as_secs_f64();
    hand_over(turn, u32::MAX, child_sleeps);
    let mut status = 0;
    // SAFETY: waits for the child just forked, with a valid out-pointer.
    unsafe { libc::waitpid(child, &mut status, 0) };
    // SAFETY: unmaps the page mapped above; the child has exited and nothing here uses it.
    unsafe { libc::munmap(page, 4096) };
    elapsed
}

/// Writes `value` to `turn` and wakes the other side if it said that it sleeps.
fn hand_over(turn: &AtomicU32, value: u32, other_sleeps: &AtomicU32) {
    turn.store(value, Ordering::SeqCst);
    if other_sleeps.load(Ordering::SeqCst) != 0 {
        futex(turn, libc::FUTEX_WAKE, 1);
    }
}

/// Waits until `turn` is no longer `old`, spinning for `spin` first; returns the new value.
fn wait_for_change(turn: &AtomicU32, old: u32, sleeps: &AtomicU32, spin: Duration) -> u32 {
    let until = Instant::now() + spin;
    loop {
        let now = turn.load(Ordering::SeqCst);
        if now != old {
            return now;
        }
        if spin.is_zero() || Instant::now() >= until {
            break;
        }
        std::hint::spin_loop();
    }
    loop {
        sleeps.store(1, Ordering::SeqCst);
        let now = turn.load(Ordering::SeqCst);
        if now != old {
            sleeps.store(0, Ordering::SeqCst);
            return now;
        }
        futex(turn, libc::FUTEX_WAIT, old);
        sleeps.store(0, Ordering::SeqCst);
    }
}

/// A `futex` call on `word` (not process-private: the word is in shared memory).
fn futex(word: &AtomicU32, op: libc::c_int, value: u32) {
    // SAFETY: `word` is a valid, aligned, mapped 32-bit word for the duration of the call; a
    // wait without a timeout passes a null timeout, a wake ignores it.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            op,
            value,
            std::ptr::null::<libc::timespec>(),
        )
    };
}

pub fn idle_memory(_scale: Scale, rows: &mut Vec<Row>) {
    for (method, system) in [
        (StartMethod::Spawn, "mp worker"),
        (StartMethod::ForkServer, "mp forkserver worker"),
    ] {
        let pool = Pool::builder()
            .processes(2)
            .start_method(method)
            .build()
            .unwrap();
        let pids: std::collections::BTreeSet<u32> = pool
            .with(&CallOptions::new().chunksize(1))
            .map(pid, 0..50)
            .unwrap()
            .into_iter()
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let rss: Vec<f64> = pids.iter().map(|pid| rss_kib(*pid)).collect();
        let uss: Vec<f64> = pids.iter().map(|pid| uss_kib(*pid)).collect();
        rows.push(Row::new(RSS, system, rss, 1.0, Figure::Kib));
        rows.push(Row::new(USS, system, uss, 1.0, Figure::Kib));
        // The processor time each idle worker uses in a second: none, unless something spins.
        let before: Vec<f64> = pids.iter().map(|pid| cpu_seconds(*pid)).collect();
        std::thread::sleep(std::time::Duration::from_secs(1));
        let used: Vec<f64> = pids
            .iter()
            .zip(before)
            .map(|(pid, before)| cpu_seconds(*pid) - before)
            .collect();
        rows.push(Row::new(IDLE_CPU, system, used, 1.0, Figure::Time));
    }
    for method in ["fork", "spawn"] {
        if let Some(sample) = python::run(method, "rss", 1, 0) {
            let kib = |key: &str| -> Vec<f64> {
                sample.extra[key]
                    .as_array()
                    .map(|values| values.iter().filter_map(|v| v.as_f64()).collect())
                    .unwrap_or_default()
            };
            let system = format!("Python {method} worker");
            rows.push(Row::new(RSS, &system, kib("rss_kib"), 1.0, Figure::Kib));
            rows.push(Row::new(USS, system, kib("uss_kib"), 1.0, Figure::Kib));
        }
    }
}

/// The processor time process `pid` has used so far, user and system, in seconds (to the
/// clock tick, 10 ms).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, fields)) = stat.rsplit_once(')') else {
        return f64::NAN;
    };
    let fields: Vec<&str> = fields.split_whitespace().collect();
    let ticks = |at: usize| fields.get(at).and_then(|t| t.parse::<f64>().ok());
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / per_second,
        _ => f64::NAN,
    }
}

/// Memory only this process holds (`Private_Clean` + `Private_Dirty`): unlike RSS, it leaves
/// out the shared libraries' pages that every process maps.
fn uss_kib(pid: u32) -> f64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let private: Option<f64> = rollup
        .lines()
        .filter(|line| line.starts_with("Private_Clean:") || line.starts_with("Private_Dirty:"))
        .map(|line| line.split_whitespace().nth(1)?.parse::<f64>().ok())
        .sum();
    private.unwrap_or(f64::NAN)
}

fn rss_kib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Speedup over serial of 64 CPU-bound tasks, by worker count.
#[derive(Default)]
pub struct Speedup {
    pub workers: Vec<usize>,
    pub mp: Vec<f64>,
    pub rayon: Vec<f64>,
    pub task_ms: f64,
}

pub fn cpu_speedup(scale: Scale) -> Speedup {
    let steps = if scale.quick { 200_000 } else { 4_000_000 };
    let tasks = vec![steps; 64];
    let repeats = scale.repeats(3, 1);
    let serial = median(&time(repeats, || {
        for &n in &tasks {
            black_box(spin(n));
        }
    }));
    let cores = mp_runtime::cpu_count();
    let mut speedup = Speedup {
        workers: (1..=cores).collect(),
        mp: Vec::new(),
        rayon: Vec::new(),
        task_ms: serial / 64.0 * 1e3,
    };
    for &workers in &speedup.workers {
        let pool = Pool::new(workers).unwrap();
        pool.map(cube, 0..100).unwrap();
        let mp = median(&time(repeats, || {
            black_box(
                pool.with(&CallOptions::new().chunksize(1))
                    .map(spin, tasks.clone())
                    .unwrap(),
            );
        }));
        speedup.mp.push(serial / mp);
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .build()
            .unwrap();
        let rayon = median(&time(repeats, || {
            threads.install(|| black_box(tasks.par_iter().map(|&n| spin(n)).collect::<Vec<_>>()));
        }));
        speedup.rayon.push(serial / rayon);
    }
    speedup
}

/// Tasks per second against the size of each task (steps of `spin`).
pub struct Throughput {
    pub steps: Vec<u64>,
    pub mp: Vec<f64>,
    pub rayon: Vec<f64>,
    pub serial: Vec<f64>,
}

pub fn throughput_by_task_size(scale: Scale) -> Throughput {
    let steps: Vec<u64> = vec![1, 10, 100, 1_000, 10_000, 100_000];
    let budget = if scale.quick { 2_000_000 } else { 50_000_000 };
    let pool = Pool::new(mp_runtime::cpu_count()).unwrap();
    pool.map(cube, 0..100).unwrap();
    let mut out = Throughput {
        steps: steps.clone(),
        mp: Vec::new(),
        rayon: Vec::new(),
        serial: Vec::new(),
    };
    for &n in &steps {
        let count = (budget / n).clamp(1_000, 200_000);
        let inputs = vec![n; count as usize];
        let rate = |seconds: f64| count as f64 / seconds;
        out.mp.push(rate(median(&time(3, || {
            black_box(pool.map(spin, inputs.clone()).unwrap());
        }))));
        out.rayon.push(rate(median(&time(3, || {
            black_box(inputs.par_iter().map(|&n| spin(n)).collect::<Vec<_>>());
        }))));
        out.serial.push(rate(median(&time(3, || {
            black_box(inputs.iter().map(|&n| spin(n)).collect::<Vec<_>>());
        }))));
    }
    out
}
