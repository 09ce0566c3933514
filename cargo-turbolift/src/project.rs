//! The user's package, as cargo describes it.

mod metadata;

pub use metadata::cargo_home;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cargo_metadata::{
    CargoOpt, DependencyKind, Metadata, MetadataCommand, Package, PackageId,
    TargetKind as CargoKind,
};

use crate::cli::BuildArgs;
use crate::discover::{Target, TargetKind, turbolift_distribute};

/// The package to distribute, the libraries of the user's own code it depends on, and
/// where its workspace builds.
pub struct Project {
    pub metadata: Metadata,
    pub package: Package,
    pub target_dir: PathBuf,
    /// The key under which the package depends on `turbolift` (usually `turbolift`).
    pub turbolift_key: String,
    /// The other libraries whose functions are served: every workspace member and path
    /// dependency in the package's dependency graph (normal dependencies, and with
    /// [`Walk::WithDevDependencies`] the package's dev-dependencies) that depends on
    /// `turbolift`. Registry and git dependencies are not the user's sources and are not
    /// walked.
    pub libraries: Vec<Library>,
    /// `--example`: the example that is the program, walked as a target too.
    pub example: Option<String>,
}

/// A library of the user's whose functions get services of their own.
#[derive(Debug, Clone)]
pub struct Library {
    pub package: Package,
    /// Its library target.
    pub target: Target,
}

impl Library {
    pub fn root(&self) -> &Path {
        package_root(&self.package)
    }

    /// The crate name of its library, as code names it.
    pub fn crate_name(&self) -> String {
        self.target.name.replace('-', "_")
    }
}

/// Which package to pick when none is named (`-p`) and the manifest is a virtual
/// workspace's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The one member with a binary (`--bin`'s member, if given), as `cargo run` picks.
    Program,
    /// The package of the manifest or of the current directory; at a virtual root, the
    /// only member.
    Package,
}

/// Which dependencies lead to libraries to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    Normal,
    /// Also the package's own dev-dependencies (for its tests).
    WithDevDependencies,
}

impl Project {
    pub fn load(args: &BuildArgs, pick: Pick, walk: Walk) -> Result<Project> {
        let metadata = metadata(args)?;
        let package = select_package(&metadata, args, pick)?.clone();
        Project::of(metadata, package, args, walk)
    }

    /// The project of `package`, from metadata already read.
    pub fn of(
        metadata: Metadata,
        package: Package,
        args: &BuildArgs,
        walk: Walk,
    ) -> Result<Project> {
        let turbolift_key = turbolift_key(&package).with_context(|| {
            format!(
                "package `{}` does not depend on `turbolift`; add it to [dependencies] in {}",
                package.name, package.manifest_path
            )
        })?;
        let target_dir = match &args.target_dir {
            Some(dir) => std::path::absolute(dir).context("the --target-dir path")?,
            None => metadata.target_directory.clone().into_std_path_buf(),
        };
        // An example may use the package's dev-dependencies.
        let walk = if args.example.is_some() {
            Walk::WithDevDependencies
        } else {
            walk
        };
        let libraries = libraries(&metadata, &package, walk);
        if let Some(name) = &args.example {
            let examples: Vec<&str> = package
                .targets
                .iter()
                .filter(|t| t.is_example())
                .map(|t| t.name.as_str())
                .collect();
            if !examples.contains(&name.as_str()) {
                bail!(
                    "no example target named `{name}` in package `{}`\n\nAvailable example targets:\n    {}",
                    package.name,
                    examples.join("\n    ")
                );
            }
        }
        Ok(Project {
            example: args.example.clone(),
            metadata,
            package,
            target_dir,
            turbolift_key,
            libraries,
        })
    }

    pub fn package_root(&self) -> &Path {
        package_root(&self.package)
    }

    pub fn workspace_root(&self) -> &Path {
        self.metadata.workspace_root.as_std_path()
    }

