//! Architectures of the static builds and images (`--arch`): amd64 and arm64, each a
//! Linux GNU target triple built with `+crt-static`. A triple that is not the host's is
//! cross-compiled: its rustup target and a cross linker (Debian's `gcc-<arch>-linux-gnu`,
//! which turbolift names to cargo through `CARGO_TARGET_<TRIPLE>_LINKER`) must be
//! installed, and the checks here say which command installs what is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cli::{ArchArg, BuildArgs};

/// An architecture images are built for, by Docker's (and Kubernetes') name for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    /// Docker's, OCI's and Kubernetes' name (`kubernetes.io/arch`).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The Rust target triple of its static builds.
    pub fn triple(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-unknown-linux-gnu",
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// `docker build --platform` of its images.
    pub fn docker_platform(self) -> String {
        format!("linux/{}", self.name())
    }

    /// The architecture of a triple, if it is one of these.
    pub fn of_triple(triple: &str) -> Option<Arch> {
        [Arch::Amd64, Arch::Arm64]
            .into_iter()
            .find(|a| a.triple() == triple)
    }

    /// The cross linker (a GCC driver) used when this is not the host's architecture.
    pub fn cross_gcc(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-linux-gnu-gcc",
            Arch::Arm64 => "aarch64-linux-gnu-gcc",
        }
    }

    /// The Debian package of that linker.
    fn gcc_package(self) -> &'static str {
        match self {
            Arch::Amd64 => "gcc-x86-64-linux-gnu",
            Arch::Arm64 => "gcc-aarch64-linux-gnu",
        }
    }

    /// The Debian package of the C library a static link needs (`libc.a`); only
    /// recommended by the linker's package, so `--no-install-recommends` leaves it out.
    fn libc_package(self) -> &'static str {
        match self {
            Arch::Amd64 => "libc6-dev-amd64-cross",
            Arch::Arm64 => "libc6-dev-arm64-cross",
        }
    }

    /// Cargo's variable for the linker of this target:
    /// `CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER`.
    pub fn linker_var(self) -> String {
        format!(
            "CARGO_TARGET_{}_LINKER",
            self.triple().to_ascii_uppercase().replace('-', "_")
        )
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The architectures `--arch` asks for, in a fixed order (amd64 first).
pub fn requested(args: &BuildArgs) -> Vec<Arch> {
    match args.arch.unwrap_or_default() {
        ArchArg::Amd64 => vec![Arch::Amd64],
        ArchArg::Arm64 => vec![Arch::Arm64],
        ArchArg::All => vec![Arch::Amd64, Arch::Arm64],
    }
}

/// The checks of `--arch` before anything is built: every architecture that is not the
/// host's needs its rustup target and a linker.
pub fn check(args: &BuildArgs, host: &str) -> Result<()> {
    for arch in requested(args) {
        if arch.triple() != host {
            check_cross(arch)?;
        }
    }
    Ok(())
}

/// `cargo turbolift run --platform docker` runs the images on this machine: the host's
/// architecture must be among those built.
pub fn check_runs_here(args: &BuildArgs, host: &str) -> Result<()> {
    let archs = requested(args);
    if archs.iter().any(|a| a.triple() == host) {
        return Ok(());
    }
    let names: Vec<&str> = archs.iter().map(|a| a.name()).collect();
    bail!(
        "`run --platform docker` runs the services on this machine ({host}), but `--arch {}` builds none for it; use `cargo turbolift build --platform docker --arch {}` to build those images, or `--arch all` to run",
        names.join(","),
        names.join(",")
    )
}

/// That the rustup target and the linker of a cross build are there.
fn check_cross(arch: Arch) -> Result<()> {
    let libdir = target_libdir(arch.triple())?;
    let has_core = std::fs::read_dir(&libdir)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("libcore-"))
        })
        .unwrap_or(false);
    if !has_core {
        bail!(
            "the {arch} target is missing: run `rustup target add {}` (no standard library in {})",
            arch.triple(),
            libdir.display()
        );
    }
    // A linker the user names for the target is theirs to get right.
    if std::env::var_os(arch.linker_var()).is_some() {
        return Ok(());
    }
    let gcc = arch.cross_gcc();
    let found = Command::new(gcc).arg("-print-file-name=libc.a").output();
    let libc = match found {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "`{gcc}`, the linker of {arch} builds, is not on PATH; install the linker: `apt-get install {}` (Debian/Ubuntu), or name another one in {}",
            arch.gcc_package(),
            arch.linker_var()
        ),
        Err(e) => bail!("cannot run `{gcc}`: {e}"),
        Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    };
    // GCC answers with the bare name when it finds no such file.
    if !libc.starts_with('/') {
        bail!(
            "`{gcc}` finds no static C library (libc.a) for {arch}; install it: `apt-get install {}` (Debian/Ubuntu)",
            arch.libc_package()
        );
    }
    Ok(())
}

