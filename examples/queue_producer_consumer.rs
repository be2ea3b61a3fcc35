//! Two producer processes fill a `JoinableQueue`; two consumers on a pool drain it. Every item
//! is consumed exactly once.
//!
//! Run with `cargo run --release --example queue_producer_consumer`; exits non-zero if an item
//! is lost or consumed twice.

use std::time::Instant;

use mp_runtime::{JoinableQueue, Pool, Queue, process_fn, spawn};

const PER_PRODUCER: u64 = 50_000;

#[process_fn]
fn produce(queue: JoinableQueue<u64>, first: u64, count: u64) {
    for item in first..first + count {
        queue.put(&item).expect("the queue is open");
    }
}

/// Takes items until the queue is closed and drained; reports what it took on `taken`.
#[process_fn]
fn consume(queue: JoinableQueue<u64>, taken: Queue<Vec<u64>>) -> usize {
    let mut mine = Vec::new();
    while let Ok(item) = queue.get() {
        mine.push(item);
        queue.task_done().expect("an item was taken");
    }
    let count = mine.len();
    taken.put(&mine).expect("the parent listens");
    count
}

fn main() -> mp_runtime::Result<()> {
    let queue = JoinableQueue::bounded(10_000)?;
    let taken = Queue::new()?;
    let pool = Pool::new(2)?;
    let started = Instant::now();
    let consumers = pool.starmap_async(
        consume,
        vec![
            (queue.clone(), taken.clone()),
            (queue.clone(), taken.clone()),
        ],
    );
    let producers = [
        spawn!(produce, queue.clone(), 0, PER_PRODUCER)?,
        spawn!(produce, queue.clone(), PER_PRODUCER, PER_PRODUCER)?,
    ];
    for producer in producers {
        producer.join()?;
    }
    queue.join()?; // every item put has been marked done
    let elapsed = started.elapsed();
    queue.close()?; // the consumers' `get` now ends
    let counts = consumers.get()?;

    let mut all: Vec<u64> = (0..2)
        .map(|_| taken.get())
        .collect::<Result<Vec<_>, _>>()?
        .concat();
    all.sort_unstable();
    let total = 2 * PER_PRODUCER;
    assert_eq!(all.len() as u64, total, "items lost or duplicated");
    assert!(all.iter().copied().eq(0..total), "items lost or duplicated");
    println!(
        "{total} items, each consumed exactly once (consumers took {counts:?}), in {elapsed:.2?}: \
         {:.0} items/s",
        total as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
