//! How the executables of a build link turbolift's runtime: into each of them (static,
//! as `cargo build` does), or as one shared library they all load (see
//! `generate::runtime`). Shared is for the edit-build-run loop: a build for this machine
//! in the `dev` profile, where it saves most of the link of every executable after an
//! edit. Everything else links statically: release builds, which are measured and
//! shipped; static builds for containers, which cannot load a shared library; and a `dev`
//! profile that shared Rust libraries do not support (`lto`, `panic = "abort"`), and a
//! cargo configuration that builds for a named target (`build.target`: musl has no shared
//! Rust libraries) or with `crt-static` or `prefer-dynamic`.

use anyhow::Result;
use turbolift_shared::protocol;

use super::{Binaries, Plan};
use crate::cli::BuildArgs;
use crate::project::Project;
use crate::shell::Shell;

/// Whether this build links the runtime as a shared library; a verbose line says why not,
/// when it could have. A `TURBOLIFT_DYNAMIC_LINKING` of another value than on or off is
/// an error.
pub fn shared_runtime(
    shell: &Shell,
    args: &BuildArgs,
    project: &Project,
    plan: &Plan,
) -> Result<bool> {
    let name = protocol::env::DYNAMIC_LINKING;
    let value = std::env::var_os(name);
    let on = protocol::env::switch(name, value.as_deref().and_then(|v| v.to_str()), true)
        .map_err(anyhow::Error::msg)?;
    let for_this_machine =
        plan.services == Binaries::ThisMachine && plan.program == Binaries::ThisMachine;
    let dev = !args.release && args.profile.as_deref().is_none_or(|p| p == "dev");
    if !on || !cfg!(target_os = "linux") || !for_this_machine || !dev {
        return Ok(false);
    }
    if let Some(why) = unsupported_profile(project) {
        shell.verbose_status(
            "Linking",
            format!("turbolift's runtime into every executable: {why}"),
        );
        return Ok(false);
    }
    Ok(true)
}

/// What in the user's `dev` profile, cargo's configuration (a `build.target`, static
/// rustflags) or the variables that stand for it a shared Rust library cannot be built
/// with, if anything.
fn unsupported_profile(project: &Project) -> Option<String> {
    // A manifest that cannot be read is reported where the generated workspace copies it.
    let table = project.root_manifest().ok()?;
    let dev = table
        .get("profile")
        .and_then(|p| p.get("dev"))
        .and_then(toml::Value::as_table);
    if let Some(setting) = dev.and_then(unsupported_setting) {
        return Some(format!(
            "the `dev` profile of {} sets {setting}",
            project.workspace_root().join("Cargo.toml").display()
        ));
    }
    // Variables that are not UTF-8 are none of those read.
    let vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    super::cargo_config::static_reason(
        project.package_root(),
        crate::project::cargo_home().as_deref(),
        &vars,
    )
}

/// The setting of a `[profile]` table that a shared Rust library cannot be built with.
fn unsupported_setting(profile: &toml::Table) -> Option<String> {
    let lto_on = match profile.get("lto") {
        None => false,
        Some(toml::Value::Boolean(on)) => *on,
        Some(toml::Value::String(s)) => s != "off",
        Some(_) => true,
    };
    if lto_on {
        return Some(format!("`lto = {}`", profile["lto"]));
    }
    if profile.get("panic").and_then(toml::Value::as_str) == Some("abort") {
        return Some("`panic = \"abort\"`".to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lto_and_panic_abort_keep_the_runtime_static() {
        let table = |text: &str| -> toml::Table { toml::from_str(text).unwrap() };
        assert_eq!(unsupported_setting(&table("")), None);
        assert_eq!(
            unsupported_setting(&table("lto = false\nopt-level = 1")),
            None
        );
        assert_eq!(unsupported_setting(&table("lto = \"off\"")), None);
        assert_eq!(
            unsupported_setting(&table("lto = \"thin\"")).as_deref(),
            Some("`lto = \"thin\"`")
        );
        assert_eq!(
            unsupported_setting(&table("lto = true")).as_deref(),
            Some("`lto = true`")
        );
        assert_eq!(
            unsupported_setting(&table("panic = \"abort\"")).as_deref(),
            Some("`panic = \"abort\"`")
        );
        assert_eq!(unsupported_setting(&table("panic = \"unwind\"")), None);
    }
}
