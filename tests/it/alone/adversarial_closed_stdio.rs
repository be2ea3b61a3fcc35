//! Workers that inherit standard input, output and error closed still run, print, and receive
//! handles: a worker runs as `main` would, with descriptors 0 to 2 open, so that nothing it
//! opens lands where `println!` writes. It runs in a child of its own: it changes that
//! process's standard descriptors.

use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::Duration;

use mp_runtime::{Pool, Queue, StartMethod, process_fn, spawn};

/// Prints to both standard streams, then puts to the queue.
#[process_fn]
fn print_both_then_put(queue: Queue<u32>) {
    println!("to standard output: {}", "#".repeat(300));
    eprintln!("to standard error: {}", "#".repeat(300));
    queue.put(&9).unwrap();
}

/// Descriptor `fd` closed for the children this process starts, as they see it: here it is
/// open (to /dev/null, close-on-exec), so that nothing this process opens meanwhile lands on it
/// and nothing the test harness writes goes astray. Put back when dropped.
struct Closed {
    fd: libc::c_int,
    saved: libc::c_int,
}

impl Closed {
    fn for_children(fd: libc::c_int) -> Closed {
        let null = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: plain system calls. The saved copy is above the standard descriptors and
        // close-on-exec (children must not get it); it is put back on drop.
        let saved = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
        assert!(saved >= 0);
        // SAFETY: replaces `fd`, which no Rust object here owns, with a close-on-exec copy of
        // /dev/null.
        let replaced = unsafe { libc::dup3(AsRawFd::as_raw_fd(&null), fd, libc::O_CLOEXEC) };
        assert_eq!(replaced, fd);
        Closed { fd, saved }
    }
}

impl Drop for Closed {
    fn drop(&mut self) {
        // SAFETY: plain system calls on descriptors this test owns.
        unsafe {
            libc::dup2(self.saved, self.fd);
            libc::close(self.saved);
        }
    }
}

// Under `spawn!` and a fork server's pool alike.
/// The body of [`workers_run_with_every_standard_descriptor_closed`], in a process of its own.
#[process_fn]
fn workers_run_with_every_standard_descriptor_closed_alone() {
    let _closed = [0, 1, 2].map(Closed::for_children);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let outcome = (|| {
            let queue = Queue::<u32>::new()?;
            let mut child = spawn!(print_both_then_put, queue.clone())?;
            let joined = child.join_timeout(Duration::from_secs(30));
            if joined.is_err() {
                let _ = child.kill();
            }
            joined?;
            let spawned = queue.get_timeout(Duration::from_secs(10))?;
            let pool = Pool::builder()
                .start_method(StartMethod::ForkServer)
                .processes(1)
                .build()?;
            let applied = pool.apply(print_both_then_put, (queue.clone(),));
            pool.terminate();
            applied?;
            Ok::<_, mp_runtime::Error>((spawned, queue.get_timeout(Duration::from_secs(10))?))
        })();
        let _ = tx.send(outcome.map_err(|e| e.to_string()));
    });
    let outcome = rx
        .recv_timeout(Duration::from_secs(90))
        .expect("hung: a worker with closed standard descriptors");
    assert_eq!(outcome, Ok((9, 9)));
}

/// Runs [`workers_run_with_every_standard_descriptor_closed_alone`] in a child: what it changes or counts is that process's alone.
#[test]
fn workers_run_with_every_standard_descriptor_closed() {
    crate::in_child(workers_run_with_every_standard_descriptor_closed_alone);
}
