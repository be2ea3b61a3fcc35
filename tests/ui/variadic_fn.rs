// A C-variadic fn gets one error from `#[process_fn]`, on the `...`. The item is kept as
// written, so rustc also gives its own E0658 (C-variadic definitions are unstable), exactly as
// it does for this fn without the attribute.
use mp_runtime::process_fn;

#[process_fn]
unsafe extern "C" fn sum(count: i32, _: ...) -> i32 {
    count
}

fn main() {}
