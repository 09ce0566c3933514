//! The program as a child process on this machine, against replicas that run here too
//! (local processes or containers): its endpoints and the secret in its environment (with
//! TLS, `https://` endpoints and the program's certificate; with local replicas, the run's
//! directory of shared memory), signals passed on, its exit code returned; and when the
//! replicas stop, the summary of the calls ([`super::summary`]).

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use turbolift_shared::protocol;

use super::scrape::Scraper;
use super::summary;
use super::{Running, Start, TlsFiles, by_function};
use crate::build::{BuiltProgram, plural};
use crate::cli::MessageFormat;
use crate::process;
use crate::shell::Shell;

/// How long the program has to exit after it was forwarded a signal.
const PROGRAM_GRACE: Duration = Duration::from_secs(10);

/// Catches signals and says who sent them.
pub type Signals =
    signal_hook::iterator::SignalsInfo<signal_hook::iterator::exfiltrator::WithOrigin>;

/// Replicas reachable from this machine.
pub trait Replicas {
    /// Each replica's function id and address.
    fn addresses(&self) -> Vec<(String, SocketAddr)>;
    /// The replicas that kept failing and were not restarted again, with their logs.
    fn given_up(&self) -> Vec<(String, PathBuf)> {
        Vec::new()
    }
    /// With TLS, what a client here calls them with: the run's authority and the
    /// program's certificate and key ([`RunTls::program_files`](super::RunTls::program_files)); `None` when they
    /// serve plain HTTP.
    fn tls(&self) -> Option<TlsFiles> {
        None
    }
    /// Stops every replica; what happened to each function's replicas during the run, in
    /// the order of [`Replicas::addresses`].
    fn stop(self: Box<Self>) -> Vec<ReplicaCounts>;
}

/// What happened to one function's replicas during a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaCounts {
    pub function: String,
    /// Replicas started.
    pub replicas: u32,
    /// Times a replica was started again after it exited.
    pub restarts: u32,
    /// Replicas that kept failing and were not restarted again.
    pub given_up: u32,
}

impl ReplicaCounts {
    /// No replicas of `function`.
    pub fn new(function: &str) -> ReplicaCounts {
        ReplicaCounts {
            function: function.to_owned(),
            replicas: 0,
            restarts: 0,
            given_up: 0,
        }
    }
}

/// The summary a run here ends with: its format, and the directory the program's
/// processes write their counts into ([`protocol::env::STATS_DIR`]).
struct SummaryPlan {
    format: MessageFormat,
    stats: PathBuf,
}

/// Replicas here, and the program run here against them.
pub struct OnThisMachine {
    replicas: Box<dyn Replicas>,
    secret: String,
    logs: PathBuf,
    /// With TLS, the program's files ([`Replicas::tls`]).
    tls: Option<TlsFiles>,
    /// `None` with `--no-summary`, and without services.
    summary: Option<SummaryPlan>,
    /// The run's directory of shared memory ([`Start::shm`]), if it has one.
    shm: Option<PathBuf>,
    /// Whether a program ran against the replicas: a run stopped before has no summary.
    ran: bool,
    /// Whether a signal ended one of the programs that ran (it wrote no counts).
    signalled: bool,
}

impl OnThisMachine {
    /// Says where each function is served.
    pub fn new(
        shell: &Shell,
        replicas: Box<dyn Replicas>,
        start: &Start<'_>,
        started: Instant,
    ) -> OnThisMachine {
        let logs = start.logs.clone();
        let tls = replicas.tls();
        let over = if tls.is_some() { " (TLS)" } else { "" };
        for (id, addrs) in by_function(&replicas.addresses()) {
            let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            shell.status("Ready", format!("`{id}` at {}{over}", addrs.join(", ")));
        }
        shell.verbose_status(
            "Started",
            format!("in {:?}; logs in {}", started.elapsed(), logs.display()),
        );
        let summary = start
            .args
            .summary
            .zip(start.stats.clone())
            .map(|(format, stats)| SummaryPlan { format, stats });
        OnThisMachine {
            replicas,
            secret: start.secret.clone(),
            logs,
            tls,
            summary,
            shm: start.shm.as_ref().map(|dir| dir.path().to_owned()),
            ran: false,
            signalled: false,
        }
    }
}

