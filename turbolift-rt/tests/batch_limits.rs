//! What one batch request may cost a service: at most `protocol::MAX_BATCH_CALLS` calls,
//! checked from the count before any call is decoded, and memory within a small multiple
//! of its body.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use tower::ServiceExt;
use turbolift::protocol::{self, ErrorKind, MAX_BATCH_CALLS};
use turbolift::service::{Service, ServiceOptions};
use turbolift::wire::{self, frames};

use common::handler;
use common::http::Connection;

mod common;

const SECRET: &str = "batch-limits-secret";

#[turbolift::distribute]
fn tick() -> u8 {
    7
}

#[turbolift::distribute]
async fn tock() -> u8 {
    8
}

#[turbolift::distribute]
fn pair(a: String, b: String) -> usize {
    a.len() + b.len()
}

#[turbolift::distribute]
fn total(values: Vec<u64>) -> u64 {
    values.iter().sum()
}

fn router() -> axum::Router {
    let handlers =
        ["tick", "tock", "pair", "total"].map(|name| handler(&format!("batch_limits::{name}")));
    Service::new(&handlers, &ServiceOptions::new(SECRET)).router()
}

/// A batch of `name` with `body`, answered by the router in-process; a hang is a failure.
async fn batch(name: &str, body: Vec<u8>) -> (StatusCode, Option<String>, Vec<u8>) {
    let info = handler(&format!("batch_limits::{name}")).info();
    let request = Request::post(turbolift::naming::batch_route(info.id()))
        .header("content-type", protocol::CONTENT_TYPE)
        .header(
            protocol::PROTOCOL_HEADER,
            protocol::PROTOCOL_VERSION.to_string(),
        )
        .header(
            protocol::SIGNATURE_HEADER,
            format!("{:016x}", info.signature()),
        )
        .header(protocol::SECRET_HEADER, SECRET)
        .body(Body::from(body))
        .unwrap();
    let answer = async {
        let response = router().oneshot(request).await.unwrap();
        let kind = response
            .headers()
            .get(protocol::ERROR_HEADER)
            .map(|v| v.to_str().unwrap().to_owned());
        let status = response.status();
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, kind, body.to_vec())
    };
    tokio::time::timeout(Duration::from_secs(60), answer)
        .await
        .expect("an answer, not a hang")
}

/// A batch body of `count` calls whose arguments take no bytes: the count alone.
fn count_only(count: u64) -> Vec<u8> {
    let mut body = Vec::new();
    frames::push_varint(&mut body, count);
    body
}

fn frames_of(body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut reader = frames::FrameReader::new();
    reader.push(body);
    let mut all = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        all.push((frame.index, frame.tag, frame.payload.to_vec()));
    }
    assert!(!reader.has_partial(), "no partial frame");
    // Frames come as the calls finish; each names its call, once.
    all.sort_by_key(|(index, _, _)| *index);
    for (position, (index, _, _)) in all.iter().enumerate() {
        assert_eq!(*index, position as u64, "one frame per call");
    }
    let all: Vec<(u8, Vec<u8>)> = all
        .into_iter()
        .map(|(_, tag, payload)| (tag, payload))
        .collect();
    all
}

fn assert_too_many(answer: &(StatusCode, Option<String>, Vec<u8>), calls: u64) {
    let (status, kind, body) = answer;
    let text = String::from_utf8_lossy(body);
    assert_eq!(status.as_u16(), ErrorKind::TooLarge.status(), "{text}");
    assert_eq!(kind.as_deref(), Some(ErrorKind::TooLarge.as_str()));
    for needle in [
        format!("has {calls} calls"),
        format!("({MAX_BATCH_CALLS} calls)"),
        "split it".to_owned(),
    ] {
        assert!(text.contains(&needle), "`{text}` should say `{needle}`");
    }
}

#[tokio::test]
async fn a_count_of_two_to_the_fortieth_is_refused_at_once() {
    // Five bytes that claim 2^40 calls of functions without arguments, sync and async.
    for name in ["tick", "tock"] {
        let answer = batch(name, count_only(1 << 40)).await;
        assert_too_many(&answer, 1 << 40);
    }
    // A count that is not even a varint is a bad request, as before.
    let (status, kind, _) = batch("tick", vec![0xff; 11]).await;
    assert_eq!(
        (status.as_u16(), kind.as_deref()),
        (400, Some("bad-request"))
    );
}

