//! Running cargo: one `cargo build` with the flags every build shares, its diagnostics
//! going straight to the user, and the executables it built read from its JSON messages.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use cargo_metadata::{Artifact, Message};

use super::arch::{self, Arch};
use crate::cli::BuildArgs;
use crate::project::Project;
use crate::shell::Shell;

/// How one cargo invocation builds: for this machine into the user's target directory, or
/// statically for an architecture into the separate static one.
#[derive(Debug, Clone, Copy)]
pub enum For<'a> {
    ThisMachine,
    /// The architecture, and the host's triple.
    Static(Arch, &'a str),
}

/// `cargo build` with the flags every build shares.
pub fn command(
    shell: &Shell,
    args: &BuildArgs,
    project: &Project,
    build: For<'_>,
) -> Result<Command> {
    let target_dir = match build {
        For::Static(..) => arch::static_target_dir(&project.target_dir),
        For::ThisMachine => project.target_dir.clone(),
    };
    cargo(
        &["build"],
        shell,
        args,
        &target_dir,
        project.package_root(),
        build,
    )
}

/// `cargo test --no-run` in `dir`, with the same flags, for this machine: builds the
/// tests and runs none.
pub fn test_command(
    shell: &Shell,
    args: &BuildArgs,
    target_dir: &Path,
    dir: &Path,
) -> Result<Command> {
    cargo(
        &["test", "--no-run"],
        shell,
        args,
        target_dir,
        dir,
        For::ThisMachine,
    )
}

fn cargo(
    subcommand: &[&str],
    shell: &Shell,
    args: &BuildArgs,
    target_dir: &Path,
    dir: &Path,
    build: For<'_>,
) -> Result<Command> {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(subcommand)
        .arg("--message-format=json-render-diagnostics")
        .arg("--target-dir")
        .arg(target_dir)
        .arg("--color")
        .arg(shell.cargo_color())
        // The user's `.cargo/config.toml` applies to the services too.
        .current_dir(dir);
    if args.release {
        cmd.arg("--release");
    }
    if let Some(profile) = &args.profile {
        cmd.arg("--profile").arg(profile);
    }
    if let Some(jobs) = &args.jobs {
        cmd.arg("--jobs").arg(jobs);
    }
    cmd.args(args.resolve_flags());
    if args.all_features {
        cmd.arg("--all-features");
    }
    if args.no_default_features {
        cmd.arg("--no-default-features");
    }
    if shell.is_quiet() {
        cmd.arg("--quiet");
    }
    for _ in 0..shell.verbosity().min(2) {
        cmd.arg("--verbose");
    }
    if let For::Static(arch, host) = build {
        arch::build_statically(&mut cmd, arch, host)?;
    }
    Ok(cmd)
}

/// Runs cargo with its diagnostics going straight to the user, and returns the
/// executables it built by target name.
pub fn run(cmd: Command) -> Result<BTreeMap<String, PathBuf>> {
    let mut executables = BTreeMap::new();
    artifacts(cmd, |artifact| {
        if let Some(exe) = artifact.executable {
            executables.insert(artifact.target.name, exe.into_std_path_buf());
        }
    })?;
    Ok(executables)
}

/// Runs cargo with its diagnostics going straight to the user (its other text lines to
/// stdout), handing each artifact it reports to `artifact`, until it exits successfully.
fn artifacts(mut cmd: Command, mut artifact: impl FnMut(Artifact)) -> Result<()> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("could not start cargo")?;
    let stdout = child.stdout.take().expect("stdout is piped");
    for message in Message::parse_stream(BufReader::new(stdout)) {
        match message.context("cannot read cargo's output")? {
            Message::CompilerArtifact(built) => artifact(built),
            Message::TextLine(line) => println!("{line}"),
            _ => {}
        }
    }
    let status = child.wait().context("cargo did not finish")?;
    if !status.success() {
        bail!("cargo exited with {status}");
    }
    Ok(())
}

/// A test executable cargo built.
#[derive(Debug, Clone)]
pub struct TestBinary {
    /// The target's name and kind (`lib`, `bin`, `test`, ...), as cargo shows them.
    pub target: String,
    pub kind: String,
    /// The target's root file.
    pub src_path: PathBuf,
    pub executable: PathBuf,
}

/// Runs `cargo test --no-run` with its diagnostics going straight to the user; the test
/// executables it built, in the order cargo reported them.
pub fn run_tests(cmd: Command) -> Result<Vec<TestBinary>> {
    let mut tests = Vec::new();
    artifacts(cmd, |artifact| {
        if let (true, Some(exe)) = (artifact.profile.test, artifact.executable) {
            tests.push(TestBinary {
                kind: artifact
                    .target
                    .kind
                    .first()
                    .map_or_else(|| "test".to_owned(), ToString::to_string),
                target: artifact.target.name,
                src_path: artifact.target.src_path.into_std_path_buf(),
                executable: exe.into_std_path_buf(),
            });
        }
    })?;
    Ok(tests)
}

/// Makes `link` the same file as `exe` (a hard link, else a copy), atomically: a service
/// started meanwhile by another run finds the old file or the new one.
pub fn link_as(exe: &Path, link: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let same =
        |a: &std::fs::Metadata, b: &std::fs::Metadata| a.dev() == b.dev() && a.ino() == b.ino();
    if let (Ok(a), Ok(b)) = (std::fs::metadata(exe), std::fs::metadata(link))
        && same(&a, &b)
    {
        return Ok(());
    }
    let tmp = link.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(exe, &tmp).is_err() {
        std::fs::copy(exe, &tmp)?;
    }
    std::fs::rename(&tmp, link)
}
