use mp_runtime::process_fn;

fn main() {
    #[process_fn]
    fn triple(x: i32) -> i32 {
        x * 3
    }

    assert_eq!(triple(4), 12);
}
