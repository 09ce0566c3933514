//! Generation: one service package per crate target that has distributed functions (in
//! the usual case, one per user package), in one workspace under the target directory
//! (`target/turbolift/<package>/`), sharing the user's `Cargo.lock`.
//!
//! Each service package mirrors the user's package with symlinks, so that modules,
//! `#[path]`, `include_str!` and `build.rs` outputs resolve exactly as in the original.
//! Its library is the original crate root, compiled once and unchanged under the original
//! crate name (so `module_path!()` agrees); its one executable, named like the package, is
//! a tiny main that links it and serves the function of the service it is started as:
//! the build links it under each service's name, so that every service still has an
//! executable of its own while the package is linked once. Only these files are its own:
//! `Cargo.toml`, `build.rs`, and `turbolift-services/main.rs`.
//!
//! The program package (`<package>-program`) mirrors the package the same way and holds
//! its binaries, compiled from their own sources: the program is built in the same cargo
//! invocation as the services, so the two builds share one start-up, run side by side on
//! the cores, and a package's library is compiled once for its services and its program.

mod files;
mod manifest;
mod profile;
mod runtime;
mod source;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use turbolift_shared::naming;
use turbolift_syntax::PROGRAM_MAIN_ENV;

use crate::discover::{DistributedFn, Target, TargetKind, kind_name};
use crate::project::{Library, Project};

pub use files::write_if_changed;

/// Entries of the package that a service package does not mirror.
const NOT_MIRRORED: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "target",
    ".git",
    "build.rs",
    SERVICE_MAINS,
    PROGRAM_MAINS,
];

/// The directory of the service package's binaries, beside its manifest.
const SERVICE_MAINS: &str = "turbolift-services";

/// The directory of the program package's generated binaries, beside its manifest.
const PROGRAM_MAINS: &str = "turbolift-program";

/// The generated workspace.
pub struct Generated {
    /// `target/turbolift/<package>/`.
    pub dir: PathBuf,
    /// The generated packages, e.g. `quickstart-services`, and last the program package.
    pub packages: Vec<String>,
    /// Those that mirror the user's package, with its features: the package's own service
    /// packages and the program package.
    pub mirrors: Vec<String>,
    pub services: Vec<Service>,
    /// The program package, e.g. `quickstart-program`.
    /// `None` for a package without binaries.
    pub program_package: Option<String>,
    /// The program's binaries: the original package's, under their own names.
    pub programs: Vec<String>,
}

impl Generated {
    /// The service packages (each builds one executable, named like the package).
    pub fn service_packages(&self) -> impl Iterator<Item = &str> {
        self.packages
            .iter()
            .map(String::as_str)
            .filter(|p| Some(*p) != self.program_package.as_deref())
    }
}

/// One service: a generated package's executable started as the service of one function.
#[derive(Debug, Clone)]
pub struct Service {
    /// The service's name, and the name of its executable, e.g. `quickstart-square`.
    pub name: String,
    /// The generated package whose executable serves it (named like the package), e.g.
    /// `quickstart-services`.
    pub package: String,
    pub function: DistributedFn,
}

/// The directory of the generated workspace of `project`.
pub fn workspace_dir(project: &Project) -> PathBuf {
    project
        .target_dir
        .join("turbolift")
        .join(project.package.name.as_str())
}

/// The name of the generated package for the functions of `target`: `<package>-services`
/// for the binary named like the package (`src/main.rs`, usually), `<package>-services-<bin>`
/// for another binary, `<package>-lib-services` for the library.
fn package_name(project: &Project, target: &Target) -> String {
    let package = &project.package.name;
    if target.package != package.as_str() {
        return format!("{package}-{}-services", target.package);
    }
    match target.kind {
        TargetKind::Lib => format!("{package}-lib-services"),
        TargetKind::Bin if target.name == package.as_str() => format!("{package}-services"),
        TargetKind::Bin => format!("{package}-services-{}", target.name),
        TargetKind::Example => format!("{package}-services-example-{}", target.name),
    }
}

