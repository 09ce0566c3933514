//! The remote call path against real services on 127.0.0.1.

use std::time::{Duration, Instant};

use common::{dead_url, serve};
use turbolift::__private::{Bytes, FnInfo, Invocation};
use turbolift::service::Handler;
use turbolift::{Error, RemoteError};

mod common;

const SECRET: &str = "remote-test-secret";

#[turbolift::distribute]
fn square(u: u64) -> u64 {
    u * u
}

#[turbolift::distribute]
fn fragile(n: u32) -> u32 {
    if n.is_multiple_of(3) {
        panic!("{n} is a multiple of three");
    }
    n
}

#[turbolift::distribute]
fn parse(text: String) -> Result<i64, String> {
    text.parse().map_err(|e| format!("`{text}`: {e}"))
}

#[turbolift::distribute(timeout = "300ms")]
fn slow(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[turbolift::distribute]
async fn slow_async(ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms
}

#[turbolift::distribute]
async fn drained(ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms
}

#[turbolift::distribute]
fn guarded(u: u8) -> u8 {
    u
}

#[turbolift::distribute]
fn nowhere(u: u8) -> u8 {
    u
}

#[turbolift::distribute]
fn mismatched(u: u32) -> u32 {
    u
}

/// Routes this test crate's function `name` to `urls`.
fn route<S: AsRef<str>>(name: &str, urls: &[S]) {
    common::route(&format!("remote::{name}"), urls, SECRET);
}

/// The handler of this test crate's function `name`.
fn handler(name: &str) -> &'static Handler {
    common::handler(&format!("remote::{name}"))
}

#[tokio::test]
async fn calls_go_to_the_service_and_fail_once_it_is_gone() {
    let running = serve(&[handler("square")], SECRET).await;
    route("square", &[&running.url]);
    for u in [0u64, 3, 4_000_000_000] {
        assert_eq!(square(u).await, Ok(u * u));
    }
    running.stop().await;
    // The same call now has nowhere to go: proof that it went over the network before.
    match square(5).await {
        Err(Error::Unavailable {
            function,
            attempts,
            last,
        }) => {
            assert_eq!(function, "remote::square");
            assert_eq!(attempts, 4);
            assert!(last.contains("cannot connect"), "{last}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_remote_panic_is_an_error_with_its_message_and_the_service_survives() {
    let running = serve(&[handler("fragile")], SECRET).await;
    route("fragile", &[&running.url]);
    let mut panics = 0;
    for n in 1..=30u32 {
        match fragile(n).await {
            Ok(v) => assert_eq!(v, n),
            Err(Error::Panic { function, message }) => {
                assert_eq!(function, "remote::fragile");
                assert_eq!(message, format!("{n} is a multiple of three"));
                panics += 1;
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(panics, 10);
    running.stop().await;
}

#[tokio::test]
async fn the_functions_own_err_is_the_value_not_a_transport_error() {
    let running = serve(&[handler("parse")], SECRET).await;
    route("parse", &[&running.url]);
    assert_eq!(parse("42".to_owned()).await, Ok(Ok(42)));
    let err = parse("forty".to_owned()).await.unwrap().unwrap_err();
    assert!(err.starts_with("`forty`: invalid digit"), "{err}");
    running.stop().await;
}

#[tokio::test]
async fn a_call_past_its_timeout_returns_timeout_promptly() {
    let running = serve(&[handler("slow")], SECRET).await;
    route("slow", &[&running.url]);
    assert_eq!(slow(10).await, Ok(10));
    let started = Instant::now();
    let result = slow(3_000).await;
    let waited = started.elapsed();
    assert_eq!(
        result,
        Err(Error::Timeout {
            function: "remote::slow".to_owned(),
            after: Duration::from_millis(300)
        })
    );
    assert!(
        waited < Duration::from_millis(2_000),
        "gave up after {waited:?}"
    );
    assert!(
        result
            .unwrap_err()
            .to_string()
            .contains("timed out after 300ms")
    );
    // The service still answers while the slow body runs on.
    assert_eq!(slow(5).await, Ok(5));
    running.stop().await;
}

#[tokio::test]
async fn a_wrong_secret_is_refused() {
    let running = serve(&[handler("guarded")], "not-the-callers-secret").await;
    route("guarded", &[&running.url]);
    match guarded(1).await {
        Err(Error::Remote {
            function,
            error: RemoteError::Unauthorized(reason),
        }) => {
            assert_eq!(function, "remote::guarded");
            assert!(reason.contains("x-turbolift-secret"), "{reason}");
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    running.stop().await;
}

static OLD_MISMATCHED: FnInfo = FnInfo::new("remote", "mismatched", 0x0123_4567_89ab_cdef, None);
static OLD_HANDLER: Handler = Handler::new(&OLD_MISMATCHED, invoke_old, batch_old);

fn invoke_old(body: turbolift::__private::Encoded) -> Invocation {
    turbolift::__private::invoke_blocking(&OLD_MISMATCHED, body, |(u,): (u64,)| u)
}

fn batch_old(
    body: Bytes,
    sink: turbolift::__private::BatchSink,
) -> Result<usize, turbolift::service::InvokeError> {
    turbolift::__private::invoke_blocking_batch(body, sink, |(u,): (u64,)| u)
}

#[tokio::test]
async fn a_service_built_from_another_signature_is_a_version_mismatch() {
    let running = serve(&[&OLD_HANDLER], SECRET).await;
    route("mismatched", &[&running.url]);
    match mismatched(7).await {
        Err(e @ Error::VersionMismatch { .. }) => {
            let text = e.to_string();
            assert!(text.contains("different sources"), "{text}");
            assert!(text.contains("0123456789abcdef"), "{text}");
            assert!(text.contains("rebuild"), "{text}");
        }
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
    running.stop().await;
}

#[tokio::test]
async fn a_replica_that_refuses_connections_is_skipped() {
    let running = serve(&[handler("slow_async")], SECRET).await;
    route(
        "slow_async",
        &[dead_url().await, running.url.clone(), dead_url().await],
    );
    let calls: Vec<_> = (0..50u64)
        .map(|i| tokio::spawn(slow_async(i % 3)))
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap(), Ok(i as u64 % 3));
    }
    running.stop().await;
}

#[tokio::test]
async fn when_every_replica_is_down_the_call_fails_fast() {
    route("nowhere", &[dead_url().await, dead_url().await]);
    let started = Instant::now();
    let result = nowhere(1).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let text = result.unwrap_err().to_string();
    assert!(
        text.starts_with("no replica of `remote::nowhere` could take the call after 4 attempt(s)"),
        "{text}"
    );
}

#[tokio::test]
async fn shutdown_finishes_the_calls_in_flight() {
    let running = serve(&[handler("drained")], SECRET).await;
    route("drained", &[&running.url]);
    // Two calls show the function slow, so that the eight below all go out at once; a
    // first burst would wait in the client for the first answers (see `coalesce`), and
    // what shutdown finishes is the calls that reached the service.
    for _ in 0..2 {
        assert_eq!(drained(20).await, Ok(20));
    }
    let in_flight: Vec<_> = (0..8).map(|_| tokio::spawn(drained(400))).collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(running.stop());
    for call in in_flight {
        assert_eq!(call.await.unwrap(), Ok(400));
    }
    stopping.await.unwrap();
}
