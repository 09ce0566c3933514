//! What cargo's own configuration says about a build for this machine, as far as the
//! runtime's linking needs it: a `build.target`, or `crt-static` or `prefer-dynamic` among
//! the rustflags, in the configuration files cargo reads from the directory it runs in
//! (`.cargo/config.toml` there and in every folder above, then `$CARGO_HOME`'s) or in the
//! variables that stand for them.

use std::path::{Path, PathBuf};

/// The rustflags that a shared Rust library cannot be built or linked with.
const STATIC_FLAGS: [&str; 2] = ["crt-static", "prefer-dynamic"];

/// Why cargo, run in `dir`, would build for another target than this machine's default or
/// with a flag a shared Rust library cannot take, if it would: the file or variable and
/// its setting. `vars` is the environment; `cargo_home` is `$CARGO_HOME`.
pub fn static_reason(
    dir: &Path,
    cargo_home: Option<&Path>,
    vars: &[(String, String)],
) -> Option<String> {
    let var = |name: &str| {
        vars.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if let Some(target) = var("CARGO_BUILD_TARGET").filter(|t| !t.is_empty()) {
        return Some(format!("CARGO_BUILD_TARGET is `{target}`"));
    }
    // `CARGO_TARGET_<TRIPLE>_RUSTFLAGS` for any triple, conservatively.
    let rustflags = |k: &str| {
        [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
        ]
        .contains(&k)
            || (k.starts_with("CARGO_TARGET_") && k.ends_with("_RUSTFLAGS"))
    };
    if let Some((variable, flag)) = vars
        .iter()
        .filter(|(k, _)| rustflags(k))
        .find_map(|(k, v)| static_flag(v).map(|flag| (k, flag)))
    {
        return Some(format!("{variable} has `{flag}`"));
    }
    config_files(dir, cargo_home)
        .into_iter()
        .find_map(|path| file_reason(&path))
}

/// Cargo's configuration files for a run in `dir`, nearest first.
fn config_files(dir: &Path, cargo_home: Option<&Path>) -> Vec<PathBuf> {
    let in_dir = |d: &Path| {
        ["config.toml", "config"]
            .into_iter()
            .map(|name| d.join(name))
            .filter(|p| p.is_file())
            .collect::<Vec<_>>()
    };
    let mut files: Vec<PathBuf> = dir
        .ancestors()
        .flat_map(|d| in_dir(&d.join(".cargo")))
        .collect();
    if let Some(home) = cargo_home {
        for file in in_dir(home) {
            if !files.contains(&file) {
                files.push(file);
            }
        }
    }
    files
}

/// What in the configuration file `path` keeps the runtime static, if anything. A file that
/// cannot be read or parsed says nothing here: cargo reports it when it builds.
fn file_reason(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let config: toml::Table = toml::from_str(&text).ok()?;
    let build = config.get("build").and_then(toml::Value::as_table);
    if let Some(target) = build.and_then(|b| b.get("target")) {
        return Some(format!("{} sets `build.target = {target}`", path.display()));
    }
    if let Some(flag) = build.and_then(|b| b.get("rustflags")).and_then(flags_flag) {
        return Some(format!(
            "{} has `{flag}` in `build.rustflags`",
            path.display()
        ));
    }
    // `[target.<triple>]` and `[target.'cfg(..)']`: any of them, conservatively.
    let targets = config.get("target").and_then(toml::Value::as_table)?;
    targets.iter().find_map(|(key, table)| {
        let flag = table.get("rustflags").and_then(flags_flag)?;
        Some(format!(
            "{} has `{flag}` in `target.{key}.rustflags`",
            path.display()
        ))
    })
}

/// The static flag in a rustflags value: one string, or an array of them.
fn flags_flag(value: &toml::Value) -> Option<&'static str> {
    match value {
        toml::Value::String(s) => static_flag(s),
        toml::Value::Array(items) => items
            .iter()
            .filter_map(toml::Value::as_str)
            .find_map(static_flag),
        _ => None,
    }
}

fn static_flag(flags: &str) -> Option<&'static str> {
    STATIC_FLAGS.into_iter().find(|flag| flags.contains(flag))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    const NO_VARS: &[(String, String)] = &[];

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_target_or_a_static_flag_in_a_file_above_or_in_cargo_home_is_found() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("work/crate");
        let home = root.path().join("home");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        assert_eq!(static_reason(&dir, Some(&home), NO_VARS), None);

        // Settings that change nothing here.
        write(
            &root.path().join("work/.cargo/config.toml"),
            "[build]\njobs = 2\nrustflags = [\"-C\", \"target-cpu=native\"]\n\
             [target.x86_64-unknown-linux-gnu]\nlinker = \"cc\"\n",
        );
        write(&home.join("config.toml"), "[net]\nretry = 3\n");
        assert_eq!(static_reason(&dir, Some(&home), NO_VARS), None);

        // Cargo's home: a static flag for one target, in the legacy file name too.
        write(
            &home.join("config"),
            "[target.'cfg(target_os = \"linux\")']\nrustflags = \"-C target-feature=+crt-static\"\n",
        );
        let reason = static_reason(&dir, Some(&home), NO_VARS).unwrap();
        assert!(
            reason.contains("`crt-static` in `target.cfg(target_os = \"linux\").rustflags`"),
            "{reason}"
        );

        // The nearest file is named first: the crate's own `build.target`.
        write(
            &dir.join(".cargo/config.toml"),
            "[build]\ntarget = \"x86_64-unknown-linux-musl\"\n",
        );
        let reason = static_reason(&dir, Some(&home), NO_VARS).unwrap();
        assert!(
            reason.ends_with(
                "crate/.cargo/config.toml sets `build.target = \"x86_64-unknown-linux-musl\"`"
            ),
            "{reason}"
        );
    }

    #[test]
    fn the_variables_win_and_a_broken_file_says_nothing() {
        let root = tempfile::tempdir().unwrap();
        write(&root.path().join(".cargo/config.toml"), "[build\ntarget = ");
        assert_eq!(static_reason(root.path(), None, NO_VARS), None);
        assert_eq!(
            static_reason(
                root.path(),
                None,
                &vars(&[("CARGO_BUILD_TARGET", "aarch64-unknown-linux-gnu")])
            )
            .as_deref(),
            Some("CARGO_BUILD_TARGET is `aarch64-unknown-linux-gnu`")
        );
        assert_eq!(
            static_reason(
                root.path(),
                None,
                &vars(&[
                    ("PATH", "/bin"),
                    (
                        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
                        "-C prefer-dynamic"
                    )
                ])
            )
            .as_deref(),
            Some("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS has `prefer-dynamic`")
        );
        assert_eq!(
            static_reason(
                root.path(),
                None,
                &vars(&[("RUSTFLAGS", "-C debuginfo=0"), ("CARGO_BUILD_JOBS", "2")])
            ),
            None
        );
    }
}
