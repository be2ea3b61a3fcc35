use mp_runtime::process_fn;

struct Counter {
    count: u64,
}

impl Counter {
    #[process_fn]
    fn get(&self) -> u64 {
        self.count
    }
}

fn main() {
    let _ = Counter { count: 1 }.get();
}
