//! How the generated workspace compiles turbolift's runtime in the `dev` profile (and the
//! profiles that inherit it): settings for turbolift's own packages, added to the user's
//! `[profile]` tables, which otherwise stay as they are.
//!
//! The runtime compiles once, on the build's longest chain: `turbolift` with its service
//! side waits for axum and is waited for by every generated package, with one core of two
//! idle meanwhile. An edit of the user's code never compiles it again. So its packages
//! built from a path (a clone of turbolift, a `[patch]`), and the runtime package, compile
//! without incremental compilation, as cargo compiles any registry crate (a path
//! dependency it compiles incrementally, as the user's own code). The bookkeeping made
//! `turbolift` with its service side take 4.1 s instead of 2.8 s. A user's own
//! `incremental` for one of these packages stays.

use std::collections::BTreeSet;

use toml::{Table, Value};

/// Adds the runtime's settings to the user's `profile` table (`[profile]`); `from_path`
/// names turbolift's packages built from a path and the runtime package.
pub fn compile_runtime(profile: &mut Table, from_path: &BTreeSet<String>) {
    for name in from_path {
        let settings = table_in(profile, "dev")
            .and_then(|dev| table_in(dev, "package"))
            .and_then(|packages| table_in(packages, name));
        if let Some(settings) = settings {
            settings
                .entry("incremental")
                .or_insert(Value::Boolean(false));
        }
    }
}

/// The table under `key` in `parent`, made if absent; none if `key` holds something else.
fn table_in<'t>(parent: &'t mut Table, key: &str) -> Option<&'t mut Table> {
    parent
        .entry(key)
        .or_insert_with(|| Value::Table(Table::new()))
        .as_table_mut()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(user: &str, from_path: &[&str]) -> Table {
        let mut profile: Table = toml::from_str(user).unwrap();
        let from_path = from_path.iter().map(|s| s.to_string()).collect();
        compile_runtime(&mut profile, &from_path);
        profile
    }

    fn incremental(profile: &Table, package: &str) -> Option<bool> {
        profile
            .get("dev")?
            .get("package")?
            .get(package)?
            .get("incremental")?
            .as_bool()
    }

    #[test]
    fn the_runtime_built_from_a_path_compiles_without_incremental_compilation() {
        let profile = compiled(
            "",
            &["turbolift", "turbolift-shared", "app-turbolift-runtime"],
        );
        for name in ["turbolift", "turbolift-shared", "app-turbolift-runtime"] {
            assert_eq!(
                incremental(&profile, name),
                Some(false),
                "{name}: {profile}"
            );
        }
    }

    #[test]
    fn from_a_registry_nothing_is_added() {
        assert!(compiled("", &[]).is_empty());
        let user = "[release]\nlto = true\n";
        assert_eq!(compiled(user, &[]), toml::from_str::<Table>(user).unwrap());
    }

    #[test]
    fn the_users_settings_stay() {
        let user = r#"
            [dev]
            opt-level = 1
            [dev.package.turbolift-shared]
            incremental = true
            [dev.package.turbolift]
            codegen-units = 4
            [release]
            lto = true
        "#;
        let profile = compiled(user, &["turbolift", "turbolift-shared"]);
        assert_eq!(incremental(&profile, "turbolift-shared"), Some(true));
        assert_eq!(incremental(&profile, "turbolift"), Some(false));
        assert_eq!(
            profile["dev"]["package"]["turbolift"]["codegen-units"].as_integer(),
            Some(4)
        );
        assert_eq!(profile["dev"]["opt-level"].as_integer(), Some(1));
        assert_eq!(profile["release"]["lto"].as_bool(), Some(true));
    }
}
