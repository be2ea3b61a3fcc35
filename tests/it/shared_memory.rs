//! Shared state between processes: `Value`, `Array`, `SharedMemory`.

use std::collections::BTreeSet;
use std::time::Duration;

use mp_runtime::{Array, Event, Pool, Process, SharedMemory, Value, process_fn, spawn};

const LONG: Duration = Duration::from_secs(60);

#[process_fn]
fn increment(counter: Value<u64>, times: u32) {
    for _ in 0..times {
        *counter.lock().unwrap() += 1;
    }
}

#[test]
fn four_processes_increment_a_value_under_its_lock() {
    let counter = Value::new(0u64).unwrap();
    let children: Vec<Process<()>> = (0..4)
        .map(|_| spawn!(increment, counter.clone(), 2000).unwrap())
        .collect();
    for mut child in children {
        child.join_timeout(LONG).unwrap();
    }
    assert_eq!(counter.get().unwrap(), 8000);
    assert!(counter.try_lock().unwrap().is_some());
    assert_eq!(*counter.lock_timeout(LONG).unwrap(), 8000);
}

#[process_fn]
fn hold_value(value: Value<u32>, holding: Event) {
    let mut guard = value.lock().unwrap();
    *guard = 1;
    holding.set().unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_value_whose_holder_is_killed_reports_the_owner_died() {
    let value = Value::new(0u32).unwrap();
    let holding = Event::new().unwrap();
    let mut child = spawn!(hold_value, value.clone(), holding.clone()).unwrap();
    assert!(holding.wait_timeout(LONG).unwrap());
    assert!(value.try_lock().unwrap().is_none());
    child.kill().unwrap();
    assert!(value.lock_timeout(LONG).unwrap_err().is_owner_died());
    assert_eq!(value.get().unwrap(), 1);
}

#[process_fn]
fn sum_slice(array: Array<f64>, start: usize, end: usize) -> f64 {
    array.lock().unwrap()[start..end].iter().sum()
}

#[process_fn]
fn double_all(array: Array<i64>) {
    for x in array.lock().unwrap().iter_mut() {
        *x *= 2;
    }
}

#[test]
fn arrays_are_shared_not_copied() {
    let array = Array::from_slice(&(0..1000).map(|i| i as f64).collect::<Vec<_>>()).unwrap();
    let pool = Pool::new(2).unwrap();
    let parts: Vec<_> = (0..4)
        .map(|p| (array.clone(), p * 250, (p + 1) * 250))
        .collect();
    let sums = pool.starmap(sum_slice, parts).unwrap();
    assert_eq!(sums.iter().sum::<f64>(), 499_500.0);

    let ints = Array::<i64>::new(3).unwrap();
    ints.set(0, 1).unwrap();
    ints.set(2, 5).unwrap();
    spawn!(double_all, ints.clone()).unwrap().join().unwrap();
    assert_eq!(ints.to_vec().unwrap(), [2, 0, 10]);
    assert_eq!(ints.get(2).unwrap(), Some(10));
    assert!(ints.set(3, 0).unwrap_err().is_usage());
    assert_eq!(ints.len(), 3);
}

fn dev_shm() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[process_fn]
fn make_region_and_hang(made: Event) {
    let mut shm = SharedMemory::new(1 << 20).unwrap();
    shm.write_at(0, b"mine").unwrap();
    made.set().unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn anonymous_memory_leaves_nothing_in_dev_shm_when_its_owner_is_killed() {
    let before = dev_shm();
    let made = Event::new().unwrap();
    let mut child = spawn!(make_region_and_hang, made.clone()).unwrap();
    assert!(made.wait_timeout(LONG).unwrap());
    child.kill().unwrap();
    let after = dev_shm();
    assert!(
        after.is_subset(&before) || after.iter().all(|n| !n.starts_with("mp")),
        "{after:?}"
    );
}

#[process_fn]
fn write_named(name: String) {
    let mut shm = SharedMemory::open(&name).unwrap();
    shm.write_at(0, b"from the child").unwrap();
}

#[process_fn]
fn read_passed(shm: SharedMemory, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    shm.read_at(0, &mut buf).unwrap();
    buf
}

#[test]
fn named_memory_is_opened_by_name_and_gone_once_unlinked() {
    let name = format!("mp-test-{}", std::process::id());
    let shm = SharedMemory::create(&name, 4096).unwrap();
    assert!(dev_shm().contains(&name));
    let mode = std::fs::metadata(format!("/dev/shm/{name}")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    assert!(SharedMemory::create(&name, 1).is_err(), "the name exists");
    spawn!(write_named, name.clone()).unwrap().join().unwrap();
    let echoed = spawn!(read_passed, shm.clone().unwrap(), 14)
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(echoed, b"from the child");
    shm.unlink().unwrap();
    assert!(!dev_shm().contains(&name));
    assert!(SharedMemory::open(&name).is_err());
    // Python raises on a second unlink; here the region is gone either way (README).
    shm.unlink().unwrap();
    assert_eq!(shm.name(), Some(name.as_str()));
}

#[test]
fn named_memory_is_removed_when_its_creator_drops_it() {
    let name = format!("mp-test-drop-{}", std::process::id());
    let shm = SharedMemory::create(&name, 16).unwrap();
    let opened = SharedMemory::open(&name).unwrap();
    drop(shm);
    assert!(!dev_shm().contains(&name));
    assert_eq!(opened.len(), 16);
}

/// The length of an array of empty elements, as the child that received it sees it.
#[process_fn]
fn empty_elements_len(array: Array<[u64; 0]>) -> usize {
    array.lock().unwrap().len()
}

/// An element aligned to 64 bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(64))]
struct Line([u8; 64]);

// SAFETY: plain bytes, no padding.
unsafe impl mp_runtime::Pod for Line {}

/// The sum of the first byte of each line, and the lines' count, as the child sees them.
#[process_fn]
fn first_bytes(array: Array<Line>) -> (u64, usize) {
    let lines = array.lock().unwrap();
    (
        lines.iter().map(|line| u64::from(line.0[0])).sum(),
        lines.len(),
    )
}

// Arrays at the edges of their layout reach a child whole: of elements of no size (any length
// fits in no bytes), of no elements, and of elements aligned to 64 bytes.
#[test]
fn arrays_of_empty_or_64_byte_aligned_elements_reach_a_child() {
    let empty = Array::<[u64; 0]>::new(1000).unwrap();
    let mut child = spawn!(empty_elements_len, empty).unwrap();
    assert_eq!(child.join_timeout(LONG).unwrap(), 1000);
    let none = Array::<Line>::new(0).unwrap();
    let mut child = spawn!(first_bytes, none).unwrap();
    assert_eq!(child.join_timeout(LONG).unwrap(), (0, 0));
    let lines = Array::from_slice(&[Line([1; 64]), Line([2; 64]), Line([3; 64])]).unwrap();
    let mut child = spawn!(first_bytes, lines).unwrap();
    assert_eq!(child.join_timeout(LONG).unwrap(), (6, 3));
}
