//! `cargo turbolift run --tls` and `test --tls` on this machine: the program's output is
//! the same as without, its calls (and the tests') reach the services over TLS, the keys are private while the run
//! lasts and gone after it; a replica answers no plain HTTP request and no client whose
//! certificate another authority signed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::security::{Run, exe, listen_port, serial, summary, wait_replaced};
use crate::support::*;

#[test]
fn a_tls_run_prints_what_cargo_run_prints_and_its_keys_go_with_it() {
    let dir = fixture("examples/quickstart");
    let plain = output(&mut cargo(&dir, &["run", "-q"]));
    assert_success("cargo run", &plain);
    let lifted = output(&mut turbolift(&dir, &["run", "--tls"]));
    assert_success("cargo turbolift run --tls", &lifted);
    assert_eq!(text(&lifted.stdout), text(&plain.stdout));
    let stderr = text(&lifted.stderr);
    assert!(
        stderr.contains("with the remote call path over TLS"),
        "{stderr}"
    );
    let ready = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("Ready"))
        .unwrap_or_else(|| panic!("a Ready line: {stderr}"));
    assert!(ready.ends_with(" (TLS)"), "{ready}");
    let logs = logs_dir(&stderr);
    let served = served_calls(&logs);
    assert!(
        served.len() == 2 && served.iter().all(|(_, n)| *n > 0),
        "both replicas served calls: {served:?}"
    );
    for (log, _) in &served {
        let text = std::fs::read_to_string(logs.join(log)).unwrap();
        assert!(text.contains("tls=true"), "{log} served TLS: {text}");
    }
    assert_eq!(
        std::fs::read_dir(run_tls_dir(&logs))
            .ok()
            .map(|d| d.count()),
        None,
        "the run's keys went with it"
    );
    assert_eq!(
        running(&target_dir().join("debug/quickstart-square")),
        Vec::<u32>::new(),
        "no replica left running"
    );
}

#[test]
fn a_tls_test_run_calls_the_services_over_tls() {
    let out = output(&mut turbolift(&fixture("graph"), &["test", "--tls"]));
    assert_success("cargo turbolift test --tls", &out);
    let stderr = text(&out.stderr);
    let ready: Vec<&str> = stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("Ready"))
        .collect();
    assert!(
        !ready.is_empty() && ready.iter().all(|l| l.ends_with(" (TLS)")),
        "{stderr}"
    );
    assert!(
        text(&out.stdout).contains("test a_distributed_call_runs_in_another_process ... ok"),
        "{}",
        text(&out.stdout)
    );
    // One run of replicas per package tested, each with its `Stopped` line.
    let runs: Vec<PathBuf> = stderr
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("Stopped"))
        .map(|l| PathBuf::from(l.rsplit("logs in ").next().unwrap().trim()))
        .collect();
    assert!(!runs.is_empty(), "{stderr}");
    let mut served = 0;
    for logs in &runs {
        served += served_calls(logs).iter().map(|(_, n)| n).sum::<u64>();
        for entry in std::fs::read_dir(logs).unwrap() {
            let log = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            assert!(log.contains("tls=true"), "{log}");
        }
        assert!(!run_tls_dir(logs).exists(), "the run's keys went with it");
    }
    assert!(
        served > 0,
        "the tests' calls reached the services: {stderr}"
    );
}

/// The folder of a run's certificates and keys: `tls/<run-id>` beside `logs/<run-id>`.
fn run_tls_dir(logs: &Path) -> PathBuf {
    let run_id = logs.file_name().unwrap();
    logs.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("tls")
        .join(run_id)
}

