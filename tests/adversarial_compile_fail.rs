//! Compile-fail cases of issue 11 (tests/ui_adversarial/): each must fail to build. A case
//! without its `.stderr` fails until the error exists and the file is generated with
//! `TRYBUILD=overwrite cargo test --test adversarial_compile_fail`.

// Issue 11 item 7: a `Pod` aligned above 64 bytes in `Value`/`Array` is a compile error, and
// one aligned to 64 works. Also: no lock guard is `Send`. The error is post-monomorphization: it needs a build, not a check,
// which trybuild does when some case must pass.
#[test]
fn over_aligned_pods_and_sent_guards_are_compile_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui_adversarial/*.rs");
    cases.pass("tests/ui_adversarial/pass/*.rs");
}
