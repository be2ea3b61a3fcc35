use mp_runtime::process_fn;

#[process_fn(name = "x")]
fn square(x: u64) -> u64 {
    x * x
}

#[process_fn(name = "geometry::cube", crate = ::mp_runtime)]
fn cube(x: u64) -> u64 {
    x * x * x
}

fn main() {
    assert_eq!(square(3), 9);
    assert_eq!(cube(3), 27);
}
