//! The services' output on the terminal during `run --platform kubernetes`: every line of
//! every service pod of the deployment, on `cargo turbolift`'s stderr as `<pod> | <line>`,
//! through the same [`Echo`] as the lines of local and Docker replicas.
//!
//! One `kubectl logs --follow --timestamps pod/<pod>` per pod, rather than one `kubectl
//! logs --selector ... --prefix`, which follows only the pods there when it starts, and at
//! most `--max-log-requests` of them:
//!
//! - the deployment's service pods are listed once the rollouts are done, then every
//!   [`POLL`] (`kubectl get pods -l <selector> -o name`); a pod that appears later (the
//!   replacement of a deleted pod, one more from the autoscaler) is followed from its
//!   start too;
//! - `kubectl logs --follow` ends when the pod's container stops, also when the kubelet
//!   is about to restart it; the follower then follows the pod again with `--since-time`
//!   of the last line it showed, skipping the lines not newer than that (the API server
//!   counts `--since-time` in whole seconds), until the pod is no longer listed or the
//!   run stops;
//! - when the program's Job has ended, every `kubectl logs` is killed (they follow pods
//!   that go on running, and would not end by themselves). Each is tied to `cargo
//!   turbolift` (`PR_SET_PDEATHSIG`), so that none outlives it, however it ends.

use std::collections::HashSet;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::kubectl::Kubectl;
use super::manifests::{DEPLOYMENT_LABEL, Plan};
use crate::cli::ServiceOutput;
use crate::platform::logs_child::{LogsChild, show_new};
use crate::platform::output::{Echo, Terminal};
use crate::shell::Shell;

/// How often the deployment's pods are listed, to follow those that appear.
pub const POLL: Duration = Duration::from_secs(2);
/// The pause before following a pod again whose `kubectl logs` ended.
const AGAIN_AFTER: Duration = Duration::from_secs(1);
/// The container of a service pod (the Deployment's template names it).
const CONTAINER: &str = "service";

/// The label selector of the deployment's service pods: not the program's Job.
pub fn service_pods(plan: &Plan) -> String {
    let names: Vec<String> = plan.services.iter().map(|s| plan.service_name(s)).collect();
    format!(
        "{DEPLOYMENT_LABEL}={},app.kubernetes.io/name in ({})",
        plan.deployment,
        names.join(",")
    )
}

/// `kubectl logs` of one pod's service container, from `since` (a timestamp of a line
/// already shown) when given.
pub fn logs_args(pod: &str, since: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = ["logs", "--follow", "--timestamps", "--container", CONTAINER]
        .map(str::to_owned)
        .into();
    if let Some(since) = since {
        args.push(format!("--since-time={since}"));
    }
    args.push(format!("pod/{pod}"));
    args
}

/// Shows the lines of the deployment's service pods until [`PodOutput::stop`] (or drop).
pub struct PodOutput {
    shared: Arc<Shared>,
    watcher: Option<JoinHandle<()>>,
}

/// What the watcher and [`PodOutput::stop`] share.
struct Shared {
    stopping: AtomicBool,
    /// A follower per pod seen; none added once `stopping` is set (checked under the lock).
    followers: Mutex<Vec<Follower>>,
}

impl PodOutput {
    /// Follows every service pod of `plan`'s deployment there now, and those that appear
    /// later; each pod's lines prefixed with its name.
    pub fn start(shell: &Shell, kubectl: Kubectl, plan: &Plan) -> PodOutput {
        let selector = service_pods(plan);
        let pods = kubectl.pod_names(&selector).unwrap_or_else(|e| {
            shell.warn(format!(
                "cannot list the service pods to show their output: {e}"
            ));
            Vec::new()
        });
        let terminal = Terminal::new(
            shell,
            ServiceOutput::Stream,
            pods.iter().map(String::as_str),
        );
        let shared = Arc::new(Shared {
            stopping: AtomicBool::new(false),
            followers: Mutex::new(Vec::new()),
        });
        let mut watch = Watch {
            shell: shell.clone(),
            kubectl,
            selector,
            terminal,
            shared: shared.clone(),
            seen: HashSet::new(),
        };
        watch.update(&pods);
        let watcher = std::thread::Builder::new()
            .name("pods".to_owned())
            .spawn(move || watch.run())
            .ok();
        PodOutput { shared, watcher }
    }

    /// The pods followed so far, in the order they were found.
    #[cfg(test)]
    fn pods(&self) -> Vec<String> {
        let followers = self.shared.followers.lock().expect("followers lock");
        followers.iter().map(|f| f.pod.clone()).collect()
    }