#[tokio::test]
async fn a_batch_of_the_most_calls_runs_and_one_more_is_refused() {
    let limit = MAX_BATCH_CALLS as u64;
    for (name, value) in [("tick", 7u8), ("tock", 8)] {
        let (status, kind, body) = batch(name, count_only(limit)).await;
        assert_eq!((status, kind), (StatusCode::OK, None), "{name}");
        let frames = frames_of(&body);
        assert_eq!(frames.len(), MAX_BATCH_CALLS, "{name}");
        for (tag, payload) in frames {
            assert_eq!(tag, frames::OK);
            assert_eq!(wire::decode::<u8>(&payload).unwrap(), value);
        }
        assert_too_many(&batch(name, count_only(limit + 1)).await, limit + 1);
    }
}

#[tokio::test]
async fn eight_mebibytes_of_empty_calls_are_refused() {
    // Each call two empty strings, two bytes: four million calls, under the body limit.
    let calls = vec![(String::new(), String::new()); 4 << 20];
    let body = wire::encode(&calls).unwrap();
    assert!(body.len() > 8 << 20 && body.len() < ServiceOptions::new(SECRET).max_body);
    assert_too_many(&batch("pair", body).await, 4 << 20);
    // At the limit, the same calls run.
    let calls = vec![(String::new(), "ab".to_owned()); MAX_BATCH_CALLS];
    let (status, _, body) = batch("pair", wire::encode(&calls).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(frames_of(&body).len(), MAX_BATCH_CALLS);
}

/// Set in the environment of the child process that serves for the memory test.
const CHILD: &str = "TURBOLIFT_TEST_BATCH_MEMORY_CHILD";
/// The line the child prints before the service's URL.
const SERVING: &str = "batch-limits child serving on ";

/// The service of the memory test, in a process of its own so that nothing else of the
/// test run (other tests, the client) counts in its memory. Does nothing unless started
/// by that test.
#[test]
#[ignore = "the service that `a_large_batch_takes_memory_within_a_small_multiple_of_its_body` starts in a child process"]
fn child_service() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let running = common::serve(&[handler("batch_limits::total")], SECRET).await;
        println!("{SERVING}{}", running.url);
        // Serves until the test closes this process's stdin.
        tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
            .await
            .unwrap()
            .unwrap();
        running.stop().await;
    });
}

/// A field of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_large_batch_takes_memory_within_a_small_multiple_of_its_body() {
    if !std::path::Path::new("/proc/self/status").exists() {
        panic!("this test reads /proc/<pid>/status (Linux)");
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_service", "--exact", "--ignored", "--nocapture"])
        .env(CHILD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("the child's URL").unwrap();
        if let Some(url) = line.strip_prefix(SERVING) {
            break url.to_owned();
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let signature = handler("batch_limits::total").info().signature();
    let route = turbolift::naming::batch_route("batch_limits::total");
    // 60,000 calls of a hundred small numbers each: 101 bytes of body per call, 824 bytes
    // once decoded (a `Vec<u64>`), so decoding every call at once would take 8x the body.
    let calls: Vec<(Vec<u64>,)> = (0..60_000u64)
        .map(|i| ((0..100).map(|j| (i + j) % 100).collect(),))
        .collect();
    let sums: Vec<u64> = calls.iter().map(|(v,)| v.iter().sum()).collect();
    let body = wire::encode(&calls).unwrap();
    drop(calls);
    let (before, peak) = runtime.block_on(async {
        let mut connection = Connection::open(&url).await;
        // The same kind of batch, small, first: the runtime's threads, the blocking pool's
        // thread and the allocator's arenas exist before the measure starts.
        let warm = wire::encode(&vec![(vec![1u64; 100],); 1000]).unwrap();
        let answer = connection
            .post(&route, signature, SECRET, warm, |_| {})
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        let before = status_kib(pid, "VmRSS:");
        // The peak from here on: "5" resets VmHWM to the current resident size.
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
        let answer = connection
            .post(&route, signature, SECRET, body.clone(), |_| {})
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        let got: Vec<u64> = frames_of(&answer.body)
            .into_iter()
            .map(|(tag, payload)| {
                assert_eq!(tag, frames::OK);
                wire::decode(&payload).unwrap()
            })
            .collect();
        assert!(got == sums, "every call's right sum, in order");
        (before, status_kib(pid, "VmHWM:"))
    });
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let body_kib = body.len() as u64 / 1024;
    let grew = peak.saturating_sub(before);
    eprintln!(
        "batch of 60000 calls, body {body_kib} KiB: resident {before} KiB before, peak {peak} KiB, grew {grew} KiB ({:.2}x the body)",
        grew as f64 / body_kib as f64
    );
    // The body is held once while its calls run (hyper's read buffers are freed as it is
    // gathered), plus the frames waiting to be sent and one call's arguments: about 1x.
    // 4x the body plus 8 MiB leaves room for the allocator keeping freed pages and the
    // connection's buffers, and still fails if every call were decoded at once (8x).
    assert!(
        grew <= 4 * body_kib + 8 * 1024,
        "serving a {body_kib} KiB batch grew the service by {grew} KiB"
    );
}
