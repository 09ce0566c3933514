//! A certificate authority per run or deployment, the certificates it signs, and readiness
//! probes over TLS.
//!
//! The authority is made fresh ([`Authority::new`]) and lives only in this process and in
//! the files written from it: each service gets a certificate for the names it is reached
//! by ([`Authority::service`]), the program a client certificate ([`Authority::program`]).
//! A service takes calls only from clients this authority signed, and the program
//! believes only services it signed: someone who takes a replica's address can neither
//! answer nor call. Keys are ECDSA P-256 (rcgen's default, with ring).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// How long certificates are valid: a run's for its life, a deployment's until it is built
/// again (which makes a new authority). Ten years, so that a deployment never stops on a
/// date; rotate by building and deploying again.
const VALIDITY: time::Duration = time::Duration::days(3650);

/// The name every service certificate carries besides its own: a container's health check
/// and a launcher on the same machine reach the service at 127.0.0.1.
const LOOPBACK: &str = "127.0.0.1";

/// The name on the program's client certificate.
pub const PROGRAM_NAME: &str = "turbolift-program";

/// A fresh certificate authority.
pub struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its private key, PEM-encoded. The key is never printed.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl Authority {
    /// A new authority named after `label` (the run's or deployment's id), which signs
    /// nothing but end certificates.
    pub fn new(label: &str) -> Result<Authority> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&format!("turbolift authority {label}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        valid_from_now(&mut params);
        let key = KeyPair::generate().context("cannot make the authority's key")?;
        let issuer = CertifiedIssuer::self_signed(params, key)
            .context("cannot make the authority's certificate")?;
        Ok(Authority { issuer })
    }

    /// The authority's certificate, which both ends trust.
    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate of the service `service` for the `names` (DNS names or IP
    /// addresses) it is reached by; 127.0.0.1 and `localhost` are always among them.
    pub fn service(&self, service: &str, names: &[String]) -> Result<Issued> {
        let mut all: Vec<String> = vec![LOOPBACK.to_owned(), "localhost".to_owned()];
        for n in names {
            // What a client can ask for: a DNS name or an IP address.
            ServerName::try_from(n.as_str()).map_err(|e| {
                anyhow::anyhow!("`{service}` would be reached as `{n}`, which is not a DNS name or an IP address ({e})")
            })?;
            if !all.contains(n) {
                all.push(n.clone());
            }
        }
        let mut params = CertificateParams::new(all)
            .with_context(|| format!("`{service}`: a name it is reached by is not valid"))?;
        params.distinguished_name = name(service);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, service)
    }

    /// The program's client certificate.
    pub fn program(&self) -> Result<Issued> {
        let mut params = CertificateParams::new(vec![PROGRAM_NAME.to_owned()])
            .context("the program's certificate")?;
        params.distinguished_name = name(PROGRAM_NAME);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, PROGRAM_NAME)
    }

    fn sign(&self, mut params: CertificateParams, what: &str) -> Result<Issued> {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        valid_from_now(&mut params);
        let key = KeyPair::generate().with_context(|| format!("cannot make a key for `{what}`"))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .with_context(|| format!("cannot sign the certificate of `{what}`"))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "turbolift");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Valid from an hour ago (clocks of other machines run a little behind) for
/// [`VALIDITY`].
fn valid_from_now(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + VALIDITY;
}

/// rustls with ring, as the runtime has it (see docs/security.md: ring builds with a C
/// compiler alone, also for static and arm64 builds). rustls marks ring's provider
/// deprecated because its key exchange is not post-quantum; that is the price, said there.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Readiness probes and scrapes of services that serve TLS, trusting only `ca_pem`'s
/// authority; with the program's certificate ([`Prober::with_certificate`]), as the
/// program, which a service answers more than its probes.
#[derive(Clone)]
pub struct Prober {
    config: Arc<rustls::ClientConfig>,
}

impl Prober {
    pub fn new(ca_pem: &str) -> Result<Prober> {
        let config = client_config(ca_pem)?.with_no_client_auth();
        Ok(Prober {
            config: Arc::new(config),
        })
    }

