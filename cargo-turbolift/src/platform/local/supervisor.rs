//! The supervisor of local replicas: each a process on 127.0.0.1, serving a port the
//! supervisor reserves for the whole run ([`Port`]), watched and restarted on that port
//! when it dies, and given up when it keeps failing. With TLS, each service has a
//! certificate of the run's authority for 127.0.0.1, and readiness is probed over TLS,
//! believing only that authority.
//!
//! A replica's stdout and stderr are pipes the supervisor reads line by line (stderr on a
//! thread of its own, so that neither stream waits for the other): each line goes to the
//! replica's log and, with `--service-output stream`, to the terminal ([`Echo`]); the
//! listening line goes to neither.

use std::fs::File;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use turbolift_shared::{probe, protocol};

use super::super::output::{Echo, Lines, Terminal};
use super::super::program::ReplicaCounts;
use super::super::{RunTls, ServiceSpec, TlsFiles, by_function};
use super::port::Port;
use crate::process;
use crate::shell::Shell;
use crate::tls::Prober;

/// How long a service has to start listening and become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long stopped services have to finish their calls in flight before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Restarts in a row that fail before becoming ready, after which a replica is given up.
const MAX_FAILED_RESTARTS: u32 = 20;
/// The name a replica's certificate is checked for: the address it is called at.
const SERVER_NAME: &str = "127.0.0.1";

/// The running replicas of every service.
pub struct Supervisor {
    shared: Arc<Shared>,
    replicas: Vec<Replica>,
}

struct Shared {
    stopping: AtomicBool,
    secret: String,
    /// Says on the terminal that a replica was given up.
    shell: Option<Shell>,
    /// The replicas that kept failing and were not restarted again, with their logs.
    given_up: Mutex<Vec<(String, PathBuf)>>,
    /// With TLS, how readiness is probed, and the program's files.
    tls: Option<(Prober, TlsFiles)>,
    /// The run's directory of shared memory, if it has one.
    shm: Option<PathBuf>,
}

struct Replica {
    function_id: String,
    /// `<service>-<index>`, as its log is named.
    name: String,
    /// Reserved until the supervisor stops, even once the replica is given up.
    port: Arc<Port>,
    pid: Arc<Mutex<Option<u32>>>,
    /// Times it was started again.
    restarts: Arc<AtomicU32>,
    monitor: Option<JoinHandle<()>>,
}

enum Started {
    Ready,
    Failed(String),
}

/// What a monitor thread needs to run one replica.
struct Watch {
    shared: Arc<Shared>,
    executable: PathBuf,
    name: String,
    log: PathBuf,
    port: Arc<Port>,
    pid: Arc<Mutex<Option<u32>>>,
    restarts: Arc<AtomicU32>,
    /// With TLS, the service's certificate, key and the run's authority.
    tls: Option<TlsFiles>,
    /// Where its lines go on the terminal.
    echo: Echo,
}

