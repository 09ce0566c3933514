//! The runtime package: in a build for this machine in the `dev` profile, `turbolift` and
//! every crate it depends on (tokio, hyper, axum, ...) become one Rust shared library (a
//! `dylib`), which the services' and the program's executables load at start instead of
//! each holding a copy. An edit of the user's code then links only that code again: the
//! link of an executable that holds the whole runtime is most of an incremental build.
//!
//! The executables find the library, and the toolchain's `libstd` it needs, through the
//! search path their build scripts give the linker (`$ORIGIN`, so it is found beside
//! them and in `deps/`, and the library folder of the rustc cargo runs): they run from
//! the target directory as they are, without `LD_LIBRARY_PATH`, as long as the toolchain
//! they were built with is installed.

use std::path::Path;

use anyhow::{Context, Result};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use turbolift_shared::naming;

use super::files::{self, write_if_changed};
use super::manifest;
use crate::project::Project;
use crate::templates;

/// The name under which the generated packages depend on the runtime package, and so the
/// crate their executables link.
pub const DEPENDENCY: &str = "turbolift_runtime";

/// Writes `project`'s runtime package into `packages_dir`: its manifest (`turbolift` as the
/// package depends on it, with `features`) and its `lib.rs`. Returns the package's name,
/// e.g. `quickstart-turbolift-runtime`.
pub fn generate(project: &Project, features: &[&str], packages_dir: &Path) -> Result<String> {
    let package = format!("{}-turbolift-runtime", project.package.name);
    let dir = &packages_dir.join(&package);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    files::remove_other_files(
        dir,
        ["Cargo.toml".to_owned(), "lib.rs".to_owned()].into_iter(),
    )
    .with_context(|| format!("cannot clean {}", dir.display()))?;
    // Named for the package: cargo gives a `dylib` no hash in its file name, and packages
    // built into one target directory must not overwrite each other's.
    let lib_name = format!(
        "{}_turbolift_runtime",
        naming::crate_name(&project.package.name)
    );
    let manifest = manifest::runtime_package(
        &package,
        &lib_name,
        &project.package,
        &project.turbolift_key,
        features,
    )?;
    write_if_changed(&dir.join("Cargo.toml"), &manifest)?;
    write_if_changed(&dir.join("lib.rs"), &templates::RUNTIME_LIB.render(&[])?)?;
    Ok(package)
}

/// The item that links the runtime into an executable, when it is shared; else none.
pub fn extern_crate(shared: bool) -> TokenStream {
    if shared {
        let name = format_ident!("{DEPENDENCY}");
        quote!(extern crate #name as _;)
    } else {
        quote!()
    }
}
