mod math {
    use mp_runtime::process_fn;

    #[process_fn]
    pub(crate) fn halve(x: u32) -> u32 {
        x / 2
    }

    #[process_fn]
    pub fn negate(x: i32) -> i32 {
        -x
    }
}

fn main() {
    assert_eq!(math::halve(10), 5);
    assert_eq!(math::negate(3), -3);
}
