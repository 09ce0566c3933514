//! A program's `tracing` subscriber sees turbolift's own events, under targets that start
//! with `turbolift`, and nothing of the HTTP stack under them (hyper, hyper-util, axum).

use common::events::{record_everything, recorded};
use common::{dead_url, handler, serve};

mod common;

const SECRET: &str = "logging-test-secret";

#[turbolift::distribute]
fn square(u: u64) -> u64 {
    u * u
}

#[turbolift::distribute(timeout = "100ms")]
fn slow(ms: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_subscriber_sees_only_turbolift_targets() {
    record_everything();
    let running = serve(
        &[handler("logging::square"), handler("logging::slow")],
        SECRET,
    )
    .await;
    // A replica that refuses connections first: the retry is a `turbolift` debug event.
    common::route(
        "logging::square",
        &[dead_url().await, running.url.clone()],
        SECRET,
    );
    for u in 0..20u64 {
        assert_eq!(square(u).await, Ok(u * u));
    }
    let calls: Vec<_> = (0..20u64).map(|u| tokio::spawn(square(u))).collect();
    for (u, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap(), Ok(u as u64 * u as u64));
    }
    assert_eq!(square_batch(0..50u64).await.unwrap().len(), 50);
    // A call given up while it waits for its answer drops the client's request midway.
    common::route("logging::slow", &[&running.url], SECRET);
    assert!(matches!(
        slow(300).await,
        Err(turbolift::Error::Timeout { .. })
    ));
    assert_eq!(slow(1).await, Ok(1));
    running.stop().await;

    let recorded = recorded();
    let foreign: Vec<_> = recorded
        .iter()
        .filter(|e| !e.target.starts_with("turbolift"))
        .collect();
    assert!(
        foreign.is_empty(),
        "{} of {}: {foreign:#?}",
        foreign.len(),
        recorded.len()
    );
    let seen = |target: &str, message: &str| {
        recorded
            .iter()
            .any(|e| e.target == target && e.field("message") == Some(message))
    };
    assert!(seen("turbolift::service", "stopped"), "{recorded:#?}");
    assert!(
        seen("turbolift::client", "retrying on another replica"),
        "{recorded:#?}"
    );
}
