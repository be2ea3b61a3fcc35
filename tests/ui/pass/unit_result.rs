use mp_runtime::process_fn;

#[process_fn]
fn log(line: String) {
    println!("{line}");
}

#[process_fn]
fn nothing() -> () {}

fn main() {
    log("a unit-returning fn".to_string());
    nothing();
}
