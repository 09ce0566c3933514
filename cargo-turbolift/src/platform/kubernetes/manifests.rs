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
    /// DNS name, in the namespace the program runs in.
    pub fn endpoints(&self) -> Vec<(String, Vec<String>)> {
        self.services
            .iter()
            .map(|s| {
                let url = format!("http://{}:80", self.service_name(s));
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
            ("name", json!(secret)),
            ("labels", plan.labels(&secret)),
            ("token", json!(plan.token)),
        ],
    )?);
    for service in &plan.services {
        let name = plan.service_name(service);
        let common = [
            ("name", json!(name)),
            ("labels", plan.labels(&name)),
            ("selector", plan.selector(&name)),
        ];
        let mut vars = common.to_vec();
        vars.extend([
            ("replicas", json!(service.replicas.min)),
            ("image", json!(service.image)),
            ("secret", json!(secret)),
            ("ready_path", json!(protocol::READY_PATH)),
            ("health_path", json!(protocol::HEALTH_PATH)),
            ("cpu", json!(service.cpu)),
            ("memory", json!(service.memory)),
            ("node_selector", plan.node_selector()),
        ]);
        out.push(render(templates::DEPLOYMENT, "Deployment", &name, &vars)?);
        out.push(render(templates::SERVICE, "Service", &name, &common)?);
        if service.replicas.max > service.replicas.min {
            let mut vars = common[..2].to_vec();
            vars.extend([
                ("min_replicas", json!(service.replicas.min)),
                ("max_replicas", json!(service.replicas.max)),
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
        out.push(render(
            templates::JOB,
            "Job",
            &name,
            &[
                ("name", json!(name)),
                ("labels", plan.labels(&name)),
                ("image", json!(program.image)),
                ("args", json!(program.args)),
                ("endpoints", json!(endpoints_variable(&plan.endpoints()))),
                ("secret", json!(secret)),
                ("node_selector", plan.node_selector()),
            ],
        )?);
    }
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
            ("namespace", json!(plan.namespace)),
            ("resources", json!(resources)),
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

/// A template with its `"{{key}}"` values filled in.
fn render(
    template: Template,
    kind: &'static str,
    name: &str,
    vars: &[(&str, Value)],
) -> Result<Manifest> {
    let values: Vec<(&str, templates::Value)> = vars
        .iter()
        .map(|(key, value)| (*key, templates::Value::Yaml(value.clone())))
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
        }
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

    #[test]
    fn unknown_placeholders_and_bad_namespaces_are_errors() {
        let service = &[("name", json!("x"))];
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
