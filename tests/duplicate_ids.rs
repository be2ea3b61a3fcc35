//! Two functions registered under one id: every use says so, naming both.

use mp_runtime::{process_fn, spawn};

mod first {
    #[mp_runtime::process_fn(name = "shared::id")]
    pub fn one() -> u8 {
        1
    }
}

mod second {
    #[mp_runtime::process_fn(name = "shared::id")]
    pub fn two() -> u8 {
        2
    }
}

#[process_fn]
fn unrelated() -> u8 {
    3
}

#[test]
fn a_clash_of_ids_names_both_functions() {
    for err in [
        spawn!(first::one).unwrap_err(),
        spawn!(unrelated).unwrap_err(),
    ] {
        assert!(err.is_not_registered(), "{err}");
        let text = err.to_string();
        assert!(text.contains("`shared::id`"), "{text}");
        assert!(
            text.contains("first::one") && text.contains("second::two"),
            "{text}"
        );
        assert!(text.contains("name = "), "{text}");
    }
    assert_eq!(second::two(), 2);
}
