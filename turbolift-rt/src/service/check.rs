//! `SERVICE --health-check`: the container health check of an image without a shell or
//! curl. The service binary, started a second time inside the container, asks the running
//! service for its readiness and exits 0 (ready) or 1 (not ready, or no answer).
//!
//! Plain `std::net`: no runtime, no logging, no secret needed.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use turbolift_shared::protocol::{self, env};

/// How long the check waits to connect, and then for each read or write.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Whether this process was started as a health check (`SERVICE --health-check`).
pub(crate) fn requested() -> bool {
    std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == protocol::HEALTH_CHECK_FLAG)
}

/// Checks the service listening on `TURBOLIFT_BIND`'s port on this host: exit code 0 when
/// its readiness endpoint answers 200, else 1 with the reason on stderr.
pub fn health_check() -> ExitCode {
    let result = std::env::var(env::BIND)
        .map_err(|_| format!("{} is not set: no port to check", env::BIND))
        .and_then(|bind| target(&bind))
        .and_then(probe);
    match result {
        Ok(()) => {
            println!("ready");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("not ready: {why}");
            ExitCode::FAILURE
        }
    }
}

/// Where to ask: the bound address, with an unspecified IP replaced by loopback.
fn target(bind: &str) -> Result<SocketAddr, String> {
    let mut addr: SocketAddr = bind
        .parse()
        .map_err(|_| format!("{}=`{bind}` is not an address", env::BIND))?;
    if addr.port() == 0 {
        return Err(format!("{}=`{bind}` names no fixed port", env::BIND));
    }
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
        IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
        _ => {}
    }
    Ok(addr)
}

/// One `GET` of the readiness endpoint; `Ok` on 200.
fn probe(addr: SocketAddr) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("{addr}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(fail)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(fail)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(fail)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
        protocol::READY_PATH
    );
    stream.write_all(request.as_bytes()).map_err(fail)?;
    // `HTTP/1.1 200 ...`: the status is the second word of the first line.
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).map_err(fail)?;
    match &head[9..12] {
        b"200" => Ok(()),
        status => Err(format!(
            "{addr}{} answered {}",
            protocol::READY_PATH,
            String::from_utf8_lossy(status)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn answer_once(status_line: &'static str) -> SocketAddr {
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
            assert!(request.starts_with(b"GET /v1/ready HTTP/1.1\r\n"));
            let _ = write!(stream, "{status_line}\r\ncontent-length: 0\r\n\r\n");
        });
        addr
    }

    #[test]
    fn ready_only_on_200() {
        assert_eq!(probe(answer_once("HTTP/1.1 200 OK")), Ok(()));
        let err = probe(answer_once("HTTP/1.1 503 Service Unavailable")).unwrap_err();
        assert!(err.ends_with("/v1/ready answered 503"), "{err}");
    }

    #[test]
    fn nothing_listening_is_not_ready() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(probe(SocketAddr::from(([127, 0, 0, 1], port))).is_err());
    }

    #[test]
    fn the_bound_address_becomes_loopback() {
        assert_eq!(
            target("0.0.0.0:8080").unwrap().to_string(),
            "127.0.0.1:8080"
        );
        assert_eq!(target("[::]:8080").unwrap().to_string(), "[::1]:8080");
        assert_eq!(target("10.0.0.5:9").unwrap().to_string(), "10.0.0.5:9");
        assert!(target("127.0.0.1:0").is_err());
        assert!(target("nowhere").is_err());
    }
}
