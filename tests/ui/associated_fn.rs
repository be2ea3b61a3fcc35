use mp_runtime::process_fn;

struct Counter {
    count: u64,
}

impl Counter {
    #[process_fn]
    fn new(count: u64) -> Self {
        Counter { count }
    }

    #[process_fn]
    fn total(counters: Vec<Self>) -> u64 {
        counters.iter().map(|c| c.count).sum()
    }
}

fn main() {
    let _ = Counter::total(vec![Counter::new(1)]);
}
