//! Kubernetes, without a cluster: the manifests of real builds, with TLS (the default) and
//! with `--no-tls`, checked against the official schemas (`kubernetes-validate --strict`,
//! 1.30 and the newest it ships) and by `kubectl kustomize`; the TLS Secrets and who mounts
//! them; their probes hit over HTTPS, as a kubelet does, on the real service binary given
//! the files of its Secret; and `deploy`, `run` and `delete` driven against a fake
//! `kubectl` that records its arguments.
//!
//! Every command but `delete` builds the images first, with Docker, so those tests are
//! `#[ignore = "needs Docker ..."]`: `./test.sh` runs them when a Docker daemon answers,
//! and always under `CI=true`; run without one, they fail and say why. `delete` needs no
//! Docker and always runs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use turbolift::naming::is_dns1035_label;

use crate::docker::{require_docker, serial};
use crate::support::*;

/// `kubernetes-validate` from the local venv that `./test.sh` makes (made here if missing).
fn validator() -> PathBuf {
    let venv = repo().join("target").join("k8s-venv");
    let bin = venv.join("bin").join("kubernetes-validate");
    if !bin.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status();
        assert!(made.is_ok_and(|s| s.success()), "python3 -m venv failed");
        let pip = venv.join("bin").join("pip");
        let installed = Command::new(pip)
            .args(["install", "-q", "kubernetes-validate"])
            .status();
        assert!(
            installed.is_ok_and(|s| s.success()),
            "pip install kubernetes-validate failed"
        );
    }
    bin
}

/// Fails the test, saying what to install, unless `kubectl` runs (as `kubectl kustomize`,
/// which needs no cluster).
fn require_kubectl() {
    match Command::new("kubectl")
        .args(["version", "--client"])
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => cannot_run(&format!(
            "it needs kubectl, and `kubectl version --client` failed: {}",
            text(&out.stderr).trim()
        )),
        Err(e) => cannot_run(&format!(
            "it needs kubectl, and `kubectl` cannot run ({e}); install it (`apt-get install kubernetes-client` on Debian, or https://kubernetes.io/docs/tasks/tools/); ./test.sh tries apt-get as root"
        )),
    }
}

/// Builds `example` for Kubernetes; returns the manifest directory.
fn manifests_of(example: &str, package: &str) -> PathBuf {
    manifests_with(example, package, &[])
}

/// Builds `example` for Kubernetes with the flags `extra`; returns the manifest directory.
fn manifests_with(example: &str, package: &str, extra: &[&str]) -> PathBuf {
    let dir = fixture(example);
    let mut args = vec!["build", "--platform", "kubernetes"];
    args.extend_from_slice(extra);
    let out = output(&mut turbolift(&dir, &args));
    assert_success("cargo turbolift build --platform kubernetes", &out);
    target_dir()
        .join("turbolift")
        .join(package)
        .join("kubernetes")
}

fn objects(dir: &Path) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if name == "kustomization.yaml" {
            continue;
        }
        let value: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        out.push((name, value));
    }
    out
}

