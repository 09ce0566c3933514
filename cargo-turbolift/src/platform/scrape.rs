//! The replicas' service time at the end of a run, for the summary: `GET /v1/metrics` of
//! each replica still up (behind the run's secret; with TLS as the program, with its
//! certificate), and the histogram `turbolift_service_time_seconds` of each function read
//! out of Prometheus' text format into a [`Histogram`] of the same buckets.
//!
//! A replica killed during the run took its histogram with it, and one that does not
//! answer within [`SCRAPE_TIMEOUT`] is left out and named: service time covers the
//! replicas that answered. The program's own counts (`turbolift_shared::stats`) are the
//! exact ones.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use turbolift_shared::protocol;
use turbolift_shared::stats::{Histogram, TIME_BOUNDS_NANOS, TIME_BUCKETS};

use super::{TlsFiles, by_function};
use crate::tls::Prober;

/// How long a replica has to connect, and then for each read and write of its answer.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// The most of an answer read: a service's metrics are a few KiB per function.
const MAX_ANSWER: usize = 4 << 20;
/// The name a replica's certificate is checked for: replicas on this machine, local or in
/// containers, are reached at 127.0.0.1.
const SERVER_NAME: &str = "127.0.0.1";
/// The histogram's samples, one per bucket and function.
const BUCKET_SERIES: &str = "turbolift_service_time_seconds_bucket";
/// Replicas asked at once.
const AT_ONCE: usize = 64;

/// One function's service time, over the replicas that answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceTime {
    pub histogram: Histogram,
    /// Replicas asked.
    pub asked: u32,
    /// Replicas whose answer held the function's histogram.
    pub answered: u32,
    /// Why each of the others did not: `<address>: <why>`.
    pub failures: Vec<String>,
}

/// Asks replicas for their metrics with the run's secret, and its certificate with TLS.
pub struct Scraper {
    secret: String,
    tls: Option<Prober>,
}

impl Scraper {
    /// A scraper with `secret`; with `tls`, the program's certificate, its key and the
    /// run's authority, read from their files.
    pub fn new(secret: &str, tls: Option<&TlsFiles>) -> Result<Scraper> {
        let tls = match tls {
            Some(files) => {
                let read = |path: &std::path::Path| {
                    std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))
                };
                let prober = Prober::with_certificate(
                    &read(&files.ca)?,
                    &read(&files.cert)?,
                    &read(&files.key)?,
                )?;
                Some(prober)
            }
            None => None,
        };
        Ok(Scraper {
            secret: secret.to_owned(),
            tls,
        })
    }

    /// The service time of each function of `replicas` (function id, address), in the
    /// order the functions first appear; replicas are asked at once, each within
    /// [`SCRAPE_TIMEOUT`].
    pub fn service_times(&self, replicas: &[(String, SocketAddr)]) -> Vec<(String, ServiceTime)> {
        let mut answers = Vec::with_capacity(replicas.len());
        for group in replicas.chunks(AT_ONCE) {
            std::thread::scope(|scope| {
                let asked: Vec<_> = group
                    .iter()
                    .map(|(function, addr)| {
                        scope.spawn(move || {
                            let histogram = self.scrape(*addr).and_then(|text| {
                                let mut all = parse_service_time(&text)
                                    .map_err(|e| format!("its metrics do not parse: {e}"))?;
                                let at = all.iter().position(|(f, _)| f == function);
                                at.map(|i| all.swap_remove(i).1).ok_or_else(|| {
                                    format!("its metrics have no service time of `{function}`")
                                })
                            });
                            histogram.map_err(|why| format!("{addr}: {why}"))
                        })
                    })
                    .collect();
                for handle in asked {
                    answers.push(
                        handle
                            .join()
                            .unwrap_or_else(|_| Err("the scrape panicked".to_owned())),
                    );
                }
            });
        }
        let functions: Vec<(String, Result<Histogram, String>)> = replicas
            .iter()
            .map(|(function, _)| function.clone())
            .zip(answers)
            .collect();
        by_function(&functions)
            .into_iter()
            .map(|(function, answers)| {
                let mut time = ServiceTime::default();
                for answer in answers {
                    time.asked += 1;
                    match answer {
                        Ok(histogram) => {
                            time.answered += 1;
                            time.histogram.add(&histogram);
                        }
                        Err(why) => time.failures.push(why),
                    }
                }
                (function, time)
            })
            .collect()
    }

    /// The text of one replica's `GET /v1/metrics`.
    fn scrape(&self, addr: SocketAddr) -> Result<String, String> {
        match &self.tls {
            Some(prober) => {
                let stream = prober.connect(addr, SERVER_NAME, SCRAPE_TIMEOUT)?;
                get_metrics(stream, addr, &self.secret)
            }
            None => {
                let stream = turbolift_shared::probe::connect(addr, SCRAPE_TIMEOUT)?;
                get_metrics(stream, addr, &self.secret)
            }
        }
    }
}

