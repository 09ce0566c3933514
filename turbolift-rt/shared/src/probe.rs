//! A blocking probe of a service's readiness endpoint with the standard library only: for
//! a container's health check (`SERVICE --health-check`) and for a launcher waiting for
//! the services it started.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::protocol::READY_PATH;

/// The most read of an answer's status line.
const MAX_STATUS_LINE: u64 = 1024;

/// Asks the service at `addr` whether it takes calls: one `GET` of [`READY_PATH`], `Ok` on
/// `200`, else why not (the status it answered, or the I/O error). `timeout` bounds the
/// connection, then each write and each read.
pub fn ready(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    ready_over(connect(addr, timeout)?, addr)
}

/// A connection to `addr` within `timeout`, whose reads and writes then time out after
/// `timeout` each: for [`ready_over`] through a layer of the caller's (TLS).
pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    let fail = |e: std::io::Error| format!("{addr}: {e}");
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(fail)?;
    stream.set_read_timeout(Some(timeout)).map_err(fail)?;
    stream.set_write_timeout(Some(timeout)).map_err(fail)?;
    Ok(stream)
}

/// [`ready`] over a connection made by the caller (a TLS stream over [`connect`]'s), to
/// the service at `addr`.
pub fn ready_over(mut stream: impl Read + Write, addr: SocketAddr) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("{addr}: {e}");
    write!(
        stream,
        "GET {READY_PATH} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(fail)?;
    stream.flush().map_err(fail)?;
    let mut line = Vec::new();
    BufReader::new(stream.take(MAX_STATUS_LINE))
        .read_until(b'\n', &mut line)
        .map_err(fail)?;
    if line.is_empty() {
        return Err(format!("{addr}: the connection closed without an answer"));
    }
    let line = String::from_utf8_lossy(&line);
    match status_of(&line) {
        Some(200) => Ok(()),
        Some(status) => Err(format!("{addr}{READY_PATH} answered {status}")),
        None => Err(format!(
            "{addr}{READY_PATH} answered `{}`, which is not an HTTP status line",
            line.trim()
        )),
    }
}

/// The status of an HTTP status line (`HTTP/1.1 200 OK`: the second word); `None` for a
/// line that is not one.
pub fn status_of(line: &str) -> Option<u16> {
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (Some(version), Some(status)) if version.starts_with("HTTP/") => status.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A server of one connection: it reads the request, then writes `answer` and closes.
    fn answer_once(answer: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 512];
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "the request ends with an empty line");
                request.extend_from_slice(&buf[..n]);
            }
            let request = String::from_utf8(request).unwrap();
            assert!(
                request.starts_with("GET /v1/ready HTTP/1.1\r\n"),
                "{request}"
            );
            assert!(request.contains("\r\nConnection: close\r\n"), "{request}");
            let _ = stream.write_all(answer.as_bytes());
        });
        addr
    }

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn ready_on_200() {
        let addr = answer_once("HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nready\n");
        assert_eq!(ready(addr, TIMEOUT), Ok(()));
    }

    #[test]
    fn not_ready_on_503_names_the_status() {
        let addr = answer_once("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
        let err = ready(addr, TIMEOUT).unwrap_err();
        assert_eq!(err, format!("{addr}/v1/ready answered 503"));
    }

    #[test]
    fn not_ready_when_the_connection_closes_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || drop(listener.accept().unwrap()));
        // The end of the stream, or a reset if the request was not read: an error either way.
        let err = ready(addr, TIMEOUT).unwrap_err();
        assert!(err.starts_with(&format!("{addr}: ")), "{err}");
    }

    #[test]
    fn not_ready_when_the_answer_is_empty() {
        let addr = answer_once("");
        let err = ready(addr, TIMEOUT).unwrap_err();
        assert_eq!(
            err,
            format!("{addr}: the connection closed without an answer")
        );
    }

    #[test]
    fn not_ready_on_an_answer_that_is_not_http() {
        let addr = answer_once("SSH-2.0-OpenSSH\r\n");
        let err = ready(addr, TIMEOUT).unwrap_err();
        assert!(err.contains("not an HTTP status line"), "{err}");
    }

    #[test]
    fn not_ready_when_nothing_listens() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = ready(addr, TIMEOUT).unwrap_err();
        assert!(err.starts_with(&format!("{addr}: ")), "{err}");
    }
}