#[test]
#[ignore = "needs Docker (the Kubernetes platform builds images with it) and kubectl"]
fn manifests_pass_the_official_schemas_strictly_and_kustomize() {
    require_docker();
    require_kubectl();
    let _serial = serial();
    let validate = validator();
    for (example, package, flags) in [
        ("examples/quickstart", "quickstart", &[][..]),
        ("examples/wordstats", "wordstats", &[][..]),
        ("examples/quickstart", "quickstart", &["--no-tls"][..]),
    ] {
        let dir = manifests_with(example, package, flags);
        let tls_secrets = objects(&dir)
            .iter()
            .filter(|(_, o)| o["type"] == "kubernetes.io/tls")
            .count();
        let services = objects(&dir)
            .iter()
            .filter(|(_, o)| o["kind"] == "Deployment")
            .count();
        let expected = if flags.is_empty() { services + 1 } else { 0 };
        assert_eq!(tls_secrets, expected, "{package} {flags:?}");
        let files: Vec<PathBuf> = objects(&dir)
            .into_iter()
            .map(|(f, _)| dir.join(f))
            .collect();
        for version in ["1.30.0", "1.37.0"] {
            let out = Command::new(&validate)
                .args(["--strict", "--quiet", "-k", version])
                .args(&files)
                .output()
                .unwrap();
            assert_success(
                &format!("kubernetes-validate --strict -k {version} ({package})"),
                &out,
            );
        }
        let kustomized = Command::new("kubectl")
            .arg("kustomize")
            .arg(&dir)
            .output()
            .unwrap();
        assert_success("kubectl kustomize", &kustomized);
        let text = text(&kustomized.stdout);
        assert!(text.contains("namespace: default"), "{text}");
        for (file, object) in objects(&dir) {
            let name = object["metadata"]["name"].as_str().unwrap();
            assert!(is_dns1035_label(name), "{file}: `{name}`");
            let labels = &object["metadata"]["labels"];
            assert!(labels["turbolift.dev/deployment"].is_string(), "{file}");
            assert!(labels["app.kubernetes.io/part-of"].is_string(), "{file}");
        }
    }
}

/// The deployment's shared secret: the Secret of type `Opaque`.
fn shared_secret(all: &[(String, Value)]) -> &Value {
    &all.iter()
        .find(|(_, o)| o["kind"] == "Secret" && o["type"] == "Opaque")
        .unwrap()
        .1
}

/// The `kubernetes.io/tls` Secret a pod of `object` (a Deployment or the Job) mounts.
fn mounted_tls<'a>(all: &'a [(String, Value)], object: &Value) -> &'a Value {
    let pod = &object["spec"]["template"]["spec"];
    let name = &pod["volumes"][0]["secret"]["secretName"];
    &all.iter()
        .find(|(_, o)| o["kind"] == "Secret" && o["metadata"]["name"] == *name)
        .unwrap_or_else(|| panic!("no Secret {name}"))
        .1
}

#[test]
#[ignore = "needs Docker (the Kubernetes platform builds images with it)"]
fn each_pod_mounts_its_own_tls_secret_and_probes_over_https() {
    require_docker();
    let _serial = serial();
    let dir = manifests_of("examples/wordstats", "wordstats");
    let all = objects(&dir);
    let mut keys = Vec::new();
    for (file, object) in all
        .iter()
        .filter(|(_, o)| o["kind"] == "Deployment" || o["kind"] == "Job")
    {
        let secret = mounted_tls(&all, object);
        assert_eq!(secret["type"], "kubernetes.io/tls", "{file}");
        let data = secret["stringData"].as_object().unwrap();
        let mut names: Vec<&str> = data.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(names, ["ca.crt", "tls.crt", "tls.key"], "{file}");
        let key = data["tls.key"].as_str().unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{file}");
        keys.push(key.to_owned());
        let pod = &object["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["fsGroup"], 65532, "{file}");
        assert_eq!(pod["volumes"][0]["secret"]["defaultMode"], 0o440, "{file}");
        let container = &pod["containers"][0];
        assert_eq!(
            container["volumeMounts"][0]["mountPath"], "/etc/turbolift/tls",
            "{file}"
        );
        assert_eq!(container["volumeMounts"][0]["readOnly"], true, "{file}");
        let env = container["env"].as_array().unwrap();
        for (name, value) in [
            ("TURBOLIFT_TLS_CA", "/etc/turbolift/tls/ca.crt"),
            ("TURBOLIFT_TLS_CERT", "/etc/turbolift/tls/tls.crt"),
            ("TURBOLIFT_TLS_KEY", "/etc/turbolift/tls/tls.key"),
        ] {
            assert!(
                env.iter().any(|e| e["name"] == name && e["value"] == value),
                "{file}: {name}"
            );
        }
        if object["kind"] == "Deployment" {
            for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
                assert_eq!(container[probe]["httpGet"]["scheme"], "HTTPS", "{file}");
            }
        } else {
            let endpoints = env
                .iter()
                .find(|e| e["name"] == "TURBOLIFT_ENDPOINTS")
                .unwrap()["value"]
                .as_str()
                .unwrap();
            assert_eq!(endpoints.matches("=https://").count(), 4, "{endpoints}");
        }
    }
    keys.sort();
    keys.dedup();
    assert_eq!(
        keys.len(),
        5,
        "a key of its own for each service and the program"
    );
    // A key is written only into its own Secret.
    for (file, _) in &all {
        let raw = std::fs::read_to_string(dir.join(file)).unwrap();
        let holds = keys
            .iter()
            .filter(|k| raw.contains(k.lines().nth(1).unwrap()))
            .count();
        assert!(holds <= 1, "{file} holds {holds} keys");
        assert_eq!(holds == 1, file.ends_with("-tls.secret.yaml"), "{file}");
    }
}

