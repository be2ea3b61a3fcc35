use mp_runtime::process_fn;

#[process_fn]
fn count(words: Vec<&'static str>) -> usize {
    words.len()
}

fn main() {}
