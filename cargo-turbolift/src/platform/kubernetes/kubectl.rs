//! Talking to a cluster through `kubectl`: apply, wait for rollouts, explain failing pods,
//! run the program's Job and follow its logs, delete by label.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::manifests::{DEPLOYMENT_LABEL, Manifest, PART_OF_LABEL, Plan};
use crate::shell::Shell;

/// `kubectl`, in the namespace of the deployment.
#[derive(Clone)]
pub struct Kubectl {
    /// `KUBECTL`, else `kubectl` on `PATH`.
    program: OsString,
    namespace: String,
}

impl Kubectl {
    pub fn new(namespace: &str) -> Self {
        let program = std::env::var_os("KUBECTL").unwrap_or_else(|| "kubectl".into());
        Kubectl::at(program, namespace)
    }

    /// The `kubectl` at `program`.
    pub fn at(program: impl Into<OsString>, namespace: &str) -> Self {
        Kubectl {
            program: program.into(),
            namespace: namespace.to_owned(),
        }
    }

    /// `kubectl --namespace NS`, to which the caller adds the rest.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg("--namespace").arg(&self.namespace);
        cmd
    }

    /// Runs kubectl and returns its stdout, or an error with its stderr.
    fn run(&self, args: &[&str]) -> Result<String> {
        let output = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("cannot run `kubectl`: install it (https://kubernetes.io/docs/tasks/tools/) or set KUBECTL")?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            bail!(
                "`kubectl {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            )
        }
    }

    /// Applies the given manifest files.
    pub fn apply(&self, files: &[PathBuf]) -> Result<String> {
        let mut args = vec!["apply".to_owned()];
        for f in files {
            args.push("-f".to_owned());
            args.push(f.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&args)
    }

    /// Waits for every Deployment's rollout; on failure, explains the pods that are not
    /// ready with their last events.
    pub fn wait_rollouts(&self, shell: &Shell, plan: &Plan, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let names: Vec<String> = plan.services.iter().map(|s| plan.service_name(s)).collect();
        for (done, service) in plan.services.iter().enumerate() {
            let name = plan.service_name(service);
            let waiting = shell.spinner("Waiting", not_rolled_out(&names[done..]));
            let left = deadline
                .saturating_duration_since(Instant::now())
                .as_secs()
                .max(1);
            let status = self.run(&[
                "rollout",
                "status",
                &format!("deployment/{name}"),
                &format!("--timeout={left}s"),
            ]);
            drop(waiting);
            match status {
                Ok(_) => shell.status(
                    "Ready",
                    format!("`{}` (deployment/{name})", service.function_id),
                ),
                Err(e) => {
                    let report = self
                        .explain_pods(plan)
                        .unwrap_or_else(|e| format!("(no pod report: {e})"));
                    bail!("deployment/{name} did not become ready: {e}\n{report}");
                }
            }
        }
        Ok(())
    }

    /// The names of the pods `selector` selects, without `pod/` (a request that gets no
    /// answer within 5 s fails).
    pub fn pod_names(&self, selector: &str) -> Result<Vec<String>> {
        let listed = self.run(&[
            "get",
            "pods",
            "-l",
            selector,
            "-o",
            "name",
            "--request-timeout=5s",
        ])?;
        Ok(listed
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pod/"))
            .map(str::to_owned)
            .collect())
    }

    /// Pods of the deployment that are not ready, why, and their last events.
    pub fn explain_pods(&self, plan: &Plan) -> Result<String> {
        let selector = format!("{DEPLOYMENT_LABEL}={}", plan.deployment);
        let pods: Value =
            serde_json::from_str(&self.run(&["get", "pods", "-l", &selector, "-o", "json"])?)
                .context("`kubectl get pods` did not print JSON")?;
        let mut report = String::new();
        for pod in pods["items"].as_array().into_iter().flatten() {
            let name = pod["metadata"]["name"].as_str().unwrap_or("?");
            let mut problems = Vec::new();
            for status in pod["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let Some(waiting) = status["state"]["waiting"].as_object() {
                    let reason = waiting
                        .get("reason")
                        .and_then(Value::as_str)
                        .unwrap_or("Waiting");
                    let message = waiting.get("message").and_then(Value::as_str).unwrap_or("");
                    problems.push(
                        format!("{reason}: {message}")
                            .trim_end_matches(": ")
                            .to_owned(),
                    );
                } else if status["ready"] == Value::Bool(false) {
                    let restarts = status["restartCount"].as_u64().unwrap_or(0);
                    problems.push(format!("not ready (restarts: {restarts}); its probes fail"));
                }
            }
            if problems.is_empty() {
                continue;
            }
            report.push_str(&format!("  pod {name}: {}\n", problems.join("; ")));
            let field = format!("involvedObject.name={name}");
            if let Ok(events) =
                self.run(&["get", "events", "--field-selector", &field, "-o", "json"])
                && let Ok(events) = serde_json::from_str::<Value>(&events)
            {
                let items: Vec<&Value> = events["items"].as_array().into_iter().flatten().collect();
                for event in items.iter().rev().take(5).rev() {
                    report.push_str(&format!(
                        "    {} {}: {}\n",
                        event["type"].as_str().unwrap_or(""),
                        event["reason"].as_str().unwrap_or(""),
                        event["message"].as_str().unwrap_or("").trim()
                    ));
                }
            }
        }
        if report.is_empty() {
            report.push_str("  (every pod reports ready; the rollout timed out)\n");
        }
        Ok(report)
    }

    /// Runs the program's Job to its end, streaming its logs; returns its exit code.
    pub fn run_job(
        &self,
        shell: &Shell,
        plan: &Plan,
        job_file: &Path,
        timeout: Duration,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<u8> {
        let job = plan.job_name();
        self.apply(&[job_file.to_path_buf()])?;
        shell.status("Running", format!("job/{job}"));
        // Wait for the pod to start (or fail to), then follow its logs.
        let waiting = shell.spinner("Waiting", format!("for the pod of job/{job} to start"));
        let deadline = Instant::now() + timeout;
        let selector = format!("job-name={job}");
        let _ = self.run(&[
            "wait",
            "--for=condition=Ready",
            "pod",
            "-l",
            &selector,
            &format!("--timeout={}s", timeout.as_secs().max(1)),
        ]);
        // Gone before the program's output, which reaches the terminal straight.
        drop(waiting);
        let mut logs = self
            .command()
            .args(["logs", "--follow", &format!("job/{job}")])
            .stdin(Stdio::null())
            .spawn()
            .context("cannot run `kubectl logs`")?;
        let _ = logs.wait();
        loop {
            let pods: Value =
                serde_json::from_str(&self.run(&["get", "pods", "-l", &selector, "-o", "json"])?)
                    .context("`kubectl get pods` did not print JSON")?;
            let terminated = pods["items"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|p| {
                    p["status"]["containerStatuses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                })
                .find_map(|s| s["state"]["terminated"]["exitCode"].as_u64());
            if let Some(code) = terminated {
                return Ok(u8::try_from(code).unwrap_or(1));
            }
            if interrupted() {
                bail!("interrupted while job/{job} ran");
            }
            if Instant::now() > deadline {
                let report = self.explain_pods(plan).unwrap_or_default();
                bail!("job/{job} did not finish within {timeout:?}\n{report}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Deletes every object of `package` (of one deployment when given).
    pub fn delete(&self, part_of: &str, deployment: Option<&str>) -> Result<String> {
        let mut selector = format!("{PART_OF_LABEL}={part_of}");
        if let Some(id) = deployment {
            selector.push_str(&format!(",{DEPLOYMENT_LABEL}={id}"));
        }
        self.run(&[
            "delete",
            "deployments,services,horizontalpodautoscalers,jobs,secrets",
            "-l",
            &selector,
            "--ignore-not-found",
            "--wait=false",
        ])
    }
}

/// What the rollout still waits for: `for the rollout of deployment/a`, `for 2 rollouts:
/// deployment/a, deployment/b`.
fn not_rolled_out(names: &[String]) -> String {
    match names {
        [one] => format!("for the rollout of deployment/{one}"),
        _ => {
            let all: Vec<String> = names.iter().map(|n| format!("deployment/{n}")).collect();
            format!("for {} rollouts: {}", names.len(), all.join(", "))
        }
    }
}

/// The files of the objects `deploy` applies: everything but the Job.
pub fn service_files(dir: &Path, manifests: &[Manifest]) -> Vec<PathBuf> {
    manifests
        .iter()
        .filter(|m| m.kind != "Job")
        .map(|m| dir.join(&m.file))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_waiting_line_names_the_rollouts_not_done() {
        let names = ["quickstart-square".to_owned(), "quickstart-cube".to_owned()];
        assert_eq!(
            not_rolled_out(&names),
            "for 2 rollouts: deployment/quickstart-square, deployment/quickstart-cube"
        );
        assert_eq!(
            not_rolled_out(&names[1..]),
            "for the rollout of deployment/quickstart-cube"
        );
    }
}
