use mp_runtime::process_fn;

#[process_fn]
fn greeting() -> &'static str {
    "hello"
}

fn main() {}
