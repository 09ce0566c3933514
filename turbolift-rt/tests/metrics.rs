//! `GET /v1/metrics` of a service on 127.0.0.1: the counters equal the calls made, and
//! the text passes `promtool check metrics` (Debian's `prometheus` package; `./test.sh`
//! unpacks it and runs that test, which is ignored without it).

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

use common::http::Connection;
use common::{Running, handler, route, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turbolift::protocol;
use turbolift::wire;

mod common;

const SECRET: &str = "metrics-test-secret";

#[turbolift::distribute]
fn double(n: u64) -> u64 {
    n * 2
}

#[turbolift::distribute]
fn fragile(n: u32) -> u32 {
    if n.is_multiple_of(3) {
        panic!("{n} is a multiple of three");
    }
    n
}

/// The promtool test's own function: the tests run at once, and each routes its
/// functions to its own service.
#[turbolift::distribute]
fn checked(n: u32) -> u32 {
    assert!(n > 0, "zero");
    n
}

/// A service of the functions `ids`, which are routed to it.
async fn start(ids: &[&str]) -> Running {
    let handlers: Vec<_> = ids.iter().map(|id| handler(id)).collect();
    let service = serve(&handlers, SECRET).await;
    for id in ids {
        route(id, &[&service.url], SECRET);
    }
    service
}

/// `GET /v1/metrics` on a connection of its own, with `secret` if any: the status line
/// and the body.
async fn scrape(url: &str, secret: Option<&str>) -> (String, String) {
    let host = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let secret = secret
        .map(|s| format!("{}: {s}\r\n", protocol::SECRET_HEADER))
        .unwrap_or_default();
    let request = format!(
        "GET {} HTTP/1.1\r\nhost: {host}\r\n{secret}connection: close\r\n\r\n",
        protocol::METRICS_PATH
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap().to_owned();
    assert!(
        status.ends_with("200 OK") == head.contains("text/plain; version=0.0.4"),
        "{head}"
    );
    (status, body.to_owned())
}

/// The samples of Prometheus' text format: `name{labels}` to value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counters_equal_the_calls_made() {
    let service = start(&["metrics::double", "metrics::fragile"]).await;
    for n in 0..20 {
        assert_eq!(double(n).await.unwrap(), n * 2);
    }
    let mut panics = 0;
    for n in 1..=6u32 {
        if fragile(n).await.is_err() {
            panics += 1;
        }
    }
    assert_eq!(panics, 2);
    // One batch request of nine calls, three of which panic.
    let info = handler("metrics::fragile").info();
    let calls: Vec<(u32,)> = (1..=9).map(|n| (n,)).collect();
    let answer = Connection::open(&service.url)
        .await
        .post(
            &turbolift::naming::batch_route(info.id()),
            info.signature(),
            SECRET,
            wire::encode(&calls).unwrap(),
            |_| {},
        )
        .await;
    assert_eq!(answer.status, 200);
    let (status, _) = scrape(&service.url, None).await;
    assert!(status.contains("401"), "{status}");

    let (status, text) = scrape(&service.url, Some(SECRET)).await;
    assert!(status.ends_with("200 OK"), "{status}");
    let samples = samples(&text);
    let value = |series: &str| -> f64 {
        *samples
            .get(series)
            .unwrap_or_else(|| panic!("no `{series}` in:\n{text}"))
    };
    let double = r#"function="metrics::double""#;
    let fragile = r#"function="metrics::fragile""#;
    for (series, expected) in [
        (format!("turbolift_calls_total{{{double}}}"), 20.0),
        (format!("turbolift_calls_total{{{fragile}}}"), 6.0 + 9.0),
        (
            format!("turbolift_errors_total{{{double},kind=\"panic\"}}"),
            0.0,
        ),
        (
            format!("turbolift_errors_total{{{fragile},kind=\"panic\"}}"),
            2.0 + 3.0,
        ),
        (
            r#"turbolift_errors_total{kind="unauthorized"}"#.to_owned(),
            1.0,
        ),
        (r#"turbolift_errors_total{kind="busy"}"#.to_owned(), 0.0),
        (format!("turbolift_batches_total{{{double}}}"), 0.0),
        (format!("turbolift_batches_total{{{fragile}}}"), 1.0),
        (format!("turbolift_batch_calls_total{{{fragile}}}"), 9.0),
        (format!("turbolift_calls_in_flight{{{fragile}}}"), 0.0),
        ("turbolift_calls_waiting".to_owned(), 0.0),
        (
            format!("turbolift_service_time_seconds_count{{{double}}}"),
            20.0,
        ),
        (
            format!("turbolift_service_time_seconds_count{{{fragile}}}"),
            15.0,
        ),
        (
            format!("turbolift_service_time_seconds_bucket{{{fragile},le=\"+Inf\"}}"),
            15.0,
        ),
    ] {
        assert_eq!(value(&series), expected, "{series} in:\n{text}");
    }
    assert!(value(&format!("turbolift_service_time_seconds_sum{{{double}}}")) > 0.0);
    // The scrape's own connection at least.
    assert!(value("turbolift_open_connections") >= 1.0, "{text}");
    assert!(value("process_resident_memory_bytes") > 1e6, "{text}");
    service.stop().await;
}

/// `promtool`: `$PROMTOOL` if set, else the one on the `PATH`.
fn promtool() -> Command {
    Command::new(std::env::var_os("PROMTOOL").unwrap_or_else(|| "promtool".into()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs promtool (Debian's prometheus package; ./test.sh unpacks it)"]
async fn promtool_checks_the_metrics_of_a_live_service() {
    let service = start(&["metrics::checked"]).await;
    for n in 1..5 {
        assert_eq!(checked(n).await.unwrap(), n);
    }
    assert!(checked(0).await.is_err());
    let (status, text) = scrape(&service.url, Some(SECRET)).await;
    assert!(status.ends_with("200 OK"), "{status}");
    service.stop().await;
    let mut check = promtool()
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (set PROMTOOL to its path, or put it on the PATH)");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {}\n{said}\non:\n{text}",
        out.status
    );
}

/// The function of the test with metrics off.
#[turbolift::distribute]
fn uncounted(n: u32) -> u32 {
    n + 1
}

#[tokio::test]
async fn with_metrics_off_calls_are_served_and_the_endpoint_says_why_it_has_nothing() {
    let mut options = turbolift::service::ServiceOptions::new(SECRET);
    options.metrics = false;
    let service = common::serve_with(&[handler("metrics::uncounted")], &options).await;
    route("metrics::uncounted", &[&service.url], SECRET);
    for n in 0..5 {
        assert_eq!(uncounted(n).await.unwrap(), n + 1);
    }
    let (status, body) = scrape(&service.url, Some(SECRET)).await;
    assert!(status.contains(" 404 "), "{status}");
    assert!(body.contains("TURBOLIFT_METRICS=off"), "{body}");
    // The secret still guards the endpoint: without it, no word about the metrics.
    let (status, _) = scrape(&service.url, None).await;
    assert!(status.contains(" 401 "), "{status}");
    service.stop().await;
}
