//! The containers of a run: the replicas of every service on the local Docker Engine, on a
//! network of the run's own; the program on the host reaches them at published ports.
//!
//! Each container publishes its port on 127.0.0.1 only, at a host port chosen here (and
//! kept when Docker restarts the container, which an ephemeral `-p 127.0.0.1::8080` would
//! not be); the program reaches the services there. The secret goes to `docker create` in
//! an `--env-file` readable by this user only, deleted as soon as the containers exist.
//! With TLS, each container is created, given its service's certificate, key and the
//! run's authority by `docker cp` (`tls_archive`: owned by the containers' user, mode
//! 0400), and only then started; readiness is probed over TLS. Containers and network
//! carry the run's labels, so that a run that could not clean up is cleaned up by the
//! next one or by `cargo turbolift clean`. With `--service-output stream`, each
//! container's lines are shown on the terminal while it runs (`follow`), and saved to the
//! run's logs when it stops.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustls::pki_types::ServerName;
use turbolift_shared::protocol::tls_in_container;
use turbolift_shared::{probe, protocol};

use super::follow::Follower;
use super::{clean, tls_archive};
use crate::build::arch::Arch;
use crate::cli::ServiceOutput;
use crate::platform::image::engine::{self, docker, label};
use crate::platform::image::{CONTAINER_PORT, Image};
use crate::platform::output::Terminal;
use crate::platform::program::{ReplicaCounts, Replicas};
use crate::platform::{RunTls, ServiceSpec, Start, TlsFiles, by_function};
use crate::shell::Shell;
use crate::tls::Prober;

/// How long the containers have to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `docker stop` lets a service finish its calls in flight before SIGKILL.
const STOP_TIMEOUT_SECS: u32 = 10;
/// Variables of the user's environment that reach the services, as they reach local ones.
const PASSED_ON: &[&str] = &[
    protocol::env::LOG,
    protocol::env::MAX_BODY,
    protocol::env::MAX_CONCURRENCY,
];

/// The name the program and the probes ask a replica's certificate for: they reach it at
/// its published port on 127.0.0.1.
const SERVER_NAME: &str = "127.0.0.1";

/// The run's containers and network; removed by [`Containers::stop`], or when dropped.
pub struct Containers {
    network: String,
    replicas: Vec<Replica>,
    logs: PathBuf,
    secret_file: PathBuf,
    removed: bool,
    /// With TLS: readiness probes that believe only the run's authority, and the
    /// program's files.
    tls: Option<(Prober, TlsFiles)>,
    /// What shows the containers' lines on the terminal, one per container.
    followers: Vec<Follower>,
}

/// What a container of a service is given to serve TLS: the run's authority and the
/// service's certificate and key, as the stream `docker cp` unpacks.
struct ServiceTls {
    archive: Vec<u8>,
}

struct Replica {
    function_id: String,
    /// Container name, `turbolift-<run>-<service>-<index>`; also its log file's stem.
    name: String,
    addr: SocketAddr,
}

