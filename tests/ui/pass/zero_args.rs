use mp_runtime::process_fn;

#[process_fn]
fn answer() -> u32 {
    42
}

fn main() {
    assert_eq!(answer(), 42);
}
