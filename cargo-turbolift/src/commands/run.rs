//! `cargo turbolift run`: build, start the services on the platform, run the program
//! against them, and stop everything when it ends, passing its exit code on.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::build::{self, Programs};
use crate::cli::RunArgs;
use crate::generate;
use crate::platform::{Platform, Signals, Start, random_hex};
use crate::project::{Pick, Project, Walk};
use crate::shell::Shell;

/// How many runs' logs are kept under `target/turbolift/<package>/logs/`.
const KEPT_LOGS: usize = 10;

pub fn run(shell: &Shell, args: &RunArgs) -> Result<ExitCode> {
    // Signals are caught from here on, so that an interrupted run still cleans up.
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("cannot install signal handlers")?;
    let mut platform = Platform::pick(&args.build)?;
    platform.check_start(&args.build)?;
    let plan = platform.plan(&args.build);
    let project = Project::load(&args.build, Pick::Program, Walk::Normal)?;
    let built = build::build(
        shell,
        &args.build,
        project,
        &plan,
        Programs::One(args.build.bin.as_deref()),
    )?;
    platform.prepare(shell, &built, &args.args)?;
    let program = built.program()?;
    let run_id = random_hex(6)?;
    let secret = random_hex(32)?;
    let start = Start {
        args: &args.build,
        run_id: &run_id,
        secret: &secret,
        logs: logs_dir(&generate::workspace_dir(&built.project), &run_id)?,
        keep: args.keep,
        timeout: args.timeout,
    };
    let mut running = platform.start(shell, &built, &start)?;
    // Interrupted while the services started: stop them and do not start the program.
    if let Some(origin) = signals.pending().next() {
        running.stop(shell);
        return Ok(ExitCode::from(128u8.wrapping_add(origin.signal as u8)));
    }
    let outcome = running.run_program(shell, program, &args.args, &mut signals);
    running.stop(shell);
    outcome.map(ExitCode::from)
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
