// A function that a `macro_rules!` writes, with types from its caller: the tokens come from two
// places, with two hygiene contexts, and must still resolve.
use mp_runtime::process_fn;

macro_rules! doubler {
    ($name:ident, $ty:ty) => {
        #[process_fn]
        fn $name(x: $ty) -> $ty {
            let input = x;
            input + input
        }
    };
}

doubler!(double_u8, u8);
doubler!(double_i64, i64);

fn main() {
    assert_eq!(double_u8(4), 8);
    assert_eq!(double_i64(-4), -8);
}
