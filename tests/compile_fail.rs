//! Compile-fail tests, one trybuild run: each `tests/ui/<case>.rs` (the errors of
//! `#[process_fn]`, `spawn!` and `pool_map!`) and each `tests/ui_adversarial/<case>.rs` (a `Pod`
//! aligned above 64 bytes in `Value`/`Array`, a lock guard sent to another thread) must fail
//! with exactly the error in its `.stderr`, and each case under `pass/` must compile and run.
//! Some errors come after monomorphization: they need a build, not a check, which trybuild
//! does when some case must pass.
//!
//! After changing a message, regenerate the expected output with
//! `TRYBUILD=overwrite cargo test --test compile_fail` and read the diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
    cases.compile_fail("tests/ui_adversarial/*.rs");
    cases.pass("tests/ui/pass/*.rs");
    cases.pass("tests/ui_adversarial/pass/*.rs");
}