/// The features of `turbolift` that every generated package enables: the service side
/// (which includes the remote call path), with `tls` the TLS of both, and with `otel`
/// (the program's trace context) `otlp`, with which the services export their spans.
fn turbolift_features(tls: bool, otel: bool) -> Vec<&'static str> {
    let mut features = vec!["service"];
    if tls {
        features.push("tls");
    }
    if otel {
        features.push("otlp");
    }
    features
}

/// What every generated package links of `turbolift`: the features it enables, and the
/// runtime package when the executables link the runtime as a shared library.
struct Linked<'a> {
    features: &'a [&'a str],
    /// The runtime package's name.
    runtime: Option<&'a str>,
}

/// Generates the workspace of `project`'s services and program; with `tls`, they are
/// built able to call and serve over TLS; with `shared_runtime`, their executables link
/// turbolift's runtime as a shared library (see `runtime`).
pub fn generate(
    project: &Project,
    functions: &[DistributedFn],
    tls: bool,
    shared_runtime: bool,
) -> Result<Generated> {
    let otel = std::iter::once(&project.package)
        .chain(project.libraries.iter().map(|library| &library.package))
        .any(manifest::enables_otel);
    let features: &[&str] = &turbolift_features(tls, otel);
    let dir = workspace_dir(project);
    let packages_dir = dir.join("services");
    std::fs::create_dir_all(&packages_dir)
        .with_context(|| format!("cannot create {}", packages_dir.display()))?;
    let runtime = if shared_runtime {
        let package = runtime::generate(project, features, &packages_dir)
            .context("cannot generate the runtime package")?;
        Some(package)
    } else {
        None
    };
    let linked = &Linked {
        features,
        runtime: runtime.as_deref(),
    };
    // The functions of each target, in the order discovery found the targets.
    let mut groups: Vec<(&Target, Vec<&DistributedFn>)> = Vec::new();
    for function in functions {
        match groups.iter_mut().find(|(t, _)| {
            t.package == function.target.package
                && t.kind == function.target.kind
                && t.name == function.target.name
        }) {
            Some((_, members)) => members.push(function),
            None => groups.push((&function.target, vec![function])),
        }
    }
    // The package's build script, read once for every generated package's.
    let original_build = match project.build_script() {
        Some(path) => Some((
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?,
            path,
        )),
        None => None,
    };
    let original_build = original_build
        .as_ref()
        .map(|(source, path)| (source.as_str(), path.as_path()));
    let mut code = CodePackages {
        lib: groups
            .iter()
            .map(|(target, _)| *target)
            .find(|t| t.kind == TargetKind::Lib && t.package == project.package.name.as_str())
            .map(|t| package_name(project, t)),
        binaries: Vec::new(),
    };
    let mut packages = Vec::new();
    let mut mirrors = Vec::new();
    let mut services = Vec::new();
    for (target, members) in groups {
        let package = package_name(project, target);
        let library = project
            .libraries
            .iter()
            .find(|lib| lib.package.name.as_str() == target.package);
        let group: Vec<Service> = members
            .into_iter()
            .map(|function| Service {
                name: naming::service_name(&project.package.name, &function.id),
                package: package.clone(),
                function: function.clone(),
            })
            .collect();
        if library.is_none() && target.kind != TargetKind::Lib {
            check_crate_names(project, target)?;
            code.binaries.push(BinaryPackage {
                kind: target.kind,
                name: target.name.clone(),
                package: package.clone(),
            });
        }
        let dir = packages_dir.join(&package);
        match library {
            Some(library) => generate_library_package(library, &package, &group, linked, &dir),
            None => {
                mirrors.push(package.clone());
                let generated = (target, package.as_str(), group.as_slice());
                let lib_package = code.lib.as_deref();
                generate_package(
                    project,
                    generated,
                    linked,
                    lib_package,
                    original_build,
                    &dir,
                )
            }
        }
        .with_context(|| format!("cannot generate the service package `{package}`"))?;
        packages.push(package);
        services.extend(group);
    }
    if let Some(service) = services.iter().find(|s| packages.contains(&s.name)) {
        anyhow::bail!(
            "the service of `{}` would have the name of a generated executable, `{}`; rename the function or its module",
            service.function.id,
            service.name
        );
    }
    let has_bins = project.package.targets.iter().any(|t| t.is_bin()) || project.example.is_some();
    let (program_package, programs) = if has_bins {
        let program_package = format!("{}-program", project.package.name);
        let programs = generate_program(
            project,
            &program_package,
            &code,
            &services,
            linked,
            original_build,
            &packages_dir.join(&program_package),
        )
        .with_context(|| format!("cannot generate the program package `{program_package}`"))?;
        packages.push(program_package.clone());
        mirrors.push(program_package.clone());
        (Some(program_package), programs)
    } else {
        (None, Vec::new())
    };
    // The runtime package is a member, but it builds no executable.
    let members: Vec<String> = packages
        .iter()
        .chain(&runtime)
        .map(|p| format!("services/{p}"))
        .collect();
    remove_stale(&packages_dir, &members)?;

    let mut runtime_crates = project.runtime_path_packages();
    runtime_crates.extend(runtime);
    let manifest = manifest::workspace(
        &members,
        &project.workspace_root().join("Cargo.toml"),
        &runtime_crates,
    )?;
    write_if_changed(&dir.join("Cargo.toml"), &manifest)?;
    let user_lock = project.workspace_root().join("Cargo.lock");
    if let Ok(lock) = std::fs::read_to_string(&user_lock) {
        // Cargo trims the copy to what the services use; copying again when the user's
        // lock is unchanged would only undo that, so compare with the last copy taken.
        let taken = dir.join("Cargo.lock.orig");
        if write_if_changed(&taken, &lock)? || !dir.join("Cargo.lock").exists() {
            write_if_changed(&dir.join("Cargo.lock"), &lock)?;
        }
    }
    Ok(Generated {
        dir,
        packages,
        mirrors,
        services,
        program_package,
        programs,
    })
}

