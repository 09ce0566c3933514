//! `cargo turbolift clean`: remove what `--platform docker` runs left behind.

use anyhow::Result;

use crate::cli::CleanArgs;
use crate::platform::docker;
use crate::shell::Shell;

pub fn run(shell: &Shell, args: &CleanArgs) -> Result<()> {
    docker::clean::clean(shell, args)
}
