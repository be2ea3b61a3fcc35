use mp_runtime::{Pool, process_fn};
#[process_fn]
fn cube(x: u64) -> u64 {
    x * x * x
}
fn main() {
    let pool = Pool::new(2).unwrap();
    pool.map(cube, 0..1000u64).unwrap();
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let n = 10_000u64;
        let total: u64 = pool
            .imap(cube, 0..n)
            .map(Result::unwrap)
            .fold(0, u64::wrapping_add);
        let e = t.elapsed();
        println!(
            "{total} {:?} {:.0} k/s",
            e,
            n as f64 / e.as_secs_f64() / 1e3
        );
    }
}
