//! Scenario 5: more than 10,000 bad requests straight at a service started by
//! `cargo turbolift run` — random and mutated bodies, oversize, wrong content type, no or
//! a wrong secret, a wrong signature or protocol, unknown paths, slow-loris heads and
//! bodies. Each must get the right answer; the service must not crash or grow.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use faults::{Record, Tag};
use turbolift::protocol;

use crate::harness::*;
use crate::support::running;

/// A keep-alive HTTP/1.1 connection that reconnects when the service closes it.
struct Client {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
}

struct Answer {
    status: u16,
    kind: Option<String>,
    body: Vec<u8>,
}

impl Client {
    fn send(&mut self, head: &str, body: &[u8]) -> Answer {
        for _ in 0..3 {
            if self.stream.is_none() {
                let s = TcpStream::connect(self.addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                self.stream = Some(BufReader::new(s));
            }
            match self.exchange(head, body) {
                Ok((answer, close)) => {
                    if close {
                        self.stream = None;
                    }
                    return answer;
                }
                // The service closed a connection it would not reuse: open another.
                Err(_) => self.stream = None,
            }
        }
        panic!("no answer after three connections");
    }

    fn exchange(&mut self, head: &str, body: &[u8]) -> std::io::Result<(Answer, bool)> {
        let reader = self.stream.as_mut().unwrap();
        let stream = reader.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut status_line = String::new();
        if reader.read_line(&mut status_line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap();
        let (mut length, mut kind, mut close) = (0usize, None, false);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            let (name, value) = (name.to_ascii_lowercase(), value.trim().to_owned());
            match name.as_str() {
                "content-length" => length = value.parse().unwrap(),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                n if n == protocol::ERROR_HEADER => kind = Some(value),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        Ok((Answer { status, kind, body }, close))
    }
}

/// A small deterministic generator, so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn record(&mut self) -> Record {
        let name_len = self.below(12);
        let name: String = (0..name_len)
            .map(|_| char::from(b'a' + self.below(26) as u8))
            .collect();
        let count = self.below(8);
        let values = (0..count).map(|_| self.next() as u32).collect();
        let tag = match self.below(3) {
            0 => Tag::Plain,
            1 => Tag::Weighted(self.next() as u16),
            _ => Tag::Named {
                label: "é-label".to_owned(),
            },
        };
        Record { name, values, tag }
    }
}

/// A header set to a value, or removed (`None`); `:path` changes the path.
type HeaderEdit<'a> = (&'a str, Option<&'a str>);

struct Target {
    path: String,
    secret: String,
    signature: String,
}

impl Target {
    fn head(&self, body_len: usize, edit: &[HeaderEdit]) -> String {
        let mut headers = vec![
            ("content-type", Some(protocol::CONTENT_TYPE.to_owned())),
            (
                protocol::PROTOCOL_HEADER,
                Some(protocol::PROTOCOL_VERSION.to_string()),
            ),
            (protocol::SIGNATURE_HEADER, Some(self.signature.clone())),
            (protocol::SECRET_HEADER, Some(self.secret.clone())),
        ];
        let mut path = self.path.clone();
        for (name, value) in edit {
            if *name == ":path" {
                path = value.unwrap().to_owned();
            } else if let Some(h) = headers.iter_mut().find(|(n, _)| n == name) {
                h.1 = value.map(str::to_owned);
            }
        }
        let mut head =
            format!("POST {path} HTTP/1.1\r\nhost: test\r\ncontent-length: {body_len}\r\n");
        for (name, value) in headers {
            if let Some(value) = value {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        head.push_str("\r\n");
        head
    }
}

/// Reads the program's environment, as the suite's stand-in for an attacker who has the
/// address but (mostly) not the secret.
fn program_env(pid: u32) -> Vec<(String, String)> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

fn cmdline(pid: u32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
        .replace('\0', " ")
}

#[test]
fn ten_thousand_bad_requests_get_the_right_answers() {
    let _serial = serial();
    built();
    let go = tempfile::tempdir().unwrap();
    let go_file = go.path().join("go");
    let mut run = start(
        &["--replicas", "1"],
        &["wait"],
        &[
            ("FAULTS_GO", go_file.to_str().unwrap()),
            ("TURBOLIFT_MAX_BODY", "65536"),
            ("TURBOLIFT_HEADER_TIMEOUT", "1s"),
            ("TURBOLIFT_BODY_TIMEOUT", "1s"),
        ],
    );
    assert_eq!(run.line(), "ready");
    let program = running(&exe(""))[0];
    let env = program_env(program);
    let var = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let secret = var("TURBOLIFT_SECRET");
    assert_eq!(secret.len(), 64, "a fresh 256-bit secret");
    let endpoints = var("TURBOLIFT_ENDPOINTS");
    let url = endpoints
        .split(';')
        .find_map(|e| e.strip_prefix("faults::checksum="))
        .unwrap()
        .trim_start_matches("http://")
        .to_owned();
    let service = running(&exe("checksum"));
    assert_eq!(service.len(), 1);
    let service = service[0];
    // Nothing secret on any command line (`ps` shows command lines to every user).
    for pid in [run.child.0.id(), program, service] {
        assert!(
            !cmdline(pid).contains(&secret),
            "the secret is on the command line of {pid}"
        );
    }
    let logs_before = rss_kib(service);

    let mut client = Client {
        addr: url.parse().unwrap(),
        stream: None,
    };
    let mut target = Target {
        path: turbolift::naming::route("faults::checksum"),
        secret: secret.clone(),
        signature: "0000000000000000".to_owned(),
    };
    // The service says its signature when refusing a wrong one.
    let refused = client.send(&target.head(1, &[]), &[0]);
    assert_eq!(refused.status, 409);
    let text = String::from_utf8_lossy(&refused.body).into_owned();
    target.signature = text.rsplit("service signature ").next().unwrap()[..16].to_owned();

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    let mut check = |label: &str, answer: Answer, status: u16, kind: Option<&str>| {
        assert_eq!(
            (answer.status, answer.kind.as_deref()),
            (status, kind),
            "{label}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        *counts.entry(format!("{status}")).or_default() += 1;
    };
    let expect_decode = |body: &[u8]| turbolift::wire::decode::<(Record,)>(body).is_ok();

    // A good call first, and the value it must give.
    let record = rng.record();
    let body = turbolift::wire::encode(&(record.clone(),)).unwrap();
    let good = client.send(&target.head(body.len(), &[]), &body);
    assert_eq!(good.status, 200);
    assert_eq!(
        turbolift::wire::decode::<u64>(&good.body).unwrap(),
        faults_checksum(&record)
    );

    for _ in 0..4_000 {
        let len = rng.below(200) as usize;
        let body = rng.bytes(len);
        let ok = expect_decode(&body);
        let answer = client.send(&target.head(body.len(), &[]), &body);
        if ok {
            check("random", answer, 200, None);
        } else {
            check("random", answer, 400, Some("bad-request"));
        }
    }
    for _ in 0..3_000 {
        let mut body = turbolift::wire::encode(&(rng.record(),)).unwrap();
        match rng.below(4) {
            0 => body.truncate(rng.below(body.len() as u64) as usize),
            1 => {
                let bit = rng.below(body.len() as u64 * 8);
                body[(bit / 8) as usize] ^= 1 << (bit % 8);
            }
            2 => {
                let n = 1 + rng.below(8) as usize;
                let extra = rng.bytes(n);
                body.extend(extra);
            }
            _ => {
                let at = rng.below(body.len() as u64) as usize;
                body.insert(at, rng.next() as u8);
            }
        }
        let ok = expect_decode(&body);
        let answer = client.send(&target.head(body.len(), &[]), &body);
        if ok {
            check("mutated", answer, 200, None);
        } else {
            check("mutated", answer, 400, Some("bad-request"));
        }
    }
    let valid = turbolift::wire::encode(&(rng.record(),)).unwrap();
    let cases: [(&str, Vec<HeaderEdit>, u16, &str); 8] = [
        (
            "wrong content type",
            vec![("content-type", Some("application/json"))],
            415,
            "unsupported-media-type",
        ),
        (
            "no content type",
            vec![("content-type", None)],
            415,
            "unsupported-media-type",
        ),
        (
            "no secret",
            vec![(protocol::SECRET_HEADER, None)],
            401,
            "unauthorized",
        ),
        (
            "wrong secret",
            vec![(protocol::SECRET_HEADER, Some("not-the-secret"))],
            401,
            "unauthorized",
        ),
        (
            "wrong signature",
            vec![(protocol::SIGNATURE_HEADER, Some("0123456789abcdef"))],
            409,
            "signature-mismatch",
        ),
        (
            "wrong protocol",
            vec![(protocol::PROTOCOL_HEADER, Some("0"))],
            409,
            "protocol-mismatch",
        ),
        (
            "unknown function",
            vec![(":path", Some("/v1/call/faults/nothing_here"))],
            404,
            "unknown-function",
        ),
        (
            "unknown nested path",
            vec![(":path", Some("/v1/call/faults/x/../../checksum"))],
            404,
            "unknown-function",
        ),
    ];
    for (label, edit, status, kind) in &cases {
        for _ in 0..400 {
            let answer = client.send(&target.head(valid.len(), edit), &valid);
            check(label, answer, *status, Some(kind));
        }
    }
    for _ in 0..300 {
        let answer = client.send(&target.head(0, &[]), &[]);
        check("empty body", answer, 400, Some("bad-request"));
    }
    let oversize = rng.bytes(70_000);
    for _ in 0..100 {
        let answer = client.send(&target.head(oversize.len(), &[]), &oversize);
        check("oversize", answer, 413, Some("too-large"));
    }
    let made: u64 = counts.values().sum::<u64>() + 2;

    // Slow-loris: heads that never end, and bodies that stop half-way.
    let addr: SocketAddr = url.parse().unwrap();
    let started = Instant::now();
    let mut slow_heads: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"POST /v1/call/faults/checksum HTTP/1.1\r\nhost: x\r\ncontent-le")
                .unwrap();
            s
        })
        .collect();
    let mut slow_bodies: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(target.head(100, &[]).as_bytes()).unwrap();
            s.write_all(&[1, 2, 3]).unwrap();
            s
        })
        .collect();
    for s in slow_heads.iter_mut() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(
            rest.is_empty() || rest.starts_with(b"HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&rest)
        );
    }
    let heads_closed = started.elapsed();
    for s in slow_bodies.iter_mut() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        let text = String::from_utf8_lossy(&rest);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("slow-body"), "{text}");
    }
    let bodies_closed = started.elapsed();
    assert!(
        heads_closed < Duration::from_secs(5),
        "slow heads were cut after {heads_closed:?}"
    );
    assert!(
        bodies_closed < Duration::from_secs(5),
        "slow bodies were cut after {bodies_closed:?}"
    );

    // The service is the same process, still serving.
    let again = client.send(&target.head(body.len(), &[]), &body);
    assert_eq!(again.status, 200);
    assert_eq!(
        running(&exe("checksum")),
        vec![service],
        "the service did not crash"
    );
    let rss_after = rss_kib(service);
    assert!(
        rss_after < logs_before + 32 * 1024,
        "memory grew from {logs_before} KiB to {rss_after} KiB"
    );
    std::fs::write(&go_file, "").unwrap();
    run.until("done");
    let (code, stderr) = run.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(restarts(&stderr), 0);
    summary(
        "bad-input",
        format!(
            "requests {made} + 40 slow-loris, answers {counts:?}, slow heads closed in {} ms, slow bodies answered 408 in {} ms, crashes 0, restarts 0, RSS {logs_before} KiB before, {rss_after} KiB after",
            heads_closed.as_millis(),
            bodies_closed.as_millis()
        ),
    );
}

/// What `faults::checksum` computes, to check a good call's answer.
fn faults_checksum(record: &Record) -> u64 {
    let mut sum = record.name.len() as u64;
    for v in &record.values {
        sum = sum.wrapping_mul(31).wrapping_add(u64::from(*v));
    }
    sum
}