impl Containers {
    /// Removes leftovers of dead runs, creates the run's network, starts every replica,
    /// and waits until each answers its readiness endpoint. On failure, removes what it
    /// created and says why.
    pub fn start(
        shell: &Shell,
        package: &str,
        images: &[Image],
        specs: &[ServiceSpec],
        host: &str,
        start: &Start<'_>,
    ) -> Result<Containers> {
        let (secret, logs, run_id) = (&start.secret, start.logs.as_path(), &start.run_id);
        let cleaned = clean::remove_leftovers(false)?;
        for line in cleaned.report() {
            shell.status("Removed", line);
        }
        std::fs::create_dir_all(logs)
            .with_context(|| format!("cannot create {}", logs.display()))?;
        let owner = clean::owner_label();
        let labels = [
            format!("{}={run_id}", label::RUN),
            format!("{}={package}", label::PACKAGE),
            format!("{}={owner}", label::OWNER),
        ];
        let network = format!("turbolift-{run_id}");
        let mut create = docker(["network", "create", "--driver", "bridge"]);
        for l in &labels {
            create.arg("--label").arg(l);
        }
        create.arg(&network);
        engine::run(create, &format!("creating the network {network}"))?;
        let tls = match &start.tls {
            Some(run) => Some((run.prober()?, run.program_files().clone())),
            None => None,
        };
        let mut containers = Containers {
            network,
            replicas: Vec::new(),
            logs: logs.to_owned(),
            secret_file: clean::secret_file(run_id),
            removed: false,
            tls,
            followers: Vec::new(),
        };
        write_secret(&containers.secret_file, secret)?;

        let mut planned = Vec::new();
        // The containers run here: the images of this machine's architecture.
        let arch = Arch::of_triple(host);
        for spec in specs {
            let image = images
                .iter()
                .find(|i| i.service == spec.name)
                .with_context(|| format!("no image was built for `{}`", spec.function_id))?;
            let reference = arch.and_then(|a| image.local(a)).with_context(|| {
                format!(
                    "no image of `{}` was built for this machine ({host})",
                    spec.function_id
                )
            })?;
            let tls = match &start.tls {
                Some(run) => Some(service_tls(run, spec, run_id)?),
                None => None,
            };
            for index in 0..spec.replicas {
                planned.push((spec, reference, index, tls.clone()));
            }
        }
        // Creating and starting a container takes a while each; start them all at once.
        let results: Vec<Result<Replica>> = std::thread::scope(|scope| {
            let handles: Vec<_> = planned
                .iter()
                .map(|(spec, reference, index, tls)| {
                    let containers = &containers;
                    let labels = &labels;
                    let tls = tls.as_deref();
                    scope.spawn(move || {
                        containers.run_one(spec, reference, *index, run_id, labels, tls)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a starting thread does not panic"))
                .collect()
        });
        let _ = std::fs::remove_file(&containers.secret_file);
        let mut failure = None;
        for result in results {
            match result {
                Ok(replica) => containers.replicas.push(replica),
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if start.args.service_output == ServiceOutput::Stream {
            containers.follow(shell);
        }
        containers.wait_ready()?;
        Ok(containers)
    }

    /// One replica: `docker create` at a free port of 127.0.0.1, with TLS its files
    /// copied in, then `docker start`.
    fn run_one(
        &self,
        spec: &ServiceSpec,
        reference: &str,
        index: u32,
        run_id: &str,
        labels: &[String],
        tls: Option<&ServiceTls>,
    ) -> Result<Replica> {
        let name = container_name(run_id, &spec.name, index);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let addr = free_port()?;
            let mut run = docker(["create"]);
            run.arg("--name")
                .arg(&name)
                .arg("--network")
                .arg(&self.network)
                .arg("--network-alias")
                .arg(&spec.name)
                .arg("--env-file")
                .arg(&self.secret_file)
                .arg("--env")
                .arg(format!("{}={}-{index}", protocol::env::REPLICA, spec.name))
                .arg("--publish")
                .arg(format!("{addr}:{CONTAINER_PORT}"))
                .arg("--restart")
                .arg("on-failure");
            for var in PASSED_ON {
                if std::env::var_os(var).is_some() {
                    run.arg("--env").arg(var);
                }
            }
            if tls.is_some() {
                for (var, path) in [
                    (protocol::env::TLS_CA, tls_in_container::CA),
                    (protocol::env::TLS_CERT, tls_in_container::CERT),
                    (protocol::env::TLS_KEY, tls_in_container::KEY),
                ] {
                    run.arg("--env").arg(format!("{var}={path}"));
                }
            }
            for l in labels {
                run.arg("--label").arg(l);
            }
            run.arg("--label")
                .arg(format!("{}={}", label::SERVICE, spec.name))
                .arg(reference);
            let remove = || {
                let _ = engine::capture(&mut docker(["rm", "--force", &name]));
            };
            engine::run(run, &format!("creating the container {name}"))?;
            if let Some(tls) = tls {
                let copy = docker(["cp", "-", &format!("{name}:/")]);
                let what = format!("copying the TLS files into the container {name}");
                if let Err(e) = engine::run_with_input(copy, &tls.archive, &what) {
                    remove();
                    return Err(e);
                }
            }
            let output = engine::capture(&mut docker(["start", &name]))?;
            if output.status.success() {
                return Ok(Replica {
                    function_id: spec.function_id.clone(),
                    name,
                    addr,
                });
            }
            let why = engine::stderr_of(&output);
            remove();
            // Another process took the port between our check and Docker's bind.
            let port_taken =
                why.contains("already allocated") || why.contains("address already in use");
            if port_taken && attempts < 5 {
                continue;
            }
            bail!("could not start the container {name}: {why}");
        }
    }

    /// Shows every container's lines on the terminal from its start on, each prefixed
    /// with the replica's name (`<service>-<index>`, as its log is named).
    fn follow(&mut self, shell: &Shell) {
        let names: Vec<&str> = self.replicas.iter().map(|r| stem(&r.name)).collect();
        let terminal = Terminal::new(shell, ServiceOutput::Stream, names.iter().copied());
        let followers = self.replicas.iter().enumerate().filter_map(|(index, r)| {
            Follower::start(&r.name, terminal.replica(stem(&r.name), index))
        });
        self.followers = followers.collect();
    }

    /// Whether a replica answers its readiness endpoint, over TLS when the run has it.
    fn ready(&self, replica: &Replica) -> bool {
        match &self.tls {
            Some((prober, _)) => prober
                .ready(replica.addr, SERVER_NAME, PROBE_TIMEOUT)
                .is_ok(),
            None => probe::ready(replica.addr, PROBE_TIMEOUT).is_ok(),
        }
    }

    /// Polls every replica's readiness endpoint through its published port (pauses of
    /// 1 ms doubling up to 50 ms), watching for containers that exit or restart.
    fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        for replica in &self.replicas {
            let mut pause = Duration::from_millis(1);
            let mut checked = Instant::now();
            while !self.ready(replica) {
                if Instant::now() > deadline {
                    bail!(
                        "{} was not ready within {START_TIMEOUT:?}{}",
                        replica.name,
                        self.log_tail(&replica.name)
                    );
                }
                if checked.elapsed() > Duration::from_millis(250) {
                    checked = Instant::now();
                    let state = engine::run(
                        docker([
                            "inspect",
                            "--format",
                            "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}",
                            &replica.name,
                        ]),
                        "inspecting a container",
                    )?;
                    let words: Vec<&str> = state.split_whitespace().collect();
                    if matches!(words.first(), Some(&"exited") | Some(&"dead"))
                        || words.get(1).is_some_and(|n| *n != "0")
                    {
                        bail!(
                            "{} did not start: it exited (code {}){}",
                            replica.name,
                            words.get(2).unwrap_or(&"?"),
                            self.log_tail(&replica.name)
                        );
                    }
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// The replicas' published addresses per function, for status lines.
    pub fn addresses(&self) -> Vec<(String, SocketAddr)> {
        self.replicas
            .iter()
            .map(|r| (r.function_id.clone(), r.addr))
            .collect()
    }

    /// Stops every container (SIGTERM, so each finishes its calls in flight; SIGKILL
    /// after 10 s), saves each one's output to the run's log directory, and removes the
    /// containers and the network. Returns what happened to each function's containers:
    /// how many, and how many times Docker restarted them (it never gives one up).
    pub fn stop(mut self) -> Vec<ReplicaCounts> {
        let names: Vec<String> = self.replicas.iter().map(|i| i.name.clone()).collect();
        if !names.is_empty() {
            let mut stop = docker(["stop", "--time", &STOP_TIMEOUT_SECS.to_string()]);
            stop.args(&names);
            let _ = engine::capture(&mut stop);
        }
        for follower in self.followers.drain(..) {
            follower.stop();
        }
        let mut restarts = Vec::new();
        for replica in &self.replicas {
            let name = &replica.name;
            let count = engine::run(
                docker(["inspect", "--format", "{{.RestartCount}}", name]),
                "inspecting a container",
            )
            .ok()
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0);
            restarts.push((replica.function_id.clone(), count));
            self.save_log(name, count);
        }
        self.remove();
        by_function(&restarts)
            .into_iter()
            .map(|(function, counts)| ReplicaCounts {
                function,
                replicas: counts.len() as u32,
                restarts: counts.iter().sum(),
                given_up: 0,
            })
            .collect()
    }

    /// Copies a container's output (its stdout and stderr) into `<logs>/<service>-<i>.log`.
    fn save_log(&self, name: &str, restarts: u32) {
        let path = self.logs.join(format!("{}.log", stem(name)));
        let Ok(file) = std::fs::File::create(&path) else {
            return;
        };
        let Ok(copy) = file.try_clone() else { return };
        let _ = docker(["logs", name])
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(copy))
            .status();
        if restarts > 0
            && let Ok(mut file) = std::fs::File::options().append(true).open(&path)
        {
            let _ = writeln!(
                file,
                "turbolift: Docker restarted container {name} {restarts} time{} during the run",
                if restarts == 1 { "" } else { "s" }
            );
        }
    }

    /// The last lines of a container's output, to show why it did not start.
    fn log_tail(&self, name: &str) -> String {
        let output = docker(["logs", "--tail", "15", name]).output();
        let Ok(output) = output else {
            return String::new();
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if text.trim().is_empty() {
            String::new()
        } else {
            format!(
                "\n--- last lines of `docker logs {name}` ---\n{}",
                text.trim_end()
            )
        }
    }

    /// Removes the containers and the network, once.
    fn remove(&mut self) {
        if std::mem::replace(&mut self.removed, true) {
            return;
        }
        let _ = std::fs::remove_file(&self.secret_file);
        // Containers that failed half-way are not in `replicas`; the network finds them.
        let listed = engine::run(
            docker([
                "ps",
                "--all",
                "--filter",
                &format!("network={}", self.network),
                "--format",
                "{{.Names}}",
            ]),
            "listing the run's containers",
        )
        .unwrap_or_default();
        let mut names: Vec<String> = self.replicas.iter().map(|i| i.name.clone()).collect();
        for name in listed.lines() {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
        if let Err(e) = clean::remove(&names, std::slice::from_ref(&self.network)) {
            eprintln!(
                "warning: {e:#}\n(`cargo turbolift clean` removes what is left once this process has exited)"
            );
        }
        // Their `docker logs` end with the containers.
        for follower in self.followers.drain(..) {
            follower.stop();
        }
    }
}

impl Replicas for Containers {
    fn addresses(&self) -> Vec<(String, SocketAddr)> {
        Containers::addresses(self)
    }

    fn tls(&self) -> Option<TlsFiles> {
        self.tls.as_ref().map(|(_, program)| program.clone())
    }

    fn stop(self: Box<Self>) -> Vec<ReplicaCounts> {
        Containers::stop(*self)
    }
}

impl Drop for Containers {
    /// A run that fails or panics half-way still removes what it started.
    fn drop(&mut self) {
        self.remove();
    }
}

/// `turbolift-<run>-<service>-<index>`.
fn container_name(run_id: &str, service: &str, index: u32) -> String {
    format!("turbolift-{run_id}-{service}-{index}")
}

/// The replica's name in a container's name, `<service>-<index>`: what its log and its
/// lines on the terminal are named.
fn stem(container: &str) -> &str {
    container.splitn(3, '-').nth(2).unwrap_or(container)
}

/// A certificate of the run's authority for `spec`'s service, for the names its
/// containers are reached by: 127.0.0.1 (the published ports; always there), the service's
/// name (its alias on the run's network) and each container's name, those of them that
/// are valid DNS names (a very long service name makes labels of more than 63 bytes).
/// The files are the run's ([`RunTls::service_files`], private, gone when it ends).
fn service_tls(run: &RunTls, spec: &ServiceSpec, run_id: &str) -> Result<Arc<ServiceTls>> {
    let names: Vec<String> = std::iter::once(spec.name.clone())
        .chain((0..spec.replicas).map(|i| container_name(run_id, &spec.name, i)))
        .filter(|n| ServerName::try_from(n.as_str()).is_ok())
        .collect();
    let files = run.service_files(&spec.name, &names)?;
    let read = |path: &Path| {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let archive = tls_archive::archive(&read(&files.ca)?, &read(&files.cert)?, &read(&files.key)?);
    Ok(Arc::new(ServiceTls { archive }))
}

/// The secret as an env file for `docker create --env-file`, readable by this user only.
fn write_secret(path: &Path, secret: &str) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{}={secret}", protocol::env::SECRET)?;
    Ok(())
}

/// A port of 127.0.0.1 that is free now.
fn free_port() -> Result<SocketAddr> {
    let listener =
        TcpListener::bind("127.0.0.1:0").context("cannot find a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?)
}