#[test]
#[ignore = "needs Docker (the Kubernetes platform builds images with it)"]
fn the_secret_is_referenced_never_inlined() {
    require_docker();
    let _serial = serial();
    let dir = manifests_of("examples/wordstats", "wordstats");
    let all = objects(&dir);
    let secret = shared_secret(&all);
    let token = secret["stringData"]["secret"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64, "a fresh 256-bit token");
    let secret_name = secret["metadata"]["name"].as_str().unwrap();
    for (file, object) in all
        .iter()
        .filter(|(_, o)| o["kind"] == "Deployment" || o["kind"] == "Job")
    {
        let raw = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(!raw.contains(&token), "{file} holds the secret itself");
        let env = &object["spec"]["template"]["spec"]["containers"][0]["env"];
        let var = env
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "TURBOLIFT_SECRET")
            .unwrap();
        assert_eq!(
            var["valueFrom"]["secretKeyRef"]["name"], *secret_name,
            "{file}"
        );
        assert!(var.get("value").is_none(), "{file}");
    }
    // A second build makes a new deployment with a new secret.
    let tls_before = mounted_tls(
        &all,
        &all.iter().find(|(_, o)| o["kind"] == "Job").unwrap().1,
    )["stringData"]["ca.crt"]
        .clone();
    let again = objects(&manifests_of("examples/wordstats", "wordstats"));
    assert_ne!(
        shared_secret(&again)["stringData"]["secret"]
            .as_str()
            .unwrap(),
        token
    );
    // And a new authority.
    let job = &again.iter().find(|(_, o)| o["kind"] == "Job").unwrap().1;
    assert_ne!(mounted_tls(&again, job)["stringData"]["ca.crt"], tls_before);
}