/// The service package `name` of `target`'s functions, served as `services`. A binary's
/// code uses the package's library from `lib_package` (its service package) when there is
/// one, and is compiled here for the program too.
fn generate_package(
    project: &Project,
    (target, name, services): (&Target, &str, &[Service]),
    linked: &Linked<'_>,
    lib_package: Option<&str>,
    original_build: Option<(&str, &Path)>,
    dir: &Path,
) -> Result<()> {
    // The crate root by its real path: rustc reads the user's own files (modules,
    // `#[path]` and `include_str!` resolve beside them) and its messages name them.
    within_package(project, &target.root, "the crate root")?;
    mirror_package(project, dir)?;

    let crate_name = naming::crate_name(&target.name);
    let mains_dir = dir.join(SERVICE_MAINS);
    let named: Vec<(&str, &str)> = services
        .iter()
        .map(|s| (s.name.as_str(), s.function.id.as_str()))
        .collect();
    write_if_changed(
        &mains_dir.join("main.rs"),
        &source::service_main(&crate_name, &named, linked.runtime.is_some())?,
    )?;
    let bins = [manifest::Bin {
        name: name.to_owned(),
        path: format!("{SERVICE_MAINS}/main.rs"),
        required_features: Vec::new(),
    }];
    files::remove_other_files(&mains_dir, ["main.rs".to_owned()].into_iter())
        .with_context(|| format!("cannot clean {}", mains_dir.display()))?;

    let bin_name = (target.kind == TargetKind::Bin).then_some(target.name.as_str());
    let mut env = package_env(project, bin_name);
    if target.kind != TargetKind::Lib {
        // The program's executable runs the binary's `main` from this compilation.
        env.push((PROGRAM_MAIN_ENV.to_owned(), "1".to_owned()));
    }
    write_build_script(&env, original_build, linked.runtime.is_some(), dir)?;

    let lib_dep = match target.kind {
        TargetKind::Lib => None,
        TargetKind::Bin | TargetKind::Example => project
            .lib_crate()
            .map(|crate_name| lib_dependency(project, crate_name, lib_package)),
    };
    let manifest = manifest::package(&manifest::PackageManifest {
        name,
        // The only compilation of the target's code: its warnings are shown.
        lints: match target.kind {
            TargetKind::Lib => project.lints()?,
            TargetKind::Bin | TargetKind::Example => {
                manifest::binary_as_library_lints(project.lints()?)
            }
        },
        examples: &[],
        // An example's code may use the package's dev-dependencies.
        dev_dependencies: target.kind == TargetKind::Example,
        lib: Some((&crate_name, &target.root)),
        bins: &bins,
        package: &project.package,
        turbolift_key: &project.turbolift_key,
        turbolift_features: linked.features,
        crate_deps: lib_dep.into_iter().collect(),
        runtime: linked.runtime,
    })?;
    write_if_changed(&dir.join("Cargo.toml"), &manifest)?;
    Ok(())
}

