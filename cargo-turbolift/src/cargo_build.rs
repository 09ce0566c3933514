//! `cargo turbolift build`: discover, check, generate, and build with cargo.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use cargo_metadata::Message;

use crate::cli::{BuildArgs, Platform};
use crate::discover::{Discovery, DistributedFn};
use crate::docker::arch::Arch;
use crate::generate::{self, ServiceCrate};
use crate::project::Project;
use crate::shell::Shell;

/// Everything a run needs, built.
pub struct Built {
    pub project: Project,
    /// The services' executables: the normal build with `--platform local`, else the static
    /// build of the first architecture of `--arch`.
    pub services: Vec<(ServiceCrate, PathBuf)>,
    /// With `--platform docker` or `kubernetes`: each service's static executable for each
    /// architecture, in the order of `services`.
    pub service_by_arch: Vec<Vec<(Arch, PathBuf)>>,
    /// The program's executables by binary name (for Kubernetes, the static build of the
    /// first architecture).
    pub programs: BTreeMap<String, PathBuf>,
    /// For Kubernetes: the program's static executable for each architecture.
    pub program_by_arch: Vec<(Arch, PathBuf)>,
    /// With `--platform docker` or `kubernetes`, an image per service.
    pub images: Vec<crate::docker::Image>,
}

