// A `Pod` type aligned above 64 bytes must not make a `Value` or an `Array`: a region aligns
// its data to 64 bytes at most, so a reference into it would be misaligned (undefined
// behaviour). Its .stderr: `BLESS=1 cargo test --test it -- compile_fail`.

use mp_runtime::{Array, Pod, Value};

#[repr(C, align(128))]
#[derive(Clone, Copy)]
struct Wide([u8; 128]);

// SAFETY: plain bytes, every pattern valid, no pointers.
unsafe impl Pod for Wide {}

fn main() {
    let value = Value::new(Wide([0; 128])).unwrap();
    let array = Array::<Wide>::new(2).unwrap();
    drop((value, array));
}