/// The service package of one of the user's libraries that the package depends on: its
/// executable links the library itself (the same compilation the program uses) and serves
/// its functions; the package has no sources of its own but `main.rs`.
fn generate_library_package(
    library: &Library,
    name: &str,
    services: &[Service],
    linked: &Linked<'_>,
    dir: &Path,
) -> Result<()> {
    let crate_name = library.crate_name();
    let named: Vec<(&str, &str)> = services
        .iter()
        .map(|s| (s.name.as_str(), s.function.id.as_str()))
        .collect();
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut own = vec!["Cargo.toml".to_owned(), "main.rs".to_owned()];
    if linked.runtime.is_some() {
        own.push("build.rs".to_owned());
        write_build_script(&[], None, true, dir)?;
    }
    files::remove_other_files(dir, own.into_iter())
        .with_context(|| format!("cannot clean {}", dir.display()))?;
    write_if_changed(
        &dir.join("main.rs"),
        &source::service_main(&crate_name, &named, linked.runtime.is_some())?,
    )?;
    let manifest =
        manifest::library_package(name, library, &crate_name, linked.features, linked.runtime)?;
    write_if_changed(&dir.join("Cargo.toml"), &manifest)?;
    Ok(())
}

/// A binary's service package compiles the binary's code as a library under the binary's
/// crate name and depends on the package's library under the library's: with the two
/// names equal, its executable cannot tell them apart (rustc's E0464), so that is said
/// here, with what to do.
fn check_crate_names(project: &Project, target: &Target) -> Result<()> {
    let crate_name = naming::crate_name(&target.name);
    if project.lib_crate().as_deref() != Some(crate_name.as_str()) {
        return Ok(());
    }
    let what = kind_name(target.kind);
    anyhow::bail!(
        "the {what} `{}` has distributed functions and the same crate name as the package's library, `{crate_name}`; its services cannot link both: give the library another name in {} (`[lib] name = \"{crate_name}_core\"`, and use that name in the {what}), or move the {what}'s distributed functions into the library",
        target.name,
        project.package.manifest_path
    )
}

/// The service packages that compile the package's own crates.
struct CodePackages {
    /// The library's, which the binaries' code uses.
    lib: Option<String>,
    /// The binaries' (and the example's) with distributed functions.
    binaries: Vec<BinaryPackage>,
}

/// A binary (or the example) whose code its service package compiles.
struct BinaryPackage {
    kind: TargetKind,
    name: String,
    package: String,
}