#[test]
fn over_tls_a_replica_answers_neither_plain_http_nor_a_stranger() {
    let _serial = serial();
    let go = tempfile::tempdir().unwrap();
    let go = go.path().join("go");
    let mut run = Run::start(
        &["--tls"],
        &["wait"],
        &[("FAULTS_GO", go.to_str().unwrap())],
    );
    run.until_line("ready");
    let replica = wait_replaced(&exe("double"), &[], 2)[0];
    let program = running(&target_dir().join("debug/faults"));
    assert_eq!(program.len(), 1, "one program: {program:?}");
    let addr = SocketAddr::from(([127, 0, 0, 1], listen_port(replica)));
    let service = tls_files(replica);
    let client = tls_files(program[0]);

    // Private while the run lasts: 0600 files in 0700 folders, up to the run's.
    let run_dir = client.dir.parent().unwrap().to_owned();
    assert_eq!(run_dir, service.dir.parent().unwrap().parent().unwrap());
    for folder in [&service.dir, &client.dir, &run_dir] {
        assert_eq!(mode(folder), 0o700, "{}", folder.display());
    }
    for file in [&service, &client].iter().flat_map(|f| f.files()) {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    let secret = env_var(replica, "TURBOLIFT_SECRET").unwrap();
    let ca = std::fs::read_to_string(&service.ca).unwrap();

    // The program's own certificate is taken: the refusals below are the service's.
    let own = (read(&client.cert), read(&client.key));
    let health = "GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let answer = over_tls(addr, &ca, Some(&own), health).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Plain HTTP: no HTTP answer, whatever comes back.
    let plain = plain_http(addr, health);
    assert!(
        !plain.starts_with("HTTP/"),
        "answered in plain HTTP: {plain}"
    );

    // A client certificate of another authority: refused at the handshake.
    let stranger = stranger_identity();
    let call = format!(
        "POST /v1/call/faults::double HTTP/1.1\r\nHost: x\r\nx-turbolift-secret: {secret}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let refused = over_tls(addr, &ca, Some(&stranger), &call);
    assert!(
        refused.is_err(),
        "a certificate of another authority was let in: {refused:?}"
    );
    let refused = refused.unwrap_err();

    // No client certificate: health answers, a call with the secret does not.
    let answer = over_tls(addr, &ca, None, health).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = over_tls(addr, &ca, None, &call).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");

    std::fs::write(&go, "").unwrap();
    let (rest, code, stderr) = run.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(rest, ["done"]);
    assert!(!run_dir.exists(), "the run's keys went with it");
    assert_eq!(running(&exe("double")), Vec::<u32>::new());
    summary(&format!(
        "over TLS: a plain HTTP request got no HTTP answer ({} bytes back); a client certificate of another authority was refused ({refused}); without one, health answered and a call with the secret got 401; keys 0600 in 0700 folders, gone after the run",
        plain.len()
    ));
}

/// The TLS files a process was given.
struct Files {
    dir: PathBuf,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn files(&self) -> [&PathBuf; 3] {
        [&self.ca, &self.cert, &self.key]
    }
}

fn tls_files(pid: u32) -> Files {
    let path = |name: &str| {
        PathBuf::from(
            env_var(pid, name).unwrap_or_else(|| panic!("process {pid} was given {name}")),
        )
    };
    let key = path("TURBOLIFT_TLS_KEY");
    Files {
        dir: key.parent().unwrap().to_owned(),
        ca: path("TURBOLIFT_TLS_CA"),
        cert: path("TURBOLIFT_TLS_CERT"),
        key,
    }
}

/// A variable of a process's environment.
fn env_var(pid: u32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let prefix = format!("{name}=");
    environ
        .split(|b| *b == 0)
        .find_map(|v| v.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// A client certificate and key of an authority made here, not the run's.
fn stranger_identity() -> (String, String) {
    let mut ca = rcgen::CertificateParams::default();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let issuer = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["turbolift-program".to_owned()]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Sends `request` in plain HTTP; what came back, as text.
fn plain_http(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let _ = stream.write_all(request.as_bytes());
    let mut back = Vec::new();
    let _ = stream.read_to_end(&mut back);
    String::from_utf8_lossy(&back).into_owned()
}

#[allow(deprecated)] // ring's provider, as both ends have it
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Sends `request` over TLS, believing `ca` for 127.0.0.1 and showing `identity` (a
/// certificate and key) when given; the answer, or why there was none.
fn over_tls(
    addr: SocketAddr,
    ca: &str,
    identity: Option<&(String, String)>,
    request: &str,
) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(request.as_bytes())
        .and_then(|()| tls.flush())
        .map_err(|e| e.to_string())?;
    let mut back = Vec::new();
    match tls.read_to_end(&mut back) {
        Ok(_) if back.is_empty() => Err("the connection closed without an answer".to_owned()),
        Ok(_) => Ok(String::from_utf8_lossy(&back).into_owned()),
        // A server that closes after its answer without close_notify.
        Err(e) if !back.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Ok(String::from_utf8_lossy(&back).into_owned())
        }
        Err(e) => Err(e.to_string()),
    }
}
