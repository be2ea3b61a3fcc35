//! Queues between processes: `Queue`, `JoinableQueue`.

use std::time::Duration;

use mp_runtime::{JoinableQueue, Pool, Process, Queue, process_fn, spawn};

const LONG: Duration = Duration::from_secs(60);

#[process_fn]
fn produce(queue: Queue<u64>, start: u64, count: u64) {
    for i in start..start + count {
        queue.put(&i).unwrap();
    }
}

#[process_fn]
fn consume(queue: Queue<u64>) -> Vec<u64> {
    let mut got = Vec::new();
    loop {
        match queue.get_timeout(LONG) {
            Ok(item) => got.push(item),
            Err(e) if e.is_disconnected() => return got,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn four_producers_and_four_consumers_lose_and_duplicate_nothing() {
    const ITEMS: u64 = 100_000;
    let queue = Queue::<u64>::bounded(1000).unwrap();
    let consumers: Vec<Process<Vec<u64>>> = (0..4)
        .map(|_| spawn!(consume, queue.clone()).unwrap())
        .collect();
    let producers: Vec<Process<()>> = (0..4)
        .map(|p| spawn!(produce, queue.clone(), p * ITEMS / 4, ITEMS / 4).unwrap())
        .collect();
    for mut producer in producers {
        producer.join_timeout(LONG).unwrap();
    }
    queue.close().unwrap();
    let mut all = Vec::new();
    for mut consumer in consumers {
        all.extend(consumer.join_timeout(LONG).unwrap());
    }
    all.sort_unstable();
    assert_eq!(all.len() as u64, ITEMS);
    assert!(
        all.iter().copied().eq(0..ITEMS),
        "an item was lost or duplicated"
    );
}

#[process_fn]
fn put_then_exit(queue: Queue<String>, count: u32) {
    for i in 0..count {
        queue.put(&format!("item {i}")).unwrap();
    }
    // No flush, no destructors: what `put` returned for must already be in the queue.
    std::process::exit(0);
}

#[test]
fn items_put_just_before_exit_are_not_lost() {
    let queue = Queue::new().unwrap();
    let mut child = spawn!(put_then_exit, queue.clone(), 500).unwrap();
    // Joining before draining cannot deadlock: the child never waits for a reader.
    assert!(child.join_timeout(LONG).unwrap_err().is_died());
    assert_eq!(child.exit_code(), Some(0));
    for i in 0..500 {
        assert_eq!(queue.try_get().unwrap(), format!("item {i}"));
    }
    assert!(queue.try_get().unwrap_err().is_empty());
}

#[test]
fn bounded_queues_wait_and_refuse_when_full() {
    let queue = Queue::bounded(2).unwrap();
    queue.put(&1).unwrap();
    queue.try_put(&2).unwrap();
    assert!(queue.try_put(&3).unwrap_err().is_full());
    assert!(
        queue
            .put_timeout(&3, Duration::from_millis(10))
            .unwrap_err()
            .is_timeout()
    );
    assert_eq!(queue.len().unwrap(), 2);
    assert_eq!(queue.get().unwrap(), 1);
    queue.put_timeout(&3, LONG).unwrap();
    assert_eq!(queue.get_timeout(LONG).unwrap(), 2);
    assert_eq!(queue.try_get().unwrap(), 3);
    assert!(queue.is_empty().unwrap());
    assert!(
        queue
            .get_timeout(Duration::from_millis(10))
            .unwrap_err()
            .is_timeout()
    );
}

#[test]
fn large_items_and_a_growing_queue() {
    let queue = Queue::<Vec<u8>>::new().unwrap();
    for i in 0..40u8 {
        queue.put(&vec![i; 300_000]).unwrap();
    }
    for i in 0..40u8 {
        let item = queue.get().unwrap();
        assert_eq!((item.len(), item[0], item[299_999]), (300_000, i, i));
    }
    // The file was cut back when it emptied; it keeps working.
    queue.put(&vec![1]).unwrap();
    assert_eq!(queue.get().unwrap(), [1]);
}

#[process_fn]
fn wait_for_items(queue: Queue<u32>) -> Vec<u32> {
    let mut got = Vec::new();
    while let Ok(item) = queue.get() {
        got.push(item);
    }
    got
}

#[test]
fn closing_wakes_waiting_consumers_after_they_drain() {
    let queue = Queue::new().unwrap();
    let mut child = spawn!(wait_for_items, queue.clone()).unwrap();
    queue.put(&1).unwrap();
    queue.put(&2).unwrap();
    queue.close().unwrap();
    assert!(queue.put(&3).unwrap_err().is_disconnected());
    assert_eq!(child.join_timeout(LONG).unwrap(), [1, 2]);
    assert!(queue.get().unwrap_err().is_disconnected());
}

#[process_fn]
fn square_into(queue: Queue<u64>, x: u64) {
    queue.put(&(x * x)).unwrap();
}

#[test]
fn queues_go_to_pool_tasks() {
    let pool = Pool::new(2).unwrap();
    let queue = Queue::new().unwrap();
    let args: Vec<(Queue<u64>, u64)> = (0..20).map(|x| (queue.clone(), x)).collect();
    pool.starmap(square_into, args).unwrap();
    let mut got: Vec<u64> = (0..20).map(|_| queue.try_get().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, (0..20).map(|x| x * x).collect::<Vec<_>>());
}

#[process_fn]
fn work_through(queue: JoinableQueue<u32>) -> u32 {
    let mut done = 0;
    while let Ok(item) = queue.get_timeout(Duration::from_millis(500)) {
        done += item;
        queue.task_done().unwrap();
    }
    done
}

#[test]
fn a_joinable_queue_joins_when_every_item_is_done() {
    let queue = JoinableQueue::new().unwrap();
    assert!(queue.task_done().unwrap_err().is_usage());
    for i in 1..=100 {
        queue.put(&i).unwrap();
    }
    assert!(
        queue
            .join_timeout(Duration::from_millis(10))
            .unwrap_err()
            .is_timeout()
    );
    let pool = Pool::new(2).unwrap();
    let workers = pool.map_async(work_through, vec![queue.clone(), queue.clone()]);
    queue.join_timeout(LONG).unwrap();
    assert!(queue.is_empty().unwrap());
    let sums = workers.get_timeout(LONG).unwrap();
    assert_eq!(sums.iter().sum::<u32>(), 5050);
}
