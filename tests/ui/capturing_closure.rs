use mp_runtime::Pool;

fn main() {
    let offset = 3u32;
    let add = move |x: u32| x + offset;
    let pool = Pool::new(1).unwrap();
    let _ = pool.map(add, vec![1, 2]);
}
