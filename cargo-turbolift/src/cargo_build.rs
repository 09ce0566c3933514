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

/// Discovers, generates and builds the services and the program (`bin`, or all of the
/// package's binaries).
///
/// With distributed functions, one cargo invocation on the generated workspace builds
/// the services and the program (see `generate`): one start-up, both on the cores at once,
/// and a library compiled once for both. With `--platform docker` the services are static
/// and the program is not, so they are built apart; in Kubernetes both are static.
pub fn build(shell: &Shell, args: &BuildArgs, programs: Programs<'_>) -> Result<Built> {
    crate::docker::preflight(args)?;
    let project = Project::load(args)?;
    let bin = match programs {
        Programs::Selected(bin) => bin.map(str::to_owned),
        Programs::One(bin) => Some(project.program(bin)?),
    };
    let functions = discover(shell, &project)?;
    if functions.is_empty() {
        shell.warn(format!(
            "no #[turbolift::distribute] function in package `{}`: everything runs in-process",
            project.package.name
        ));
        return build_program_only(shell, args, project, bin.as_deref());
    }
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
            "{} service{} and `{}` with the remote call path",
            generated.services.len(),
            plural(generated.services.len()),
            project.package.name
        ),
    );
    // One executable per service package, named like it, started as each of its services.
    let service_bins: Vec<&str> = generated
        .packages
        .iter()
        .map(String::as_str)
        .filter(|p| *p != generated.program_package)
        .collect();
    let program_bins: Vec<&str> = match &bin {
        Some(bin) => vec![bin.as_str()],
        None => generated.programs.iter().map(String::as_str).collect(),
    };
    let features = args.feature_list();
    // One cargo invocation on the generated workspace for the binaries `which`.
    let build_in_generated = |arch: Option<(Arch, &str)>, which: Which| {
        let mut cargo = cargo(shell, args, &project, arch)?;
        cargo
            .arg("--manifest-path")
            .arg(generated.dir.join("Cargo.toml"));
        // Only binaries are roots: the libraries (the original crates, under their own
        // names) are then not copied out side by side.
        let program_package = generated.program_package.as_str();
        match (which, &bin) {
            (Which::Everything, None) => cargo.args(["--workspace", "--bins"]),
            (Which::Services, _) => {
                cargo.args(["--workspace", "--exclude", program_package, "--bins"])
            }
            (Which::Program, None) => cargo.args(["-p", program_package, "--bins"]),
            (Which::Everything, Some(_)) => {
                cargo.arg("--workspace");
                for name in service_bins.iter().chain(&program_bins) {
                    cargo.arg("--bin").arg(name);
                }
                &mut cargo
            }
            (Which::Program, Some(bin)) => cargo.args(["-p", program_package, "--bin", bin]),
        };
        if !features.is_empty() {
            let qualified: Vec<String> = generated
                .packages
                .iter()
                .flat_map(|p| features.iter().map(move |f| format!("{p}/{f}")))
                .collect();
            cargo.arg("--features").arg(qualified.join(","));
        }
        run_cargo(cargo)
            .context("could not build the services and the program; cargo's errors are above")
    };
    // Each service's executable: its package's, linked under the service's name.
    let services_of = |executables: &mut BTreeMap<String, PathBuf>| -> Result<Vec<PathBuf>> {
        generated
            .services
            .iter()
            .map(|service| {
                let built = executables.get(&service.executable).with_context(|| {
                    format!("cargo built no executable `{}`", service.executable)
                })?;
                let exe = built.with_file_name(&service.name);
                link_as(built, &exe).with_context(|| {
                    format!("cannot link {} as {}", built.display(), exe.display())
                })?;
                Ok(exe)
            })
            .collect()
    };
    let programs_of = |executables: &mut BTreeMap<String, PathBuf>| {
        program_bins
            .iter()
            .filter_map(|name| Some((name.to_string(), executables.remove(*name)?)))
            .collect::<BTreeMap<_, _>>()
    };

    let mut by_arch: Vec<Vec<(Arch, PathBuf)>> = vec![Vec::new(); generated.services.len()];
    let mut program_by_arch = Vec::new();
    let (primary, programs) = match args.platform {
        Platform::Local => {
            let mut built = build_in_generated(None, Which::Everything)?;
            (services_of(&mut built)?, programs_of(&mut built))
        }
        Platform::Docker | Platform::Kubernetes => {
            // In Kubernetes the program runs in a container too: a static binary, like
            // the services, for each architecture.
            let in_cluster = args.platform == Platform::Kubernetes;
            let which = if in_cluster {
                Which::Everything
            } else {
                Which::Services
            };
            let several = crate::docker::arch::requested(args).len() > 1;
            let builds = for_each_arch(args, |arch, host| {
                if several || arch.triple() != host {
                    shell.status("Building", format!("for {arch} ({})", arch.triple()));
                }
                build_in_generated(Some((arch, host)), which)
            })?;
            let mut first_programs = None;
            for (arch, mut built) in builds {
                for (all, exe) in by_arch.iter_mut().zip(services_of(&mut built)?) {
                    all.push((arch, exe));
                }
                let programs = programs_of(&mut built);
                if let Some(exe) = programs.values().next() {
                    program_by_arch.push((arch, exe.clone()));
                }
                first_programs.get_or_insert(programs);
            }
            let programs = match first_programs {
                Some(programs) if in_cluster => programs,
                // With Docker the program runs on this machine.
                _ => programs_of(&mut build_in_generated(None, Which::Program)?),
            };
            (by_arch.iter().map(|b| b[0].1.clone()).collect(), programs)
        }
    };
    let services: Vec<(ServiceCrate, PathBuf)> =
        generated.services.into_iter().zip(primary).collect();
    let images = match args.platform {
        Platform::Local => Vec::new(),
        Platform::Docker | Platform::Kubernetes => {
            crate::docker::build_images(shell, &project, &services, &by_arch, args)?
        }
    };
    Ok(Built {
        project,
        services,
        service_by_arch: by_arch,
        programs,
        program_by_arch,
        images,
    })
}

