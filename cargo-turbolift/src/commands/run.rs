//! `cargo turbolift run`: build, start the services on the platform, run the program
//! against them, and stop everything when it ends, passing its exit code on.

use std::process::ExitCode;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::build::{self, Programs};
use crate::cli::RunArgs;
use crate::platform::{Platform, Signals, Start};
use crate::project::{Pick, Project, Walk};
use crate::shell::Shell;

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
    let start = Start::new(shell, &args.build, &built, args.keep, args.timeout)?;
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
