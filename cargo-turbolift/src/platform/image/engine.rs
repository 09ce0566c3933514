//! The Docker Engine, through the `docker` command line: every command a child process in
//! a process group of its own, so that a Ctrl-C at the terminal does not cut a cleanup
//! short; the labels that mark what turbolift creates.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};

use anyhow::{Result, bail};

/// Labels that mark what a run created, so that `cargo turbolift clean` finds it.
pub mod label {
    /// The run id (12 hex digits), on the run's containers and network.
    pub const RUN: &str = "turbolift.run";
    /// The package the run is of.
    pub const PACKAGE: &str = "turbolift.package";
    /// The process that owns the run: `host/boot-id/pid/start-time`.
    pub const OWNER: &str = "turbolift.owner";
    /// The service of a container.
    pub const SERVICE: &str = "turbolift.service";
    /// The hash of an image's contents (binary and Dockerfile).
    pub const CONTENT_HASH: &str = "turbolift.content-hash";
}

/// `docker ARGS`, in a process group of its own, stdin closed.
pub fn docker<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new("docker");
    command.args(args).stdin(Stdio::null()).process_group(0);
    command
}

/// Runs a docker command to its end; its stdout, trimmed, when it succeeds, else an error
/// with `what` and docker's own message.
pub fn run(mut command: Command, what: &str) -> Result<String> {
    let output = capture(&mut command)?;
    if !output.status.success() {
        bail!("{what} failed: {}", stderr_of(&output));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Runs a docker command with `input` on its stdin, to its end; its stdout, trimmed, when
/// it succeeds, else an error with `what` and docker's own message.
pub fn run_with_input(mut command: Command, input: &[u8], what: &str) -> Result<String> {
    use std::io::Write as _;
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| spawn_error(&e))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Docker may stop reading early when it fails; its message says why, not the pipe.
    let written = stdin.write_all(input);
    drop(stdin);
    let output = child
        .wait_with_output()
        .map_err(|e| anyhow::anyhow!("{what}: cannot wait for `docker`: {e}"))?;
    if !output.status.success() {
        bail!("{what} failed: {}", stderr_of(&output));
    }
    if let Err(e) = written {
        bail!("{what} failed: cannot write to `docker`: {e}");
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Runs a docker command and returns its output, whatever its exit status.
pub fn capture(command: &mut Command) -> Result<Output> {
    command.output().map_err(|e| spawn_error(&e))
}

/// Why `docker` did not start, and what to do.
fn spawn_error(e: &std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!(
            "cannot run `docker`: it is not installed or not on PATH; install Docker or use --platform local"
        )
    } else {
        anyhow::anyhow!("cannot run `docker`: {e}")
    }
}

/// Docker's message on stderr, or the exit status when there is none.
pub fn stderr_of(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr);
    let text = text.trim();
    if text.is_empty() {
        format!("docker exited with {}", output.status)
    } else {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Checks that the Docker daemon answers; the error says what to do otherwise.
pub fn ensure_daemon() -> Result<String> {
    let output = capture(&mut docker(["version", "--format", "{{.Server.Version}}"]))?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || version.is_empty() {
        bail!(
            "cannot reach the Docker daemon: {}; start it or use --platform local",
            stderr_of(&output)
        );
    }
    Ok(version)
}

/// Sizes as docker shows them: `4.2 MB`.
pub fn human_size(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", bytes as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", bytes as f64 / 1e6),
        _ => format!("{:.2} GB", bytes as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_dockers() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(4_200), "4.2 kB");
        assert_eq!(human_size(3_962_392), "4.0 MB");
        assert_eq!(human_size(9_019_696), "9.0 MB");
    }
}
