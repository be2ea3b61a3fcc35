//! Issue 11 item 7: a `Pod` type aligned above 64 bytes in a `Value` or `Array`. The issue wants
//! a compile error (see tests/ui_adversarial/pod_align_128.rs and
//! tests/adversarial_compile_fail.rs); until then this checks at run time that every reference
//! handed out is aligned. When the compile error lands, this file no longer builds: delete it
//! (the compile-fail case replaces it). A refusal at run time (`new` failing) is accepted too.

use mp_runtime::{Array, Pod, Value};

#[repr(C, align(128))]
#[derive(Clone, Copy)]
struct Wide([u8; 128]);

// SAFETY: plain bytes, every pattern valid, no pointers.
unsafe impl Pod for Wide {}

// Issue 11 item 7: a `Value` of a type aligned to 128 gives aligned references, or is refused.
#[test]
fn a_value_of_an_over_aligned_type_is_aligned_or_refused() {
    for _ in 0..16 {
        let Ok(value) = Value::new(Wide([1; 128])) else {
            return;
        };
        let guard = value.lock().unwrap();
        let at = &*guard as *const Wide as usize;
        assert_eq!(at % 128, 0, "a misaligned &Wide at {at:#x}");
    }
}

// Issue 11 item 7: an `Array` of a type aligned to 128 gives aligned references, or is refused.
#[test]
fn an_array_of_an_over_aligned_type_is_aligned_or_refused() {
    for _ in 0..16 {
        let Ok(array) = Array::<Wide>::new(3) else {
            return;
        };
        let guard = array.lock().unwrap();
        for element in guard.iter() {
            let at = element as *const Wide as usize;
            assert_eq!(at % 128, 0, "a misaligned &Wide at {at:#x}");
        }
    }
}
