//! Building: discover the distributed functions, generate their service packages, and
//! build the services and the program with cargo — for this machine, or statically for
//! each architecture of `--arch`, as the platform's [`Plan`] asks.
//!
//! With distributed functions, one cargo invocation on the generated workspace builds
//! the services and the program (see `generate`): one start-up, both on the cores at once,
//! and a library compiled once for both. When the services are static and the program is
//! not (Docker), they are built apart.

pub mod arch;
pub mod cargo;
mod cargo_config;
mod linking;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::cli::BuildArgs;
use crate::discover::{self, Discovery, DistributedFn, Target, TargetKind};
use crate::generate::{self, Generated, Service};
use crate::project::Project;
use crate::shell::Shell;
use arch::Arch;
use cargo::For;

/// How one kind of binary is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binaries {
    /// For this machine, into the user's target directory.
    ThisMachine,
    /// Statically, for each of these architectures (containers), on a host of this
    /// target triple.
    Static { archs: Vec<Arch>, host: String },
}

/// What a platform needs built.
#[derive(Debug, Clone)]
pub struct Plan {
    pub services: Binaries,
    pub program: Binaries,
}

/// Which of the package's binaries to build.
#[derive(Debug, Clone, Copy)]
pub enum Programs<'a> {
    /// `--bin NAME`, or every binary.
    Selected(Option<&'a str>),
    /// The one to run: `--bin NAME`, `default-run`, or the only one.
    One(Option<&'a str>),
    /// None: the services alone.
    None,
}

/// Everything a platform needs, built.
pub struct Built {
    pub project: Project,
    pub services: Vec<BuiltService>,
    /// The program's binaries, by name.
    pub programs: Vec<BuiltProgram>,
}

/// One service, built.
pub struct BuiltService {
    pub service: Service,
    /// Its executable: for this machine, or the static one of the first architecture.
    pub executable: PathBuf,
    /// Each architecture's static executable, when the plan asked for static builds.
    pub by_arch: Vec<(Arch, PathBuf)>,
}

/// One of the program's binaries, built.
pub struct BuiltProgram {
    pub name: String,
    /// For this machine, or the static one of the first architecture.
    pub executable: PathBuf,
    /// Each architecture's static executable, when the plan asked for static builds.
    pub by_arch: Vec<(Arch, PathBuf)>,
    /// What the `Running` line shows for it, as cargo shows a test binary; by default the
    /// executable and its arguments.
    pub title: Option<String>,
}

impl Built {
    /// The program to run: the only one built with [`Programs::One`].
    pub fn program(&self) -> Result<&BuiltProgram> {
        self.programs.first().context("cargo built no program")
    }
}

/// Discovers, generates and builds the services and the program as `plan` asks.
pub fn build(
    shell: &Shell,
    args: &BuildArgs,
    project: Project,
    plan: &Plan,
    programs: Programs<'_>,
) -> Result<Built> {
    // `--example`: the example is the program (`--bin` conflicts with it).
    let target_flag = if project.example.is_some() {
        "--example"
    } else {
        "--bin"
    };
    let bin = match programs {
        Programs::Selected(bin) => project.example.clone().or(bin.map(str::to_owned)),
        Programs::One(bin) => Some(project.program(bin)?),
        Programs::None => None,
    };
    let no_programs = matches!(programs, Programs::None);
    let functions = discover(shell, &project)?;
    if functions.is_empty() && no_programs {
        return Ok(Built {
            project,
            services: Vec::new(),
            programs: Vec::new(),
        });
    }
    if functions.is_empty() {
        return build_without_services(shell, args, plan, project, bin.as_deref(), target_flag);
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
    let tls = args.tls();
    if tls {
        check_tls_feature(&project)?;
    }
    let shared_runtime = linking::shared_runtime(shell, args, &project, plan)?;
    let generated = generate::generate(&project, &functions, tls, shared_runtime)?;
    shell.status(
        "Building",
        format!(
            "{} service{} and `{}` with the remote call path{}",
            generated.services.len(),
            plural(generated.services.len()),
            project.package.name,
            if tls { " over TLS" } else { "" }
        ),
    );
    let in_generated = InGenerated {
        shell,
        args,
        project: &project,
        generated: &generated,
        bin: bin.as_deref(),
        target_flag,
    };
    // Services and program together when both are built the same way.
    let together = plan.services == plan.program && !no_programs;
    let service_builds = arch_builds(shell, &plan.services, |build| {
        in_generated.build(
            build,
            if together {
                Which::Everything
            } else {
                Which::Services
            },
        )
    })?;
    let services = generated
        .services
        .iter()
        .map(|service| {
            let (executable, by_arch) = across(&service_builds, |exes| {
                link_service(service, exes).map(Some)
            })?
            .context("no build of the services")?;
            Ok(BuiltService {
                service: service.clone(),
                executable,
                by_arch,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let program_builds = if together {
        service_builds
    } else if no_programs {
        Vec::new()
    } else {
        arch_builds(shell, &plan.program, |build| {
            in_generated.build(build, Which::Program)
        })?
    };
    let names = match bin {
        Some(bin) => vec![bin.to_owned()],
        None => generated.programs.clone(),
    };
    let programs = built_programs(&program_builds, &names)?;
    Ok(Built {
        project,
        services,
        programs,
    })
}

/// One cargo invocation's executables by target name, with the architecture of a static
/// build.
type ArchBuild = (Option<Arch>, BTreeMap<String, PathBuf>);

/// Which binaries of the generated workspace one cargo invocation builds.
#[derive(Clone, Copy)]
enum Which {
    Everything,
    Services,
    Program,
}

/// One cargo invocation on the generated workspace.
struct InGenerated<'a> {
    shell: &'a Shell,
    args: &'a BuildArgs,
    project: &'a Project,
    generated: &'a Generated,
    /// `--bin`, or the one to run.
    bin: Option<&'a str>,
    /// How cargo selects it: `--bin`, or `--example`.
    target_flag: &'static str,
}

impl InGenerated<'_> {
    fn build(&self, build: For<'_>, which: Which) -> Result<BTreeMap<String, PathBuf>> {
        let generated = self.generated;
        let mut cargo = cargo::command(self.shell, self.args, self.project, build)?;
        cargo
            .arg("--manifest-path")
            .arg(generated.dir.join("Cargo.toml"));
        // Only binaries are roots: the libraries (the original crates, under their own
        // names) are then not copied out side by side.
        let Some(program_package) = generated.program_package.as_deref() else {
            // No binaries: the services are everything.
            if matches!(which, Which::Program) {
                return Ok(BTreeMap::new());
            }
            cargo.args(["--workspace", "--bins"]);
            return self.run(cargo);
        };
        match (which, self.bin) {
            (Which::Everything, None) => cargo.args(["--workspace", "--bins"]),
            (Which::Services, _) => {
                cargo.args(["--workspace", "--exclude", program_package, "--bins"])
            }
            (Which::Program, None) => cargo.args(["-p", program_package, "--bins"]),
            (Which::Everything, Some(bin)) => {
                cargo.arg("--workspace");
                for package in generated.service_packages() {
                    cargo.arg("--bin").arg(package);
                }
                cargo.arg(self.target_flag).arg(bin)
            }
            (Which::Program, Some(bin)) => {
                cargo.args(["-p", program_package, self.target_flag, bin])
            }
        };
        self.run(cargo)
    }

    /// Runs one of these cargo invocations, with the user's features for the packages
    /// that mirror theirs.
    fn run(&self, mut cargo: std::process::Command) -> Result<BTreeMap<String, PathBuf>> {
        let generated = self.generated;
        let features = self.args.feature_list();
        if !features.is_empty() {
            let qualified: Vec<String> = generated
                .mirrors
                .iter()
                .flat_map(|p| features.iter().map(move |f| format!("{p}/{f}")))
                .collect();
            cargo.arg("--features").arg(qualified.join(","));
        }
        cargo::run(cargo)
            .context("could not build the services and the program; cargo's errors are above")
    }
}

/// Runs `build` once for this machine, or once per architecture: each build's executables
/// by target name, with its architecture.
fn arch_builds(
    shell: &Shell,
    binaries: &Binaries,
    mut build: impl FnMut(For<'_>) -> Result<BTreeMap<String, PathBuf>>,
) -> Result<Vec<ArchBuild>> {
    match binaries {
        Binaries::ThisMachine => Ok(vec![(None, build(For::ThisMachine)?)]),
        Binaries::Static { archs, host } => {
            let host = host.as_str();
            archs
                .iter()
                .map(|&arch| {
                    if archs.len() > 1 || arch.triple() != host {
                        shell.status("Building", format!("for {arch} ({})", arch.triple()));
                    }
                    Ok((Some(arch), build(For::Static(arch, host))?))
                })
                .collect()
        }
    }
}

/// A package without distributed functions: its binaries alone, from its own manifest.
fn build_without_services(
    shell: &Shell,
    args: &BuildArgs,
    plan: &Plan,
    project: Project,
    bin: Option<&str>,
    target_flag: &str,
) -> Result<Built> {
    shell.warn(format!(
        "no #[turbolift::distribute] function in package `{}`: everything runs in-process",
        project.package.name
    ));
    shell.status("Building", format!("`{}`", project.package.name));
    let builds = arch_builds(shell, &plan.program, |build| {
        let mut cargo = cargo::command(shell, args, &project, build)?;
        cargo
            .arg("--manifest-path")
            .arg(project.package.manifest_path.as_std_path())
            .arg("-p")
            .arg(project.package.name.as_str());
        match bin {
            Some(bin) => cargo.arg(target_flag).arg(bin),
            None => cargo.arg("--bins"),
        };
        let features = args.feature_list();
        if !features.is_empty() {
            cargo.arg("--features").arg(features.join(","));
        }
        cargo::run(cargo).context("could not build the program; cargo's errors are above")
    })?;
    let names: Vec<String> = builds
        .first()
        .map(|(_, exes)| exes.keys().cloned().collect())
        .unwrap_or_default();
    Ok(Built {
        services: Vec::new(),
        programs: built_programs(&builds, &names)?,
        project,
    })
}

/// The program's binaries `names` out of `builds`; a name no build made is left out.
fn built_programs(builds: &[ArchBuild], names: &[String]) -> Result<Vec<BuiltProgram>> {
    let mut programs = Vec::new();
    for name in names {
        if let Some((executable, by_arch)) = across(builds, |exes| Ok(exes.get(name).cloned()))? {
            programs.push(BuiltProgram {
                name: name.clone(),
                executable,
                by_arch,
                title: None,
            });
        }
    }
    Ok(programs)
}

/// An executable for this machine or the first architecture, and each architecture's.
type Executables = (PathBuf, Vec<(Arch, PathBuf)>);

/// One executable across the builds: the first build's (for this machine, or the first
/// architecture's), and each static build's by architecture; `None` if no build has it.
fn across(
    builds: &[ArchBuild],
    mut pick: impl FnMut(&BTreeMap<String, PathBuf>) -> Result<Option<PathBuf>>,
) -> Result<Option<Executables>> {
    let mut first = None;
    let mut by_arch = Vec::new();
    for (arch, exes) in builds {
        let Some(exe) = pick(exes)? else { continue };
        if let Some(arch) = arch {
            by_arch.push((*arch, exe.clone()));
        }
        first.get_or_insert(exe);
    }
    Ok(first.map(|exe| (exe, by_arch)))
}

/// A service's executable: its package's, linked under the service's name.
fn link_service(service: &Service, executables: &BTreeMap<String, PathBuf>) -> Result<PathBuf> {
    let built = executables
        .get(&service.package)
        .with_context(|| format!("cargo built no executable `{}`", service.package))?;
    let exe = built.with_file_name(&service.name);
    cargo::link_as(built, &exe)
        .with_context(|| format!("cannot link {} as {}", built.display(), exe.display()))?;
    Ok(exe)
}

/// Adds to every target the names under which walked libraries re-export the attribute
/// (`pub use turbolift::distribute;` in their root): `krate::name` everywhere,
/// `crate::name` in the crate itself.
fn recognise_reexports<'t>(targets: impl Iterator<Item = &'t mut Target>) {
    let mut targets: Vec<&mut Target> = targets.collect();
    let mut reexported: Vec<(String, Vec<String>)> = Vec::new();
    for target in targets.iter().filter(|t| t.kind == TargetKind::Lib) {
        let names = std::fs::read_to_string(&target.root)
            .ok()
            .and_then(|text| syn::parse_file(&text).ok())
            .map(|file| discover::reexports(&file.items))
            .unwrap_or_default();
        if !names.is_empty() {
            reexported.push((target.name.replace('-', "_"), names));
        }
    }
    for target in &mut targets {
        let krate = target.name.replace('-', "_");
        for (reexporter, names) in &reexported {
            for name in names {
                target
                    .attribute
                    .push(vec![reexporter.clone(), name.clone()]);
                if *reexporter == krate {
                    target
                        .attribute
                        .push(vec!["crate".to_owned(), name.clone()]);
                }
            }
        }
    }
}

/// Finds the distributed functions, or reports every problem and fails.
fn discover(shell: &Shell, project: &Project) -> Result<Vec<DistributedFn>> {
    let mut own = project.targets();
    let mut libraries: Vec<Target> = project.libraries.iter().map(|l| l.target.clone()).collect();
    recognise_reexports(own.iter_mut().chain(&mut libraries));
    // A library's files are shown relative to the workspace root when they are in it.
    let workspace = project.workspace_root();
    let targets = own.iter().map(|t| (project.package_root(), t)).chain(
        project
            .libraries
            .iter()
            .zip(&libraries)
            .map(|(lib, target)| {
                let base = if lib.root().starts_with(workspace) {
                    workspace
                } else {
                    lib.root()
                };
                (base, target)
            }),
    );
    let discovery = Discovery::of_targets(targets);
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

/// Calls over TLS need the `tls` feature of every `turbolift` in the package's graph.
fn check_tls_feature(project: &Project) -> Result<()> {
    let without = project
        .metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == "turbolift" && !p.features.contains_key("tls"));
    if let Some(turbolift) = without {
        bail!(
            "calls over TLS need the `tls` feature of `turbolift`, which turbolift {} ({}) has not; depend on a turbolift that has it, or pass `--no-tls` to call in plain HTTP (TLS is on by default with `--platform docker` and `--platform kubernetes`)",
            turbolift.version,
            turbolift.manifest_path
        );
    }
    Ok(())
}

pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use crate::cli::BuildArgs;
    use crate::project::{Project, Walk};

    /// A package that depends on a `turbolift` whose features are `features`.
    fn project(features: &str) -> (tempfile::TempDir, Project) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (path, text) in [
            (
                "turbolift/Cargo.toml",
                format!(
                    "[package]\nname = \"turbolift\"\nversion = \"0.1.0\"\nedition = \"2024\"\n[features]\n{features}\n"
                ),
            ),
            ("turbolift/src/lib.rs", String::new()),
            (
                "Cargo.toml",
                "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2024\"\n[dependencies]\nturbolift = { path = \"turbolift\" }\n".to_owned(),
            ),
            ("src/main.rs", "fn main() {}\n".to_owned()),
        ] {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let metadata = cargo_metadata::MetadataCommand::new()
            .manifest_path(root.join("Cargo.toml"))
            .exec()
            .unwrap();
        let package = metadata
            .packages
            .iter()
            .find(|p| p.name.as_str() == "app")
            .unwrap()
            .clone();
        let project = Project::of(metadata, package, &BuildArgs::default(), Walk::Normal).unwrap();
        (dir, project)
    }

    #[test]
    fn tls_needs_a_turbolift_with_its_feature() {
        let (_dir, with) = project("service = []\ntls = []");
        assert!(super::check_tls_feature(&with).is_ok());
        let (_dir, without) = project("service = []");
        let error = super::check_tls_feature(&without).unwrap_err().to_string();
        assert!(
            error.contains("need the `tls` feature of `turbolift`, which turbolift 0.1.0 (")
                && error.contains("or pass `--no-tls`"),
            "{error}"
        );
    }
}
