use mp_runtime::{pool_map, spawn};

fn main() {
    let _ = spawn!(|x: u32| x + 1, 1);
    let _ = spawn!(|| 1);
    let offset = 3;
    // The compiler's own hint for a closure that borrows: it must fail as clearly.
    let _ = spawn!(move |x: u32| x + offset, 1);
    let _ = pool_map!(|x: u32| x * 2, vec![1, 2]);
    let _ = pool_map!(move |x: u32| x * offset, vec![1, 2], processes = 2);
}