#[test]
#[ignore = "needs Docker (the Kubernetes platform builds images with it)"]
fn the_probes_hit_paths_the_service_really_serves() {
    require_docker();
    let _serial = serial();
    let dir = manifests_of("examples/quickstart", "quickstart");
    let all = objects(&dir);
    let (_, deployment) = all.iter().find(|(_, o)| o["kind"] == "Deployment").unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    // The files of the service's Secret, as the pod has them.
    let secret = &mounted_tls(&all, deployment)["stringData"];
    let files = tempfile::tempdir().unwrap();
    for name in ["ca.crt", "tls.crt", "tls.key"] {
        std::fs::write(files.path().join(name), secret[name].as_str().unwrap()).unwrap();
    }
    // The binary the image holds, started here on 127.0.0.1.
    let host =
        String::from_utf8(Command::new("rustc").arg("-vV").output().unwrap().stdout).unwrap();
    let host = host
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap()
        .trim()
        .to_owned();
    let binary = target_dir()
        .join("turbolift-static")
        .join(host)
        .join("debug/quickstart-square");
    // The service binary with the Secret's files, and `env` added: it and its address.
    let serve = |env: &[(&str, &str)]| {
        let mut command = Command::new(&binary);
        command
            .env("TURBOLIFT_SECRET", "probe-test")
            .env("TURBOLIFT_BIND", "127.0.0.1:0")
            .env("TURBOLIFT_TLS_CA", files.path().join("ca.crt"))
            .env("TURBOLIFT_TLS_CERT", files.path().join("tls.crt"))
            .env("TURBOLIFT_TLS_KEY", files.path().join("tls.key"))
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut service = Running(command.spawn().unwrap());
        let mut line = String::new();
        BufReader::new(service.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line.trim().rsplit("https://").next().unwrap().to_owned();
        (service, addr)
    };
    let (service, addr) = serve(&[]);
    let ca = secret["ca.crt"].as_str().unwrap();
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["port"], "https", "{probe} uses the named port");
        assert_eq!(get["scheme"], "HTTPS", "{probe}");
        let path = get["path"].as_str().unwrap();
        // As a kubelet asks: no client certificate. The certificate checked for the
        // names pods use (a kubelet checks none).
        for name in [
            "quickstart-square",
            "quickstart-square.default.svc.cluster.local",
        ] {
            let answer = https_get(&addr, ca, name, path);
            assert!(
                answer.starts_with("HTTP/1.1 200"),
                "{probe} {path} for {name}: {answer}"
            );
        }
    }
    // Prometheus, led by the pod's annotations, scrapes without a client certificate:
    // the service answers because the Deployment makes its metrics public.
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "8080");
    assert_eq!(annotations["prometheus.io/scheme"], "https");
    let public = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "TURBOLIFT_METRICS_PUBLIC")
        .expect("the Deployment sets TURBOLIFT_METRICS_PUBLIC");
    assert_eq!(public["value"], "1");
    let path = annotations["prometheus.io/path"].as_str().unwrap();
    let answer = https_get(&addr, ca, "quickstart-square", path);
    assert!(answer.starts_with("HTTP/1.1 401"), "not public: {answer}");
    drop(service);
    let (_service, addr) = serve(&[(
        "TURBOLIFT_METRICS_PUBLIC",
        public["value"].as_str().unwrap(),
    )]);
    let answer = https_get(&addr, ca, "quickstart-square", path);
    assert!(
        answer.starts_with("HTTP/1.1 200")
            && answer.contains("turbolift_calls_total{function=\"quickstart::square\"} 0"),
        "{path}: {answer}"
    );
    // Plain HTTP is not answered.
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let _ = write!(
        stream,
        "GET /v1/ready HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    );
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
}

/// rustls's ring provider, as both ends have it (deprecated by rustls for its key exchange
/// without post-quantum algorithms; see docs/security.md).
#[allow(deprecated)]
fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `GET path` over TLS without a client certificate, believing `ca` for `name`; the answer.
fn https_get(addr: &str, ca: &str, name: &str, path: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut back = Vec::new();
    // A server that closes without close_notify after its answer is fine here.
    let _ = tls.read_to_end(&mut back);
    String::from_utf8_lossy(&back).into_owned()
}

#[test]
#[ignore = "needs Docker (the Kubernetes platform builds images with it)"]
fn the_quickstart_manifests() {
    require_docker();
    let _serial = serial();
    let dir = manifests_of("examples/quickstart", "quickstart");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut all = String::new();
    for file in files {
        all.push_str(&format!(
            "==== {} ====\n",
            file.file_name().unwrap().to_string_lossy()
        ));
        all.push_str(&redact_all(&std::fs::read_to_string(&file).unwrap()));
    }
    insta::assert_snapshot!("kubernetes_quickstart", all);
}

/// The lines of `text` with what changes from build to build redacted: the deployment
/// id, the secret, image tags, and the bodies of PEM blocks (certificates and keys).
fn redact_all(text: &str) -> String {
    let mut out = String::new();
    let mut in_pem = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if in_pem && !trimmed.starts_with("-----END ") {
            continue;
        }
        in_pem = trimmed.starts_with("-----BEGIN ");
        out.push_str(&redact(line));
        out.push('\n');
        if in_pem {
            out.push_str(&line.replace(trimmed, "<base64>"));
            out.push('\n');
        }
    }
    out
}