/// The program package: every binary of the original package, using the library of
/// `code.lib` (the library's service package) when there is one, else the original
/// library if the package has one. A binary with distributed functions (one of
/// `code.binaries`) is a generated `main` that runs the binary's code compiled as its
/// service package's library; any other is compiled from its own source in the mirror.
/// Returns the binaries' names.
fn generate_program(
    project: &Project,
    name: &str,
    code: &CodePackages,
    services: &[Service],
    linked: &Linked<'_>,
    original_build: Option<(&str, &Path)>,
    dir: &Path,
) -> Result<Vec<String>> {
    mirror_package(project, dir)?;
    let mains_dir = dir.join(PROGRAM_MAINS);
    let mut mains = Vec::new();
    let mut crate_deps = Vec::new();
    // A binary's target: its generated `main` when its code is its service package's
    // library, else its own source.
    let mut binary = |kind: TargetKind, target: &cargo_metadata::Target| -> Result<manifest::Bin> {
        let path = match code
            .binaries
            .iter()
            .find(|b| b.kind == kind && b.name == target.name)
        {
            Some(BinaryPackage { package, .. }) => {
                let prefix = match kind {
                    TargetKind::Example => "turbolift_example",
                    TargetKind::Bin | TargetKind::Lib => "turbolift_binary",
                };
                let crate_name = format!("{prefix}_{}", naming::crate_name(&target.name));
                let file = format!("{}.rs", target.name);
                let main = source::program_main(&crate_name, linked.runtime.is_some())?;
                write_if_changed(&mains_dir.join(&file), &main)?;
                mains.push(file.clone());
                crate_deps.push(manifest::LibDep {
                    crate_name,
                    package: package.clone(),
                    path: format!("../{package}"),
                });
                format!("{PROGRAM_MAINS}/{file}")
            }
            None => {
                let what = format!("the {} `{}`", kind_name(kind), target.name);
                within_package(project, target.src_path.as_std_path(), &what)?;
                target.src_path.to_string()
            }
        };
        Ok(manifest::Bin {
            name: target.name.clone(),
            path,
            required_features: target.required_features.clone(),
        })
    };
    let mut bins = Vec::new();
    for target in project.package.targets.iter().filter(|t| t.is_bin()) {
        if let Some(service) = services
            .iter()
            .find(|s| s.name == target.name || s.package == target.name)
        {
            anyhow::bail!(
                "the binary `{}` has the name of the service of `{}` or of its executable; rename the binary (services are named `<package>-<function path>`, their executables `<package>-services`, `<package>-lib-services` or `<package>-services-<binary>`)",
                target.name,
                service.function.id
            );
        }
        bins.push(binary(TargetKind::Bin, target)?);
    }
    // `--example`: the example too.
    let examples = project
        .package
        .targets
        .iter()
        .filter(|t| t.is_example() && project.example.as_deref() == Some(t.name.as_str()))
        .map(|t| binary(TargetKind::Example, t))
        .collect::<Result<Vec<_>>>()?;
    if mains_dir.exists() {
        files::remove_other_files(&mains_dir, mains.into_iter())
            .with_context(|| format!("cannot clean {}", mains_dir.display()))?;
    }
    write_build_script(
        &package_env(project, None),
        original_build,
        linked.runtime.is_some(),
        dir,
    )?;
    let lib_dep = project
        .lib_crate()
        .map(|crate_name| lib_dependency(project, crate_name, code.lib.as_deref()));
    let manifest = manifest::package(&manifest::PackageManifest {
        name,
        lints: project.lints()?,
        examples: &examples,
        dev_dependencies: !examples.is_empty(),
        lib: None,
        bins: &bins,
        package: &project.package,
        turbolift_key: &project.turbolift_key,
        turbolift_features: linked.features,
        crate_deps: lib_dep.into_iter().chain(crate_deps).collect(),
        runtime: linked.runtime,
    })?;
    write_if_changed(&dir.join("Cargo.toml"), &manifest)?;
    Ok(bins.into_iter().chain(examples).map(|b| b.name).collect())
}

