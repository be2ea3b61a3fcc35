use mp_runtime::process_fn;

#[process_fn]
fn shout(text: &str) -> String {
    text.to_uppercase()
}

fn main() {}
