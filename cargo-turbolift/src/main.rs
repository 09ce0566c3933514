//! `cargo turbolift`: find the `#[turbolift::distribute]` functions of a crate, generate
//! a service per function, build them, and run the program against them.
//!
//! The folders are the architecture, used in one direction: `commands` (one module per
//! subcommand, orchestration only) → `platform` (where replicas run: local, docker,
//! kubernetes) → `build` (cargo, static and cross builds) → `generate` (the service and
//! program packages, from `templates`) → `discover` (syn, outside any proc-macro).

mod build;
mod cli;
mod commands;
mod diagnostic;
mod discover;
mod generate;
mod platform;
mod private;
mod process;
mod project;
mod shell;
mod templates;
mod tls;

use std::process::ExitCode;

use crate::cli::{Cargo, Command};
use crate::shell::Shell;

fn main() -> ExitCode {
    let Cargo::Turbolift(args) = cli::parse();
    let shell = Shell::new(args.verbose, args.quiet, args.color);
    let done = |result: anyhow::Result<()>| result.map(|()| ExitCode::SUCCESS);
    let result = match &args.command {
        Command::Build(build) => done(commands::build::run(&shell, build)),
        Command::Run(run) => commands::run::run(&shell, run),
        Command::Test(test) => commands::test::run(&shell, test),
        Command::Clean(clean) => done(commands::clean::run(&shell, clean)),
        Command::Deploy(deploy) => done(commands::deploy::run(&shell, deploy)),
        Command::Delete(delete) => done(commands::delete::run(&shell, delete)),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            shell.error(&error);
            ExitCode::FAILURE
        }
    }
}