/// `path` relative to the package's root (where it is in the mirror), or an error naming
/// `what` when it is outside the package.
fn within_package(project: &Project, path: &Path, what: &str) -> Result<PathBuf> {
    let package_root = project.package_root();
    path.strip_prefix(package_root)
        .map(Path::to_path_buf)
        .with_context(|| {
            format!(
                "{what} {} is outside its package {}",
                path.display(),
                package_root.display()
            )
        })
}

/// Mirrors the user's package into the generated package's directory `dir`.
fn mirror_package(project: &Project, dir: &Path) -> Result<()> {
    let package_root = project.package_root();
    files::mirror(package_root, dir, &[], NOT_MIRRORED).with_context(|| {
        format!(
            "cannot mirror {} into {}",
            package_root.display(),
            dir.display()
        )
    })
}

/// The package's library `crate_name` as a dependency: from `lib_package`, the library's
/// service package, when it has one (so that the library is compiled once), else from the
/// original package.
fn lib_dependency(
    project: &Project,
    crate_name: String,
    lib_package: Option<&str>,
) -> manifest::LibDep {
    match lib_package {
        Some(package) => manifest::LibDep {
            crate_name,
            package: package.to_owned(),
            path: format!("../{package}"),
        },
        None => manifest::LibDep {
            crate_name,
            package: project.package.name.to_string(),
            path: project.package_root().display().to_string(),
        },
    }
}

/// The generated package's build script: the variables `env` for its code, then the
/// original build script (its source and path), if any; with `shared_runtime`, where the
/// executables find the runtime.
fn write_build_script(
    env: &[(String, String)],
    original_build: Option<(&str, &Path)>,
    shared_runtime: bool,
    dir: &Path,
) -> Result<()> {
    let build = source::build_script(env, original_build, shared_runtime)?;
    write_if_changed(&dir.join("build.rs"), &build)?;
    Ok(())
}

/// What cargo would set for the original package, so that `env!` reads the same.
fn package_env(project: &Project, bin_name: Option<&str>) -> Vec<(String, String)> {
    let p = &project.package;
    let v = &p.version;
    let mut env = vec![
        ("CARGO_PKG_NAME", p.name.to_string()),
        ("CARGO_PKG_VERSION", v.to_string()),
        ("CARGO_PKG_VERSION_MAJOR", v.major.to_string()),
        ("CARGO_PKG_VERSION_MINOR", v.minor.to_string()),
        ("CARGO_PKG_VERSION_PATCH", v.patch.to_string()),
        ("CARGO_PKG_VERSION_PRE", v.pre.to_string()),
        ("CARGO_PKG_AUTHORS", p.authors.join(":")),
        (
            "CARGO_PKG_DESCRIPTION",
            p.description.clone().unwrap_or_default(),
        ),
        ("CARGO_PKG_HOMEPAGE", p.homepage.clone().unwrap_or_default()),
        (
            "CARGO_PKG_REPOSITORY",
            p.repository.clone().unwrap_or_default(),
        ),
        ("CARGO_PKG_LICENSE", p.license.clone().unwrap_or_default()),
        (
            "CARGO_MANIFEST_DIR",
            project.package_root().display().to_string(),
        ),
        ("CARGO_MANIFEST_PATH", p.manifest_path.to_string()),
    ];
    if let Some(bin) = bin_name {
        env.push(("CARGO_BIN_NAME", bin.to_owned()));
    }
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Removes the packages of targets that no longer have distributed functions (and the
/// per-function crates of earlier versions).
fn remove_stale(packages_dir: &Path, members: &[String]) -> Result<()> {
    for entry in std::fs::read_dir(packages_dir)? {
        let entry = entry?;
        let member = Path::new("services").join(entry.file_name());
        if !members.iter().any(|m| Path::new(m) == member) {
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
        }
    }
    Ok(())
}
