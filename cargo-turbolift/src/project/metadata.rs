//! `cargo metadata`, kept between runs while everything it reads is unchanged.
//!
//! Resolving the dependency graph (`cargo metadata` without `--no-deps`) reads the manifest
//! of every package in it: about 100 ms on the benchmark's fixture, more on a large
//! workspace, on every `cargo turbolift run`. The answer is a function of what cargo reads,
//! so it is kept in the target directory with those inputs, and used again only when every
//! one of them is the same, compared as text (no hash that could collide):
//!
//! - the command line and the working directory, and the environment variables cargo and
//!   rustup read (`CARGO*`, `RUSTUP*`, `RUSTC*`);
//! - `cargo metadata --no-deps` of the same workspace (about 20 ms): every member's
//!   manifest as cargo reads it, with the targets it discovers from the files, and the
//!   workspace's root and target directory;
//! - `Cargo.lock`, every `.cargo/config.toml` (or `config`) cargo would read, and the
//!   toolchain files that pick the cargo that runs;
//! - for each path dependency outside the workspace (which `--no-deps` does not describe):
//!   its manifest, the manifests above it (a workspace it inherits from), and the names
//!   in the folders cargo discovers its targets in.
//!
//! Anything else cargo could read (registry and git sources) is fixed by `Cargo.lock`.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use cargo_metadata::{Metadata, MetadataCommand, PackageId};
use serde::{Deserialize, Serialize};

/// The file, in `<target directory>/turbolift/`, that keeps the last answer.
const CACHE_FILE: &str = "cargo-metadata.json";

/// What one answer was computed from, and the answer.
#[derive(Serialize, Deserialize)]
struct Kept {
    /// What every run can read before asking cargo to resolve anything.
    inputs: Vec<(String, String)>,
    /// What only the answer says where to find: the path dependencies outside the
    /// workspace, read again to compare.
    outside: Vec<(String, String)>,
    /// `cargo metadata`'s answer (kept as JSON of its own, not as a string of JSON: one
    /// parse when read, no escapes).
    metadata: Metadata,
}

/// `command`'s answer, from the copy kept in the target directory (`target_dir`, else the
/// workspace's) when nothing it was computed from has changed, else from cargo (and then
/// kept).
pub fn cached(command: &MetadataCommand, target_dir: Option<&Path>) -> Result<Metadata> {
    let mut light = command.clone();
    light.no_deps();
    let light_text = run(&light)?;
    let light_metadata = MetadataCommand::parse(&light_text)
        .context("could not read the output of `cargo metadata --no-deps`")?;
    let target_dir = match target_dir {
        Some(dir) => std::path::absolute(dir).context("the --target-dir path")?,
        None => light_metadata.target_directory.clone().into_std_path_buf(),
    };
    let file = target_dir.join("turbolift").join(CACHE_FILE);
    let inputs = inputs(command, &light_metadata, light_text)?;
    if let Some(metadata) = kept(&file, &inputs) {
        return Ok(metadata);
    }
    let text = run(command)?;
    let metadata =
        MetadataCommand::parse(&text).context("could not read the output of `cargo metadata`")?;
    let kept = Kept {
        inputs,
        outside: outside(&metadata),
        metadata,
    };
    // A run that cannot keep it (a read-only target directory) only loses the shortcut.
    let _ = keep(&file, &kept);
    Ok(kept.metadata)
}

