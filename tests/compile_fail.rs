//! Compile-fail tests of `#[process_fn]`: each `tests/ui/<case>.rs` must fail with exactly the
//! error in its `.stderr`, and each `tests/ui/pass/<case>.rs` must compile and run.
//!
//! After changing a message, regenerate the expected output with
//! `TRYBUILD=overwrite cargo test --test compile_fail` and read the diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
