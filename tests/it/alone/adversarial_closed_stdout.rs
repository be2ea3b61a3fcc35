//! A parent that closed its standard output starts children with descriptor 1
//! closed; a handle received by the child must not land there, where `println!` writes.
//! It runs in a child of its own: it closes that process's descriptor 1 (and restores it).

use std::sync::mpsc;
use std::time::Duration;

use mp_runtime::{Queue, process_fn, spawn};

#[process_fn]
fn print_then_put(queue: Queue<u32>) {
    // Long enough to reach past the first cache line (where a handle's lock starts).
    println!(
        "a line from the task, which must not reach shared memory: {}",
        "#".repeat(300)
    );
    queue.put(&7).unwrap();
}

/// Puts descriptor 1 back when dropped.
struct Restore(libc::c_int);

impl Drop for Restore {
    fn drop(&mut self) {
        // SAFETY: plain system calls on descriptors this test owns.
        unsafe {
            libc::dup2(self.0, 1);
            libc::close(self.0);
        }
    }
}

// With descriptor 1 closed in the parent, a task that prints and then puts to a queue works,
// and the parent gets the item: what it printed did not overwrite the queue's memory.
/// The body of [`a_parent_with_stdout_closed_still_gets_the_item`], in a process of its own.
#[process_fn]
fn a_parent_with_stdout_closed_still_gets_the_item_alone() {
    // SAFETY: plain system calls; the saved descriptor is restored by `Restore`.
    let saved = unsafe { libc::dup(1) };
    assert!(saved >= 0);
    let _restore = Restore(saved);
    // SAFETY: closes descriptor 1, which no Rust object here owns (the test harness captures
    // output in memory).
    unsafe { libc::close(1) };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let outcome = (|| {
            let queue = Queue::<u32>::new()?;
            let mut child = spawn!(print_then_put, queue.clone())?;
            let joined = child.join_timeout(Duration::from_secs(30));
            if joined.is_err() {
                let _ = child.kill();
            }
            joined?;
            queue.get_timeout(Duration::from_secs(10))
        })();
        let _ = tx.send(outcome.map_err(|e| e.to_string()));
    });
    let outcome = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("hung: a parent with its standard output closed");
    assert_eq!(outcome, Ok(7));
}

/// Runs [`a_parent_with_stdout_closed_still_gets_the_item_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn a_parent_with_stdout_closed_still_gets_the_item() {
    crate::in_child(a_parent_with_stdout_closed_still_gets_the_item_alone);
}
