//! The Kubernetes objects of a deployment, from the templates in `templates/kubernetes/`,
//! their `"{{...}}"` values filled in with typed values and printed as YAML
//! (see `crate::templates`). Names come from
//! `turbolift_shared::naming`, so they are valid DNS-1035 labels.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use turbolift_shared::naming;
use turbolift_shared::protocol;
use turbolift_syntax::Replicas;

use super::tls::{self, DeploymentTls};
use crate::platform::image;
use crate::platform::program::endpoints_variable;
use crate::private::{private_dir, write_private};
use crate::templates::{self, Template};

/// CPU request of a replica when the attribute gives none.
pub const DEFAULT_CPU: &str = "100m";
/// Memory request and limit of a replica when the attribute gives none.
pub const DEFAULT_MEMORY: &str = "128Mi";
/// The label every object carries with the deployment's id.
pub const DEPLOYMENT_LABEL: &str = "turbolift.dev/deployment";
/// The label with the package's name.
pub const PART_OF_LABEL: &str = "app.kubernetes.io/part-of";

/// What to deploy.
#[derive(Debug, Clone)]
pub struct Plan {
    pub package: String,
    /// A fresh id per build, on every object (`turbolift.dev/deployment`).
    pub deployment: String,
    pub namespace: String,
    /// The shared secret, written only into the Secret.
    pub token: String,
    pub services: Vec<ServicePlan>,
    /// The architecture of the images when there is one (`kubernetes.io/arch`, e.g.
    /// `arm64`): pods go only to nodes of it. `None` for multi-arch images.
    pub node_arch: Option<String>,
    /// The program, run as a Job; `None` deploys only the services.
    pub program: Option<ProgramPlan>,
    /// The deployment's certificates, when calls go over TLS (the default); `None` with
    /// `--no-tls`.
    pub tls: Option<DeploymentTls>,
}

#[derive(Debug, Clone)]
pub struct ServicePlan {
    pub function_id: String,
    pub image: String,
    pub replicas: Replicas,
    pub cpu: String,
    pub memory: String,
}

#[derive(Debug, Clone)]
pub struct ProgramPlan {
    pub image: String,
    pub args: Vec<String>,
}

/// One object, and the file it goes into.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub file: String,
    pub kind: &'static str,
    pub name: String,
    pub yaml: String,
}

impl Plan {
    pub fn secret_name(&self) -> String {
        naming::kubernetes_part_name(&self.package, "secret")
    }

    pub fn job_name(&self) -> String {
        naming::kubernetes_part_name(&self.package, "program")
    }

    pub fn service_name(&self, service: &ServicePlan) -> String {
        naming::kubernetes_name(&self.package, &service.function_id)
    }

    /// The `kubernetes.io/tls` Secret of a service: `<service>-tls`.
    pub fn service_tls_name(&self, service: &ServicePlan) -> String {
        naming::kubernetes_name(&self.package, &format!("{}::tls", service.function_id))
    }

    /// The `kubernetes.io/tls` Secret of the program's client certificate.
    pub fn program_tls_name(&self) -> String {
        naming::kubernetes_part_name(&self.package, "program-tls")
    }

    /// The port services are reached at: named `https` (443 on the Service) with TLS,
    /// `http` (80) without, so that whatever reads port names (a service mesh) takes
    /// the protocol for what it is.
    fn port(&self) -> (&'static str, u16) {
        if self.tls.is_some() {
            ("https", 443)
        } else {
            ("http", 80)
        }
    }

