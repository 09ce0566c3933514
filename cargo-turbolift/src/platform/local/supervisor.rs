//! The supervisor of local replicas: each a process on 127.0.0.1, on a port the OS
//! assigns, watched and restarted on the same port when it dies.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use turbolift_shared::{probe, protocol};

use super::super::ServiceSpec;
use crate::process;

/// How long a service has to start listening and become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long stopped services have to finish their calls in flight before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The running replicas of every service.
pub struct Supervisor {
    shared: Arc<Shared>,
    replicas: Vec<Replica>,
}

struct Shared {
    stopping: AtomicBool,
    restarts: AtomicU32,
    secret: String,
}

struct Replica {
    function_id: String,
    addr: SocketAddr,
    pid: Arc<Mutex<Option<u32>>>,
    monitor: Option<JoinHandle<()>>,
}

enum Started {
    Ready(SocketAddr),
    Failed(String),
}

impl Supervisor {
    /// Starts every replica and waits until each is ready; on any failure, stops what
    /// started and says why.
    pub fn start(specs: &[ServiceSpec], secret: &str, logs: &Path) -> Result<Supervisor> {
        std::fs::create_dir_all(logs)
            .with_context(|| format!("cannot create {}", logs.display()))?;
        let shared = Arc::new(Shared {
            stopping: AtomicBool::new(false),
            restarts: AtomicU32::new(0),
            secret: secret.to_owned(),
        });
        let (tx, rx) = channel();
        let mut pending = Vec::new();
        for spec in specs {
            for replica in 0..spec.replicas {
                let replica_name = format!("{}-{replica}", spec.name);
                let log = logs.join(format!("{replica_name}.log"));
                let pid = Arc::new(Mutex::new(None));
                let monitor = spawn_monitor(
                    shared.clone(),
                    spec.executable.clone(),
                    replica_name.clone(),
                    log.clone(),
                    pid.clone(),
                    tx.clone(),
                    pending.len(),
                );
                pending.push((
                    spec.function_id.clone(),
                    replica_name,
                    log,
                    pid,
                    Some(monitor),
                ));
            }
        }
        drop(tx);
        let mut addrs: Vec<Option<SocketAddr>> = vec![None; pending.len()];
        let deadline = Instant::now() + START_TIMEOUT;
        let mut failure = None;
        while addrs.iter().any(Option::is_none) && failure.is_none() {
            let wait = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok((index, Started::Ready(addr))) => addrs[index] = Some(addr),
                Ok((index, Started::Failed(why))) => {
                    failure = Some(format!(
                        "{} did not start: {why}{}",
                        pending[index].1,
                        log_tail(&pending[index].2)
                    ));
                }
                Err(_) => {
                    failure = Some(format!("services were not ready within {START_TIMEOUT:?}"));
                }
            }
        }
        let replicas = pending
            .into_iter()
            .zip(&addrs)
            .map(|((function_id, _, _, pid, monitor), addr)| Replica {
                function_id,
                addr: addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
                pid,
                monitor,
            })
            .collect();
        let supervisor = Supervisor { shared, replicas };
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
                restarts: AtomicU32::new(0),
                secret: String::new(),
            }),
            replicas: Vec::new(),
        }
    }

    /// The replicas' addresses per function, for status lines.
    pub fn addresses(&self) -> Vec<(String, SocketAddr)> {
        self.replicas
            .iter()
            .map(|r| (r.function_id.clone(), r.addr))
            .collect()
    }

    /// How many times a service was restarted.
    pub fn restarts(&self) -> u32 {
        self.shared.restarts.load(Ordering::Relaxed)
    }

    /// Stops every service: SIGTERM, which lets each finish its calls in flight, then
    /// SIGKILL for any still running after [`STOP_TIMEOUT`].
    pub fn stop(mut self) -> u32 {
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
        self.restarts()
    }
}

