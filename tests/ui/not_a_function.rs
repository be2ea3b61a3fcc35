use mp_runtime::process_fn;

#[process_fn]
struct Point {
    x: i64,
    y: i64,
}

fn main() {
    let _ = Point { x: 1, y: 2 };
}