/// Makes `link` the same file as `exe` (a hard link, else a copy), atomically: a service
/// started meanwhile by another run finds the old file or the new one.
fn link_as(exe: &Path, link: &Path) -> std::io::Result<()> {
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

/// Which binaries of the generated workspace one cargo invocation builds.
#[derive(Clone, Copy)]
enum Which {
    Everything,
    Services,
    Program,
}

/// Runs `build` for each architecture of `--arch` (given with the host's triple): the
/// executables of each build, in the order of the architectures.
fn for_each_arch(
    args: &BuildArgs,
    mut build: impl FnMut(Arch, &str) -> Result<BTreeMap<String, PathBuf>>,
) -> Result<Vec<(Arch, BTreeMap<String, PathBuf>)>> {
    let host = crate::docker::image::host_target()?;
    crate::docker::arch::requested(args)
        .into_iter()
        .map(|arch| Ok((arch, build(arch, &host)?)))
        .collect()
}

/// A package without distributed functions: the program alone, in its own workspace.
fn build_program_only(
    shell: &Shell,
    args: &BuildArgs,
    project: Project,
    bin: Option<&str>,
) -> Result<Built> {
    shell.status("Building", format!("`{}`", project.package.name));
    let in_cluster = args.platform == Platform::Kubernetes;
    let program_cargo = |arch: Option<(Arch, &str)>| -> Result<BTreeMap<String, PathBuf>> {
        let mut cargo = cargo(shell, args, &project, arch)?;
        cargo
            .arg("--manifest-path")
            .arg(project.package.manifest_path.as_std_path());
        cargo.arg("-p").arg(project.package.name.as_str());
        match bin {
            Some(bin) => cargo.arg("--bin").arg(bin),
            None => cargo.arg("--bins"),
        };
        let features = args.feature_list();
        if !features.is_empty() {
            cargo.arg("--features").arg(features.join(","));
        }
        run_cargo(cargo).context("could not build the program; cargo's errors are above")
    };
    let mut program_by_arch = Vec::new();
    let programs = if in_cluster {
        let builds = for_each_arch(args, |arch, host| program_cargo(Some((arch, host))))?;
        for (arch, built) in &builds {
            if let Some(exe) = built.values().next() {
                program_by_arch.push((*arch, exe.clone()));
            }
        }
        builds
            .into_iter()
            .next()
            .map(|(_, built)| built)
            .unwrap_or_default()
    } else {
        program_cargo(None)?
    };
    Ok(Built {
        project,
        services: Vec::new(),
        service_by_arch: Vec::new(),
        programs,
        program_by_arch,
        images: Vec::new(),
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

/// `cargo build` with the flags every build shares, for this machine into the user's
/// target directory, or for `arch` (with the host's triple) statically into the separate
/// one.
fn cargo(
    shell: &Shell,
    args: &BuildArgs,
    project: &Project,
    arch: Option<(Arch, &str)>,
) -> Result<Command> {
    let target_dir = match arch {
        Some(_) => crate::docker::image::static_target_dir(&project.target_dir),
        None => project.target_dir.clone(),
    };
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
    if let Some((arch, host)) = arch {
        crate::docker::image::build_statically(&mut cmd, arch, host)?;
    }
    Ok(cmd)
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
