//! A function that the configuration does not route runs in-process. When the routes were
//! read from `TURBOLIFT_ENDPOINTS`, which names every function with a service in a run of
//! `cargo turbolift`, the first call says so, once per function; routes set in code do
//! not.

use std::process::Command;

use common::events::{record_everything, recorded};
use turbolift::Config;
use turbolift::protocol::env;

mod common;

#[turbolift::distribute]
fn unlisted(u: u64) -> u64 {
    u + 1
}

#[turbolift::distribute]
async fn unlisted_async(u: u64) -> u64 {
    u * 3
}

/// `TURBOLIFT_ENDPOINTS` naming two functions of this test crate that are never called.
const ENDPOINTS: &str = "fallback::elsewhere=http://127.0.0.1:1;fallback::away=http://127.0.0.1:2";

/// The `turbolift` warnings recorded so far about function `id`.
fn warnings_about(id: &str) -> Vec<common::events::Recorded> {
    recorded()
        .into_iter()
        .filter(|e| {
            e.kind == "event"
                && e.target == "turbolift"
                && e.level == tracing::Level::WARN
                && e.field("function") == Some(id)
        })
        .collect()
}

/// Calls both functions twice each, singly and as a batch: every result is the in-process one.
async fn call_both() {
    for u in [1u64, 2] {
        assert_eq!(unlisted(u).await, Ok(u + 1));
        assert_eq!(unlisted_async(u).await, Ok(u * 3));
    }
    assert_eq!(unlisted_batch([5u64, 6]).await, Ok(vec![6, 7]));
    assert_eq!(unlisted_async_batch([5u64, 6]).await, Ok(vec![15, 18]));
}

#[tokio::test]
async fn a_function_left_out_of_the_variable_is_warned_about_once() {
    record_everything();
    let ids = ["fallback::unlisted", "fallback::unlisted_async"];

    // Routes set in code leave the other functions in-process on purpose.
    Config::new()
        .endpoint("fallback::elsewhere", ["http://127.0.0.1:1"])
        .install()
        .unwrap();
    call_both().await;
    // Variables without TURBOLIFT_ENDPOINTS: a plain run, everything in-process.
    Config::from_vars(|_| None).unwrap().install().unwrap();
    call_both().await;
    for id in ids {
        assert_eq!(warnings_about(id).len(), 0, "{id}: {:?}", recorded());
    }

    // TURBOLIFT_ENDPOINTS names other functions: one warning each, for many calls.
    let with_endpoints = || {
        Config::from_vars(|name| (name == env::ENDPOINTS).then(|| ENDPOINTS.to_owned())).unwrap()
    };
    with_endpoints().install().unwrap();
    call_both().await;
    // A new configuration generation resolves the routes again, and says nothing more.
    with_endpoints().install().unwrap();
    call_both().await;
    for id in ids {
        let warnings = warnings_about(id);
        assert_eq!(warnings.len(), 1, "{id}: {warnings:?}");
        assert_eq!(warnings[0].field("named"), Some("2"), "{warnings:?}");
    }
}

/// Set in the environment of [`child_calls_an_unlisted_function`] when it is to run.
const CHILD: &str = "TURBOLIFT_FALLBACK_TEST_CHILD";

#[test]
fn the_warning_is_one_line_on_stderr_without_a_subscriber() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_calls_an_unlisted_function",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env(env::ENDPOINTS, ENDPOINTS)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("has no service in this run"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].starts_with(
            "warning: turbolift: `fallback::unlisted` has no service in this run \
             (TURBOLIFT_ENDPOINTS names 2 other functions), so it runs in this process."
        ),
        "{stderr}"
    );
}

/// The child of [`the_warning_is_one_line_on_stderr_without_a_subscriber`]: its
/// configuration is the process environment, read at the first call.
#[tokio::test]
#[ignore = "run by the_warning_is_one_line_on_stderr_without_a_subscriber, in a process with TURBOLIFT_ENDPOINTS set"]
async fn child_calls_an_unlisted_function() {
    assert_eq!(
        std::env::var(CHILD).as_deref(),
        Ok("1"),
        "run by the_warning_is_one_line_on_stderr_without_a_subscriber"
    );
    for u in 0..3u64 {
        assert_eq!(unlisted(u).await, Ok(u + 1));
    }
}
