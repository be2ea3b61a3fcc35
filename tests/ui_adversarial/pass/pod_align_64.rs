// A `Pod` aligned to 64 bytes, the most a region's layout gives, makes a `Value` and an
// `Array` whose references are aligned: the compile-time bound refuses only what it must.

use mp_runtime::{Array, Pod, Value};

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u8; 64]);

// SAFETY: plain bytes, every pattern valid, no pointers.
unsafe impl Pod for Line {}

fn main() {
    let value = Value::new(Line([1; 64])).unwrap();
    let guard = value.lock().unwrap();
    assert_eq!(&*guard as *const Line as usize % 64, 0);
    drop(guard);
    let array = Array::<Line>::new(3).unwrap();
    for element in array.lock().unwrap().iter() {
        assert_eq!(element as *const Line as usize % 64, 0);
    }
}
