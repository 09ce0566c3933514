//! TLS with mutual authentication between a program and real services on 127.0.0.1:
//! calls go through when both ends hold certificates of the one authority, and nothing
//! else gets an answer it should not.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use turbolift::service::ServiceOptions;
use turbolift::{Config, Error, TlsFiles, protocol};

mod common;

const SECRET: &str = "tls-test-secret";

#[turbolift::distribute]
fn square(u: u64) -> u64 {
    u * u
}

#[turbolift::distribute]
fn cube(u: u64) -> u64 {
    u * u * u
}

/// An authority of its own, and the PEM files of what it signed, in a folder of the test.
struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let dir = std::env::temp_dir().join(format!("turbolift-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.crt"), issuer.pem()).unwrap();
        Authority { issuer, dir }
    }

    /// A certificate for `names` (server) or for a client, as files beside the
    /// authority's.
    fn issue(&self, file: &str, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> TlsFiles {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = TlsFiles {
            ca: self.dir.join("ca.crt"),
            cert: self.dir.join(format!("{file}.crt")),
            key: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }
}

/// The run's authority and a stranger's, made once for the whole test binary.
struct Pki {
    service: TlsFiles,
    program: TlsFiles,
    squatter: TlsFiles,
    stranger: TlsFiles,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let run = Authority::new("run");
        let other = Authority::new("other");
        Pki {
            service: run.issue(
                "service",
                &["127.0.0.1"],
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
            program: run.issue("program", &["program"], ExtendedKeyUsagePurpose::ClientAuth),
            squatter: other.issue(
                "squatter",
                &["127.0.0.1"],
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
            stranger: other.issue(
                "stranger",
                &["program"],
                ExtendedKeyUsagePurpose::ClientAuth,
            ),
        }
    })
}

/// Routes `id` to `url` in the one configuration of this binary, with the program's files.
fn route(id: &str, url: &str) {
    static CONFIG: Mutex<Option<Config>> = Mutex::new(None);
    let mut config = CONFIG.lock().unwrap();
    let next = config
        .take()
        .unwrap_or_else(|| Config::new().secret(SECRET).tls(pki().program.clone()))
        .endpoint(id, [url.to_owned()]);
    next.clone().install().unwrap();
    *config = Some(next);
}

/// A service of `id` on 127.0.0.1 serving TLS with `files`; its `https://` URL.
async fn serve_tls(id: &str, files: &TlsFiles) -> (common::Running, String) {
    let mut options = ServiceOptions::new(SECRET);
    options.tls = Some(files.clone());
    let running = common::serve_with(&[common::handler(id)], &options).await;
    let url = running.url.replace("http://", "https://");
    (running, url)
}

fn client_config(identity: Option<&TlsFiles>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&pki().service.ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    #[allow(deprecated)] // ring, as the runtime has it
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    match identity {
        None => builder.with_no_client_auth(),
        Some(files) => {
            let certs = CertificateDer::pem_file_iter(&files.cert)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
    }
}

/// One request over a TLS connection of our own, with `identity` as the client's
/// certificate: the status, or why there was none.
async fn request_over_tls(
    url: &str,
    identity: Option<&TlsFiles>,
    method: &str,
    path: &str,
) -> Result<u16, String> {
    let host = url.trim_start_matches("https://").to_owned();
    let tcp = TcpStream::connect(&host).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(identity)));
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("http: {e}"))?;
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", &host)
        .header(protocol::SECRET_HEADER, SECRET)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    Ok(status)
}

#[tokio::test]
async fn calls_go_over_tls_when_both_ends_belong_to_the_authority() {
    let (service, url) = serve_tls("tls::square", &pki().service).await;
    route("tls::square", &url);
    for u in 0..20u64 {
        assert_eq!(square(u).await.unwrap(), u * u);
    }
    let answers = futures_util::future::try_join_all((0..200u64).map(square))
        .await
        .unwrap();
    assert_eq!(answers, (0..200u64).map(|u| u * u).collect::<Vec<_>>());
    service.stop().await;
}

#[tokio::test]
async fn a_plaintext_request_gets_no_http_answer() {
    let (service, url) = serve_tls("tls::square", &pki().service).await;
    let host = url.trim_start_matches("https://");
    let mut tcp = TcpStream::connect(host).await.unwrap();
    tcp.write_all(
        format!(
            "GET {} HTTP/1.1\r\nhost: {host}\r\n\r\n",
            protocol::READY_PATH
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    // The service closes the connection (after at most a TLS alert).
    let _ = tcp.read_to_end(&mut answer).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "a plaintext request got an HTTP answer: {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(answer.len() < 64, "{} bytes came back", answer.len());
    service.stop().await;
}

#[tokio::test]
async fn a_client_certificate_of_another_authority_is_refused() {
    let (service, url) = serve_tls("tls::square", &pki().service).await;
    let path = turbolift::naming::route("tls::square");
    let refused = request_over_tls(&url, Some(&pki().stranger), "POST", &path).await;
    assert!(
        refused.is_err(),
        "a stranger's call was answered: {refused:?}"
    );
    let refused = request_over_tls(&url, Some(&pki().stranger), "GET", protocol::READY_PATH).await;
    assert!(refused.is_err(), "a stranger was answered: {refused:?}");
    // The program's own certificate on the same kind of connection is answered.
    let ready = request_over_tls(&url, Some(&pki().program), "GET", protocol::READY_PATH).await;
    assert_eq!(ready, Ok(200));
    service.stop().await;
}

#[tokio::test]
async fn without_a_client_certificate_only_health_and_readiness_answer() {
    let (service, url) = serve_tls("tls::square", &pki().service).await;
    let ready = request_over_tls(&url, None, "GET", protocol::READY_PATH).await;
    assert_eq!(ready, Ok(200));
    let health = request_over_tls(&url, None, "GET", protocol::HEALTH_PATH).await;
    assert_eq!(health, Ok(200));
    let path = turbolift::naming::route("tls::square");
    let call = request_over_tls(&url, None, "POST", &path).await;
    assert_eq!(call, Ok(401));
    service.stop().await;
}

#[tokio::test]
async fn the_program_refuses_a_service_its_authority_did_not_certify() {
    // Someone else's service at the address: its certificate names 127.0.0.1 too, but
    // another authority signed it.
    let (squatter, url) = serve_tls("tls::cube", &pki().squatter).await;
    route("tls::cube", &url);
    let error = cube(3).await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert!(text.contains("certificate"), "{text}");
    squatter.stop().await;
}
