use mp_runtime::process_fn;
use serde::Deserialize;

// Deserialize only: the error is the missing `Serialize`, on the argument's type.
#[derive(Deserialize)]
struct Point {
    x: i64,
    y: i64,
}

#[process_fn]
fn length(point: Point) -> f64 {
    ((point.x * point.x + point.y * point.y) as f64).sqrt()
}

fn main() {}