/// The values that change from build to build: the deployment id, the secret, image tags.
fn redact(line: &str) -> String {
    if let Some((key, _)) = line.split_once("turbolift.dev/deployment: ") {
        return format!("{key}turbolift.dev/deployment: <deployment>");
    }
    if let Some((key, _)) = line.split_once("  secret: ")
        && !line.contains("secretKeyRef")
    {
        return format!("{key}  secret: <token>");
    }
    if let Some((key, image)) = line.split_once("image: ")
        && let Some((repository, _tag)) = image.rsplit_once(':')
    {
        return format!("{key}image: {repository}:<hash>");
    }
    line.to_owned()
}

/// A `kubectl` that records its arguments and answers from canned output; `FAKE_MODE=fail`
/// makes the rollout fail with a pod stuck pulling its image. The service pods' `logs
/// --follow` go on until killed, as a real one does, each noting its pid in
/// `<log>.pids`; the program's Job takes 3 s.
fn fake_kubectl() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("kubectl.log");
    let script = dir.path().join("kubectl");
    std::fs::write(&script, FAKE_KUBECTL).unwrap();
    let executable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&script, executable).unwrap();
    (dir, log)
}

const FAKE_KUBECTL: &str = r#"#!/usr/bin/env bash
echo "$*" >> "$FAKE_KUBECTL_LOG"
args=" $* "
case "$args" in
  *" apply "*) for a in "$@"; do case "$a" in *.yaml) echo "configured $(basename "$a")";; esac; done ;;
  *" rollout status "*)
    if [ "$FAKE_MODE" = fail ]; then
      echo 'error: deployment "quickstart-square" exceeded its progress deadline' >&2; exit 1
    fi
    echo 'deployment "quickstart-square" successfully rolled out' ;;
  *" get pods "*" -o name "*)
    echo pod/quickstart-square-5d4f8b7c9-abcde
    echo pod/quickstart-square-5d4f8b7c9-fghij ;;
  *" get pods "*)
    if [ "$FAKE_MODE" = fail ]; then
      echo '{"items":[{"metadata":{"name":"quickstart-square-7d9f-abcde"},"status":{"containerStatuses":[{"ready":false,"restartCount":0,"state":{"waiting":{"reason":"ImagePullBackOff","message":"Back-off pulling image \"turbolift/quickstart-square:0000\""}}}]}}]}'
    else
      echo '{"items":[{"metadata":{"name":"quickstart-program-xyz"},"status":{"containerStatuses":[{"ready":false,"state":{"terminated":{"exitCode":3}}}]}}]}'
    fi ;;
  *" get events "*)
    echo '{"items":[{"type":"Normal","reason":"Scheduled","message":"Successfully assigned default/quickstart-square-7d9f-abcde"},{"type":"Warning","reason":"Failed","message":"Failed to pull image \"turbolift/quickstart-square:0000\": not found"}]}' ;;
  *" wait "*) echo "pod/quickstart-program-xyz condition met" ;;
  *" logs "*" pod/"*)
    # A service pod's lines: the first pod's container "restarts" once (its logs end,
    # and are followed again from the last line shown); then both follow until killed.
    if [[ "$args" == *" --since-time="* ]]; then
      echo "2026-12-06T03:02:26.5Z hello from square"
      echo "2026-12-06T03:02:28.25Z square again after a restart"
    else
      echo "2026-12-06T03:02:26.1Z 2026-12-06T03:02:26.100000Z  INFO turbolift::service: serving function=\"quickstart::square\""
      echo "2026-12-06T03:02:26.5Z hello from square"
      [[ "$args" == *-abcde* ]] && exit 0
    fi
    echo $$ >> "$FAKE_KUBECTL_LOG.pids"
    exec sleep 60 ;;
  *" logs "*) sleep 3; echo "squares: [0, 1, 4]"; echo "sum: 5" ;;
  *" delete "*) echo 'deployment.apps "quickstart-square" deleted'; echo 'secret "quickstart-secret" deleted' ;;
  *) echo "fake kubectl: unexpected arguments: $*" >&2; exit 2 ;;
esac
"#;

fn with_fake(cmd: &mut Command, dir: &Path, log: &Path, mode: &str) {
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap());
    cmd.env("PATH", path)
        .env("FAKE_KUBECTL_LOG", log)
        .env("FAKE_MODE", mode);
}

