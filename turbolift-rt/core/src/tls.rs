//! TLS with mutual authentication between the program and the services.
//!
//! Both ends are given three PEM files: the certificate of the authority of the run or
//! deployment, their own certificate, and its private key (`TURBOLIFT_TLS_CA`,
//! `TURBOLIFT_TLS_CERT`, `TURBOLIFT_TLS_KEY`; `cargo turbolift` makes them). The program
//! believes a service only if that authority signed its certificate for the name the
//! program reached it by; a service takes calls only from a client whose certificate that
//! authority signed. Which files to use is always known ([`TlsFiles`]); the rustls
//! configurations are built only with the `tls` feature (rustls with ring).

use std::path::PathBuf;

use turbolift_shared::protocol::env;

/// The PEM files of one end of a TLS connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The authority's certificate: what the other end's certificate must be signed by.
    pub ca: PathBuf,
    /// This end's certificate (chain).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files `TURBOLIFT_TLS_CA`, `TURBOLIFT_TLS_CERT` and `TURBOLIFT_TLS_KEY` name, from
    /// any source of variables: `None` when none is set, an error when only some are.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<TlsFiles>, String> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let (ca, cert, key) = (get(env::TLS_CA), get(env::TLS_CERT), get(env::TLS_KEY));
        match (ca, cert, key) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => Ok(Some(TlsFiles {
                ca: ca.into(),
                cert: cert.into(),
                key: key.into(),
            })),
            (ca, cert, key) => {
                let missing: Vec<&str> = [
                    (ca.is_none(), env::TLS_CA),
                    (cert.is_none(), env::TLS_CERT),
                    (key.is_none(), env::TLS_KEY),
                ]
                .into_iter()
                .filter_map(|(missing, name)| missing.then_some(name))
                .collect();
                Err(format!(
                    "TLS needs {}, {} and {} together; {} not set",
                    env::TLS_CA,
                    env::TLS_CERT,
                    env::TLS_KEY,
                    missing.join(" and ")
                ))
            }
        }
    }
}

#[cfg(feature = "tls")]
pub use with_rustls::*;

#[cfg(feature = "tls")]
mod with_rustls {
    use std::sync::Arc;

    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    use super::TlsFiles;

    /// rustls with ring: it builds with a C compiler alone, also for the static and arm64
    /// builds of services (aws-lc-rs needs cmake there). rustls marks ring's provider
    /// deprecated because its key exchange is not post-quantum (docs/security.md).
    #[allow(deprecated)]
    pub(crate) fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    impl TlsFiles {
        fn roots(&self) -> Result<rustls::RootCertStore, String> {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(&self.ca)? {
                roots.add(cert).map_err(|e| {
                    format!(
                        "{}: not a certificate authority's certificate: {e}",
                        self.ca.display()
                    )
                })?;
            }
            Ok(roots)
        }

        fn identity(
            &self,
        ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
            let key = PrivateKeyDer::from_pem_file(&self.key)
                .map_err(|e| format!("{}: no private key read: {e}", self.key.display()))?;
            Ok((certificates(&self.cert)?, key))
        }

        /// The program's side: believes only services whose certificate the authority
        /// signed for the name they are reached by, and shows its own certificate.
        pub(crate) fn client_config(&self) -> Result<rustls::ClientConfig, String> {
            let (certs, key) = self.identity()?;
            rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(self.roots()?)
                .with_client_auth_cert(certs, key)
                .map_err(|e| {
                    format!(
                        "{} and {} do not make a client identity: {e}",
                        self.cert.display(),
                        self.key.display()
                    )
                })
        }

        #[cfg(feature = "service")]
        /// A service's side: shows its certificate, and verifies every client certificate
        /// it is shown against the authority. A client without one may connect (the
        /// kubelet's probes have none) but reaches only health and readiness: whether a
        /// connection may call is [`client_verified`].
        #[doc(hidden)]
        pub fn server_config(&self) -> Result<rustls::ServerConfig, String> {
            let (certs, key) = self.identity()?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(self.roots()?),
                provider(),
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| format!("{}: {e}", self.ca.display()))?;
            rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_client_cert_verifier(verifier)
                .with_single_cert(certs, key)
                .map_err(|e| {
                    format!(
                        "{} and {} do not make a server identity: {e}",
                        self.cert.display(),
                        self.key.display()
                    )
                })
        }

        #[cfg(feature = "service")]
        /// A health check's side: believes only the authority, shows nothing.
        #[doc(hidden)]
        pub fn probe_config(&self) -> Result<rustls::ClientConfig, String> {
            Ok(rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(self.roots()?)
                .with_no_client_auth())
        }
    }

    fn certificates(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: no certificate read: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: holds no certificate", path.display()));
        }
        Ok(certs)
    }

    #[cfg(feature = "service")]
    /// Whether the client of `connection` showed a certificate the authority signed (the
    /// handshake refused any other).
    pub fn client_verified(connection: &rustls::ServerConnection) -> bool {
        connection
            .peer_certificates()
            .is_some_and(|c| !c.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::config_tests::vars;

    #[test]
    fn all_three_files_or_none() {
        assert_eq!(TlsFiles::from_vars(vars(&[])), Ok(None));
        let all = TlsFiles::from_vars(vars(&[
            (env::TLS_CA, "/t/ca.crt"),
            (env::TLS_CERT, "/t/tls.crt"),
            (env::TLS_KEY, "/t/tls.key"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(all.key, PathBuf::from("/t/tls.key"));
        let err = TlsFiles::from_vars(vars(&[(env::TLS_CA, "/t/ca.crt")])).unwrap_err();
        assert!(
            err.ends_with("TURBOLIFT_TLS_CERT and TURBOLIFT_TLS_KEY not set"),
            "{err}"
        );
    }

    #[cfg(all(feature = "tls", feature = "service"))]
    #[test]
    fn files_that_do_not_hold_what_they_should_say_which() {
        let dir = std::env::temp_dir().join(format!("turbolift-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let files = TlsFiles {
            ca: empty.clone(),
            cert: empty.clone(),
            key: dir.join("missing.key"),
        };
        let err = files.client_config().unwrap_err();
        assert!(err.contains("missing.key: no private key read"), "{err}");
        let err = files.probe_config().unwrap_err();
        assert!(err.contains("empty.pem: holds no certificate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
