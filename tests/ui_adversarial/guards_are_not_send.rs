// A lock is held by the thread that took it (a robust mutex records its owner thread): no
// guard of a lock may move to another thread. (A semaphore's guard may: any thread may give a
// unit back, as in Python.)
use mp_runtime::{Array, Condition, Lock, RLock, Value};

fn send<T: Send>(_: T) {}

fn main() {
    let lock = Lock::new().unwrap();
    send(lock.acquire().unwrap());
    let rlock = RLock::new().unwrap();
    send(rlock.acquire().unwrap());
    let condition = Condition::new().unwrap();
    send(condition.acquire().unwrap());
    let value = Value::new(0u64).unwrap();
    send(value.lock().unwrap());
    let array = Array::<u64>::new(4).unwrap();
    send(array.lock().unwrap());
}
