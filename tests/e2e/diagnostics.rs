//! Unsupported functions and syntax errors are reported like rustc reports errors: all of
//! them, with file, line, column, the code underlined, and what to do instead.

use crate::support::*;

fn build_errors(fixture_name: &str) -> String {
    let dir = fixture(fixture_name);
    let out = output(&mut turbolift(&dir, &["build"]));
    assert!(
        !out.status.success(),
        "the build of {fixture_name} should fail"
    );
    assert_eq!(out.status.code(), Some(1));
    text(&out.stderr)
}

#[test]
fn every_unsupported_function_is_reported_in_one_run() {
    let stderr = build_errors("errors");
    insta::assert_snapshot!("errors", stderr);
}

#[test]
fn a_syntax_error_is_reported_with_its_location() {
    let stderr = build_errors("syntax-error");
    insta::assert_snapshot!("syntax_error", stderr);
}
