use mp_runtime::process_fn;

#[process_fn(name = "square", name = "squared")]
fn square(x: u64) -> u64 {
    x * x
}

fn main() {}
