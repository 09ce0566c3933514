//! `cargo turbolift run`: build, start the services on this machine, run the program
//! against them, and stop everything when it ends.

pub mod process;
mod supervisor;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use turbolift_shared::protocol;

use crate::cargo_build::{self, Programs};
use crate::cli::{Platform, RunArgs};
use crate::shell::Shell;
pub use supervisor::ServiceSpec;
use supervisor::Supervisor;

/// How many runs' logs are kept under `target/turbolift/<package>/logs/`.
const KEPT_LOGS: usize = 10;
/// How long the program has to exit after it was forwarded a signal.
const PROGRAM_GRACE: Duration = Duration::from_secs(10);

pub fn command(shell: &Shell, args: &RunArgs) -> Result<ExitCode> {
    // Signals are caught from here on, so that an interrupted run still cleans up.
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("cannot install signal handlers")?;
    if args.build.platform == Platform::Docker {
        let host = crate::docker::image::host_target()?;
        crate::docker::arch::check_runs_here(&args.build, &host)?;
    }
    let built = cargo_build::build(shell, &args.build, Programs::One(args.build.bin.as_deref()))?;
    let (program_name, program) = built
        .programs
        .iter()
        .next()
        .context("cargo built no program")?;
    if args.build.platform == Platform::Kubernetes {
        return crate::kubernetes::run(shell, args, &built, program);
    }
    let run_id = random_hex(6)?;
    let secret = random_hex(32)?;
    let logs = logs_dir(&crate::generate::workspace_dir(&built.project), &run_id)?;

    let specs: Vec<ServiceSpec> = built
        .services
        .iter()
        .map(|(service, exe)| ServiceSpec {
            name: service.name.clone(),
            function_id: service.function.id.clone(),
            executable: exe.clone(),
            replicas: args
                .build
                .replicas
                .or(service.function.args.replicas.map(|r| r.min))
                .unwrap_or_else(default_replicas)
                .max(1),
        })
        .collect();
    let started = Instant::now();
    let supervisor = if specs.is_empty() {
        None
    } else {
        let replicas: u32 = specs.iter().map(|s| s.replicas).sum();
        let _spinner = shell.spinner(
            "Starting",
            format!(
                "{replicas} replica{} of {} service{}",
                plural(replicas as usize),
                specs.len(),
                plural(specs.len())
            ),
        );
        Some(match args.build.platform {
            Platform::Local => Services::Local(Supervisor::start(&specs, &secret, &logs)?),
            Platform::Kubernetes => unreachable!("a Kubernetes run returned above"),
            Platform::Docker => Services::Docker(crate::docker::Containers::start(
                shell,
                built.project.package.name.as_str(),
                &built.images,
                &specs,
                &secret,
                &logs,
                &run_id,
            )?),
        })
    };
    if let Some(supervisor) = &supervisor {
        for (id, addrs) in by_function(&supervisor.addresses()) {
            let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            shell.status("Ready", format!("`{id}` at {}", addrs.join(", ")));
        }
        shell.verbose_status(
            "Started",
            format!("in {:?}; logs in {}", started.elapsed(), logs.display()),
        );
    }

    // Interrupted while the services started: stop them and do not start the program.
    if let Some(origin) = signals.pending().next() {
        if let Some(supervisor) = supervisor {
            supervisor.stop();
        }
        return Ok(ExitCode::from(128u8.wrapping_add(origin.signal as u8)));
    }

    shell.status(
        "Running",
        format!("`{}{}`", program.display(), args_suffix(&args.args)),
    );
    let mut command = Command::new(program);
    command.args(&args.args);
    if let Some(supervisor) = &supervisor {
        command
            .env(protocol::env::ENDPOINTS, supervisor.endpoints())
            .env(protocol::env::SECRET, &secret);
    }
    process::tie_to_parent(&mut command, libc::SIGTERM, false);
    let outcome = run_program(command, program_name, &mut signals);

    if let Some(supervisor) = supervisor {
        let restarts = supervisor.stop();
        let note = if restarts > 0 {
            format!(
                " ({restarts} restart{} during the run)",
                plural(restarts as usize)
            )
        } else {
            String::new()
        };
        shell.status(
            "Stopped",
            format!("every service{note}; logs in {}", logs.display()),
        );
    }
    outcome.map(ExitCode::from)
}