/// `GET /v1/metrics` with the secret over `stream`, to the replica at `addr`: the body of a
/// 200 answer, else why not.
fn get_metrics(
    mut stream: impl Read + Write,
    addr: SocketAddr,
    secret: &str,
) -> Result<String, String> {
    let fail = |e: std::io::Error| e.to_string();
    write!(
        stream,
        "GET {} HTTP/1.1\r\nHost: {addr}\r\n{}: {secret}\r\nConnection: close\r\n\r\n",
        protocol::METRICS_PATH,
        protocol::SECRET_HEADER
    )
    .map_err(fail)?;
    stream.flush().map_err(fail)?;
    let (status, body) = read_answer(stream)?;
    match status {
        200 => String::from_utf8(body).map_err(|_| "its metrics are not UTF-8".to_owned()),
        401 => Err("it refused the run's secret (401)".to_owned()),
        status => Err(format!("it answered {status}")),
    }
}

/// An HTTP/1.1 answer's status and body (of a `Content-Length`, chunked, or up to the end
/// of the connection).
fn read_answer(mut stream: impl Read) -> Result<(u16, Vec<u8>), String> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    // Where the body starts, and its length when the head says.
    let mut head: Option<(usize, Option<usize>, bool)> = None;
    loop {
        if let Some((start, Some(length), _)) = head
            && answer.len() >= start + length
        {
            break;
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            // A TLS peer that closes without saying so, after an answer of no length.
            Err(e)
                if e.kind() == std::io::ErrorKind::UnexpectedEof
                    && head.is_some_and(|(_, length, _)| length.is_none()) =>
            {
                break;
            }
            Err(e) => return Err(e.to_string()),
        }
        if answer.len() > MAX_ANSWER {
            return Err(format!("its answer is longer than {MAX_ANSWER} bytes"));
        }
        if head.is_none()
            && let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n")
        {
            let text = String::from_utf8_lossy(&answer[..end]);
            let header = |name: &str| {
                text.lines().skip(1).find_map(|line| {
                    let (key, value) = line.split_once(':')?;
                    key.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| value.trim().to_owned())
                })
            };
            let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
            let length = header("content-length").and_then(|v| v.parse().ok());
            head = Some((end + 4, if chunked { None } else { length }, chunked));
        }
    }
    let Some((start, length, chunked)) = head else {
        return Err("the connection closed before a whole answer".to_owned());
    };
    let status_line =
        String::from_utf8_lossy(&answer[..answer.iter().position(|&b| b == b'\r').unwrap_or(0)])
            .into_owned();
    let Some(status) = turbolift_shared::probe::status_of(&status_line) else {
        return Err(format!("`{status_line}` is not an HTTP status line"));
    };
    let mut body = answer.split_off(start);
    if let Some(length) = length {
        if body.len() < length {
            return Err("the connection closed before the whole answer".to_owned());
        }
        body.truncate(length);
    } else if chunked {
        body = dechunk(&body).ok_or("its chunked answer is malformed")?;
    }
    Ok((status, body))
}

/// The data of a chunked body; `None` when it is not one.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(data);
        }
        data.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// Each function's service time in the metrics `text` (Prometheus' text format), per
