//! Pipes between processes: `pipe`, `pipe_oneway`, `Connection`.

use std::time::Duration;

use mp_runtime::{Connection, Pool, pipe, pipe_oneway, process_fn, spawn};

const LONG: Duration = Duration::from_secs(30);

#[process_fn]
fn echo(conn: Connection<String>, times: u32) -> u32 {
    for _ in 0..times {
        let text = conn.recv().unwrap();
        conn.send(&text.to_uppercase()).unwrap();
    }
    times
}

#[test]
fn a_child_answers_over_a_duplex_pipe() {
    let (here, there) = pipe::<String>().unwrap();
    let mut child = spawn!(echo, there, 3).unwrap();
    for word in ["a", "bc", "def"] {
        here.send(&word.to_string()).unwrap();
        assert_eq!(here.recv_timeout(LONG).unwrap(), word.to_uppercase());
    }
    assert_eq!(child.join_timeout(LONG).unwrap(), 3);
}

#[process_fn]
fn send_numbers(tx: Connection<u64>, count: u64) {
    for i in 0..count {
        tx.send(&i).unwrap();
    }
}

#[test]
fn a_one_way_pipe_carries_many_messages_then_disconnects() {
    let (rx, tx) = pipe_oneway::<u64>().unwrap();
    let mut child = spawn!(send_numbers, tx, 1000).unwrap();
    for i in 0..1000 {
        assert_eq!(rx.recv_timeout(LONG).unwrap(), i);
    }
    child.join_timeout(LONG).unwrap();
    // The only copy of the sending end was in the child, which has exited.
    assert!(rx.recv_timeout(LONG).unwrap_err().is_disconnected());
    assert!(rx.send(&1).unwrap_err().is_usage());
    assert!(tx_only_sends());
}

fn tx_only_sends() -> bool {
    let (_rx, tx) = pipe_oneway::<u8>().unwrap();
    tx.recv().unwrap_err().is_usage()
}

#[process_fn]
fn die_at_once(_conn: Connection<u8>) {
    std::process::abort();
}

#[test]
fn the_death_of_the_other_process_disconnects_both_ways() {
    let (here, there) = pipe::<u8>().unwrap();
    let mut child = spawn!(die_at_once, there).unwrap();
    assert!(child.join_timeout(LONG).unwrap_err().is_died());
    assert!(here.recv_timeout(LONG).unwrap_err().is_disconnected());
    assert!(here.send(&1).unwrap_err().is_disconnected());
}

#[test]
fn timeouts_and_poll_lose_nothing() {
    let (a, b) = pipe::<Vec<u8>>().unwrap();
    assert!(!b.poll(Duration::from_millis(5)).unwrap());
    assert!(
        b.recv_timeout(Duration::from_millis(5))
            .unwrap_err()
            .is_timeout()
    );
    let big = vec![7u8; 3 << 20];
    let sender = std::thread::spawn(move || {
        a.send(&big).unwrap();
        a
    });
    assert!(b.poll(LONG).unwrap());
    assert_eq!(b.recv_timeout(LONG).unwrap().len(), 3 << 20);
    let a = sender.join().unwrap();
    a.send_bytes(b"raw").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"raw");
    a.close();
    assert!(b.poll(LONG).unwrap());
    assert!(b.recv().unwrap_err().is_disconnected());
}

#[test]
fn recv_bytes_timeout_waits_at_most_its_bound_and_loses_nothing() {
    let (a, b) = pipe::<()>().unwrap();
    let err = b.recv_bytes_timeout(Duration::from_millis(5)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(err.to_string().contains("5ms"), "{err}");
    let big = vec![3u8; 3 << 20];
    let sent = big.clone();
    let sender = std::thread::spawn(move || {
        a.send_bytes(&sent).unwrap();
        a
    });
    assert_eq!(b.recv_bytes_timeout(LONG).unwrap(), big);
    sender.join().unwrap().close();
    assert!(b.recv_bytes_timeout(LONG).unwrap_err().is_disconnected());
}

#[test]
fn clones_of_a_connection_share_its_messages() {
    let (rx, tx) = pipe_oneway::<u64>().unwrap();
    let mut child = spawn!(send_numbers, tx, 2000).unwrap();
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let reader = rx.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    match reader.recv_timeout(LONG) {
                        Ok(n) => got.push(n),
                        Err(e) if e.is_disconnected() => return got,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    let mut all: Vec<u64> = readers
        .into_iter()
        .flat_map(|r| r.join().unwrap())
        .collect();
    child.join_timeout(LONG).unwrap();
    all.sort_unstable();
    // Each message reached exactly one clone, whole.
    assert_eq!(all, (0..2000).collect::<Vec<_>>());

    // The end closes when its last clone is dropped.
    let (a, b) = pipe::<u8>().unwrap();
    let c = b.try_clone().unwrap();
    drop(b);
    a.send(&1).unwrap();
    assert_eq!(c.recv_timeout(LONG).unwrap(), 1);
    c.send(&2).unwrap();
    assert_eq!(a.recv_timeout(LONG).unwrap(), 2);
    drop(c);
    assert!(a.recv_timeout(LONG).unwrap_err().is_disconnected());
}

#[process_fn]
fn forward(from: Connection<Connection<u32>>) -> u32 {
    // A connection that arrives through another connection.
    let inner = from.recv().unwrap();
    inner.send(&99).unwrap();
    inner.recv().unwrap()
}

#[test]
fn a_connection_travels_through_a_connection() {
    let (outer_here, outer_there) = pipe::<Connection<u32>>().unwrap();
    let (inner_here, inner_there) = pipe::<u32>().unwrap();
    let mut child = spawn!(forward, outer_there).unwrap();
    outer_here.send(&inner_there).unwrap();
    drop(inner_there);
    assert_eq!(inner_here.recv_timeout(LONG).unwrap(), 99);
    inner_here.send(&5).unwrap();
    assert_eq!(child.join_timeout(LONG).unwrap(), 5);
}

#[process_fn]
fn make_pipe() -> (Connection<String>, Connection<String>) {
    let (a, b) = pipe::<String>().unwrap();
    a.send(&"made in the child".to_string()).unwrap();
    (a, b)
}

#[test]
fn connections_come_back_in_results() {
    let (a, b) = spawn!(make_pipe).unwrap().join().unwrap();
    assert_eq!(b.recv_timeout(LONG).unwrap(), "made in the child");
    a.send(&"and back".to_string()).unwrap();
    assert_eq!(b.recv_timeout(LONG).unwrap(), "and back");
}

#[process_fn]
fn reply_with_index(conn: Connection<u32>, index: u32) {
    conn.send(&index).unwrap();
}

#[test]
fn connections_go_to_pool_tasks() {
    let pool = Pool::new(2).unwrap();
    let mut ends = Vec::new();
    let mut args = Vec::new();
    for i in 0..6 {
        let (here, there) = pipe::<u32>().unwrap();
        ends.push(here);
        args.push((there, i));
    }
    pool.starmap(reply_with_index, args).unwrap();
    for (i, end) in ends.iter().enumerate() {
        assert_eq!(end.recv_timeout(LONG).unwrap(), i as u32);
        // The task's copy of the other end is gone with the task.
        assert!(end.recv_timeout(LONG).unwrap_err().is_disconnected());
    }
}
