//! `SERVICE --health-check`: the container health check of an image without a shell or
//! curl. The service binary, started a second time inside the container, asks the running
//! service for its readiness and exits 0 (ready) or 1 (not ready, or no answer).
//!
//! The probe is [`turbolift_shared::probe::ready`], plain `std::net`: no runtime, no
//! logging, no secret needed. A service that serves TLS is asked over TLS, believing only
//! its authority (`TURBOLIFT_TLS_CA`) and asking for `localhost`, a name every service
//! certificate `cargo turbolift` makes carries; health and readiness need no client
//! certificate.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use turbolift_shared::probe;
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
        .and_then(ask);
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

fn ask(addr: SocketAddr) -> Result<(), String> {
    match crate::TlsFiles::from_vars(|name| std::env::var(name).ok())? {
        None => probe::ready(addr, TIMEOUT),
        Some(files) => over_tls(&files, addr),
    }
}

#[cfg(feature = "tls")]
fn over_tls(files: &crate::TlsFiles, addr: SocketAddr) -> Result<(), String> {
    use rustls::pki_types::ServerName;
    let config = files.probe_config()?;
    let connection = rustls::ClientConnection::new(
        std::sync::Arc::new(config),
        ServerName::try_from("localhost").expect("`localhost` is a server name"),
    )
    .map_err(|e| format!("{addr}: {e}"))?;
    let stream = probe::connect(addr, TIMEOUT)?;
    probe::ready_over(rustls::StreamOwned::new(connection, stream), addr)
}

#[cfg(not(feature = "tls"))]
fn over_tls(_files: &crate::TlsFiles, _addr: SocketAddr) -> Result<(), String> {
    Err(format!(
        "{} is set, but this service was built without turbolift's `tls` feature",
        env::TLS_CA
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

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
