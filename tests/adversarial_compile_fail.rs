//! Compile-fail cases of issue 11 (tests/ui_adversarial/): each must fail to build. A case
//! without its `.stderr` fails until the error exists and the file is generated with
//! `TRYBUILD=overwrite cargo test --test adversarial_compile_fail`.

// Issue 11 item 7: a `Pod` aligned above 64 bytes in `Value`/`Array` is a compile error.
#[test]
fn over_aligned_pod_is_a_compile_error() {
    trybuild::TestCases::new().compile_fail("tests/ui_adversarial/*.rs");
}