/// Runs `command` and returns what it printed; its error output in the error.
fn run(command: &MetadataCommand) -> Result<String> {
    let mut cargo: Command = command.cargo_command();
    let output = cargo
        .stdin(Stdio::null())
        .output()
        .context("could not run `cargo metadata`")?;
    if !output.status.success() {
        bail!(
            "`cargo metadata` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    let stdout = String::from_utf8(output.stdout)
        .context("`cargo metadata` printed something that is not UTF-8")?;
    // The JSON is one line; anything else before it is not part of the answer.
    Ok(stdout
        .lines()
        .find(|line| line.starts_with('{'))
        .unwrap_or_default()
        .to_owned())
}

/// The kept answer in `file`, if it was computed from exactly `inputs` and its path
/// dependencies outside the workspace read the same now.
fn kept(file: &Path, inputs: &[(String, String)]) -> Option<Metadata> {
    let text = std::fs::read_to_string(file).ok()?;
    let kept: Kept = serde_json::from_str(&text).ok()?;
    if kept.inputs != inputs || outside(&kept.metadata) != kept.outside {
        return None;
    }
    Some(kept.metadata)
}

/// Writes `kept` to `file` through a temporary file, so that a run reading it at the same
/// time sees the old answer or the new one.
fn keep(file: &Path, kept: &Kept) -> Result<()> {
    let dir = file.parent().context("the cache file has a folder")?;
    std::fs::create_dir_all(dir)?;
    let temporary = dir.join(format!("{CACHE_FILE}.{}", std::process::id()));
    std::fs::write(&temporary, serde_json::to_vec(kept)?)?;
    std::fs::rename(&temporary, file)?;
    Ok(())
}

/// Everything `command`'s answer depends on that is known before it: named pairs.
fn inputs(
    command: &MetadataCommand,
    light: &Metadata,
    light_text: String,
) -> Result<Vec<(String, String)>> {
    let cargo = command.cargo_command();
    let mut inputs = vec![
        ("format".to_owned(), "1".to_owned()),
        ("program".to_owned(), lossy(cargo.get_program())),
        (
            "args".to_owned(),
            cargo
                .get_args()
                .map(lossy)
                .collect::<Vec<_>>()
                .join("\u{0}"),
        ),
    ];
    let cwd = std::env::current_dir().context("the current directory")?;
    inputs.push(("cwd".to_owned(), cwd.display().to_string()));
    let mut env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, lossy(&v))))
        .filter(|(k, _)| {
            ["CARGO", "RUSTUP", "RUSTC"]
                .iter()
                .any(|p| k.starts_with(p))
        })
        .map(|(k, v)| (format!("env {k}"), v))
        .collect();
    env.sort();
    inputs.extend(env);
    inputs.push(("no-deps".to_owned(), light_text));
    let root = light.workspace_root.as_std_path();
    inputs.push(file_input(&root.join("Cargo.lock")));
    // Cargo's configuration files and rustup's toolchain files, from the working
    // directory and the workspace up, and cargo's home.
    let mut dirs: Vec<&Path> = cwd.ancestors().chain(root.ancestors()).collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        for name in [".cargo/config.toml", ".cargo/config"] {
            inputs.push(file_input(&dir.join(name)));
        }
        for name in ["rust-toolchain.toml", "rust-toolchain"] {
            inputs.push(file_input(&dir.join(name)));
        }
    }
    if let Some(home) = cargo_home() {
        for name in ["config.toml", "config"] {
            inputs.push(file_input(&home.join(name)));
        }
    }
    Ok(inputs)
}

/// The path dependencies outside the workspace, as their files read now: each one's
/// manifest and those above it, and its target folders' entries.
fn outside(metadata: &Metadata) -> Vec<(String, String)> {
    let members: BTreeSet<&PackageId> = metadata.workspace_members.iter().collect();
    let mut read = Vec::new();
    // The manifests above them, each read once however many packages share it.
    let mut above: BTreeSet<PathBuf> = BTreeSet::new();
    for package in &metadata.packages {
        if package.source.is_some() || members.contains(&package.id) {
            continue;
        }
        let manifest = package.manifest_path.as_std_path();
        let Some(root) = manifest.parent() else {
            continue;
        };
        read.push(file_input(manifest));
        above.extend(root.ancestors().skip(1).map(|dir| dir.join("Cargo.toml")));
        // Where cargo discovers targets: `build.rs`, `src/lib.rs`, `src/main.rs`, and
        // files or folders with a `main.rs` in the others.
        for (folder, depth) in [
            ("", 1),
            ("src", 1),
            ("src/bin", 2),
            ("examples", 2),
            ("tests", 2),
            ("benches", 2),
        ] {
            read.push(listing(&root.join(folder), depth));
        }
    }
    read.extend(above.iter().map(|manifest| file_input(manifest)));
    read
}

/// `path` and its contents (or that it cannot be read).
fn file_input(path: &Path) -> (String, String) {
    let contents = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("<{:?}>", e.kind()),
    };
    (path.display().to_string(), contents)
}

/// The entries of the folder `path` by name, and with `depth` 2 those of each folder in it.
fn listing(path: &Path, depth: usize) -> (String, String) {
    let names = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
            .collect();
        names.sort();
        names
    };
    let mut entries = Vec::new();
    for name in names(path) {
        let inner = path.join(&name);
        if depth > 1 && inner.is_dir() {
            entries.extend(names(&inner).into_iter().map(|n| format!("{name}/{n}")));
        }
        entries.push(name);
    }
    (format!("{} (folder)", path.display()), entries.join("\n"))
}

/// Cargo's home: `CARGO_HOME`, else `~/.cargo`.
pub fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
}