    /// A prober that shows the certificate `cert_pem` (with its key `key_pem`) of the
    /// authority `ca_pem`: the program's, for `GET /v1/metrics` behind the secret.
    pub fn with_certificate(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Prober> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<std::result::Result<_, _>>()
                .context("the client certificate does not parse")?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .context("the client key does not parse")?;
        let config = client_config(ca_pem)?
            .with_client_auth_cert(chain, key)
            .context("the client certificate and key are not usable")?;
        Ok(Prober {
            config: Arc::new(config),
        })
    }

    /// A TLS connection to the service at `addr` within `timeout` (each read and write
    /// then times out after `timeout`), whose certificate must name `server_name`; the
    /// handshake happens at the first read or write.
    pub fn connect(
        &self,
        addr: SocketAddr,
        server_name: &str,
        timeout: Duration,
    ) -> Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>, String> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| format!("`{server_name}` is not a server name: {e}"))?;
        let connection = rustls::ClientConnection::new(self.config.clone(), name)
            .map_err(|e| format!("{addr}: {e}"))?;
        let stream = turbolift_shared::probe::connect(addr, timeout)?;
        Ok(rustls::StreamOwned::new(connection, stream))
    }

    /// Whether the service at `addr`, whose certificate names `server_name`, takes calls
    /// (see `turbolift_shared::probe::ready`); a certificate this authority did not sign
    /// for that name is an error, as a plain HTTP answer is.
    pub fn ready(
        &self,
        addr: SocketAddr,
        server_name: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let stream = self.connect(addr, server_name, timeout)?;
        turbolift_shared::probe::ready_over(stream, addr)
    }
}

/// A client's TLS settings that believe only `ca_pem`'s authority, before the client
/// says whether it shows a certificate.
fn client_config(
    ca_pem: &str,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.context("the authority's certificate does not parse")?)
            .context("the authority's certificate is not usable")?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS settings")?
        .with_root_certificates(roots))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_name_what_they_are_for_and_keys_stay_out_of_debug() {
        let authority = Authority::new("0123456789ab").unwrap();
        let ca = authority.ca_pem();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
        let service = authority
            .service(
                "quickstart-square",
                &["square".to_owned(), "10.0.0.7".to_owned()],
            )
            .unwrap();
        assert!(service.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let shown = format!("{service:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        let program = authority.program().unwrap();
        assert_ne!(program.key_pem, service.key_pem);
        assert!(authority.service("x", &["not a name".to_owned()]).is_err());
    }

    /// A real TLS server of one connection that answers `answer` over rustls with
    /// `issued`'s certificate.
    fn serve_once(issued: &Issued, answer: &'static str) -> SocketAddr {
        use std::io::{Read, Write};
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
                .collect::<std::result::Result<_, _>>()
                .unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Arc::new(config);
        std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            let connection = rustls::ServerConnection::new(config).unwrap();
            let mut tls = rustls::StreamOwned::new(connection, tcp);
            let mut request = Vec::new();
            let mut buf = [0u8; 512];
            while !request.ends_with(b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tls.write_all(answer.as_bytes());
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        });
        addr
    }

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn a_probe_believes_only_its_authority_for_the_name_it_asks() {
        let authority = Authority::new("run").unwrap();
        let prober = Prober::new(&authority.ca_pem()).unwrap();
        let issued = authority.service("square", &[]).unwrap();
        let addr = serve_once(&issued, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(prober.ready(addr, "127.0.0.1", TIMEOUT), Ok(()));

        let addr = serve_once(&issued, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        let err = prober
            .ready(addr, "elsewhere.example", TIMEOUT)
            .unwrap_err();
        assert!(err.contains("certificate"), "{err}");

        let stranger = Authority::new("other")
            .unwrap()
            .service("square", &[])
            .unwrap();
        let addr = serve_once(&stranger, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        let err = prober.ready(addr, "127.0.0.1", TIMEOUT).unwrap_err();
        assert!(err.contains("certificate"), "{err}");
    }
}
