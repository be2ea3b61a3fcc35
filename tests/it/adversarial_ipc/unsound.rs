//! What safe code must not be able to do to a process: break later locks, crash on a
//! truncated file, read bytes no one wrote. Each risky scenario
//! runs in a child process, so a crash shows as that child's death instead of ending the tests.

use std::time::Duration;

use mp_runtime::{Array, Lock, SharedMemory, Value, process_fn, spawn};

const LONG: Duration = Duration::from_secs(30);

/// Forgets a held guard of the kind `kind` names, drops its handle, then locks other objects.
#[process_fn]
fn forget_guard_then_lock_others(kind: u8) -> u64 {
    // Made first, so that it is not mapped where the dropped one was.
    let other = Value::new(1u64).unwrap();
    match kind {
        0 => {
            let value = Value::new(0u64).unwrap();
            std::mem::forget(value.lock().unwrap());
            drop(value);
        }
        1 => {
            let array = Array::<u64>::new(8).unwrap();
            std::mem::forget(array.lock().unwrap());
            drop(array);
        }
        _ => {
            let lock = Lock::new().unwrap();
            std::mem::forget(lock.acquire().unwrap());
            drop(lock);
        }
    }
    *other.lock().unwrap() += 1;
    let mut sum = other.get().unwrap();
    for i in 0..64u64 {
        let fresh = Value::new(i).unwrap();
        *fresh.lock().unwrap() += 1;
        sum += fresh.get().unwrap();
        drop(Lock::new().unwrap().acquire().unwrap());
    }
    sum
}

fn forget_guard_case(kind: u8) {
    let mut child = super::Reaped(Some(spawn!(forget_guard_then_lock_others, kind).unwrap()));
    let outcome = child.0.as_mut().unwrap().join_timeout(LONG);
    let sum = outcome.unwrap_or_else(|e| panic!("the process died: {e}"));
    assert_eq!(sum, 2 + (1..=64).sum::<u64>());
}

// A forgotten `ValueGuard`, then its `Value` dropped: later locks work (a mapping outlives
// every lock that may be held in it).
#[test]
fn a_forgotten_value_guard_does_not_break_later_locks() {
    forget_guard_case(0);
}

// A forgotten `ArrayGuard`, then its `Array` dropped: later locks work.
#[test]
fn a_forgotten_array_guard_does_not_break_later_locks() {
    forget_guard_case(1);
}

// A forgotten `LockGuard`, then its `Lock` dropped: later locks work.
#[test]
fn a_forgotten_lock_guard_does_not_break_later_locks() {
    forget_guard_case(2);
}

/// Creates the named region `name`, truncates its file behind its back and reads it.
#[process_fn]
fn read_truncated_region(name: String) -> String {
    let shm = SharedMemory::create(&name, 64 << 10).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap()
        .set_len(0)
        .unwrap();
    let mut buf = [0u8; 16];
    // Debug-printed: `()` today, a `Result` if reading learns to fail.
    let read = format!("{:?}", shm.read_at(4096, &mut buf));
    format!("{read} {buf:?}")
}

// Reading a named region whose file was truncated (by another process) is no SIGBUS: safe code
// cannot crash the process.
#[test]
fn reading_a_truncated_named_region_is_no_bus_error() {
    let name = format!("mp-adv-sigbus-{}", std::process::id());
    let mut child = super::Reaped(Some(spawn!(read_truncated_region, name.clone()).unwrap()));
    let outcome = child.0.as_mut().unwrap().join_timeout(LONG);
    let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
    match outcome {
        Ok(read) => eprintln!("read_at after truncation: {read}"),
        Err(e) => panic!("the process died: {e}"),
    }
}

// `read_at` and `write_at` on two clones, on two threads, at once. Without
// Miri or ThreadSanitizer (neither reaches mmap'd memory here) this cannot show the data race;
// it documents the scenario, and checks only that every read sees whole writes or torn ones
// made of the two patterns (never other bytes).
#[test]
fn reads_and_writes_on_clones_on_two_threads_document_the_race() {
    let shm = SharedMemory::new(4096).unwrap();
    let mut writer = shm.clone().unwrap();
    let reader = shm.clone().unwrap();
    super::bounded("reads and writes on two threads", LONG, move || {
        std::thread::scope(|s| {
            s.spawn(move || {
                for i in 0..2000u32 {
                    let byte = if i % 2 == 0 { 0x00 } else { 0xff };
                    writer.write_at(0, &[byte; 4096]).unwrap();
                }
            });
            s.spawn(move || {
                let mut buf = [0u8; 4096];
                for _ in 0..2000 {
                    reader.read_at(0, &mut buf).unwrap();
                    assert!(buf.iter().all(|&b| b == 0x00 || b == 0xff));
                }
            });
        });
    });
    drop(shm);
}

/// The descriptor of this process's one array (`memfd:mp-array`), opened for writing.
fn the_array_file() -> std::fs::File {
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let path = entry.unwrap().path();
        let Ok(target) = std::fs::read_link(&path) else {
            continue;
        };
        if target.to_string_lossy().starts_with("/memfd:mp-array") {
            return std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        }
    }
    panic!("no memfd:mp-array among this process's descriptors")
}

/// Makes an array of 4, then rewrites the length in its shared header (as another process
/// holding the memory can), then reads it: an error, or the 4 elements, never a panic.
#[process_fn]
fn read_array_with_forged_length(forged: u64) -> String {
    use std::os::unix::fs::FileExt;
    let array = Array::from_slice(&[1u64, 2, 3, 4]).unwrap();
    // The length is the first word of the state, which starts at byte 64 of the memory.
    the_array_file()
        .write_all_at(&forged.to_ne_bytes(), 64)
        .unwrap();
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| array.to_vec()));
    match read {
        Ok(Ok(values)) => {
            assert_eq!(values, [1, 2, 3, 4]);
            "ok".to_string()
        }
        Ok(Err(error)) => format!("error: {error}"),
        Err(_) => "panic".to_string(),
    }
}

// Another process rewrites an array's length in the shared header (past the mapping, and past
// what an address space holds): reading the array here is an error or the elements it had,
// never an access out of bounds, and never a panic in the reader.
#[test]
fn an_array_whose_length_another_process_rewrote_is_no_panic() {
    for forged in [1 << 20, u64::MAX] {
        let mut child = super::Reaped(Some(spawn!(read_array_with_forged_length, forged).unwrap()));
        let outcome = child.0.as_mut().unwrap().join_timeout(LONG);
        let read = outcome.unwrap_or_else(|e| panic!("the process died: {e}"));
        assert_ne!(
            read, "panic",
            "length {forged} forged: reading the array panicked"
        );
    }
}
