//! Compile-time behaviour of `#[turbolift::distribute]`: the shapes it rejects, with the
//! messages users see (`tests/ui/*.stderr`), and the shapes it accepts.
//!
//! Regenerate the snapshots with `TRYBUILD=overwrite cargo test -p turbolift --test ui`,
//! then read every changed `.stderr` before committing it.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