/// The running services: local processes, or containers (`--platform docker`).
enum Services {
    Local(Supervisor),
    Docker(crate::docker::Containers),
}

impl Services {
    fn addresses(&self) -> Vec<(String, std::net::SocketAddr)> {
        match self {
            Services::Local(s) => s.addresses(),
            Services::Docker(c) => c.addresses(),
        }
    }

    /// `TURBOLIFT_ENDPOINTS` for the program: `id=url,url;id=url`.
    fn endpoints(&self) -> String {
        by_function(&self.addresses())
            .iter()
            .map(|(id, addrs)| {
                let urls: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
                format!("{id}={}", urls.join(","))
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    /// Stops every service; returns how many restarts there were.
    fn stop(self) -> u32 {
        match self {
            Services::Local(s) => s.stop(),
            Services::Docker(c) => c.stop(),
        }
    }
}

/// Replica addresses grouped by function, in the order the functions first appear.
fn by_function(
    addresses: &[(String, std::net::SocketAddr)],
) -> Vec<(&str, Vec<std::net::SocketAddr>)> {
    let mut grouped: Vec<(&str, Vec<std::net::SocketAddr>)> = Vec::new();
    for (id, addr) in addresses {
        match grouped.iter_mut().find(|(f, _)| f == id) {
            Some((_, addrs)) => addrs.push(*addr),
            None => grouped.push((id, vec![*addr])),
        }
    }
    grouped
}

/// Catches signals and says who sent them.
type Signals = signal_hook::iterator::SignalsInfo<signal_hook::iterator::exfiltrator::WithOrigin>;

/// Runs the program to its end, passing on SIGINT, SIGTERM and SIGHUP that a process sent
/// (a Ctrl-C at the terminal reaches the program directly, as under `cargo run`); returns
/// its exit code (128 + signal when a signal ended it).
fn run_program(mut command: Command, name: &str, signals: &mut Signals) -> Result<u8> {
    let mut child = command
        .spawn()
        .with_context(|| format!("could not start the program `{name}`"))?;
    let pid = child.id();
    let (tx, rx) = channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send(());
        status
    });
    let mut forwarded: Option<Instant> = None;
    loop {
        if rx.recv_timeout(Duration::from_millis(20)).is_ok() {
            break;
        }
        for origin in signals.pending() {
            if origin.process.is_some() {
                process::signal(pid, origin.signal);
            }
            forwarded.get_or_insert_with(Instant::now);
        }
        if forwarded.is_some_and(|at| at.elapsed() > PROGRAM_GRACE) {
            process::signal(pid, libc::SIGKILL);
        }
    }
    let status = waiter
        .join()
        .expect("the waiting thread does not panic")
        .context("could not wait for the program")?;
    Ok(process::exit_code(status))
}

/// Two replicas where there are two cores or more, so that a call has somewhere to go
/// while a replica restarts; one on a single core.
fn default_replicas() -> u32 {
    match std::thread::available_parallelism() {
        Ok(n) if n.get() >= 2 => 2,
        _ => 1,
    }
}

/// A fresh directory for this run's service logs; old runs beyond [`KEPT_LOGS`] go.
fn logs_dir(workspace: &Path, run_id: &str) -> Result<PathBuf> {
    let root = workspace.join("logs");
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let mut old: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&root)?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    old.sort();
    let excess = old.len().saturating_sub(KEPT_LOGS - 1);
    for (_, path) in old.into_iter().take(excess) {
        let _ = std::fs::remove_dir_all(path);
    }
    Ok(root.join(run_id))
}

/// `n` random bytes from the OS, as hex.
pub fn random_hex(n: usize) -> Result<String> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn args_suffix(args: &[String]) -> String {
    args.iter().map(|a| format!(" {a}")).collect()
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