#[test]
#[ignore = "needs Docker (the Kubernetes platform builds images with it)"]
fn deploy_applies_the_services_and_waits_for_their_rollout() {
    require_docker();
    let _serial = serial();
    let (fake, log) = fake_kubectl();
    let mut cmd = turbolift(
        &fixture("examples/quickstart"),
        &["deploy", "--namespace", "jobs"],
    );
    with_fake(&mut cmd, fake.path(), &log, "ok");
    let out = output(&mut cmd);
    assert_success("cargo turbolift deploy", &out);
    let calls = std::fs::read_to_string(&log).unwrap();
    let apply = calls.lines().find(|l| l.contains(" apply ")).unwrap();
    assert!(apply.starts_with("--namespace jobs apply"), "{apply}");
    assert!(
        apply.contains("quickstart-secret.secret.yaml")
            && apply.contains("quickstart-square.deployment.yaml")
    );
    assert!(
        !apply.contains(".job.yaml"),
        "deploy does not start the program: {apply}"
    );
    assert!(
        calls.contains("rollout status deployment/quickstart-square --timeout="),
        "{calls}"
    );
    assert!(
        text(&out.stderr).contains("Deployed"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
#[ignore = "needs Docker (the Kubernetes platform builds images with it)"]
fn a_failed_rollout_says_which_pod_fails_and_why() {
    require_docker();
    let _serial = serial();
    let (fake, log) = fake_kubectl();
    let mut cmd = turbolift(
        &fixture("examples/quickstart"),
        &["deploy", "--timeout", "30s"],
    );
    with_fake(&mut cmd, fake.path(), &log, "fail");
    let out = output(&mut cmd);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("deployment/quickstart-square did not become ready"),
        "{stderr}"
    );
    assert!(
        stderr.contains("exceeded its progress deadline"),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("pod quickstart-square-7d9f-abcde: ImagePullBackOff: Back-off pulling image"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Warning Failed: Failed to pull image"),
        "{stderr}"
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls.contains(
            "get events --field-selector involvedObject.name=quickstart-square-7d9f-abcde"
        ),
        "{calls}"
    );
}

#[test]
#[ignore = "needs Docker (the Kubernetes platform builds images with it)"]
fn run_deploys_runs_the_job_passes_its_exit_code_on_and_cleans_up() {
    require_docker();
    let _serial = serial();
    let (fake, log) = fake_kubectl();
    let mut cmd = turbolift(
        &fixture("examples/quickstart"),
        &["run", "--platform", "kubernetes"],
    );
    with_fake(&mut cmd, fake.path(), &log, "ok");
    let out = output(&mut cmd);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the Job's exit code: {}",
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stdout),
        "squares: [0, 1, 4]\nsum: 5\n",
        "the Job's logs are streamed"
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    let order: Vec<&str> = [
        "apply",
        "rollout status",
        "apply",
        "logs --follow job/quickstart-program",
        "delete",
    ]
    .into_iter()
    .collect();
    let mut at = 0;
    for step in order {
        let found = calls[at..]
            .find(step)
            .unwrap_or_else(|| panic!("`{step}` after byte {at} in:\n{calls}"));
        at += found + step.len();
    }
    let delete = calls.lines().find(|l| l.contains(" delete ")).unwrap();
    assert!(
        delete.contains("-l app.kubernetes.io/part-of=quickstart-app,turbolift.dev/deployment="),
        "{delete}"
    );
    // The service pods' lines on stderr, prefixed with the pod's name, each once (the
    // restarted pod's followed again from its last line shown), turbolift's own left out.
    let stderr = text(&out.stderr);
    for pod in ["abcde", "fghij"] {
        let line = format!("quickstart-square-5d4f8b7c9-{pod} | hello from square\n");
        assert_eq!(
            stderr.matches(&line).count(),
            1,
            "{line:?} once in:\n{stderr}"
        );
    }
    assert!(
        stderr.contains("quickstart-square-5d4f8b7c9-abcde | square again after a restart\n"),
        "{stderr}"
    );
    assert!(!stderr.contains("turbolift::service: serving"), "{stderr}");
    assert!(
        calls.contains("logs --follow --timestamps --container service --since-time=2026-12-06T03:02:26.5Z pod/quickstart-square-5d4f8b7c9-abcde"),
        "{calls}"
    );
    // What each step is doing, as it starts.
    for step in [
        "Building 2 images for linux/amd64\n",
        "Applying ",
        "Waiting for the rollout of deployment/quickstart-square\n",
        "Waiting for the pod of job/quickstart-program to start\n",
    ] {
        assert!(stderr.contains(step), "{step:?} in:\n{stderr}");
    }
    let lines_end = stderr.rfind("hello from square").unwrap();
    let deleted = stderr.find("Deleted").expect("a Deleted line");
    assert!(
        lines_end < deleted,
        "the pods' lines come before the deployment is deleted:\n{stderr}"
    );
    // Every `kubectl logs --follow` was ended with the run.
    let pids = std::fs::read_to_string(log.with_extension("log.pids")).unwrap();
    assert_eq!(pids.lines().count(), 2, "{calls}");
    for pid in pids.lines() {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "kubectl logs ({pid}) outlived the run"
        );
    }
}

#[test]
#[ignore = "needs Docker (the Kubernetes platform builds images with it)"]
fn run_with_service_output_log_and_quiet_follows_no_pod_and_says_nothing() {
    require_docker();
    let _serial = serial();
    let (fake, log) = fake_kubectl();
    let mut cmd = turbolift(
        &fixture("examples/quickstart"),
        &[
            "run",
            "-q",
            "--platform",
            "kubernetes",
            "--service-output",
            "log",
        ],
    );
    with_fake(&mut cmd, fake.path(), &log, "ok");
    let out = output(&mut cmd);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "squares: [0, 1, 4]\nsum: 5\n");
    let stderr = text(&out.stderr);
    assert_eq!(stderr, "", "-q: no status line, no pod line");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(!calls.contains(" -o name"), "{calls}");
    assert!(!calls.contains("--timestamps"), "{calls}");
}