    /// The packages of turbolift's runtime that this build compiles from a path (a clone
    /// of turbolift, a `[patch]`): `turbolift` and the path dependencies under it, by
    /// name. None when it comes from a registry, or when the graph was not resolved.
    pub fn runtime_path_packages(&self) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let Some(resolve) = &self.metadata.resolve else {
            return found;
        };
        let from_path = |id: &PackageId| {
            self.metadata
                .packages
                .iter()
                .find(|p| &p.id == id)
                .filter(|p| p.source.is_none())
        };
        let mut todo: Vec<&PackageId> = self
            .metadata
            .packages
            .iter()
            .filter(|p| p.name.as_str() == "turbolift" && p.source.is_none())
            .map(|p| &p.id)
            .collect();
        while let Some(id) = todo.pop() {
            let Some(package) = from_path(id) else {
                continue;
            };
            if !found.insert(package.name.to_string()) {
                continue;
            }
            if let Some(node) = resolve.nodes.iter().find(|n| &n.id == id) {
                todo.extend(node.deps.iter().map(|d| &d.pkg));
            }
        }
        found
    }

    /// The library and binary targets whose functions can be distributed.
    pub fn targets(&self) -> Vec<Target> {
        self.package
            .targets
            .iter()
            .filter_map(|t| {
                let kind = if t.kind.contains(&CargoKind::Lib) || t.kind.contains(&CargoKind::RLib)
                {
                    TargetKind::Lib
                } else if t.kind.contains(&CargoKind::Bin) {
                    TargetKind::Bin
                } else if t.is_example() && self.example.as_deref() == Some(t.name.as_str()) {
                    TargetKind::Example
                } else {
                    return None;
                };
                Some(Target {
                    package: self.package.name.to_string(),
                    name: t.name.clone(),
                    kind,
                    root: t.src_path.clone().into_std_path_buf(),
                    features: features(&self.metadata, &self.package.id),
                    attribute: vec![turbolift_distribute()],
                })
            })
            .collect()
    }

    /// The library target's crate name, if the package has one.
    pub fn lib_crate(&self) -> Option<String> {
        self.targets()
            .into_iter()
            .find(|t| t.kind == TargetKind::Lib)
            .map(|t| t.name.replace('-', "_"))
    }

    /// The binary to run: `--bin`, else the package's `default-run`, else its only binary.
    pub fn program(&self, bin: Option<&str>) -> Result<String> {
        if let Some(example) = &self.example {
            return Ok(example.clone());
        }
        let bins: Vec<String> = self
            .targets()
            .into_iter()
            .filter(|t| t.kind == TargetKind::Bin)
            .map(|t| t.name)
            .collect();
        if let Some(name) = bin {
            if bins.iter().any(|b| b == name) {
                return Ok(name.to_owned());
            }
            bail!(
                "no bin target named `{name}` in package `{}`; available: {}",
                self.package.name,
                bins.join(", ")
            );
        }
        if let Some(default) = &self.package.default_run {
            return Ok(default.clone());
        }
        match bins.as_slice() {
            [one] => Ok(one.clone()),
            [] => bail!(
                "package `{}` has no binary to run; `cargo turbolift run` runs a program (use `cargo turbolift build` for a library)",
                self.package.name
            ),
            many => bail!(
                "package `{}` has several binaries; choose one with `--bin NAME` (one of: {})",
                self.package.name,
                many.join(", ")
            ),
        }
    }

    /// The package's `[lints]` table, or its workspace's `[workspace.lints]` when it says
    /// `lints.workspace = true`.
    pub fn lints(&self) -> Result<Option<toml::Value>> {
        let manifest = read_manifest(self.package.manifest_path.as_std_path())?;
        let Some(lints) = manifest.get("lints") else {
            return Ok(None);
        };
        if lints.get("workspace").and_then(toml::Value::as_bool) == Some(true) {
            let root = read_manifest(&self.workspace_root().join("Cargo.toml"))?;
            return Ok(root.get("workspace").and_then(|w| w.get("lints")).cloned());
        }
        Ok(Some(lints.clone()))
    }

    /// The manifest of the workspace's root.
    pub fn root_manifest(&self) -> Result<toml::Table> {
        read_manifest(&self.workspace_root().join("Cargo.toml"))
    }

    /// The build script's path, if the package has one.
    pub fn build_script(&self) -> Option<PathBuf> {
        self.package
            .targets
            .iter()
            .find(|t| t.kind.contains(&CargoKind::CustomBuild))
            .map(|t| t.src_path.clone().into_std_path_buf())
    }
}

