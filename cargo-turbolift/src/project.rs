//! The user's package, as cargo describes it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cargo_metadata::{Metadata, MetadataCommand, Package, TargetKind as CargoKind};

use crate::cli::BuildArgs;
use crate::discover::{Target, TargetKind};

/// The package to distribute and where its workspace builds.
pub struct Project {
    pub metadata: Metadata,
    pub package: Package,
    pub target_dir: PathBuf,
    /// The key under which the package depends on `turbolift` (usually `turbolift`).
    pub turbolift_key: String,
}

impl Project {
    pub fn load(args: &BuildArgs) -> Result<Project> {
        let mut command = MetadataCommand::new();
        command.no_deps();
        if let Some(path) = &args.manifest_path {
            command.manifest_path(path);
        }
        let metadata = command
            .exec()
            .context("could not read the package with `cargo metadata`")?;
        let package = select_package(&metadata, args)?.clone();
        let Some(turbolift) = package
            .dependencies
            .iter()
            .find(|d| d.name == "turbolift" && d.kind == cargo_metadata::DependencyKind::Normal)
        else {
            bail!(
                "package `{}` does not depend on `turbolift`; add it to [dependencies] in {}",
                package.name,
                package.manifest_path
            );
        };
        let turbolift_key = turbolift
            .rename
            .clone()
            .unwrap_or_else(|| turbolift.name.clone());
        let target_dir = match &args.target_dir {
            Some(dir) => std::path::absolute(dir).context("the --target-dir path")?,
            None => metadata.target_directory.clone().into_std_path_buf(),
        };
        Ok(Project {
            metadata,
            package,
            target_dir,
            turbolift_key,
        })
    }

    pub fn package_root(&self) -> &Path {
        self.package
            .manifest_path
            .parent()
            .expect("a manifest is in a directory")
            .as_std_path()
    }

    pub fn workspace_root(&self) -> &Path {
        self.metadata.workspace_root.as_std_path()
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
                } else {
                    return None;
                };
                Some(Target {
                    name: t.name.clone(),
                    kind,
                    root: t.src_path.clone().into_std_path_buf(),
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

    /// The build script's path, if the package has one.
    pub fn build_script(&self) -> Option<PathBuf> {
        self.package
            .targets
            .iter()
            .find(|t| t.kind.contains(&CargoKind::CustomBuild))
            .map(|t| t.src_path.clone().into_std_path_buf())
    }
}

fn select_package<'m>(metadata: &'m Metadata, args: &BuildArgs) -> Result<&'m Package> {
    let members: Vec<&Package> = metadata.workspace_packages();
    if let Some(spec) = &args.package {
        return members
            .iter()
            .find(|p| p.name.as_str() == spec || p.id.repr == *spec)
            .copied()
            .with_context(|| {
                format!(
                    "package `{spec}` is not a member of the workspace (members: {})",
                    names(&members)
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
    match members.as_slice() {
        [one] => Ok(one),
        _ => bail!(
            "{} is a virtual workspace manifest; choose a package with `-p NAME` (one of: {})",
            metadata.workspace_root.join("Cargo.toml"),
            names(&members)
        ),
    }
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