/// bucket of [`TIME_BOUNDS_NANOS`], in the order the functions first appear. Text that is
/// not Prometheus' format, and a histogram whose buckets are not turbolift's, are errors.
pub fn parse_service_time(text: &str) -> Result<Vec<(String, Histogram)>, String> {
    // Cumulative counts per function, per bucket.
    let mut cumulative: Vec<(String, [Option<u64>; TIME_BUCKETS])> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("line {}", number + 1);
        let Sample {
            name,
            labels,
            value,
        } = sample(line).ok_or_else(|| format!("{}: `{}` is not a sample", at(), cut(line)))?;
        if name != BUCKET_SERIES {
            continue;
        }
        let label = |key: &str| {
            labels
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let (Some(function), Some(le)) = (label("function"), label("le")) else {
            return Err(format!("{}: a bucket without `function` or `le`", at()));
        };
        let bucket = bucket_of_le(le).ok_or_else(|| {
            format!(
                "{}: `le=\"{le}\"` is not a bound of turbolift's buckets",
                at()
            )
        })?;
        let count = count_of(value).ok_or_else(|| format!("{}: `{value}` is not a count", at()))?;
        let index = match cumulative.iter().position(|(f, _)| f == function) {
            Some(index) => index,
            None => {
                cumulative.push((function.to_owned(), [None; TIME_BUCKETS]));
                cumulative.len() - 1
            }
        };
        cumulative[index].1[bucket] = Some(count);
    }
    cumulative
        .into_iter()
        .map(|(function, buckets)| {
            let mut histogram = Histogram::default();
            let mut below = 0u64;
            for (i, count) in buckets.iter().enumerate() {
                let count = count
                    .ok_or_else(|| format!("`{function}` has no bucket `le=\"{}\"`", le_name(i)))?;
                histogram.counts[i] = count.checked_sub(below).ok_or_else(|| {
                    format!(
                        "`{function}`'s buckets are not cumulative at `le=\"{}\"`",
                        le_name(i)
                    )
                })?;
                below = count;
            }
            Ok((function, histogram))
        })
        .collect()
}

/// A line of Prometheus' text format: `name{labels} value [timestamp]`.
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(String, String)>,
    /// The value's text.
    value: &'a str,
}

/// The sample on `line`; `None` when it is not one.
fn sample(line: &str) -> Option<Sample<'_>> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inside) = rest.strip_prefix('{') {
        rest = inside;
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = rest.split_once('=')?;
            let key = key.trim();
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
            let (value, after) = quoted(after.trim_start())?;
            labels.push((key.to_owned(), value));
            rest = after;
        }
    }
    let mut words = rest.split_whitespace();
    let value = words.next()?;
    // An optional timestamp, and nothing else.
    if words.nth(1).is_some() || !rest.starts_with([' ', '\t']) {
        return None;
    }
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// A label value in double quotes with `\\`, `\"` and `\n` escaped: the value and what
/// follows it.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut chars = text.strip_prefix('"')?.char_indices();
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[i + 2..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                escaped @ ('\\' | '"') => value.push(escaped),
                _ => return None,
            },
            c => value.push(c),
        }
    }
    None
}

/// The bucket whose bound `le` is, in seconds; `+Inf` is the last.
fn bucket_of_le(le: &str) -> Option<usize> {
    if le == "+Inf" {
        return Some(TIME_BUCKETS - 1);
    }
    let nanos = le.parse::<f64>().ok()? * 1e9;
    TIME_BOUNDS_NANOS
        .iter()
        .position(|&bound| (bound as f64 - nanos).abs() <= bound as f64 * 1e-6)
}

/// The `le` of bucket `i`, for errors.
fn le_name(i: usize) -> String {
    match TIME_BOUNDS_NANOS.get(i) {
        Some(&bound) => format!("{}", bound as f64 / 1e9),
        None => "+Inf".to_owned(),
    }
}

/// A count: a whole number, written as an integer or a float.
fn count_of(value: &str) -> Option<u64> {
    let value: f64 = value.parse().ok()?;
    (value >= 0.0 && value.fract() == 0.0 && value < 2f64.powi(63)).then_some(value as u64)
}