/// A manifest, read as TOML.
pub fn read_manifest(path: &Path) -> Result<toml::Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))
}

/// `cargo metadata` of the workspace, with the dependency graph resolved for the features
/// asked for (so that optional dependencies are walked only when enabled).
pub fn metadata(args: &BuildArgs) -> Result<Metadata> {
    let mut command = MetadataCommand::new();
    if let Some(path) = &args.manifest_path {
        command.manifest_path(path);
    }
    if args.all_features {
        command.features(CargoOpt::AllFeatures);
    }
    if args.no_default_features {
        command.features(CargoOpt::NoDefaultFeatures);
    }
    let features = args.feature_list();
    if !features.is_empty() {
        command.features(CargoOpt::SomeFeatures(features));
    }
    // All at once: each call replaces the options of the one before.
    command.other_options(
        args.resolve_flags()
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>(),
    );
    metadata::cached(&command, args.target_dir.as_deref())
        .context("could not read the package with `cargo metadata`")
}

/// The features of package `id` that cargo resolved for this build, if it resolved the
/// graph.
fn features(metadata: &Metadata, id: &PackageId) -> Option<BTreeSet<String>> {
    let node = metadata
        .resolve
        .as_ref()?
        .nodes
        .iter()
        .find(|n| &n.id == id)?;
    Some(node.features.iter().map(ToString::to_string).collect())
}

/// Whether `package` depends on `turbolift` (under any key).
pub fn depends_on_turbolift(package: &Package) -> bool {
    turbolift_key(package).is_some()
}

/// The key under which `package` depends on `turbolift`, if it does: as a normal
/// dependency, else as a dev-dependency (enough for its tests).
fn turbolift_key(package: &Package) -> Option<String> {
    let key = |kind: DependencyKind| {
        package
            .dependencies
            .iter()
            .find(|d| d.name == "turbolift" && d.kind == kind)
            .map(|d| d.rename.clone().unwrap_or_else(|| d.name.clone()))
    };
    key(DependencyKind::Normal).or_else(|| key(DependencyKind::Development))
}

fn package_root(package: &Package) -> &Path {
    package
        .manifest_path
        .parent()
        .expect("a manifest is in a directory")
        .as_std_path()
}

/// The user's libraries in `package`'s dependency graph that depend on `turbolift`, in the
/// order a breadth-first walk meets them.
fn libraries(metadata: &Metadata, package: &Package, walk: Walk) -> Vec<Library> {
    let Some(resolve) = &metadata.resolve else {
        return Vec::new();
    };
    let node = |id: &PackageId| resolve.nodes.iter().find(|n| &n.id == id);
    let mut seen: Vec<&PackageId> = vec![&package.id];
    let mut queue: std::collections::VecDeque<&PackageId> = [&package.id].into();
    let mut found = Vec::new();
    while let Some(id) = queue.pop_front() {
        let Some(node) = node(id) else { continue };
        for dep in &node.deps {
            let follow = dep.dep_kinds.iter().any(|k| match k.kind {
                DependencyKind::Normal => true,
                DependencyKind::Development => {
                    walk == Walk::WithDevDependencies && id == &package.id
                }
                _ => false,
            });
            if !follow || seen.contains(&&dep.pkg) {
                continue;
            }
            seen.push(&dep.pkg);
            let Some(dependency) = metadata.packages.iter().find(|p| p.id == dep.pkg) else {
                continue;
            };
            // Registry and git dependencies are not the user's sources.
            if dependency.source.is_some() {
                continue;
            }
            queue.push_back(&dep.pkg);
            if turbolift_key(dependency).is_none() {
                continue;
            }
            if let Some(lib) = dependency
                .targets
                .iter()
                .find(|t| t.kind.contains(&CargoKind::Lib) || t.kind.contains(&CargoKind::RLib))
            {
                found.push(Library {
                    package: dependency.clone(),
                    target: Target {
                        package: dependency.name.to_string(),
                        name: lib.name.clone(),
                        kind: TargetKind::Lib,
                        root: lib.src_path.clone().into_std_path_buf(),
                        features: features(metadata, &dependency.id),
                        attribute: vec![turbolift_distribute()],
                    },
                });
            }
        }
    }
    found
}