    /// The values of a pod that are there only with TLS: `fsGroup`, the Secret `secret`
    /// as a volume and its mount; absent without TLS.
    fn tls_pod_values(&self, secret: &str) -> [(&'static str, Option<Value>); 3] {
        let with = |value: Value| self.tls.as_ref().map(|_| value);
        [
            ("fs_group", with(json!(tls::FS_GROUP))),
            ("volumes", with(tls::volumes(secret))),
            ("volume_mounts", with(tls::volume_mounts())),
        ]
    }

    /// A container's `env`: `first`, the shared secret from the Secret, and with TLS the
    /// paths of the mounted files.
    fn env(&self, first: Vec<Value>) -> Value {
        let mut env = first;
        env.push(json!({
            "name": protocol::env::SECRET,
            "valueFrom": { "secretKeyRef": { "name": self.secret_name(), "key": "secret" } },
        }));
        if self.tls.is_some() {
            env.extend(tls::env_entries());
        }
        Value::Array(env)
    }

    /// A service pod's annotations for Prometheus' `kubernetes_sd_configs` (role `pod`):
    /// scrape it, at the container's port, path and scheme.
    fn scrape_annotations(&self) -> Value {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        json!({
            "prometheus.io/scrape": "true",
            "prometheus.io/port": image::CONTAINER_PORT.to_string(),
            "prometheus.io/path": protocol::METRICS_PATH,
            "prometheus.io/scheme": scheme,
        })
    }

    fn labels(&self, name: &str) -> Value {
        json!({
            "app.kubernetes.io/name": name,
            PART_OF_LABEL: naming::kubernetes_part_name(&self.package, "app"),
            "app.kubernetes.io/managed-by": "cargo-turbolift",
            DEPLOYMENT_LABEL: self.deployment,
        })
    }

    /// Without the deployment id: a Deployment's selector cannot change, and the next
    /// deployment of the package updates the same Deployment.
    fn selector(&self, name: &str) -> Value {
        json!({
            "app.kubernetes.io/name": name,
            PART_OF_LABEL: naming::kubernetes_part_name(&self.package, "app"),
        })
    }

    /// The pods' `nodeSelector`: Linux nodes, of the images' architecture if there is one.
    fn node_selector(&self) -> Value {
        let mut selector = json!({ "kubernetes.io/os": "linux" });
        if let Some(arch) = &self.node_arch {
            selector["kubernetes.io/arch"] = json!(arch);
        }
        selector
    }

    /// `TURBOLIFT_ENDPOINTS` for the program: every function at its Service's cluster
    /// DNS name, in the namespace the program runs in; `https://` with TLS, a name its
    /// certificate carries.
    pub fn endpoints(&self) -> Vec<(String, Vec<String>)> {
        let (scheme, port) = self.port();
        self.services
            .iter()
            .map(|s| {
                let url = format!("{scheme}://{}:{port}", self.service_name(s));
                (s.function_id.clone(), vec![url])
            })
            .collect()
    }
}

/// Every object of the deployment, in the order `kubectl apply` should create them.
pub fn manifests(plan: &Plan) -> Result<Vec<Manifest>> {
    for name in [&plan.namespace] {
        if !naming::is_dns1035_label(name) && !is_dns1123_label(name) {
            bail!("`{name}` is not a valid namespace name (lowercase letters, digits and `-`)");
        }
    }
    let mut out = Vec::new();
    let secret = plan.secret_name();
    out.push(render(
        templates::SECRET,
        "Secret",
        &secret,
        &[
            ("name", Some(json!(secret))),
            ("labels", Some(plan.labels(&secret))),
            ("token", Some(json!(plan.token))),
        ],
    )?);
    let (port_name, port) = plan.port();
    let scheme = plan.tls.as_ref().map(|_| json!("HTTPS"));
    for service in &plan.services {
        let name = plan.service_name(service);
        if let Some(tls) = &plan.tls {
            let issued = tls
                .service(&name)
                .with_context(|| format!("no certificate was made for `{name}`"))?;
            out.push(tls_secret(
                plan,
                &plan.service_tls_name(service),
                &issued.cert_pem,
                &issued.key_pem,
                &tls.ca_pem,
            )?);
        }
        let common = [
            ("name", Some(json!(name))),
            ("labels", Some(plan.labels(&name))),
            ("selector", Some(plan.selector(&name))),
        ];
        let env = plan.env(vec![
            json!({ "name": protocol::env::BIND, "value": format!("0.0.0.0:{}", image::CONTAINER_PORT) }),
            json!({ "name": protocol::env::REPLICA, "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }),
            // Prometheus scrapes without the secret (and, with TLS, without a client
            // certificate): metrics tell call counts and times, never arguments or results.
            json!({ "name": protocol::env::METRICS_PUBLIC, "value": "1" }),
        ]);
        let mut vars = common.to_vec();
        vars.extend([
            ("replicas", Some(json!(service.replicas.min))),
            ("image", Some(json!(service.image))),
            ("env", Some(env)),
            ("port_name", Some(json!(port_name))),
            ("scheme", scheme.clone()),
            ("ready_path", Some(json!(protocol::READY_PATH))),
            ("health_path", Some(json!(protocol::HEALTH_PATH))),
            ("cpu", Some(json!(service.cpu))),
            ("memory", Some(json!(service.memory))),
            ("node_selector", Some(plan.node_selector())),
            ("annotations", Some(plan.scrape_annotations())),
        ]);
        vars.extend(plan.tls_pod_values(&plan.service_tls_name(service)));
        out.push(render(templates::DEPLOYMENT, "Deployment", &name, &vars)?);
        let mut vars = common.to_vec();
        vars.extend([
            ("port_name", Some(json!(port_name))),
            ("port", Some(json!(port))),
        ]);
        out.push(render(templates::SERVICE, "Service", &name, &vars)?);
        if service.replicas.max > service.replicas.min {
            let mut vars = common[..2].to_vec();
            vars.extend([
                ("min_replicas", Some(json!(service.replicas.min))),
                ("max_replicas", Some(json!(service.replicas.max))),
            ]);
            out.push(render(
                templates::HPA,
                "HorizontalPodAutoscaler",
                &name,
                &vars,
            )?);
        }
    }
    if let Some(program) = &plan.program {
        let name = plan.job_name();
        let tls_secret_name = plan.program_tls_name();
        if let Some(tls) = &plan.tls {
            out.push(tls_secret(
                plan,
                &tls_secret_name,
                &tls.program.cert_pem,
                &tls.program.key_pem,
                &tls.ca_pem,
            )?);
        }
        let endpoints = endpoints_variable(&plan.endpoints());
        let env = plan.env(vec![
            json!({ "name": protocol::env::ENDPOINTS, "value": endpoints }),
        ]);
        let mut vars = vec![
            ("name", Some(json!(name))),
            ("labels", Some(plan.labels(&name))),
            ("image", Some(json!(program.image))),
            ("args", Some(json!(program.args))),
            ("env", Some(env)),
            ("node_selector", Some(plan.node_selector())),
        ];
        vars.extend(plan.tls_pod_values(&tls_secret_name));
        out.push(render(templates::JOB, "Job", &name, &vars)?);
    }
    check_unique_names(&out)?;
    Ok(out)
}

/// Writes the objects and a `kustomization.yaml` into `dir`, removing files of objects
/// that are gone; returns the files. The folder and its files are readable by this user
/// only: the Secret holds the deployment's secret.
pub fn write(dir: &Path, plan: &Plan, manifests: &[Manifest]) -> Result<Vec<PathBuf>> {
    private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut files = Vec::new();
    for m in manifests {
        let path = dir.join(&m.file);
        write_private(&path, &m.yaml)
            .with_context(|| format!("cannot write {}", path.display()))?;
        files.push(path);
    }
    let resources: Vec<&str> = manifests.iter().map(|m| m.file.as_str()).collect();
    let kustomization = render(
        templates::KUSTOMIZATION,
        "Kustomization",
        "kustomization",
        &[
            ("namespace", Some(json!(plan.namespace))),
            ("resources", Some(json!(resources))),
        ],
    )?;
    let path = dir.join("kustomization.yaml");
    write_private(&path, &kustomization.yaml)
        .with_context(|| format!("cannot write {}", path.display()))?;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml")
            && name != "kustomization.yaml"
            && !resources.contains(&name.as_str())
        {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(files)
}

/// The `kubernetes.io/tls` Secret `name`: a certificate, its key and the authority's.
fn tls_secret(plan: &Plan, name: &str, cert: &str, key: &str, ca: &str) -> Result<Manifest> {
    render(
        templates::TLS_SECRET,
        "Secret",
        name,
        &[
            ("name", Some(json!(name))),
            ("labels", Some(plan.labels(name))),
            ("cert", Some(json!(cert))),
            ("key", Some(json!(key))),
            ("ca", Some(json!(ca))),
        ],
    )
}

/// Two objects of one kind cannot share a name: the second would replace the first.
/// Names are made from function paths, so a function could be named like another's
/// part (`program_tls` beside the program's TLS Secret).
fn check_unique_names(manifests: &[Manifest]) -> Result<()> {
    for (i, m) in manifests.iter().enumerate() {
        if manifests[..i]
            .iter()
            .any(|o| o.kind == m.kind && o.name == m.name)
        {
            bail!(
                "two {} objects would be named `{}`; rename the distributed function whose name makes it",
                m.kind,
                m.name
            );
        }
    }
    Ok(())
}

/// A template with its `"{{key}}"` values filled in; `None` leaves the line out.
fn render(
    template: Template,
    kind: &'static str,
    name: &str,
    vars: &[(&str, Option<Value>)],
) -> Result<Manifest> {
    let values: Vec<(&str, templates::Value)> = vars
        .iter()
        .map(|(key, value)| {
            let value = match value {
                Some(v) => templates::Value::Yaml(v.clone()),
                None => templates::Value::Absent,
            };
            (*key, value)
        })
        .collect();
    let file = if kind == "Kustomization" {
        "kustomization.yaml".to_owned()
    } else {
        format!("{name}.{}.yaml", kind.to_ascii_lowercase())
    };
    Ok(Manifest {
        file,
        kind,
        name: name.to_owned(),
        yaml: template.render(&values)?,
    })
}

fn is_dns1123_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn plan() -> Plan {
        Plan {
            package: "quickstart".into(),
            deployment: "0123456789ab".into(),
            namespace: "default".into(),
            token: "s3cret-token".into(),
            services: vec![
                ServicePlan {
                    function_id: "quickstart::square".into(),
                    image: "turbolift/quickstart-square:abc".into(),
                    replicas: Replicas { min: 1, max: 8 },
                    cpu: "500m".into(),
                    memory: "256Mi".into(),
                },
                ServicePlan {
                    function_id: "quickstart::geo::area".into(),
                    image: "turbolift/quickstart-geo-area:def".into(),
                    replicas: Replicas { min: 2, max: 2 },
                    cpu: DEFAULT_CPU.into(),
                    memory: DEFAULT_MEMORY.into(),
                },
            ],
            node_arch: Some("amd64".into()),
            program: Some(ProgramPlan {
                image: "turbolift/quickstart-program:123".into(),
                args: vec!["--verbose".into()],
            }),
            tls: None,
        }
    }

    /// The plan with TLS, as a build without `--no-tls` makes it.
    pub fn plan_with_tls() -> Plan {
        let mut plan = plan();
        let names: Vec<String> = plan.services.iter().map(|s| plan.service_name(s)).collect();
        plan.tls = Some(DeploymentTls::issue(&plan.deployment, &plan.namespace, &names).unwrap());
        plan
    }

    #[test]
    fn the_manifests_are_readable_by_their_user_only() {
        use std::os::unix::fs::PermissionsExt;
        let plan = plan();
        let all = manifests(&plan).unwrap();
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("kubernetes");
        let files = write(&dir, &plan, &all).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert!(
            files
                .iter()
                .any(|f| f.ends_with("quickstart-secret.secret.yaml"))
        );
        for file in files.iter().chain([&dir.join("kustomization.yaml")]) {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
        // A file of an earlier version, readable by all, is made private.
        let secret = files
            .iter()
            .find(|f| f.ends_with("quickstart-secret.secret.yaml"))
            .unwrap();
        std::fs::set_permissions(secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&dir, &plan, &all).unwrap();
        assert_eq!(mode(secret), 0o600);
    }

    #[test]
    fn every_manifest_as_written() {
        let plan = plan();
        let all = manifests(&plan).unwrap();
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &plan, &all).unwrap();
        let mut files: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let text: String = files
            .iter()
            .map(|f| {
                let yaml = std::fs::read_to_string(dir.path().join(f)).unwrap();
                format!("==== {f} ====\n{yaml}")
            })
            .collect();
        insta::assert_snapshot!(text);
    }

    #[test]
    fn objects_for_each_service_and_an_hpa_only_for_a_range() {
        let all = manifests(&plan()).unwrap();
        let kinds: Vec<(&str, &str)> = all.iter().map(|m| (m.kind, m.name.as_str())).collect();
        assert_eq!(
            kinds,
            [
                ("Secret", "quickstart-secret"),
                ("Deployment", "quickstart-square"),
                ("Service", "quickstart-square"),
                ("HorizontalPodAutoscaler", "quickstart-square"),
                ("Deployment", "quickstart-geo-area"),
                ("Service", "quickstart-geo-area"),
                ("Job", "quickstart-program"),
            ]
        );
        for m in &all {
            assert!(naming::is_dns1035_label(&m.name), "{}", m.name);
            assert!(!m.yaml.contains("{{"), "{}", m.yaml);
        }
    }

    #[test]
    fn the_secret_is_referenced_and_never_inlined() {
        let all = manifests(&plan()).unwrap();
        for m in all.iter().filter(|m| m.kind != "Secret") {
            assert!(!m.yaml.contains("s3cret-token"), "{}", m.yaml);
        }
        let deployment = &all[1].yaml;
        assert!(deployment.contains("secretKeyRef"), "{deployment}");
        assert!(all[0].yaml.contains("s3cret-token"));
    }

    #[test]
    fn the_program_reaches_services_by_cluster_dns_name() {
        assert_eq!(
            endpoints_variable(&plan().endpoints()),
            "quickstart::square=http://quickstart-square:80;quickstart::geo::area=http://quickstart-geo-area:80"
        );
    }

    #[test]
    fn pods_go_to_nodes_of_the_images_architecture() {
        let mut plan = plan();
        let all = manifests(&plan).unwrap();
        for m in all
            .iter()
            .filter(|m| matches!(m.kind, "Deployment" | "Job"))
        {
            assert!(
                m.yaml.contains(
                    "nodeSelector:\n        kubernetes.io/os: linux\n        kubernetes.io/arch: amd64\n"
                ),
                "{}",
                m.yaml
            );
        }
        plan.node_arch = None;
        for m in manifests(&plan)
            .unwrap()
            .iter()
            .filter(|m| matches!(m.kind, "Deployment" | "Job"))
        {
            assert!(
                m.yaml
                    .contains("nodeSelector:\n        kubernetes.io/os: linux\n"),
                "{}",
                m.yaml
            );
        }
    }

    /// `yaml` with the lines of PEM blocks (fresh on every build) replaced by a mark.
    fn without_pem_bodies(yaml: &str) -> String {
        let mut out = String::new();
        let mut in_pem = false;
        for line in yaml.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with("-----BEGIN ") {
                in_pem = true;
                out.push_str(line);
                out.push('\n');
                out.push_str(&line.replace(trimmed, "<base64>"));
                out.push('\n');
            } else if trimmed.starts_with("-----END ") {
                in_pem = false;
                out.push_str(line);
                out.push('\n');
            } else if !in_pem {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    #[test]
    fn service_pods_are_annotated_for_prometheus_and_serve_public_metrics() {
        for (plan, scheme) in [(plan(), "http"), (plan_with_tls(), "https")] {
            let all = manifests(&plan).unwrap();
            for m in all.iter().filter(|m| m.kind == "Deployment") {
                let deployment: Value = serde_saphyr::from_str(&m.yaml).unwrap();
                let pod = &deployment["spec"]["template"];
                assert_eq!(
                    pod["metadata"]["annotations"],
                    json!({
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": "8080",
                        "prometheus.io/path": "/v1/metrics",
                        "prometheus.io/scheme": scheme,
                    }),
                    "{}",
                    m.yaml
                );
                let env = pod["spec"]["containers"][0]["env"].as_array().unwrap();
                assert!(
                    env.contains(&json!({ "name": "TURBOLIFT_METRICS_PUBLIC", "value": "1" })),
                    "{}",
                    m.yaml
                );
            }
        }
    }

    #[test]
    fn every_manifest_as_written_with_tls() {
        let plan = plan_with_tls();
        let text: String = manifests(&plan)
            .unwrap()
            .iter()
            .map(|m| format!("==== {} ====\n{}", m.file, without_pem_bodies(&m.yaml)))
            .collect();
        insta::assert_snapshot!(text);
    }

    #[test]
    fn with_tls_each_pod_mounts_its_own_certificate_and_probes_over_https() {
        let plan = plan_with_tls();
        let all = manifests(&plan).unwrap();
        let kinds: Vec<(&str, &str)> = all.iter().map(|m| (m.kind, m.name.as_str())).collect();
        assert_eq!(
            kinds,
            [
                ("Secret", "quickstart-secret"),
                ("Secret", "quickstart-square-tls"),
                ("Deployment", "quickstart-square"),
                ("Service", "quickstart-square"),
                ("HorizontalPodAutoscaler", "quickstart-square"),
                ("Secret", "quickstart-geo-area-tls"),
                ("Deployment", "quickstart-geo-area"),
                ("Service", "quickstart-geo-area"),
                ("Secret", "quickstart-program-tls"),
                ("Job", "quickstart-program"),
            ]
        );
        let parsed = |name: &str, kind: &str| -> Value {
            let m = all
                .iter()
                .find(|m| m.name == name && m.kind == kind)
                .unwrap();
            serde_saphyr::from_str(&m.yaml).unwrap()
        };
        let tls = plan.tls.as_ref().unwrap();
        let square = tls.service("quickstart-square").unwrap();
        let secret = parsed("quickstart-square-tls", "Secret");
        assert_eq!(secret["type"], "kubernetes.io/tls");
        assert_eq!(secret["stringData"]["tls.crt"], square.cert_pem.as_str());
        assert_eq!(secret["stringData"]["tls.key"], square.key_pem.as_str());
        assert_eq!(secret["stringData"]["ca.crt"], tls.ca_pem.as_str());
        let program = parsed("quickstart-program-tls", "Secret");
        assert_eq!(
            program["stringData"]["tls.key"],
            tls.program.key_pem.as_str()
        );
        // A private key is written into its own Secret and nowhere else.
        for m in &all {
            let holds = |key: &str| m.yaml.contains(key.lines().nth(1).unwrap());
            assert_eq!(holds(&square.key_pem), m.name == "quickstart-square-tls");
            assert_eq!(
                holds(&tls.program.key_pem),
                m.name == "quickstart-program-tls"
            );
        }

        for (kind, name, secret) in [
            ("Deployment", "quickstart-square", "quickstart-square-tls"),
            ("Job", "quickstart-program", "quickstart-program-tls"),
        ] {
            let pod = &parsed(name, kind)["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["fsGroup"], 65532, "{name}");
            assert_eq!(pod["volumes"][0]["secret"]["secretName"], secret);
            assert_eq!(pod["volumes"][0]["secret"]["defaultMode"], 0o440);
            let container = &pod["containers"][0];
            let mount = &container["volumeMounts"][0];
            assert_eq!(mount["mountPath"], "/etc/turbolift/tls");
            assert_eq!(mount["readOnly"], true);
            let env = container["env"].as_array().unwrap();
            let var = |key: &str| {
                env.iter()
                    .find(|e| e["name"] == key)
                    .map(|e| e["value"].clone())
            };
            assert_eq!(
                var("TURBOLIFT_TLS_CA"),
                Some(json!("/etc/turbolift/tls/ca.crt"))
            );
            assert_eq!(
                var("TURBOLIFT_TLS_CERT"),
                Some(json!("/etc/turbolift/tls/tls.crt"))
            );
            assert_eq!(
                var("TURBOLIFT_TLS_KEY"),
                Some(json!("/etc/turbolift/tls/tls.key"))
            );
        }
        let deployment = parsed("quickstart-square", "Deployment");
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["ports"][0]["name"], "https");
        for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
            assert_eq!(container[probe]["httpGet"]["scheme"], "HTTPS", "{probe}");
            assert_eq!(container[probe]["httpGet"]["port"], "https", "{probe}");
        }
        let service = parsed("quickstart-square", "Service");
        assert_eq!(service["spec"]["ports"][0]["port"], 443);
        assert_eq!(service["spec"]["ports"][0]["targetPort"], "https");
        assert_eq!(
            endpoints_variable(&plan.endpoints()),
            "quickstart::square=https://quickstart-square:443;quickstart::geo::area=https://quickstart-geo-area:443"
        );
    }

    #[test]
    fn without_tls_nothing_of_it_is_written() {
        for m in manifests(&plan()).unwrap() {
            let objects: String = m.yaml.lines().filter(|l| !l.starts_with('#')).collect();
            for word in [
                "TURBOLIFT_TLS",
                "kubernetes.io/tls",
                "HTTPS",
                "fsGroup",
                "volume",
            ] {
                assert!(!objects.contains(word), "{word} in {}", m.yaml);
            }
        }
    }

    #[test]
    fn two_objects_of_a_kind_with_one_name_are_an_error() {
        let mut plan = plan_with_tls();
        // A function `program_tls` would make a Secret named like the program's.
        plan.services[1].function_id = "quickstart::program".into();
        let names: Vec<String> = plan.services.iter().map(|s| plan.service_name(s)).collect();
        plan.tls = Some(DeploymentTls::issue(&plan.deployment, &plan.namespace, &names).unwrap());
        let err = manifests(&plan).unwrap_err().to_string();
        assert!(
            err.contains("two Secret objects would be named `quickstart-program-tls`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_placeholders_and_bad_namespaces_are_errors() {
        let service = &[("name", Some(json!("x")))];
        assert!(render(templates::SECRET, "Secret", "x", service).is_err());
        let mut bad = plan();
        bad.namespace = "Not_Valid".into();
        assert!(
            manifests(&bad)
                .unwrap_err()
                .to_string()
                .contains("namespace")
        );
    }
}
