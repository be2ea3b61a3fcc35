use mp_runtime::process_fn;

#[process_fn(id = "square")]
fn square(x: u64) -> u64 {
    x * x
}

fn main() {}
