//! Generation: one service crate per distributed function, in one workspace under the
//! target directory (`target/turbolift/<package>/`), sharing the user's `Cargo.lock`.
//!
//! Each service crate mirrors the user's package with symlinks, so that modules,
//! `#[path]`, `include_str!` and `build.rs` outputs resolve exactly as in the original.
//! Its library is the original crate root, compiled unchanged under the original crate
//! name (so `module_path!()` agrees); only three files are its own: `Cargo.toml`,
//! `build.rs`, and `turbolift-service.rs`, the binary that serves the function.

mod files;
mod manifest;
mod source;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use turbolift_shared::naming;

use crate::discover::{DistributedFn, TargetKind};
use crate::project::Project;

pub use files::write_if_changed;

/// Entries of the package that a service crate does not mirror.
const NOT_MIRRORED: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "target",
    ".git",
    "build.rs",
    SERVICE_MAIN,
];

/// The service crate's binary, beside its manifest.
const SERVICE_MAIN: &str = "turbolift-service.rs";

/// The generated workspace.
pub struct Generated {
    /// `target/turbolift/<package>/`.
    pub dir: PathBuf,
    pub services: Vec<ServiceCrate>,
}

/// One generated service crate.
pub struct ServiceCrate {
    /// Package and binary name, e.g. `quickstart-square`.
    pub name: String,
    pub function: DistributedFn,
}

/// The directory of the generated workspace of `project`.
pub fn workspace_dir(project: &Project) -> PathBuf {
    project
        .target_dir
        .join("turbolift")
        .join(project.package.name.as_str())
}

pub fn generate(project: &Project, functions: &[DistributedFn]) -> Result<Generated> {
    let dir = workspace_dir(project);
    let services_dir = dir.join("services");
    std::fs::create_dir_all(&services_dir)
        .with_context(|| format!("cannot create {}", services_dir.display()))?;
    let mut services = Vec::new();
    for function in functions {
        let name = naming::service_name(&project.package.name, &function.id);
        let service_dir = services_dir.join(&name);
        generate_service(project, function, &name, &service_dir)
            .with_context(|| format!("cannot generate the service crate of `{}`", function.id))?;
        services.push(ServiceCrate {
            name,
            function: function.clone(),
        });
    }
    remove_stale(&services_dir, &services)?;

    let members: Vec<String> = services
        .iter()
        .map(|s| format!("services/{}", s.name))
        .collect();
    let manifest = manifest::workspace(&members, &project.workspace_root().join("Cargo.toml"))?;
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
    Ok(Generated { dir, services })
}

fn generate_service(
    project: &Project,
    function: &DistributedFn,
    name: &str,
    dir: &Path,
) -> Result<()> {
    let package_root = project.package_root();
    let root_relative = function
        .target
        .root
        .strip_prefix(package_root)
        .with_context(|| {
            format!(
                "the crate root {} is outside its package {}",
                function.target.root.display(),
                package_root.display()
            )
        })?
        .to_path_buf();
    files::mirror(package_root, dir, &[], NOT_MIRRORED).with_context(|| {
        format!(
            "cannot mirror {} into {}",
            package_root.display(),
            dir.display()
        )
    })?;

    let is_bin = function.target.kind == TargetKind::Bin;
    let crate_name = naming::crate_name(&function.target.name);
    write_if_changed(
        &dir.join(SERVICE_MAIN),
        &source::service_main(&crate_name, &function.id)?,
    )?;

    let original_build = project.build_script();
    let original_source = match &original_build {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        None => None,
    };
    let build = source::build_script(
        &package_env(project, function),
        original_source.as_deref().zip(original_build.as_deref()),
    )?;
    write_if_changed(&dir.join("build.rs"), &build)?;

    let lib_crate = if is_bin { project.lib_crate() } else { None };
    let manifest = manifest::service(&manifest::ServiceManifest {
        name,
        crate_name: &crate_name,
        root: &root_relative,
        package: &project.package,
        turbolift_key: &project.turbolift_key,
        lib_crate: lib_crate.as_deref(),
    })?;
    write_if_changed(&dir.join("Cargo.toml"), &manifest)?;
    Ok(())
}

/// What cargo would set for the original package, so that `env!` reads the same.
fn package_env(project: &Project, function: &DistributedFn) -> Vec<(String, String)> {
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
    if function.target.kind == TargetKind::Bin {
        env.push(("CARGO_BIN_NAME", function.target.name.clone()));
    }
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Removes the crates of functions that are no longer distributed.
fn remove_stale(services_dir: &Path, services: &[ServiceCrate]) -> Result<()> {
    for entry in std::fs::read_dir(services_dir)? {
        let entry = entry?;
        if !services
            .iter()
            .any(|s| entry.file_name() == s.name.as_str())
        {
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
        }
    }
    Ok(())
}
