//! `cargo turbolift delete`: delete what `deploy` or `run --platform kubernetes` put into
//! the cluster.

use anyhow::Result;

use crate::cli::DeleteArgs;
use crate::platform::kubernetes;
use crate::shell::Shell;

pub fn run(shell: &Shell, args: &DeleteArgs) -> Result<()> {
    kubernetes::delete(shell, args)
}