/// Which of the package's binaries to build.
pub enum Programs<'a> {
    /// `--bin NAME`, or every binary.
    Selected(Option<&'a str>),
    /// The one to run: `--bin NAME`, `default-run`, or the only one.
    One(Option<&'a str>),
}

/// The `build` subcommand.
pub fn command(shell: &Shell, args: &BuildArgs) -> Result<Built> {
    // In Kubernetes the program runs as a Job: one binary, the one `run` would choose.
    let kubernetes = args.platform == Platform::Kubernetes;
    let programs = if kubernetes {
        Programs::One(args.bin.as_deref())
    } else {
        Programs::Selected(args.bin.as_deref())
    };
    let built = build(shell, args, programs)?;
    for (service, exe) in &built.services {
        shell.status(
            "Service",
            format!("`{}`: {}", service.function.id, exe.display()),
        );
    }
    for ((service, _), by_arch) in built.services.iter().zip(&built.service_by_arch) {
        for (_, exe) in by_arch.iter().skip(1) {
            shell.status(
                "Service",
                format!("`{}`: {}", service.function.id, exe.display()),
            );
        }
    }
    for exe in built.programs.values() {
        shell.status("Program", exe.display());
    }
    for (_, exe) in built.program_by_arch.iter().skip(1) {
        shell.status("Program", exe.display());
    }
    if kubernetes && let Some(program) = built.programs.values().next() {
        crate::kubernetes::prepare(shell, &built, &program.clone(), args, &[])?;
    }
    Ok(built)
}

/// Discovers, generates and builds the services, then the program (`bin`, or all of
/// the package's binaries).
pub fn build(shell: &Shell, args: &BuildArgs, programs: Programs<'_>) -> Result<Built> {
    crate::docker::preflight(args)?;
    let project = Project::load(args)?;
    let bin = match programs {
        Programs::Selected(bin) => bin.map(str::to_owned),
        Programs::One(bin) => Some(project.program(bin)?),
    };
    let functions = discover(shell, &project)?;
    let mut services = Vec::new();
    let mut service_by_arch = Vec::new();
    if !functions.is_empty() {
        shell.status(
            "Generating",
            format!(
                "{} service{} for `{}` ({})",
                functions.len(),
                plural(functions.len()),
                project.package.name,
                generate::workspace_dir(&project).display()
            ),
        );
        let generated = generate::generate(&project, &functions)?;
        shell.status(
            "Building",
            format!(
                "{} service{}",
                generated.services.len(),
                plural(generated.services.len())
            ),
        );
        let statically = args.platform != Platform::Local;
        let features = args.feature_list();
        let build_for = |arch: Option<(Arch, &str)>| -> Result<Vec<PathBuf>> {
            let target_dir = match arch {
                Some(_) => crate::docker::image::static_target_dir(&project.target_dir),
                None => project.target_dir.clone(),
            };
            let mut cargo = cargo(shell, args, &project, &target_dir);
            if let Some((arch, host)) = arch {
                crate::docker::image::build_statically(&mut cargo, arch, host)?;
            }
            cargo
                .arg("--manifest-path")
                .arg(generated.dir.join("Cargo.toml"))
                // Only the binaries are roots: the libraries (the original crates, under
                // their own names) are then not copied out side by side.
                .arg("--workspace")
                .arg("--bins");
            if !features.is_empty() {
                let qualified: Vec<String> = generated
                    .packages
                    .iter()
                    .flat_map(|p| features.iter().map(move |f| format!("{p}/{f}")))
                    .collect();
                cargo.arg("--features").arg(qualified.join(","));
            }
            let mut executables = run_cargo(cargo)
                .context("could not build the services; cargo's errors are above")?;
            generated
                .services
                .iter()
                .map(|service| {
                    executables.remove(&service.name).with_context(|| {
                        format!(
                            "cargo built no executable for the service `{}`",
                            service.name
                        )
                    })
                })
                .collect()
        };
        let mut by_arch: Vec<Vec<(Arch, PathBuf)>> = vec![Vec::new(); generated.services.len()];
        let primary = if statically {
            let host = crate::docker::image::host_target()?;
            let archs = crate::docker::arch::requested(args);
            for &arch in &archs {
                if archs.len() > 1 || arch.triple() != host {
                    shell.status(
                        "Building",
                        format!("the services for {arch} ({})", arch.triple()),
                    );
                }
                let exes = build_for(Some((arch, &host)))?;
                for (all, exe) in by_arch.iter_mut().zip(exes) {
                    all.push((arch, exe));
                }
            }
            by_arch.iter().map(|b| b[0].1.clone()).collect::<Vec<_>>()
        } else {
            build_for(None)?
        };
        for ((service, exe), arches) in generated.services.into_iter().zip(primary).zip(by_arch) {
            services.push((service, exe));
            service_by_arch.push(arches);
        }
    } else {
        shell.warn(format!(
            "no #[turbolift::distribute] function in package `{}`: everything runs in-process",
            project.package.name
        ));
    }

    shell.status(
        "Building",
        format!("`{}` with the remote call path", project.package.name),
    );
    // In Kubernetes the program runs in a container too: a static binary, like the
    // services, for each architecture.
    let in_cluster = args.platform == Platform::Kubernetes;
    let program_command = |arch: Option<(Arch, &str)>, offline: bool| -> Result<Command> {
        let program_dir = match arch {
            Some(_) => crate::docker::image::static_target_dir(&project.target_dir),
            None => project.target_dir.clone(),
        };
        let mut cargo = cargo(shell, args, &project, &program_dir);
        if let Some((arch, host)) = arch {
            crate::docker::image::build_statically(&mut cargo, arch, host)?;
        }
        cargo
            .arg("--manifest-path")
            .arg(project.package.manifest_path.as_std_path());
        cargo.arg("-p").arg(project.package.name.as_str());
        match &bin {
            Some(bin) => {
                cargo.arg("--bin").arg(bin);
            }
            None => {
                cargo.arg("--bins");
            }
        }
        let mut features = args.feature_list();
        features.push(format!("{}/service", project.turbolift_key));
        cargo.arg("--features").arg(features.join(","));
        if offline {
            cargo.arg("--offline");
        }
        Ok(cargo)
    };
    let program_cargo = |arch: Option<(Arch, &str)>| -> Result<BTreeMap<String, PathBuf>> {
        const FAILED: &str = "could not build the program; cargo's errors are above";
        // Enabling `turbolift/service` from the command line adds dependencies (hyper,
        // axum, ...) that the package's own Cargo.lock does not hold, and cargo then asks
        // the registry's index about them on every build, even when nothing changed (and
        // fails without a network). The services' build has just resolved and fetched
        // exactly those, so the program resolves offline; should that miss something, it
        // is built again online.
        if !services.is_empty() {
            match run_cargo_offline(program_command(arch, true)?).context(FAILED)? {
                Some(built) => return Ok(built),
                None => shell.verbose_status(
                    "Retrying",
                    "the program's build online: resolving offline missed something",
                ),
            }
        }
        run_cargo(program_command(arch, false)?).context(FAILED)
    };
    let mut program_by_arch = Vec::new();
    let programs = if in_cluster {
        let host = crate::docker::image::host_target()?;
        let mut first = None;
        for arch in crate::docker::arch::requested(args) {
            let built = program_cargo(Some((arch, &host)))?;
            if let Some(exe) = built.values().next() {
                program_by_arch.push((arch, exe.clone()));
            }
            first.get_or_insert(built);
        }
        first.unwrap_or_default()
    } else {
        program_cargo(None)?
    };
    let images = match args.platform {
        Platform::Local => Vec::new(),
        Platform::Docker | Platform::Kubernetes => {
            crate::docker::build_images(shell, &project, &services, &service_by_arch, args)?
        }
    };
    Ok(Built {
        project,
        services,
        service_by_arch,
        programs,
        program_by_arch,
        images,
    })
}

/// Finds the distributed functions, or reports every problem and fails.
fn discover(shell: &Shell, project: &Project) -> Result<Vec<DistributedFn>> {
    let discovery = Discovery::of_targets(project.package_root(), &project.targets());
    let count = discovery.diagnostics.len() + discovery.errors.len();
    if count == 0 {
        return Ok(discovery.functions);
    }
    for diagnostic in &discovery.diagnostics {
        shell.print_rendered(&diagnostic.render(shell.use_color()));
    }
    for error in &discovery.errors {
        shell.error(&anyhow::anyhow!("{error}"));
    }
    bail!(
        "could not distribute the functions of `{}` due to {count} previous error{}",
        project.package.name,
        plural(count)
    )
}

/// `cargo build` with the flags every build shares.
fn cargo(shell: &Shell, args: &BuildArgs, project: &Project, target_dir: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.arg("build")
        .arg("--message-format=json-render-diagnostics")
        .arg("--target-dir")
        .arg(target_dir)
        .arg("--color")
        .arg(shell.cargo_color())
        // The user's `.cargo/config.toml` applies to the services too.
        .current_dir(project.package_root());
    if args.release {
        cmd.arg("--release");
    }
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
    cmd
}

/// Runs cargo with its diagnostics going straight to the user, and returns the
/// executables it built by target name.
fn run_cargo(mut cmd: Command) -> Result<BTreeMap<String, PathBuf>> {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("could not start cargo")?;
    collect_executables(child)
}

/// Runs an `--offline` cargo like [`run_cargo`], its diagnostics passed on line by line;
/// `None` when it failed because something was not available offline (cargo's messages
/// then name `--offline`), so that the caller can build online instead.
fn run_cargo_offline(mut cmd: Command) -> Result<Option<BTreeMap<String, PathBuf>>> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("could not start cargo")?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let relay = std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        let mut mentions_offline = false;
        for line in BufReader::new(stderr).split(b'\n').map_while(Result::ok) {
            let text = String::from_utf8_lossy(&line);
            mentions_offline |= text.contains("--offline");
            let mut out = std::io::stderr().lock();
            let _ = out.write_all(&line);
            let _ = out.write_all(b"\n");
        }
        mentions_offline
    });
    let built = collect_executables(child);
    let mentions_offline = relay.join().unwrap_or(false);
    match built {
        Ok(built) => Ok(Some(built)),
        Err(_) if mentions_offline => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads cargo's JSON messages until it exits: the executables it built by target name.
fn collect_executables(mut child: std::process::Child) -> Result<BTreeMap<String, PathBuf>> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut executables = BTreeMap::new();
    for message in Message::parse_stream(BufReader::new(stdout)) {
        match message.context("cannot read cargo's output")? {
            Message::CompilerArtifact(artifact) => {
                if let Some(exe) = artifact.executable {
                    executables.insert(artifact.target.name.clone(), exe.into_std_path_buf());
                }
            }
            Message::TextLine(line) => println!("{line}"),
            _ => {}
        }
    }
    let status = child.wait().context("cargo did not finish")?;
    if !status.success() {
        bail!("cargo exited with {status}");
    }
    Ok(executables)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(text: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(text);
        cmd
    }

    #[test]
    fn an_offline_build_that_missed_something_is_retried_and_other_failures_are_not() {
        let missed = script(
            "echo 'error: no matching package named `hyper` found' >&2; \
             echo 'As a reminder, you are using offline mode (--offline)' >&2; exit 101",
        );
        assert!(run_cargo_offline(missed).unwrap().is_none());
        let broken = script("echo 'error[E0308]: mismatched types (offline)' >&2; exit 101");
        assert!(run_cargo_offline(broken).is_err());
        let built =
            script(r#"echo '{"reason":"build-finished","success":true}'; echo '  Finished' >&2"#);
        assert_eq!(run_cargo_offline(built).unwrap(), Some(BTreeMap::new()));
    }
}
