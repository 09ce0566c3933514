//! The local platform: every replica a process on 127.0.0.1, on a port the OS assigns,
//! watched by a supervisor that restarts it when it dies; the program runs here too.

mod supervisor;

use std::time::Instant;

use anyhow::Result;

use super::program::{OnThisMachine, Replicas};
use super::{Running, ServiceSpec, Start, replicas};
use crate::build::{Built, plural};
use crate::shell::Shell;
use supervisor::Supervisor;

/// Starts `replicas` processes of every built service and waits until each is ready.
pub fn start(shell: &Shell, built: &Built, start: &Start<'_>) -> Result<Box<dyn Running>> {
    let specs: Vec<ServiceSpec> = built
        .services
        .iter()
        .map(|built| ServiceSpec {
            name: built.service.name.clone(),
            function_id: built.service.function.id.clone(),
            executable: built.executable.clone(),
            replicas: replicas(start.args, built.service.function.args.replicas, true).min,
        })
        .collect();
    let started = Instant::now();
    let supervisor = if specs.is_empty() {
        Supervisor::none()
    } else {
        let count: u32 = specs.iter().map(|s| s.replicas).sum();
        let _spinner = shell.spinner(
            "Starting",
            format!(
                "{count} replica{} of {} service{}",
                plural(count as usize),
                specs.len(),
                plural(specs.len())
            ),
        );
        Supervisor::start(&specs, start.secret, &start.logs)?
    };
    Ok(Box::new(OnThisMachine::new(
        shell,
        Box::new(supervisor),
        start.secret,
        start.logs.clone(),
        started,
    )))
}

impl Replicas for Supervisor {
    fn addresses(&self) -> Vec<(String, std::net::SocketAddr)> {
        Supervisor::addresses(self)
    }

    fn stop(self: Box<Self>) -> u32 {
        Supervisor::stop(*self)
    }
}