impl Running for OnThisMachine {
    fn endpoints(&self) -> Vec<(String, Vec<String>)> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        by_function(&self.replicas.addresses())
            .into_iter()
            .map(|(id, addrs)| {
                let urls = addrs.iter().map(|a| format!("{scheme}://{a}")).collect();
                (id, urls)
            })
            .collect()
    }

    fn run_program(
        &mut self,
        shell: &Shell,
        program: &BuiltProgram,
        args: &[String],
        signals: &mut Signals,
    ) -> Result<u8> {
        let endpoints = self.endpoints();
        if endpoints.is_empty() {
            // Nothing is distributed: the program runs as under `cargo run`.
            return run(shell, program, args, &[], signals);
        }
        let endpoints = endpoints_variable(&endpoints);
        let mut env: Vec<(&str, &OsStr)> = vec![
            (protocol::env::ENDPOINTS, endpoints.as_ref()),
            (protocol::env::SECRET, self.secret.as_ref()),
        ];
        if let Some(tls) = &self.tls {
            env.extend(tls.env().map(|(key, path)| (key, path.as_os_str())));
        }
        if let Some(summary) = &self.summary {
            env.push((protocol::env::STATS_DIR, summary.stats.as_os_str()));
        }
        if let Some(shm) = &self.shm {
            env.push((protocol::env::SHM_DIR, shm.as_os_str()));
        }
        self.ran = true;
        let code = run(shell, program, args, &env, signals)?;
        self.signalled |= code > 128;
        Ok(code)
    }

    fn stop(self: Box<Self>, shell: &Shell) {
        let given_up = self.replicas.given_up();
        // Service time from the replicas before they stop, as a summary needs.
        let (plan, ran) = (self.summary, self.ran);
        let service = match &plan {
            Some(_) if ran => match Scraper::new(&self.secret, self.tls.as_ref()) {
                Ok(scraper) => scraper.service_times(&self.replicas.addresses()),
                Err(e) => {
                    shell.warn(format!(
                        "the summary has no service time: cannot ask the replicas for it: {e:#}"
                    ));
                    Vec::new()
                }
            },
            _ => Vec::new(),
        };
        let counts = self.replicas.stop();
        let restarts: u32 = counts.iter().map(|c| c.restarts).sum();
        // The replicas' last lines before the line that says they stopped.
        super::output::drain();
        let mut notes = Vec::new();
        if restarts > 0 {
            notes.push(format!(
                "{restarts} restart{} during the run",
                plural(restarts as usize)
            ));
        }
        if !given_up.is_empty() {
            notes.push(format!(
                "{} replica{} given up",
                given_up.len(),
                plural(given_up.len())
            ));
        }
        let note = if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join(", "))
        };
        shell.status(
            "Stopped",
            format!("every service{note}; logs in {}", self.logs.display()),
        );
        for (replica, log) in given_up {
            shell.warn(format!(
                "replica {replica} kept failing and was given up during the run; why is in its log: {}",
                log.display()
            ));
        }
        if let Some(plan) = plan {
            if ran {
                let mut program = summary::read_counts(&plan.stats);
                program.signalled = self.signalled;
                let rows = summary::rows(program.functions.as_deref(), service, counts);
                summary::print(shell, plan.format, &rows, &program);
            }
            // The logs' folder holds logs alone once the run is over.
            let _ = std::fs::remove_dir_all(&plan.stats);
        }
    }
}

/// `TURBOLIFT_ENDPOINTS` for the program: `id=url,url;id=url`.
pub fn endpoints_variable(endpoints: &[(String, Vec<String>)]) -> String {
    endpoints
        .iter()
        .map(|(id, urls)| format!("{id}={}", urls.join(",")))
        .collect::<Vec<_>>()
        .join(";")
}

/// Runs `program` here with `env` to its end, passing on SIGINT, SIGTERM and SIGHUP that
/// a process sent (a Ctrl-C at the terminal reaches the program directly, as under
/// `cargo run`); returns its exit code (128 + signal when a signal ended it). The TLS
/// variables, the stats folder and the directory of shared memory are `env`'s or none: a
/// program that calls in plain HTTP is not given files of another run that this
/// environment may name, one run without a summary does not write its counts into another
/// run's folder, and none passes bodies through another run's memory (`cargo turbolift`
/// run by a program or test that itself runs under `cargo turbolift`).
pub fn run(
    shell: &Shell,
    program: &BuiltProgram,
    args: &[String],
    env: &[(&str, &OsStr)],
    signals: &mut Signals,
) -> Result<u8> {
    match &program.title {
        Some(title) => shell.status("Running", title),
        None => {
            let suffix: String = args.iter().map(|a| format!(" {a}")).collect();
            shell.status(
                "Running",
                format!("`{}{suffix}`", program.executable.display()),
            );
        }
    }
    let mut command = Command::new(&program.executable);
    command.args(args);
    for key in TlsFiles::VARIABLES {
        command.env_remove(key);
    }
    command.env_remove(protocol::env::STATS_DIR);
    command.env_remove(protocol::env::SHM_DIR);
    for (key, value) in env {
        command.env(key, value);
    }
    process::tie_to_parent(&mut command, libc::SIGTERM, false);
    let mut child = command
        .spawn()
        .with_context(|| format!("could not start the program `{}`", program.name))?;
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
