//! What a service serving TLS holds per connection, with the real binary on 127.0.0.1:
//! connections that finished the handshake and then sent nothing, connections that sent a
//! ClientHello and stopped, and connections that never sent a byte; each storm up to the
//! service's cap of connections, the memory measured before, during and after.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::security::{Openers, accepted, rss_kib, serial, storm_service, summary, wait_steady};
use crate::support::*;

/// Most a service serving TLS may hold at its default cap of connections, each of them
/// handshaken and idle: well under Kubernetes' default limit of 128 MiB.
const BOUND_KIB: u64 = 96 * 1024;

fn built_with_tls() {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let out = output(&mut turbolift(&fixture("faults"), &["build", "--tls"]));
        assert_success("cargo turbolift build --tls", &out);
    });
}

/// An authority made for the test, and the PEM files of a service and a client it signed.
struct Authority {
    dir: tempfile::TempDir,
    client: Arc<rustls::ClientConfig>,
}

impl Authority {
    fn new() -> Authority {
        let dir = tempfile::tempdir().unwrap();
        let mut ca = rcgen::CertificateParams::default();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer =
            rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();
        let sign = |names: &[&str], usage| {
            let mut params = rcgen::CertificateParams::new(
                names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            )
            .unwrap();
            params.extended_key_usages = vec![usage];
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (cert, key) = sign(
            &["127.0.0.1", "localhost"],
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        );
        std::fs::write(dir.path().join("ca.crt"), issuer.pem()).unwrap();
        std::fs::write(dir.path().join("tls.crt"), cert).unwrap();
        std::fs::write(dir.path().join("tls.key"), key).unwrap();
        let (cert, key) = sign(
            &["turbolift-program"],
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        );
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(issuer.pem().as_bytes()).unwrap())
            .unwrap();
        #[allow(deprecated)] // ring's provider, as both ends have it
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap();
        Authority {
            dir,
            client: Arc::new(client),
        }
    }

    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    fn connection(&self) -> rustls::ClientConnection {
        let name = ServerName::try_from("127.0.0.1").unwrap();
        rustls::ClientConnection::new(self.client.clone(), name).unwrap()
    }
}

/// A TLS connection whose handshake finished, idle.
struct Handshaken {
    _tls: rustls::ClientConnection,
    _tcp: TcpStream,
}

/// Connects and completes the handshake within `limit`; `None` when the service did not
/// answer in time (the connection waits in the backlog: the service is at its cap).
fn handshake(authority: &Authority, addr: SocketAddr, limit: Duration) -> Option<Handshaken> {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(limit)).unwrap();
    let mut tls = authority.connection();
    while tls.is_handshaking() {
        match tls.complete_io(&mut tcp) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(e) => panic!("TLS handshake: {e}"),
        }
    }
    while tls.wants_write() {
        tls.write_tls(&mut tcp).unwrap();
    }
    Some(Handshaken {
        _tls: tls,
        _tcp: tcp,
    })
}

/// A connection that sent its ClientHello and nothing more.
fn hello_only(authority: &Authority, addr: SocketAddr) -> (rustls::ClientConnection, TcpStream) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    let mut tls = authority.connection();
    while tls.wants_write() {
        tls.write_tls(&mut tcp).unwrap();
    }
    (tls, tcp)
}

/// A connection that sends most of a 64 KB ClientHello, the largest handshake message
/// rustls takes, and never the rest: the most a client without a certificate makes the
/// service hold.
fn endless_hello(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).unwrap();
    let record = |payload: &[u8]| {
        let mut r = vec![0x16, 0x03, 0x01];
        r.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        r.extend_from_slice(payload);
        r
    };
    let mut first = vec![0x01, 0x00, 0xff, 0xf0];
    first.resize(16_384, 0);
    let mut bytes = record(&first);
    for _ in 0..2 {
        bytes.extend(record(&[0; 16_384]));
    }
    bytes.extend(record(&[0; 16_000]));
    tcp.write_all(&bytes).unwrap();
    tcp
}

/// `GET /v1/health` over TLS: the service is up.
fn healthy(authority: &Authority, addr: SocketAddr) -> bool {
    let Some(Handshaken {
        _tls: tls,
        _tcp: tcp,
    }) = handshake(authority, addr, Duration::from_secs(5))
    else {
        return false;
    };
    let mut stream = rustls::StreamOwned::new(tls, tcp);
    let request = "GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).is_ok() && &answer == b"HTTP/1.1 200"
}

/// Waits until the service's memory is below twice `before` (at most 20 s); the last RSS.
fn returned(pid: u32, before: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut after = rss_kib(pid);
    while after >= 2 * before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        after = rss_kib(pid);
    }
    after
}

/// The RSS once it stopped growing: read every 200 ms until two readings agree within 1%.
fn settled_rss(pid: u32) -> u64 {
    let mut last = rss_kib(pid);
    for _ in 0..25 {
        std::thread::sleep(Duration::from_millis(200));
        let now = rss_kib(pid);
        if now.abs_diff(last) * 100 <= last {
            return now.max(last);
        }
        last = now;
    }
    last
}

fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is valid for writes, then a valid rlimit within the hard limit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

#[test]
fn tls_connections_up_to_the_cap_stay_under_the_bound_and_their_memory_returns() {
    let _serial = serial();
    built_with_tls();
    raise_open_files();
    let authority = Authority::new();
    let (mut service, log, scheme, addr) = storm_service(&[
        ("TURBOLIFT_TLS_CA", authority.file("ca.crt")),
        ("TURBOLIFT_TLS_CERT", authority.file("tls.crt")),
        ("TURBOLIFT_TLS_KEY", authority.file("tls.key")),
    ]);
    assert_eq!(scheme, "https", "serves TLS");
    let pid = service.0.id();
    assert!(healthy(&authority, addr), "the service answers over TLS");
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(pid);

    // 1. Handshaken, then idle, until the service stops answering: its cap.
    let started = Instant::now();
    let mut held = Vec::new();
    while let Some(c) = handshake(&authority, addr, Duration::from_secs(3)) {
        held.push(c);
        assert!(held.len() <= 20_000, "no cap reached");
    }
    let handshakes = started.elapsed();
    let cap = wait_steady(|| accepted(addr.port()));
    assert!(
        (held.len()..=held.len() + 1).contains(&cap),
        "{} handshaken, {cap} accepted",
        held.len()
    );
    let said = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        said.contains(&format!("{cap} connections are open, as many as")),
        "the service said it reached its cap of {cap}: {said}"
    );
    let during = settled_rss(pid);
    let handshaken = held.len();
    drop(held);
    let after = returned(pid, before);
    let per_handshaken = (during - before) * 1024 / handshaken as u64;
    let line = format!(
        "TLS: {handshaken} handshaken idle connections (the cap, {handshakes:.1?} to open): RSS {before} KiB before, {during} KiB during ({per_handshaken} bytes per connection), {after} KiB after"
    );
    eprintln!("{line}");
    assert!(during < BOUND_KIB, "within {BOUND_KIB} KiB: {line}");
    assert!(after < 2 * before, "memory returned: {line}");
    summary(&line);

    // 2. A ClientHello and nothing more: the service answers it and waits for the rest.
    let hello: Vec<_> = (0..cap).map(|_| hello_only(&authority, addr)).collect();
    let waiting = wait_steady(|| accepted(addr.port()));
    let during_hello = settled_rss(pid);
    drop(hello);
    let after_hello = returned(pid, before);
    let per_hello = (during_hello.saturating_sub(before)) * 1024 / waiting.max(1) as u64;
    let line = format!(
        "TLS: {waiting} connections stopped after their ClientHello: RSS {during_hello} KiB during ({per_hello} bytes per connection), {after_hello} KiB after"
    );
    eprintln!("{line}");
    assert!(during_hello < BOUND_KIB, "within {BOUND_KIB} KiB: {line}");
    assert!(after_hello < 2 * before, "memory returned: {line}");
    summary(&line);

    // 2b. Most of a 64 KB ClientHello, never finished.
    let big: Vec<_> = (0..cap).map(|_| endless_hello(addr)).collect();
    let waiting = wait_steady(|| accepted(addr.port()));
    let during_big = settled_rss(pid);
    drop(big);
    let after_big = returned(pid, before);
    let per_big = (during_big.saturating_sub(before)) * 1024 / waiting.max(1) as u64;
    let line = format!(
        "TLS: {waiting} connections holding 64 KB of an unfinished ClientHello: RSS {during_big} KiB during ({per_big} bytes per connection), {after_big} KiB after"
    );
    eprintln!("{line}");
    assert!(during_big < BOUND_KIB, "within {BOUND_KIB} KiB: {line}");
    assert!(after_big < 2 * before, "memory returned: {line}");
    summary(&line);

    // 3. Connected, never a byte sent: up to the cap, the rest in the backlog.
    let openers = Openers::start(addr, cap + 1_000);
    // Connections beyond the backlog come in as their SYNs are sent again, a second or
    // more apart: wait for the cap before waiting for the count to settle.
    let deadline = Instant::now() + Duration::from_secs(30);
    while accepted(addr.port()) + 16 < cap && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let silent = wait_steady(|| accepted(addr.port()));
    assert!(silent <= cap, "{silent} held, beyond the cap of {cap}");
    let during_silent = settled_rss(pid);
    openers.stop();
    let after_silent = returned(pid, before);
    let per_silent = (during_silent.saturating_sub(before)) * 1024 / silent.max(1) as u64;
    let line = format!(
        "TLS: {silent} connections that never sent a byte: RSS {during_silent} KiB during ({per_silent} bytes per connection), {after_silent} KiB after"
    );
    eprintln!("{line}");
    assert!(during_silent < BOUND_KIB, "within {BOUND_KIB} KiB: {line}");
    assert!(after_silent < 2 * before, "memory returned: {line}");
    summary(&line);

    assert!(healthy(&authority, addr), "the service still answers");
    kill(pid, "TERM");
    let _ = service.0.wait();
}