/// A thread that runs one replica: starts it, reports when it is ready, and restarts it
/// on the same port whenever it exits while the run goes on.
fn spawn_monitor(
    shared: Arc<Shared>,
    executable: PathBuf,
    name: String,
    log: PathBuf,
    pid: Arc<Mutex<Option<u32>>>,
    started: Sender<(usize, Started)>,
    index: usize,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut bind: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut first = Some(started);
        let mut failures_in_a_row = 0u32;
        loop {
            if shared.stopping.load(Ordering::SeqCst) {
                return;
            }
            let outcome = run_once(&shared, &executable, &name, &log, bind, &pid, |addr| {
                bind = addr;
                failures_in_a_row = 0;
                if let Some(tx) = first.take() {
                    let _ = tx.send((index, Started::Ready(addr)));
                }
            });
            *pid.lock().expect("pid lock") = None;
            if shared.stopping.load(Ordering::SeqCst) {
                return;
            }
            if let Some(tx) = first.take() {
                let _ = tx.send((index, Started::Failed(outcome)));
                return;
            }
            failures_in_a_row += 1;
            if failures_in_a_row > 20 {
                append(
                    &log,
                    &format!(
                        "turbolift: {name} keeps failing ({outcome}); not restarting it again"
                    ),
                );
                return;
            }
            shared.restarts.fetch_add(1, Ordering::Relaxed);
            append(
                &log,
                &format!("turbolift: {name} {outcome}; restarting it on {bind}"),
            );
            // The first restart is immediate; a replica that keeps failing at once is not
            // restarted in a tight loop.
            let pause = 50 * u64::from(failures_in_a_row.saturating_sub(1).min(10));
            std::thread::sleep(Duration::from_millis(pause));
        }
    })
}

/// Runs the service once; calls `ready` with its address once it answers readiness.
/// Returns how it ended.
fn run_once(
    shared: &Shared,
    executable: &Path,
    name: &str,
    log: &Path,
    bind: SocketAddr,
    pid: &Mutex<Option<u32>>,
    ready: impl FnOnce(SocketAddr),
) -> String {
    let log_file = match File::options().create(true).append(true).open(log) {
        Ok(f) => f,
        Err(e) => return format!("cannot open its log {}: {e}", log.display()),
    };
    let stderr = match log_file.try_clone() {
        Ok(f) => f,
        Err(e) => return format!("cannot open its log: {e}"),
    };
    let mut command = Command::new(executable);
    command
        .env(protocol::env::SECRET, &shared.secret)
        .env(protocol::env::BIND, bind.to_string())
        .env(protocol::env::REPLICA, name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr));
    process::tie_to_parent(&mut command, libc::SIGTERM, true);
    let mut child: Child = {
        // Checked under the lock, so that `stop` either sees this pid or this start sees
        // `stopping`.
        let mut slot = pid.lock().expect("pid lock");
        if shared.stopping.load(Ordering::SeqCst) {
            return "stopped before it started".to_owned();
        }
        match command.spawn() {
            Ok(child) => {
                *slot = Some(child.id());
                child
            }
            Err(e) => return format!("could not be started ({}): {e}", executable.display()),
        }
    };
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let mut ready = Some(ready);
    let mut log_file = log_file;
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        if let Some(url) = line.strip_prefix(protocol::LISTENING_LINE)
            && let Some(addr) = url
                .strip_prefix("http://")
                .and_then(|a| a.parse::<SocketAddr>().ok())
            && let Some(ready) = ready.take()
        {
            if wait_ready(addr, &mut child) {
                ready(addr);
            } else {
                let _ = child.kill();
                break;
            }
            continue;
        }
        let _ = writeln!(log_file, "{line}");
    }
    match child.wait() {
        Ok(status) => format!("exited ({status})"),
        Err(e) => format!("could not be waited for: {e}"),
    }
}

/// Polls the readiness endpoint until it answers 200 or the process exits.
fn wait_ready(addr: SocketAddr, child: &mut Child) -> bool {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    while Instant::now() < deadline {
        if probe::ready(addr, PROBE_TIMEOUT).is_ok() {
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

fn append(log: &Path, line: &str) {
    if let Ok(mut f) = File::options().create(true).append(true).open(log) {
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
