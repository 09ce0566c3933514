//! `cargo turbolift build`: discover, generate and build; with an image platform, also
//! the images and what deploys them (a compose file, Kubernetes manifests).

use anyhow::Result;

use crate::build::{self, Programs};
use crate::cli::{self, BuildArgs};
use crate::platform::Platform;
use crate::project::{Pick, Project, Walk};
use crate::shell::Shell;

pub fn run(shell: &Shell, args: &BuildArgs) -> Result<()> {
    let mut platform = Platform::pick(args)?;
    // In Kubernetes the program runs as a Job: one binary, the one `run` would choose.
    let programs = match args.platform {
        cli::Platform::Kubernetes => Programs::One(args.bin.as_deref()),
        _ => Programs::Selected(args.bin.as_deref()),
    };
    let project = Project::load(args, Pick::Package, Walk::Normal)?;
    let built = build::build(shell, args, project, &platform.plan(args), programs)?;
    for service in &built.services {
        let id = &service.service.function.id;
        shell.status(
            "Service",
            format!("`{id}`: {}", service.executable.display()),
        );
        for (_, exe) in service.by_arch.iter().skip(1) {
            shell.status("Service", format!("`{id}`: {}", exe.display()));
        }
    }
    for program in &built.programs {
        shell.status("Program", program.executable.display());
        for (_, exe) in program.by_arch.iter().skip(1) {
            shell.status("Program", exe.display());
        }
    }
    platform.prepare(shell, &built, &[])
}
