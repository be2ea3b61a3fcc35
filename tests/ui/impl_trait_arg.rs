use mp_runtime::process_fn;

#[process_fn]
fn total(numbers: impl IntoIterator<Item = u64>) -> u64 {
    numbers.into_iter().sum()
}

fn main() {}