#[test]
fn delete_removes_the_packages_objects_by_label() {
    let (fake, log) = fake_kubectl();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cargo-turbolift"));
    cmd.args(["turbolift", "delete", "--namespace", "jobs"])
        .current_dir(fixture("examples/quickstart"));
    with_fake(&mut cmd, fake.path(), &log, "ok");
    let out = cmd.output().unwrap();
    assert_success("cargo turbolift delete", &out);
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.trim(),
        "--namespace jobs delete deployments,services,horizontalpodautoscalers,jobs,secrets -l app.kubernetes.io/part-of=quickstart-app --ignore-not-found --wait=false"
    );
    assert!(text(&out.stderr).contains("Deleted deployment.apps \"quickstart-square\" deleted"));
}

#[test]
#[ignore = "needs Docker (the Kubernetes platform builds images with it)"]
fn command_line_overrides_win_over_the_attribute() {
    require_docker();
    let _serial = serial();
    let dir = fixture("examples/quickstart");
    let args = [
        "build",
        "--platform",
        "kubernetes",
        "--replicas",
        "3",
        "--cpu",
        "250m",
        "--memory",
        "64Mi",
        "--namespace",
        "jobs",
    ];
    assert_success("build with overrides", &output(&mut turbolift(&dir, &args)));
    let manifests = target_dir().join("turbolift/quickstart/kubernetes");
    let all = objects(&manifests);
    let (_, deployment) = all.iter().find(|(_, o)| o["kind"] == "Deployment").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 3);
    let resources = &deployment["spec"]["template"]["spec"]["containers"][0]["resources"];
    assert_eq!(resources["requests"]["cpu"], "250m");
    assert_eq!(resources["requests"]["memory"], "64Mi");
    assert_eq!(resources["limits"]["memory"], "64Mi");
    let kustomization = std::fs::read_to_string(manifests.join("kustomization.yaml")).unwrap();
    assert!(kustomization.contains("namespace: jobs"), "{kustomization}");
}