/// The packages whose tests `cargo test` would run: `-p`'s, the package of the manifest
/// or of the current directory, else every default member of the workspace.
pub fn packages_to_test(metadata: &Metadata, args: &BuildArgs) -> Result<Vec<Package>> {
    match select_package(metadata, args, Pick::Package) {
        Ok(package) => Ok(vec![package.clone()]),
        Err(_) if args.package.is_none() => Ok(metadata
            .workspace_default_packages()
            .into_iter()
            .cloned()
            .collect()),
        Err(e) => Err(e),
    }
}

fn select_package<'m>(metadata: &'m Metadata, args: &BuildArgs, pick: Pick) -> Result<&'m Package> {
    let members: Vec<&Package> = metadata.workspace_packages();
    if let Some(spec) = &args.package {
        return members
            .iter()
            .find(|p| p.name.as_str() == spec || p.id.repr == *spec)
            .copied()
            .with_context(|| {
                format!(
                    "package(s) `{spec}` not found in workspace `{}`",
                    metadata.workspace_root
                )
            });
    }
    let manifest = match &args.manifest_path {
        Some(path) => std::path::absolute(path).ok(),
        None => nearest_manifest(),
    };
    if let Some(manifest) = manifest {
        let manifest = manifest.canonicalize().unwrap_or(manifest);
        if let Some(package) = members.iter().find(|p| {
            p.manifest_path
                .as_std_path()
                .canonicalize()
                .is_ok_and(|m| m == manifest)
        }) {
            return Ok(package);
        }
    }
    if let [one] = members.as_slice() {
        return Ok(one);
    }
    if let Some(example) = &args.example {
        // The member that has the example.
        let with: Vec<&&Package> = members
            .iter()
            .filter(|p| {
                p.targets
                    .iter()
                    .any(|t| t.is_example() && t.name == *example)
            })
            .collect();
        match with.as_slice() {
            [one] => return Ok(one),
            [] => bail!("no example target named `{example}`"),
            _ => bail!(
                "`cargo run` can run at most one executable, but the example `{example}` is in {}; choose a package with `-p`",
                names(&with.iter().map(|p| **p).collect::<Vec<_>>())
            ),
        }
    }
    if pick == Pick::Program {
        // As `cargo run` at a virtual root: the member with `--bin`, else the only member
        // with a binary.
        let has_bin = |p: &&&Package, name: Option<&str>| {
            p.targets
                .iter()
                .any(|t| t.is_bin() && name.is_none_or(|n| t.name == n))
        };
        let with_bins: Vec<&&Package> = members
            .iter()
            .filter(|p| has_bin(p, args.bin.as_deref()))
            .collect();
        match (with_bins.as_slice(), &args.bin) {
            ([one], _) => return Ok(one),
            ([], Some(bin)) => bail!("no bin target named `{bin}`"),
            ([], None) => bail!("a bin target must be available for `cargo run`"),
            (_, Some(bin)) => bail!(
                "`cargo run` can run at most one executable, but multiple were specified: `{bin}` is in {}",
                names(&with_bins.iter().map(|p| **p).collect::<Vec<_>>())
            ),
            (many, None) => bail!(
                "`cargo run` could not determine which binary to run. Use the `--bin` option to specify a binary, or the `default-run` manifest key.\navailable binaries: {}",
                many.iter()
                    .flat_map(|p| p
                        .targets
                        .iter()
                        .filter(|t| t.is_bin())
                        .map(|t| t.name.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    bail!(
        "{} is a virtual workspace manifest; choose a package with `-p NAME` (one of: {})",
        metadata.workspace_root.join("Cargo.toml"),
        names(&members)
    )
}

/// The `Cargo.toml` of the current directory or its nearest ancestor, as cargo finds it.
fn nearest_manifest() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .map(|dir| dir.join("Cargo.toml"))
        .find(|manifest| manifest.is_file())
}

fn names(packages: &[&Package]) -> String {
    packages
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
