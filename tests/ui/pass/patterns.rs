use mp_runtime::process_fn;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Point {
    x: i64,
    y: i64,
}

#[derive(Serialize, Deserialize)]
struct Meters(f64);

#[process_fn]
fn manhattan((x1, y1): (i64, i64), Point { x: x2, y: y2 }: Point) -> i64 {
    (x1 - x2).abs() + (y1 - y2).abs()
}

#[process_fn]
fn double(Meters(m): Meters, _: u8, mut times: u32) -> f64 {
    let mut total = m;
    while times > 1 {
        total += m;
        times -= 1;
    }
    total
}

fn main() {
    assert_eq!(manhattan((0, 0), Point { x: 3, y: -4 }), 7);
    assert_eq!(double(Meters(1.5), 0, 2), 3.0);
}
