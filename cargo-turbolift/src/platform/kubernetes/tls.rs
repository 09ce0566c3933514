//! A deployment's TLS: a fresh authority per build, a certificate for each service under
//! every name a pod reaches it by, and the program's client certificate. Each becomes a
//! `kubernetes.io/tls` Secret (`tls.crt`, `tls.key` and the authority's `ca.crt`),
//! mounted read-only at `/etc/turbolift/tls` in the pods that use it.

use std::fmt;
use std::sync::Arc;

use anyhow::Result;
use serde_json::{Value, json};
use turbolift_shared::protocol::{env, tls_in_container};

use crate::tls::{Authority, Issued};

/// The name of the pods' volume that holds the TLS Secret.
const VOLUME: &str = "tls";

/// Mode of the Secret's files in a pod: `0440` (read by owner and group). Kubernetes
/// makes them belong to the pod's `fsGroup`, so user 65532, in that group, reads them;
/// no other user of the node does.
pub const FILE_MODE: u32 = 0o440;

/// The group that owns the Secret's files in a pod: the services' and the program's own
/// (`runAsGroup`).
pub const FS_GROUP: u32 = 65532;

/// The certificates of one deployment, signed by its own authority.
#[derive(Clone)]
pub struct DeploymentTls {
    /// The authority's certificate, which both ends trust.
    pub ca_pem: String,
    /// Each service's certificate, by the service's Kubernetes name.
    services: Vec<(String, Arc<Issued>)>,
    /// The program's client certificate.
    pub program: Arc<Issued>,
}

impl fmt::Debug for DeploymentTls {
    /// The keys stay out: [`Issued`] prints them as `<redacted>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeploymentTls")
            .field("services", &self.services)
            .field("program", &self.program)
            .finish_non_exhaustive()
    }
}

impl DeploymentTls {
    /// A fresh authority named after the deployment, a certificate for each of
    /// `services` (Kubernetes names) in `namespace`, and the program's.
    pub fn issue(deployment: &str, namespace: &str, services: &[String]) -> Result<Self> {
        let authority = Authority::new(&format!("deployment {deployment}"))?;
        let services = services
            .iter()
            .map(|service| {
                let issued = authority.service(service, &cluster_names(service, namespace))?;
                Ok((service.clone(), Arc::new(issued)))
            })
            .collect::<Result<_>>()?;
        Ok(DeploymentTls {
            ca_pem: authority.ca_pem(),
            services,
            program: Arc::new(authority.program()?),
        })
    }

    /// The certificate of the service named `service`.
    pub fn service(&self, service: &str) -> Option<&Issued> {
        self.services
            .iter()
            .find(|(name, _)| name == service)
            .map(|(_, issued)| issued.as_ref())
    }
}

/// Every name a pod can reach the Service `service` of `namespace` by: from its own
/// namespace, from another one, and fully qualified (with the default cluster domain).
pub fn cluster_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// `TURBOLIFT_TLS_CA`, `TURBOLIFT_TLS_CERT` and `TURBOLIFT_TLS_KEY` as a container's
/// `env` entries: the files of the mounted Secret.
pub fn env_entries() -> Vec<Value> {
    [
        (env::TLS_CA, tls_in_container::CA),
        (env::TLS_CERT, tls_in_container::CERT),
        (env::TLS_KEY, tls_in_container::KEY),
    ]
    .into_iter()
    .map(|(name, value)| json!({ "name": name, "value": value }))
    .collect()
}

/// The pod's `volumes`: the Secret `secret`, its files `0440` (see [`FILE_MODE`]).
pub fn volumes(secret: &str) -> Value {
    json!([{
        "name": VOLUME,
        "secret": { "secretName": secret, "defaultMode": FILE_MODE },
    }])
}

/// The container's `volumeMounts`: the Secret, read-only, at `/etc/turbolift/tls`.
pub fn volume_mounts() -> Value {
    json!([{
        "name": VOLUME,
        "mountPath": tls_in_container::DIR,
        "readOnly": true,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_service_is_named_as_pods_reach_it_and_keys_stay_out_of_debug() {
        let services = ["quickstart-square".to_owned()];
        let tls = DeploymentTls::issue("0123456789ab", "jobs", &services).unwrap();
        assert!(tls.service("quickstart-square").is_some());
        assert!(tls.service("elsewhere").is_none());
        assert_eq!(
            cluster_names("quickstart-square", "jobs"),
            [
                "quickstart-square",
                "quickstart-square.jobs",
                "quickstart-square.jobs.svc",
                "quickstart-square.jobs.svc.cluster.local",
            ]
        );
        let shown = format!("{tls:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(tls.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