/// Where rustc looks for the standard library of `triple`.
fn target_libdir(triple: &str) -> Result<PathBuf> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", triple])
        .output()
        .context("cannot run `rustc --print target-libdir`")?;
    if !out.status.success() {
        bail!(
            "`rustc --print target-libdir --target {triple}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    ))
}

/// Where the static builds go: beside the normal ones, never mixed with them, so that
/// neither build invalidates the other.
pub fn static_target_dir(target_dir: &Path) -> PathBuf {
    target_dir.join("turbolift-static")
}

/// The host's target triple (`rustc -vV`); it must be Linux, since images run Linux
/// binaries.
pub fn host_target() -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(&rustc)
        .arg("-vV")
        .output()
        .context("cannot run `rustc -vV`")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let host = text
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .context("`rustc -vV` names no host")?
        .trim()
        .to_owned();
    if !host.contains("-linux-") {
        bail!("the host is `{host}`, not Linux; build the images on a Linux machine");
    }
    Ok(host)
}

/// Turns a cargo command into a static build for `arch`: `--target TRIPLE` and
/// `-C target-feature=+crt-static` (static-pie with glibc), with debug information
/// stripped. The flags are added to `RUSTFLAGS`/`CARGO_ENCODED_RUSTFLAGS` if set; like any
/// such variable, they replace `rustflags` from cargo's configuration. For a triple that is
/// not the host's, the cross linker is named in `CARGO_TARGET_<TRIPLE>_LINKER` unless that
/// is set already.
pub fn build_statically(cargo: &mut Command, arch: Arch, host: &str) -> Result<()> {
    let mut flags: Vec<String> = match std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        Ok(encoded) => encoded
            .split('\x1f')
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect(),
        Err(_) => std::env::var("RUSTFLAGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    };
    flags.push("-Ctarget-feature=+crt-static".to_owned());
    flags.push("-Cstrip=debuginfo".to_owned());
    cargo
        .arg("--target")
        .arg(arch.triple())
        .env_remove("RUSTFLAGS")
        .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));
    if arch.triple() != host && std::env::var_os(arch.linker_var()).is_none() {
        cargo.env(arch.linker_var(), arch.cross_gcc());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_triples_and_linker_variables() {
        assert_eq!(Arch::Arm64.triple(), "aarch64-unknown-linux-gnu");
        assert_eq!(
            Arch::Arm64.linker_var(),
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER"
        );
        assert_eq!(Arch::Arm64.cross_gcc(), "aarch64-linux-gnu-gcc");
        assert_eq!(Arch::Amd64.docker_platform(), "linux/amd64");
        assert_eq!(
            Arch::of_triple("x86_64-unknown-linux-gnu"),
            Some(Arch::Amd64)
        );
        assert_eq!(Arch::of_triple("riscv64gc-unknown-linux-gnu"), None);
    }

    #[test]
    fn requested_architectures_and_where_they_run() {
        let mut args = BuildArgs::default();
        assert_eq!(requested(&args), [Arch::Amd64]);
        args.arch = Some(ArchArg::All);
        assert_eq!(requested(&args), [Arch::Amd64, Arch::Arm64]);
        args.arch = Some(ArchArg::Amd64);
        assert!(check(&args, "x86_64-unknown-linux-gnu").is_ok());
        args.arch = Some(ArchArg::Arm64);
        let err = check_runs_here(&args, "x86_64-unknown-linux-gnu").unwrap_err();
        assert!(err.to_string().contains("builds none for it"), "{err}");
        args.arch = Some(ArchArg::All);
        assert!(check_runs_here(&args, "x86_64-unknown-linux-gnu").is_ok());
    }
}