impl Supervisor {
    /// Starts every replica and waits until each is ready; on any failure, stops what
    /// started and says why. With `tls`, every service gets a certificate of its own;
    /// with `shm`, the run's directory of shared memory. Their lines go to their logs
    /// and, as `terminal` says, to stderr.
    pub fn start(
        shell: &Shell,
        specs: &[ServiceSpec],
        secret: &str,
        logs: &Path,
        tls: Option<&RunTls>,
        shm: Option<&Path>,
        terminal: &Terminal,
    ) -> Result<Supervisor> {
        super::limits::check(specs)?;
        // The logs hold what the services print: readable by this user only.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(logs)
            .with_context(|| format!("cannot create {}", logs.display()))?;
        let shared = Arc::new(Shared {
            stopping: AtomicBool::new(false),
            secret: secret.to_owned(),
            shell: Some(shell.clone()),
            given_up: Mutex::new(Vec::new()),
            tls: match tls {
                Some(tls) => Some((tls.prober()?, tls.program_files().clone())),
                None => None,
            },
            shm: shm.map(Path::to_owned),
        });
        let mut supervisor = Supervisor {
            shared: shared.clone(),
            replicas: Vec::new(),
        };
        let (tx, rx) = channel();
        let mut names = Vec::new();
        for spec in specs {
            let files = match tls {
                Some(tls) => Some(tls.service_files(&spec.name, &[])?),
                None => None,
            };
            for replica in 0..spec.replicas {
                let name = format!("{}-{replica}", spec.name);
                let log = logs.join(format!("{name}.log"));
                let index = supervisor.replicas.len();
                let launched = launch(
                    &shared,
                    spec,
                    files.clone(),
                    (&name, terminal.replica(&name, index)),
                    &log,
                    tx.clone(),
                    index,
                );
                match launched {
                    Ok(replica) => supervisor.replicas.push(replica),
                    Err(e) => {
                        supervisor.stop();
                        return Err(e);
                    }
                }
                names.push((name, log));
            }
        }
        drop(tx);
        let mut ready = vec![false; names.len()];
        let deadline = Instant::now() + START_TIMEOUT;
        let mut failure = None;
        while ready.iter().any(|r| !r) && failure.is_none() {
            let wait = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok((index, Started::Ready)) => ready[index] = true,
                Ok((index, Started::Failed(why))) => {
                    let (name, log) = &names[index];
                    failure = Some(format!("{name} did not start: {why}{}", log_tail(log)));
                }
                Err(_) => {
                    failure = Some(format!("services were not ready within {START_TIMEOUT:?}"));
                }
            }
        }
        if let Some(why) = failure {
            supervisor.stop();
            bail!(why);
        }
        Ok(supervisor)
    }

    /// No replicas at all: a package without distributed functions.
    pub fn none() -> Supervisor {
        Supervisor {
            shared: Arc::new(Shared {
                stopping: AtomicBool::new(false),
                secret: String::new(),
                shell: None,
                given_up: Mutex::new(Vec::new()),
                tls: None,
                shm: None,
            }),
            replicas: Vec::new(),
        }
    }

    /// The replicas' addresses per function, for status lines.
    pub fn addresses(&self) -> Vec<(String, SocketAddr)> {
        self.replicas
            .iter()
            .map(|r| (r.function_id.clone(), r.port.addr()))
            .collect()
    }

    /// What happened to each function's replicas so far, in the order of
    /// [`Supervisor::addresses`].
    pub fn counts(&self) -> Vec<ReplicaCounts> {
        let given_up = self.given_up();
        let replicas: Vec<(String, &Replica)> = self
            .replicas
            .iter()
            .map(|r| (r.function_id.clone(), r))
            .collect();
        by_function(&replicas)
            .into_iter()
            .map(|(function, replicas)| ReplicaCounts {
                function,
                replicas: replicas.len() as u32,
                restarts: replicas
                    .iter()
                    .map(|r| r.restarts.load(Ordering::Relaxed))
                    .sum(),
                given_up: replicas
                    .iter()
                    .filter(|r| given_up.iter().any(|(name, _)| *name == r.name))
                    .count() as u32,
            })
            .collect()
    }

    /// The replicas given up so far, with their logs.
    pub fn given_up(&self) -> Vec<(String, PathBuf)> {
        self.shared.given_up.lock().expect("given-up lock").clone()
    }

    /// With TLS, the program's certificate, key and the run's authority.
    pub fn program_tls(&self) -> Option<TlsFiles> {
        self.shared.tls.as_ref().map(|(_, files)| files.clone())
    }

    /// Stops every service: SIGTERM, which lets each finish its calls in flight, then
    /// SIGKILL for any still running after [`STOP_TIMEOUT`]. The ports close last. What
    /// happened to each function's replicas during the run.
    pub fn stop(mut self) -> Vec<ReplicaCounts> {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for replica in &self.replicas {
            if let Some(pid) = *replica.pid.lock().expect("pid lock") {
                process::signal(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for replica in &mut self.replicas {
            if let Some(monitor) = replica.monitor.take() {
                while !monitor.is_finished() && Instant::now() < deadline {
                    std::thread::park_timeout(Duration::from_millis(5));
                }
                if !monitor.is_finished()
                    && let Some(pid) = *replica.pid.lock().expect("pid lock")
                {
                    process::signal(pid, libc::SIGKILL);
                }
                let _ = monitor.join();
            }
        }
        self.counts()
    }
}

/// Reserves the replica's port and starts the thread that runs it.
fn launch(
    shared: &Arc<Shared>,
    spec: &ServiceSpec,
    tls: Option<TlsFiles>,
    (name, echo): (&str, Echo),
    log: &Path,
    started: Sender<(usize, Started)>,
    index: usize,
) -> Result<Replica> {
    let port = Arc::new(
        Port::reserve()
            .with_context(|| format!("cannot reserve a port of 127.0.0.1 for {name}"))?,
    );
    let pid = Arc::new(Mutex::new(None));
    let restarts = Arc::new(AtomicU32::new(0));
    let watch = Watch {
        shared: shared.clone(),
        executable: spec.executable.clone(),
        name: name.to_owned(),
        log: log.to_owned(),
        port: port.clone(),
        pid: pid.clone(),
        restarts: restarts.clone(),
        tls,
        echo,
    };
    let monitor = std::thread::Builder::new()
        .name(format!("watch {name}"))
        .spawn(move || watch.run(started, index))
        .with_context(|| {
            format!("cannot start a thread to watch {name} (too many processes or threads?)")
        })?;
    Ok(Replica {
        function_id: spec.function_id.clone(),
        name: name.to_owned(),
        port,
        pid,
        restarts,
        monitor: Some(monitor),
    })
}

impl Watch {
    /// Starts the replica, reports when it is ready, and restarts it on the same port
    /// whenever it exits while the run goes on; gives it up when it keeps failing.
    fn run(self, started: Sender<(usize, Started)>, index: usize) {
        let shared = &self.shared;
        let mut first = Some(started);
        let mut failures_in_a_row = 0u32;
        loop {
            if shared.stopping.load(Ordering::SeqCst) {
                return;
            }
            let outcome = self.run_once(|| {
                failures_in_a_row = 0;
                if let Some(tx) = first.take() {
                    let _ = tx.send((index, Started::Ready));
                }
            });
            *self.pid.lock().expect("pid lock") = None;
            if shared.stopping.load(Ordering::SeqCst) {
                return;
            }
            if let Some(tx) = first.take() {
                let _ = tx.send((index, Started::Failed(outcome)));
                return;
            }
            failures_in_a_row += 1;
            if failures_in_a_row > MAX_FAILED_RESTARTS {
                self.give_up(failures_in_a_row, &outcome);
                return;
            }
            self.restarts.fetch_add(1, Ordering::Relaxed);
            append(
                &self.log,
                &format!(
                    "turbolift: {} {outcome}; restarting it on {}",
                    self.name,
                    self.port.addr()
                ),
            );
            // The first restart is immediate; a replica that keeps failing at once is not
            // restarted in a tight loop.
            let pause = 50 * u64::from(failures_in_a_row.saturating_sub(1).min(10));
            std::thread::sleep(Duration::from_millis(pause));
        }
    }

    /// Notes in the log and on the terminal that the replica is given up. Its port stays
    /// reserved and refuses connections, so callers go to other replicas and no one else
    /// can take it.
    fn give_up(&self, failures: u32, outcome: &str) {
        let name = &self.name;
        append(
            &self.log,
            &format!("turbolift: {name} keeps failing ({outcome}); not restarting it again"),
        );
        if let Some(shell) = &self.shared.shell {
            shell.warn(format!(
                "gave up on replica {name} after {failures} failures in a row (last: {outcome}); its port {} refuses calls from now on; its log: {}",
                self.port.addr(),
                self.log.display()
            ));
        }
        self.shared
            .given_up
            .lock()
            .expect("given-up lock")
            .push((name.clone(), self.log.clone()));
    }

    /// Runs the service once; calls `ready` once it answers readiness. Returns how it
    /// ended.
    fn run_once(&self, ready: impl FnOnce()) -> String {
        let (shared, log) = (&self.shared, &self.log);
        let log_file = match open_log(log) {
            Ok(f) => f,
            Err(e) => return format!("cannot open its log {}: {e}", log.display()),
        };
        let stderr_log = match log_file.try_clone() {
            Ok(f) => f,
            Err(e) => return format!("cannot open its log: {e}"),
        };
        let listener = match self.port.listen() {
            Ok(listener) => listener,
            Err(e) => return format!("could not listen on {}: {e}", self.port.addr()),
        };
        let mut command = Command::new(&self.executable);
        command
            .env(protocol::env::SECRET, &shared.secret)
            .env_remove(protocol::env::BIND)
            // A replica's own remote calls are not the program's: none in the summary.
            .env_remove(protocol::env::STATS_DIR)
            .env(protocol::env::REPLICA, &self.name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The run's directory or none, whatever this environment says.
        match &shared.shm {
            Some(dir) => command.env(protocol::env::SHM_DIR, dir),
            None => command.env_remove(protocol::env::SHM_DIR),
        };
        match &self.tls {
            Some(files) => {
                command.envs(files.env());
            }
            // Plain HTTP, whatever this environment says of TLS.
            None => {
                for key in TlsFiles::VARIABLES {
                    command.env_remove(key);
                }
            }
        }
        listener.hand_to(&mut command);
        process::tie_to_parent(&mut command, libc::SIGTERM, true);
        let mut child: Child = {
            // Checked under the lock, so that `stop` either sees this pid or this start
            // sees `stopping`.
            let mut slot = self.pid.lock().expect("pid lock");
            if shared.stopping.load(Ordering::SeqCst) {
                return "stopped before it started".to_owned();
            }
            let spawned = command.spawn();
            // The process alone holds the listening socket (and its log): when it exits,
            // the port refuses connections until the next start.
            drop(command);
            drop(listener);
            match spawned {
                Ok(child) => {
                    *slot = Some(child.id());
                    child
                }
                Err(e) => {
                    return format!("could not be started ({}): {e}", self.executable.display());
                }
            }
        };
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let echo = self.echo.clone();
        let stderr_reader = std::thread::Builder::new()
            .name(format!("stderr {}", self.name))
            .spawn(move || copy_lines(stderr, stderr_log, &echo));
        let stderr_reader = match stderr_reader {
            Ok(reader) => reader,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return format!("could not start a thread to read its stderr: {e}");
            }
        };
        let mut lines = Lines::new(stdout);
        let mut ready = Some(ready);
        let mut log_file = log_file;
        while let Some(line) = lines.next_line() {
            if line.starts_with(protocol::LISTENING_LINE.as_bytes())
                && let Some(ready) = ready.take()
            {
                if wait_ready(self.port.addr(), &mut child, &shared.tls) {
                    ready();
                } else {
                    let _ = child.kill();
                    break;
                }
                continue;
            }
            let _ = log_file.write_all(line);
            self.echo.line(line);
        }
        let status = child.wait();
        let _ = stderr_reader.join();
        match status {
            Ok(status) => format!("exited ({status})"),
            Err(e) => format!("could not be waited for: {e}"),
        }
    }
}

/// Copies a replica's lines from `stream` to its log and to the terminal, each line in one
/// write, until the stream ends.
fn copy_lines(stream: impl Read, mut log: File, echo: &Echo) {
    let mut lines = Lines::new(stream);
    while let Some(line) = lines.next_line() {
        let _ = log.write_all(line);
        echo.line(line);
    }
}

/// Polls the readiness endpoint until it answers 200 or the process exits; with TLS,
/// over TLS, from a replica whose certificate the run's authority signed.
fn wait_ready(addr: SocketAddr, child: &mut Child, tls: &Option<(Prober, TlsFiles)>) -> bool {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    let ready = || match tls {
        Some((prober, _)) => prober.ready(addr, SERVER_NAME, PROBE_TIMEOUT),
        None => probe::ready(addr, PROBE_TIMEOUT),
    };
    while Instant::now() < deadline {
        if ready().is_ok() {
            return true;
        }
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    false
}

/// A replica's log, for appending; created readable by this user only.
fn open_log(log: &Path) -> std::io::Result<File> {
    File::options()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
}

fn append(log: &Path, line: &str) {
    if let Ok(mut f) = open_log(log) {
        let _ = writeln!(f, "{line}");
    }
}

/// The last lines of a log, to show why a service did not start.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(15)..];
    if tail.is_empty() {
        String::new()
    } else {
        format!(
            "\n--- last lines of {} ---\n{}",
            log.display(),
            tail.join("\n")
        )
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_log_is_readable_by_its_user_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("p-square-0.log");
        super::append(&log, "turbolift: p-square-0 exited (signal: 9 (SIGKILL))");
        let mode = std::fs::metadata(&log).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