/// The start of a long line, for an error.
fn cut(line: &str) -> String {
    match line.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::Arc;

    /// `GET /v1/metrics` of a real `faults::slow_double` replica after 300 calls.
    const REAL: &str = include_str!("testdata/service-metrics.txt");
    const SECRET: &str = "summary-test-secret";

    /// The histogram of [`REAL`], per bucket.
    fn real_histogram() -> Histogram {
        let mut histogram = Histogram::default();
        for (i, n) in [209, 0, 49, 1, 19, 0, 5, 3, 6, 5, 2, 0, 1]
            .into_iter()
            .enumerate()
        {
            histogram.counts[i] = n;
        }
        histogram
    }

    #[test]
    fn a_real_services_histogram_reads_back_per_bucket() {
        let functions = parse_service_time(REAL).unwrap();
        assert_eq!(
            functions,
            [("faults::slow_double".to_owned(), real_histogram())]
        );
        assert_eq!(functions[0].1.total(), 300);
        // A label value with escapes, a timestamp, and two functions in one service.
        let stamped: Vec<String> = REAL
            .lines()
            .map(|l| match l.starts_with('#') {
                true => l.to_owned(),
                false => format!("{l} 1700000000000"),
            })
            .collect();
        let two =
            REAL.replace("faults::slow_double", r#"a \"quoted\" \\ name"#) + &stamped.join("\n");
        let functions = parse_service_time(&two).unwrap();
        assert_eq!(functions.len(), 2);
        assert_eq!(functions[0].0, r#"a "quoted" \ name"#);
        assert_eq!(functions[1].1, real_histogram());
        assert_eq!(parse_service_time("").unwrap(), []);
        // The bounds as the service writes them now (Rust's shortest decimal, `0.000001`);
        // REAL was written by prometheus-client (`1e-06`).
        let decimal = REAL
            .lines()
            .map(|line| match line.split_once("le=\"") {
                Some((head, rest)) => {
                    let (le, tail) = rest.split_once('"').unwrap();
                    let le = match le.parse::<f64>() {
                        Ok(bound) if bound.is_finite() => bound.to_string(),
                        _ => le.to_owned(),
                    };
                    format!("{head}le=\"{le}\"{tail}")
                }
                None => line.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert!(decimal.contains("le=\"0.000001\""), "{decimal}");
        let functions = parse_service_time(&decimal).unwrap();
        assert_eq!(functions[0].1, real_histogram());
    }

    #[test]
    fn text_that_is_not_turbolifts_metrics_is_an_error_not_a_panic() {
        let error = |text: &str| parse_service_time(text).unwrap_err();
        assert!(error("<html><body>Not found</body></html>").contains("line 1"));
        assert!(error("\u{0}\u{ff}garbage 1 2 3 4").contains("not a sample"));
        assert!(error("turbolift_calls_total{function=\"a} 1").contains("not a sample"));
        assert!(error("turbolift_calls_total{function=\"a\"}").contains("not a sample"));
        assert!(error("turbolift_calls_total{=\"a\"} 1").contains("not a sample"));
        let missing = REAL.replace("le=\"0.001\"", "le=\"0.0011\"");
        assert!(
            error(&missing).contains("`le=\"0.0011\"` is not a bound"),
            "{missing}"
        );
        let gap: String = REAL
            .lines()
            .filter(|l| !l.contains("le=\"5e-06\""))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            error(&gap).contains("has no bucket `le=\"0.000005\"`"),
            "{}",
            error(&gap)
        );
        let shrinking = REAL.replace("le=\"+Inf\"} 300", "le=\"+Inf\"} 299");
        assert!(error(&shrinking).contains("not cumulative at `le=\"+Inf\"`"));
        let fraction = REAL.replace("le=\"10\"} 300", "le=\"10\"} 299.5");
        assert!(error(&fraction).contains("`299.5` is not a count"));
        let unlabelled = "turbolift_service_time_seconds_bucket{le=\"1\"} 3";
        assert!(error(unlabelled).contains("without `function` or `le`"));
    }

    /// A server on 127.0.0.1 that answers each connection in turn with the next of
    /// `answers` once it has read a request for the metrics with the secret.
    fn serve(answers: Vec<String>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for answer in answers {
                let (mut stream, _) = listener.accept().unwrap();
                let request = read_request(&mut stream);
                assert!(
                    request.starts_with("GET /v1/metrics HTTP/1.1\r\n"),
                    "{request}"
                );
                assert!(request.contains(&format!("\r\nx-turbolift-secret: {SECRET}\r\n")));
                stream.write_all(answer.as_bytes()).unwrap();
            }
        });
        addr
    }

    fn read_request(stream: &mut impl Read) -> String {
        let mut request = Vec::new();
        let mut buf = [0u8; 512];
        while !request.ends_with(b"\r\n\r\n") {
            match stream.read(&mut buf).unwrap() {
                0 => break,
                n => request.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8(request).unwrap()
    }

    fn ok(body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    fn chunked(body: &str) -> String {
        let (a, b) = body.split_at(body.len() / 2);
        format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
            a.len(),
            b.len()
        )
    }

    #[test]
    fn each_functions_replicas_add_up_and_one_that_does_not_answer_is_named() {
        let nobody = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let refused = serve(vec![
            "HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n".to_owned(),
        ]);
        let garbage = serve(vec![ok("<html>\n")]);
        let replicas = [
            ("faults::slow_double".to_owned(), serve(vec![ok(REAL)])),
            ("other".to_owned(), nobody),
            ("faults::slow_double".to_owned(), serve(vec![chunked(REAL)])),
            ("faults::slow_double".to_owned(), refused),
            ("other".to_owned(), garbage),
        ];
        let scraper = Scraper::new(SECRET, None).unwrap();
        let times = scraper.service_times(&replicas);
        assert_eq!(times.len(), 2);
        let (function, slow) = &times[0];
        assert_eq!(function, "faults::slow_double");
        assert_eq!((slow.asked, slow.answered), (3, 2));
        assert_eq!(slow.histogram.total(), 600);
        assert_eq!(
            slow.failures,
            [format!("{refused}: it refused the run's secret (401)")]
        );
        let (function, other) = &times[1];
        assert_eq!(function, "other");
        assert_eq!((other.asked, other.answered), (2, 0));
        assert!(
            other.failures[0].starts_with(&format!("{nobody}: ")),
            "{:?}",
            other.failures
        );
        assert!(
            other.failures[1].contains("its metrics do not parse: line 1"),
            "{:?}",
            other.failures
        );
        // A replica that does not answer holds the summary up no longer than the timeout.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let started = std::time::Instant::now();
        let times = scraper.service_times(&[("f".to_owned(), silent.local_addr().unwrap())]);
        assert_eq!(times[0].1.answered, 0);
        assert!(
            started.elapsed() < SCRAPE_TIMEOUT * 3,
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn over_tls_the_scraper_shows_the_programs_certificate() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let authority = crate::tls::Authority::new("run").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let program = authority.program().unwrap();
        let files = TlsFiles {
            dir: dir.path().to_owned(),
            ca: dir.path().join("ca.crt"),
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        };
        std::fs::write(&files.ca, authority.ca_pem()).unwrap();
        std::fs::write(&files.cert, &program.cert_pem).unwrap();
        std::fs::write(&files.key, &program.key_pem).unwrap();

        // A service that takes only clients of the authority, as a replica with TLS does.
        let service = authority.service("slow", &[]).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(authority.ca_pem().as_bytes()).unwrap())
            .unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            crate::tls::provider(),
        )
        .build()
        .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                CertificateDer::pem_slice_iter(service.cert_pem.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(service.key_pem.as_bytes()).unwrap(),
            )
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Arc::new(config);
        std::thread::spawn(move || {
            for _ in 0..2 {
                let (tcp, _) = listener.accept().unwrap();
                let connection = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(connection, tcp);
                let request = read_request(&mut tls);
                if request.contains(SECRET) {
                    let _ = tls.write_all(ok(REAL).as_bytes());
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                }
            }
        });
        let scraper = Scraper::new(SECRET, Some(&files)).unwrap();
        let times = scraper.service_times(&[("faults::slow_double".to_owned(), addr)]);
        assert_eq!(times[0].1.failures, Vec::<String>::new());
        assert_eq!(times[0].1.histogram, real_histogram());
        // Without the program's certificate, the handshake fails.
        let plain = Scraper::new(SECRET, None).unwrap();
        let times = plain.service_times(&[("faults::slow_double".to_owned(), addr)]);
        assert_eq!(times[0].1.answered, 0);
    }
}
