//! The local platform: every replica a process on 127.0.0.1, serving a port the supervisor
//! holds for the whole run, watched by the supervisor that restarts it when it dies; the
//! program runs here too. With `--tls`, the replicas serve TLS only, with certificates of
//! the run's authority, and the program calls them with its own; without, the program and
//! the replicas also pass large bodies through the run's shared memory ([`shm`]).

mod limits;
mod port;
pub(super) mod shm;
mod supervisor;

use std::time::Instant;

use anyhow::Result;

use super::output::Terminal;
use super::program::{OnThisMachine, ReplicaCounts, Replicas};
use super::{Running, Start, specs};
use crate::build::Built;
use crate::shell::Shell;
use supervisor::Supervisor;

/// Starts `replicas` processes of every built service and waits until each is ready.
pub fn start(shell: &Shell, built: &Built, start: &Start<'_>) -> Result<Box<dyn Running>> {
    let started = Instant::now();
    let (specs, spinner) = specs(shell, built, start.args);
    if let Some(tls) = &start.tls {
        shell.verbose_status(
            "Certificates",
            format!("of the run's authority in {}", tls.dir().display()),
        );
    }
    let supervisor = if specs.is_empty() {
        Supervisor::none()
    } else {
        let names: Vec<String> = specs
            .iter()
            .flat_map(|s| (0..s.replicas).map(|i| format!("{}-{i}", s.name)))
            .collect();
        let terminal = Terminal::new(
            shell,
            start.args.service_output,
            names.iter().map(String::as_str),
        );
        Supervisor::start(
            shell,
            &specs,
            &start.secret,
            &start.logs,
            start.tls.as_ref(),
            start.shm.as_ref().map(shm::ShmDir::path),
            &terminal,
        )?
    };
    drop(spinner);
    Ok(Box::new(OnThisMachine::new(
        shell,
        Box::new(supervisor),
        start,
        started,
    )))
}

impl Replicas for Supervisor {
    fn addresses(&self) -> Vec<(String, std::net::SocketAddr)> {
        Supervisor::addresses(self)
    }

    fn given_up(&self) -> Vec<(String, std::path::PathBuf)> {
        Supervisor::given_up(self)
    }

    fn tls(&self) -> Option<super::TlsFiles> {
        self.program_tls()
    }

    fn stop(self: Box<Self>) -> Vec<ReplicaCounts> {
        Supervisor::stop(*self)
    }
}