fn lossy(s: impl AsRef<OsStr>) -> String {
    s.as_ref().to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A package of its own workspace with a path dependency outside it, in `dir`.
    fn workspace(dir: &Path) -> PathBuf {
        let app = dir.join("app");
        let dep = dir.join("dep");
        std::fs::create_dir_all(app.join("src")).unwrap();
        std::fs::create_dir_all(dep.join("src")).unwrap();
        std::fs::write(
            app.join("Cargo.toml"),
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2024\"\n[workspace]\n[dependencies]\ndep = { path = \"../dep\" }\n",
        )
        .unwrap();
        std::fs::write(app.join("src/main.rs"), "fn main() {}\n").unwrap();
        std::fs::write(
            dep.join("Cargo.toml"),
            "[package]\nname = \"dep\"\nversion = \"0.1.0\"\nedition = \"2024\"\n",
        )
        .unwrap();
        std::fs::write(dep.join("src/lib.rs"), "").unwrap();
        app.join("Cargo.toml")
    }

    fn bins(metadata: &Metadata, package: &str) -> Vec<String> {
        let package = metadata
            .packages
            .iter()
            .find(|p| p.name.as_str() == package)
            .unwrap();
        let mut bins: Vec<String> = package
            .targets
            .iter()
            .filter(|t| t.is_bin())
            .map(|t| t.name.clone())
            .collect();
        bins.sort();
        bins
    }

    #[test]
    fn kept_answers_are_used_only_while_what_cargo_reads_is_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = workspace(dir.path());
        let target = dir.path().join("target");
        let mut command = MetadataCommand::new();
        command.manifest_path(&manifest);
        let file = target.join("turbolift").join(CACHE_FILE);

        let first = cached(&command, Some(&target)).unwrap();
        assert!(file.exists(), "the answer is kept");
        // The first run wrote Cargo.lock, which the second reads: a new answer.
        assert!(manifest.with_file_name("Cargo.lock").exists());
        cached(&command, Some(&target)).unwrap();
        // Same inputs: the kept answer, even when it differs from what cargo would say
        // now (marked here so that it shows where it came from).
        let mut marked: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        marked["metadata"]["target_directory"] = "/kept".into();
        std::fs::write(&file, serde_json::to_vec(&marked).unwrap()).unwrap();
        let again = cached(&command, Some(&target)).unwrap();
        assert_eq!(
            again.target_directory.as_str(),
            "/kept",
            "unchanged inputs: the kept answer"
        );
        assert_eq!(bins(&first, "app"), ["app"]);

        // A new binary in the workspace's package: --no-deps differs.
        let app = manifest.parent().unwrap();
        std::fs::create_dir_all(app.join("src/bin")).unwrap();
        std::fs::write(app.join("src/bin/tool.rs"), "fn main() {}\n").unwrap();
        let fresh = cached(&command, Some(&target)).unwrap();
        assert_eq!(bins(&fresh, "app"), ["app", "tool"]);
        assert!(fresh.packages.iter().any(|p| p.name.as_str() == "dep"));

        // A new binary in the path dependency outside the workspace, and then a change
        // to its manifest: both read again.
        let dep = dir.path().join("dep");
        std::fs::create_dir_all(dep.join("src/bin")).unwrap();
        std::fs::write(dep.join("src/bin/helper.rs"), "fn main() {}\n").unwrap();
        assert_eq!(
            bins(&cached(&command, Some(&target)).unwrap(), "dep"),
            ["helper"]
        );
        let text = std::fs::read_to_string(dep.join("Cargo.toml")).unwrap();
        std::fs::write(
            dep.join("Cargo.toml"),
            text.replace("version = \"0.1.0\"", "version = \"0.2.0\""),
        )
        .unwrap();
        let bumped = cached(&command, Some(&target)).unwrap();
        let dep_package = bumped
            .packages
            .iter()
            .find(|p| p.name.as_str() == "dep")
            .unwrap();
        assert_eq!(dep_package.version.to_string(), "0.2.0");

        // Other features: another command line.
        let mut all = command.clone();
        all.features(cargo_metadata::CargoOpt::AllFeatures);
        let inputs_of = |c: &MetadataCommand| {
            let mut light = c.clone();
            light.no_deps();
            let text = run(&light).unwrap();
            inputs(c, &MetadataCommand::parse(&text).unwrap(), text).unwrap()
        };
        assert_ne!(inputs_of(&command), inputs_of(&all));
    }

    #[test]
    fn a_kept_answer_that_cannot_be_read_is_asked_again() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = workspace(dir.path());
        let target = dir.path().join("target");
        let file = target.join("turbolift").join(CACHE_FILE);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "not json").unwrap();
        let mut command = MetadataCommand::new();
        command.manifest_path(&manifest);
        let metadata = cached(&command, Some(&target)).unwrap();
        assert_eq!(bins(&metadata, "app"), ["app"]);
        let kept: Kept = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(
            bins(&kept.metadata, "app"),
            ["app"],
            "the broken copy is replaced"
        );
    }

    #[test]
    fn a_broken_manifest_is_cargo_s_error() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = workspace(dir.path());
        std::fs::write(&manifest, "[package\n").unwrap();
        let mut command = MetadataCommand::new();
        command.manifest_path(&manifest);
        let error = format!("{:#}", cached(&command, None).unwrap_err());
        assert!(error.contains("`cargo metadata` failed"), "{error}");
        assert!(error.contains("Cargo.toml"), "{error}");
    }
}
