//! `cargo turbolift`: find the `#[turbolift::distribute]` functions of a crate, generate
//! a service per function, build them, and run the program against them.

mod cargo_build;
mod cli;
mod diagnostic;
mod discover;
mod docker;
mod generate;
mod kubernetes;
mod project;
mod run;
mod shell;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cargo, Command};
use crate::shell::Shell;

fn main() -> ExitCode {
    let Cargo::Turbolift(args) = Cargo::parse();
    let shell = Shell::new(args.verbose, args.quiet, args.color);
    let result = match &args.command {
        Command::Build(build) => cargo_build::command(&shell, build).map(|_| ExitCode::SUCCESS),
        Command::Run(run) => run::command(&shell, run),
        Command::Clean(clean) => docker::clean::command(&shell, clean).map(|()| ExitCode::SUCCESS),
        Command::Deploy(deploy) => kubernetes::deploy_command(&shell, deploy),
        Command::Delete(delete) => kubernetes::delete_command(&shell, delete),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            shell.error(&error);
            ExitCode::FAILURE
        }
    }
}
