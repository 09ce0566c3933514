//! `cargo turbolift deploy`: build for Kubernetes, apply the services and wait until
//! they are ready.

use anyhow::Result;

use crate::build::{self, Programs};
use crate::cli::{self, DeployArgs};
use crate::platform::Platform;
use crate::project::{Pick, Project, Walk};
use crate::shell::Shell;

pub fn run(shell: &Shell, args: &DeployArgs) -> Result<()> {
    let mut build_args = args.build.clone();
    build_args.platform = cli::Platform::Kubernetes;
    let mut platform = Platform::pick(&build_args)?;
    let programs = Programs::One(build_args.bin.as_deref());
    let project = Project::load(&build_args, Pick::Program, Walk::Normal)?;
    let built = build::build(
        shell,
        &build_args,
        project,
        &platform.plan(&build_args),
        programs,
    )?;
    platform.prepare(shell, &built, &[])?;
    platform.deploy(shell, args.timeout)
}
