//! A program with turbolift's `otel` feature under `cargo turbolift run`: its services are
//! built with `otlp` and, with `OTEL_EXPORTER_OTLP_ENDPOINT` set, send their spans to a
//! collector (here a listener that keeps each request), each span in the program's trace
//! and the child of the program's span.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use crate::support::*;

/// An OTLP/HTTP request as the collector received it.
struct Export {
    head: String,
    body: Vec<u8>,
}

/// A collector on 127.0.0.1 that answers `200` to every request of every connection and
/// keeps them; its base URL.
fn collector(received: Arc<Mutex<Vec<Export>>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let received = received.clone();
            std::thread::spawn(move || serve_exports(stream, &received));
        }
    });
    url
}

fn serve_exports(stream: TcpStream, received: &Mutex<Vec<Export>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => head.push_str(&line.to_lowercase()),
            }
        }
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |n| n.trim().parse().unwrap());
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        received.lock().unwrap().push(Export { head, body });
        let answer =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if writer.write_all(answer).is_err() {
            return;
        }
    }
}

/// The hex value after `label ` in the program's line `trace <hex> span <hex>`, as bytes.
fn id(stdout: &str, label: &str) -> Vec<u8> {
    let line = stdout.lines().find(|l| l.starts_with("trace ")).unwrap();
    let words: Vec<&str> = line.split(' ').collect();
    let hex = words[words.iter().position(|w| *w == label).unwrap() + 1];
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

#[test]
fn the_services_export_their_spans_in_the_programs_trace() {
    let received = Arc::new(Mutex::new(Vec::new()));
    let endpoint = collector(received.clone());
    let dir = fixture("traced");
    let out = output(turbolift(&dir, &["run"]).env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint));
    assert_success("cargo turbolift run", &out);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("square(7) = 49\n"), "{stdout}");
    assert!(stdout.ends_with("done\n"), "{stdout}");
    let generated =
        target_dir().join("turbolift/traced-fixture/services/traced-fixture-services/Cargo.toml");
    let manifest = std::fs::read_to_string(&generated).unwrap();
    assert!(manifest.contains("\"otlp\""), "{manifest}");

    // The replicas sent what they had when they stopped, before `run` returned.
    let (trace, span) = (id(&stdout, "trace"), id(&stdout, "span"));
    let exports = received.lock().unwrap();
    assert!(!exports.is_empty(), "no export reached the collector");
    for export in exports.iter() {
        assert!(
            export.head.starts_with("post /v1/traces "),
            "{}",
            export.head
        );
        assert!(
            export.head.contains("content-type: application/x-protobuf"),
            "{}",
            export.head
        );
    }
    let body: Vec<u8> = exports.iter().flat_map(|e| e.body.clone()).collect();
    // The call's span and at least one batch request's, each with the program's trace id
    // and the program's span id as its parent.
    for name in [
        &b"turbolift.call"[..],
        b"turbolift.batch",
        b"traced_fixture::square",
    ] {
        assert!(
            occurrences(&body, name) > 0,
            "{}",
            String::from_utf8_lossy(name)
        );
    }
    let spans = occurrences(&body, b"turbolift.call") + occurrences(&body, b"turbolift.batch");
    assert!(spans >= 2, "{spans} spans");
    assert_eq!(
        occurrences(&body, &trace),
        spans,
        "every span in the program's trace"
    );
    assert_eq!(
        occurrences(&body, &span),
        spans,
        "every span the child of the program's"
    );
}