    /// Stops following: kills every `kubectl logs` and waits for their threads.
    pub fn stop(mut self) {
        self.end();
    }

    fn end(&mut self) {
        let followers = {
            let mut followers = self.shared.followers.lock().expect("followers lock");
            self.shared.stopping.store(true, Ordering::SeqCst);
            std::mem::take(&mut *followers)
        };
        drop(followers);
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
    }
}

impl Drop for PodOutput {
    fn drop(&mut self) {
        self.end();
    }
}

/// Lists the pods every [`POLL`] and follows the new ones.
struct Watch {
    shell: Shell,
    kubectl: Kubectl,
    selector: String,
    terminal: Terminal,
    shared: Arc<Shared>,
    seen: HashSet<String>,
}

impl Watch {
    fn run(mut self) {
        loop {
            let next = Instant::now() + POLL;
            while Instant::now() < next {
                if self.shared.stopping.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // A listing that fails (the API server busy, say) is tried again next time.
            if let Ok(pods) = self.kubectl.pod_names(&self.selector) {
                self.update(&pods);
            }
        }
    }

    /// Follows the pods of `pods` not seen before; marks those no longer listed as gone
    /// (their followers end once their `kubectl logs` does).
    fn update(&mut self, pods: &[String]) {
        let mut followers = self.shared.followers.lock().expect("followers lock");
        if self.shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        for follower in followers.iter() {
            if !pods.contains(&follower.pod) {
                follower.gone.store(true, Ordering::SeqCst);
            }
        }
        for pod in pods {
            if !self.seen.insert(pod.clone()) {
                continue;
            }
            let echo = self.terminal.replica(pod, self.seen.len() - 1);
            let follower = Follower::start(
                &self.shell,
                self.kubectl.clone(),
                pod,
                echo,
                self.shared.clone(),
            );
            followers.extend(follower);
        }
    }
}

/// Shows one pod's lines until the pod is gone or the run stops; its `kubectl logs` is
/// killed when dropped.
struct Follower {
    pod: String,
    gone: Arc<AtomicBool>,
    logs: Arc<LogsChild>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    fn start(
        shell: &Shell,
        kubectl: Kubectl,
        pod: &str,
        echo: Echo,
        shared: Arc<Shared>,
    ) -> Option<Follower> {
        let gone = Arc::new(AtomicBool::new(false));
        let logs = Arc::new(LogsChild::default());
        let (name, slot, ended, shell) =
            (pod.to_owned(), logs.clone(), gone.clone(), shell.clone());
        let thread = std::thread::Builder::new()
            .name(format!("logs {pod}"))
            .spawn(move || {
                let ended =
                    || ended.load(Ordering::SeqCst) || shared.stopping.load(Ordering::SeqCst);
                follow(&shell, &kubectl, &name, &echo, &ended, &slot);
            })
            .ok()?;
        Some(Follower {
            pod: pod.to_owned(),
            gone,
            logs,
            thread: Some(thread),
        })
    }
}

impl Drop for Follower {
    /// Kills the pod's `kubectl logs` and waits for the thread that read it.
    fn drop(&mut self) {
        self.gone.store(true, Ordering::SeqCst);
        self.logs.kill();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Follows `pod` again each time its `kubectl logs --follow` ends, until `ended`.
fn follow(
    shell: &Shell,
    kubectl: &Kubectl,
    pod: &str,
    echo: &Echo,
    ended: &dyn Fn() -> bool,
    slot: &LogsChild,
) {
    let mut since: Option<Stamp> = None;
    let mut warned = false;
    loop {
        let mut command = kubectl.command();
        command.args(logs_args(pod, since.as_ref().map(|s| s.text.as_str())));
        let Some((stdout, stderr)) = slot.spawn(&mut command, ended) else {
            return;
        };
        let shown = since.clone();
        let (last, error) = std::thread::scope(|scope| {
            let error = scope.spawn(|| stderr.map(read_error).unwrap_or_default());
            let last = stdout.and_then(|s| show(s, shown.as_ref(), echo));
            (last, error.join().unwrap_or_default())
        });
        slot.reap();
        if ended() {
            return;
        }
        if last.is_none() && !warned && !is_transient(&error) {
            warned = true;
            shell.warn(format!(
                "cannot follow the output of pod/{pod}: {error}; `kubectl logs pod/{pod}` shows it"
            ));
        }
        since = last.or(since);
        let again = Instant::now() + AGAIN_AFTER;
        while Instant::now() < again {
            if ended() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// What `kubectl` said on stderr, on one line, at most 1 KiB of it.
fn read_error(stream: impl Read) -> String {
    let mut text = Vec::new();
    let _ = stream.take(1024).read_to_end(&mut text);
    let text = String::from_utf8_lossy(&text);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `kubectl logs` failed for a while only (or not at all): the container is not
/// running yet, or again; the pod is gone.
fn is_transient(error: &str) -> bool {
    error.is_empty()
        || [
            "waiting to start",
            "ContainerCreating",
            "PodInitializing",
            "not found",
            "NotFound",
            "terminated",
        ]
        .iter()
        .any(|word| error.contains(word))
}

/// A timestamp `kubectl logs --timestamps` put before a line: as written, and as a key
/// that compares in time order.
#[derive(Clone, Debug, PartialEq)]
struct Stamp {
    text: String,
    /// `None` when it is not in UTC (`Z`): such lines are shown, never compared.
    key: Option<String>,
}

/// Shows the lines of `kubectl logs --timestamps` that are newer than `since`, without
/// their timestamps; the timestamp of the last one shown.
fn show(stream: impl Read, since: Option<&Stamp>, echo: &Echo) -> Option<Stamp> {
    let since = since.and_then(|s| s.key.as_ref());
    show_new(stream, echo, split_timestamp, |stamp| {
        match (since, &stamp.key) {
            (Some(since), Some(key)) => key > since,
            _ => true,
        }
    })
}

/// `2026-12-06T03:02:26.98650406Z text` as the timestamp and the text. The kubelet
/// writes RFC 3339 with up to nine digits of nanoseconds; the key pads them to nine.
fn split_timestamp(line: &[u8]) -> Option<(Stamp, &[u8])> {
    let space = line.iter().position(|&b| b == b' ')?;
    let text = std::str::from_utf8(&line[..space]).ok()?;
    let b = text.as_bytes();
    let looks_right = b.len() >= "2026-12-06T03:02:26Z".len()
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[10] == b'T'
        && b[13] == b':';
    if !looks_right {
        return None;
    }
    let key = text.strip_suffix('Z').and_then(|utc| {
        let (seconds, fraction) = utc.split_at(19);
        let digits = fraction.strip_prefix('.').unwrap_or(fraction);
        let valid = digits.len() <= 9 && digits.bytes().all(|b| b.is_ascii_digit());
        valid.then(|| format!("{seconds}.{digits:0<9}"))
    });
    let stamp = Stamp {
        text: text.to_owned(),
        key,
    };
    Some((stamp, &line[space + 1..]))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::platform::kubernetes::manifests::ServicePlan;

    fn plan() -> Plan {
        let service = |id: &str| ServicePlan {
            function_id: id.to_owned(),
            image: format!("turbolift/{id}:0"),
            replicas: turbolift_syntax::Replicas { min: 2, max: 2 },
            cpu: "100m".to_owned(),
            memory: "128Mi".to_owned(),
        };
        Plan {
            package: "quickstart".to_owned(),
            deployment: "0123456789ab".to_owned(),
            namespace: "jobs".to_owned(),
            token: String::new(),
            services: vec![service("quickstart::square"), service("quickstart::cube")],
            node_arch: None,
            program: None,
            tls: None,
        }
    }

    #[test]
    fn the_service_pods_of_the_deployment_and_not_the_job() {
        let plan = plan();
        let names: Vec<String> = plan.services.iter().map(|s| plan.service_name(s)).collect();
        assert_eq!(
            service_pods(&plan),
            format!(
                "turbolift.dev/deployment={},app.kubernetes.io/name in ({})",
                plan.deployment,
                names.join(",")
            )
        );
        assert!(!service_pods(&plan).contains(&plan.job_name()));
    }

    #[test]
    fn a_pod_is_followed_from_its_start_then_from_the_last_line_shown() {
        assert_eq!(
            logs_args("quickstart-square-5d4f8b7c9-abcde", None).join(" "),
            "logs --follow --timestamps --container service pod/quickstart-square-5d4f8b7c9-abcde"
        );
        assert_eq!(
            logs_args("p", Some("2026-12-06T03:02:26.986504060Z")).join(" "),
            "logs --follow --timestamps --container service --since-time=2026-12-06T03:02:26.986504060Z pod/p"
        );
    }

    #[test]
    fn the_timestamp_kubectl_adds_is_taken_off_and_compares_in_time_order() {
        let (stamp, text) =
            split_timestamp(b"2026-12-06T03:02:26.98650406Z hello there\n").unwrap();
        assert_eq!(text, b"hello there\n");
        assert_eq!(stamp.text, "2026-12-06T03:02:26.98650406Z");
        assert_eq!(stamp.key.as_deref(), Some("2026-12-06T03:02:26.986504060"));
        let key = |line: &[u8]| split_timestamp(line).unwrap().0.key.unwrap();
        assert!(key(b"2026-12-06T03:02:26.9Z a") > key(b"2026-12-06T03:02:26.10Z a"));
        assert!(key(b"2026-12-06T03:02:27Z a") > key(b"2026-12-06T03:02:26.999999999Z a"));
        let (offset, _) = split_timestamp(b"2026-12-06T04:02:26.5+01:00 a\n").unwrap();
        assert_eq!(offset.key, None);
        assert!(split_timestamp(b"hello there\n").is_none());
        assert!(split_timestamp(b"2026 is a year\n").is_none());
    }

    #[test]
    fn lines_not_newer_than_the_last_shown_are_skipped() {
        let since = split_timestamp(b"2026-12-06T03:02:26.5Z x").unwrap().0;
        let input = b"2026-12-06T03:02:26.1Z old\n2026-12-06T03:02:26.5Z same\n2026-12-06T03:02:26.6Z new\n";
        let last = show(&input[..], Some(&since), &Echo::none()).unwrap();
        assert_eq!(last.text, "2026-12-06T03:02:26.6Z");
        assert_eq!(show(&b"no stamp\n"[..], None, &Echo::none()), None);
    }

    #[test]
    fn errors_that_pass_are_told_from_those_that_last() {
        assert!(is_transient(""));
        assert!(is_transient(
            "Error from server (BadRequest): container \"service\" in pod \"p\" is waiting to start: ContainerCreating"
        ));
        assert!(is_transient(
            "Error from server (NotFound): pods \"p\" not found"
        ));
        assert!(!is_transient(
            "Error from server (Forbidden): pods \"p\" is forbidden: User \"u\" cannot get resource \"pods/log\""
        ));
    }

    /// The real follower against a stand-in `kubectl`: pods listed at the start and
    /// later, a pod followed again after its `kubectl logs` ended, every `kubectl logs`
    /// killed at the end.
    #[test]
    fn pods_are_followed_as_they_come_and_again_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let calls = dir.path().join("calls");
        let pids = dir.path().join("pids");
        let script = dir.path().join("kubectl");
        std::fs::write(
            &script,
            format!(
                r#"#!/usr/bin/env bash
echo "$*" >> {calls}
case " $* " in
  *" get pods "*)
    echo pod/square-a
    # A second pod from the second listing on.
    [ "$(grep -c 'get pods' {calls})" -gt 1 ] && echo pod/square-b
    exit 0 ;;
  *" logs "*)
    if [[ " $* " == *" --since-time="* ]]; then
      echo "2026-12-06T03:02:26.5Z first"
      echo "2026-12-06T03:02:27.25Z after the restart"
    else
      echo "2026-12-06T03:02:26.5Z first"
      [[ " $* " == *pod/square-a* ]] && exit 0
    fi
    echo $$ >> {pids}
    exec sleep 60 ;;
esac
"#,
                calls = calls.display(),
                pids = pids.display()
            ),
        )
        .unwrap();
        let executable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&script, executable).unwrap();
        let shell = Shell::new(0, false, crate::cli::Color::Never);
        let output = PodOutput::start(&shell, Kubectl::at(&script, "jobs"), &plan());
        let deadline = Instant::now() + Duration::from_secs(20);
        let log = || std::fs::read_to_string(&calls).unwrap_or_default();
        while !(log().contains("--since-time=2026-12-06T03:02:26.5Z pod/square-a")
            && output.pods().len() == 2
            && std::fs::read_to_string(&pids)
                .unwrap_or_default()
                .lines()
                .count()
                == 2)
        {
            assert!(Instant::now() < deadline, "{}", log());
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(output.pods(), ["square-a", "square-b"]);
        output.stop();
        let log = log();
        assert!(
            log.contains("--namespace jobs get pods -l turbolift.dev/deployment="),
            "{log}"
        );
        for pid in std::fs::read_to_string(&pids).unwrap().lines() {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "kubectl logs ({pid}) outlived the run"
            );
        }
    }
}
