//! The manifests of the generated workspace and of each service package.

use std::path::Path;

use anyhow::{Context, Result};
use cargo_metadata::{Dependency, DependencyKind, Package};
use toml::{Table, Value};

const WORKSPACE_TEMPLATE: &str = include_str!("../../../templates/workspace/Cargo.toml");
const SERVICE_TEMPLATE: &str = include_str!("../../../templates/service/Cargo.toml");
const PROGRAM_TEMPLATE: &str = include_str!("../../../templates/program/Cargo.toml");

/// The generated workspace's manifest: its members, and the `[profile]` and `[patch]`
/// tables of the user's workspace root, so that dependencies build exactly as there.
pub fn workspace(members: &[String], user_root_manifest: &Path) -> Result<String> {
    let mut table: Table =
        toml::from_str(WORKSPACE_TEMPLATE).context("templates/workspace/Cargo.toml")?;
    let workspace = table
        .get_mut("workspace")
        .and_then(Value::as_table_mut)
        .context("templates/workspace/Cargo.toml has a [workspace] table")?;
    workspace.insert(
        "members".into(),
        Value::Array(members.iter().map(|m| Value::String(m.clone())).collect()),
    );
    let user_text = std::fs::read_to_string(user_root_manifest)
        .with_context(|| format!("cannot read {}", user_root_manifest.display()))?;
    let user: Table = toml::from_str(&user_text)
        .with_context(|| format!("cannot parse {}", user_root_manifest.display()))?;
    let base = user_root_manifest.parent().unwrap_or(Path::new("."));
    // The same feature resolver, so that features unify as in the user's own build.
    if let Some(resolver) = user
        .get("workspace")
        .and_then(|w| w.get("resolver"))
        .or_else(|| user.get("package").and_then(|p| p.get("resolver")))
    {
        workspace.insert("resolver".into(), resolver.clone());
    } else if let Some(edition) = user
        .get("package")
        .and_then(|p| p.get("edition"))
        .and_then(Value::as_str)
    {
        let resolver = match edition {
            "2015" | "2018" => "1",
            "2021" => "2",
            _ => "3",
        };
        workspace.insert("resolver".into(), resolver.into());
    }
    if let Some(profile) = user.get("profile") {
        table.insert("profile".into(), profile.clone());
    }
    for key in ["patch", "replace"] {
        if let Some(mut value) = user.get(key).cloned() {
            absolutize_paths(&mut value, base);
            table.insert(key.into(), value);
        }
    }
    Ok(with_header(WORKSPACE_TEMPLATE, &table))
}

/// What the manifest of a generated package needs to know: a service package (a library,
/// the original crate root, and the package's one executable) or the program package (the
/// original binaries).
pub struct PackageManifest<'a> {
    pub name: &'a str,
    /// The package's library: the original target's crate name and its crate root,
    /// relative to the package (and so to the generated package). The program package
    /// has none.
    pub lib: Option<(&'a str, &'a Path)>,
    /// The binaries: the services' executable, or the original binaries.
    pub bins: &'a [Bin],
    pub package: &'a Package,
    /// The key of the `turbolift` dependency.
    pub turbolift_key: &'a str,
    /// The library of the original package, which binaries' code uses, as a dependency
    /// (for a function in a binary target, and for the program, of a package that also
    /// has a library).
    pub lib_dep: Option<LibDep>,
}

/// A binary target of a generated package.
pub struct Bin {
    pub name: String,
    /// Relative to the generated package.
    pub path: String,
    pub required_features: Vec<String>,
}

/// The original library as a dependency: the original package itself, or the generated
/// package that already compiles it for the library's services.
pub struct LibDep {
    pub crate_name: String,
    pub package: String,
    pub path: String,
}

/// The manifest of a service package, or of the program package when `m.lib` is `None`.
pub fn package(m: &PackageManifest<'_>) -> Result<String> {
    let (template, template_name) = match m.lib {
        Some(_) => (SERVICE_TEMPLATE, "templates/service/Cargo.toml"),
        None => (PROGRAM_TEMPLATE, "templates/program/Cargo.toml"),
    };
    let mut table: Table = toml::from_str(template).context(template_name)?;
    let package = m.package;
    let p = table
        .get_mut("package")
        .and_then(Value::as_table_mut)
        .context("[package]")?;
    p.insert("name".into(), m.name.into());
    p.insert("version".into(), package.version.to_string().into());
    p.insert("edition".into(), package.edition.as_str().into());
    if let Some(rust_version) = &package.rust_version {
        p.insert("rust-version".into(), rust_version.to_string().into());
    }
    if let Some((crate_name, root)) = m.lib {
        let lib = table
            .get_mut("lib")
            .and_then(Value::as_table_mut)
            .context("[lib]")?;
        lib.insert("name".into(), crate_name.into());
        lib.insert("path".into(), root.display().to_string().into());
    }
    let bins = table
        .get_mut("bin")
        .and_then(Value::as_array_mut)
        .context("[[bin]]")?;
    let bin_template = bins
        .first()
        .and_then(Value::as_table)
        .cloned()
        .context("[[bin]]")?;
    *bins = m
        .bins
        .iter()
        .map(|b| {
            let mut bin = bin_template.clone();
            bin.insert("name".into(), b.name.as_str().into());
            bin.insert("path".into(), b.path.as_str().into());
            if !b.required_features.is_empty() {
                let list = b.required_features.iter().map(|f| Value::String(f.clone()));
                bin.insert("required-features".into(), Value::Array(list.collect()));
            }
            Value::Table(bin)
        })
        .collect();

    let mut targets = Table::new();
    for dep in &package.dependencies {
        let section = match dep.kind {
            DependencyKind::Normal => "dependencies",
            DependencyKind::Build => "build-dependencies",
            _ => continue,
        };
        let key = dep.rename.clone().unwrap_or_else(|| dep.name.clone());
        let mut value = dependency(dep);
        if key == m.turbolift_key && dep.kind == DependencyKind::Normal {
            add_feature(&mut value, "service");
        }
        let tables = match &dep.target {
            None => &mut table,
            Some(platform) => targets
                .entry(platform.to_string())
                .or_insert_with(|| Value::Table(Table::new()))
                .as_table_mut()
                .expect("target entries are tables"),
        };
        tables
            .entry(section)
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .expect("dependency sections are tables")
            .insert(key, Value::Table(value));
    }

    let mut features = Table::new();
    for (name, enables) in &package.features {
        let mut list: Vec<Value> = enables.iter().map(|f| Value::String(f.clone())).collect();
        if let Some(lib) = &m.lib_dep {
            list.push(Value::String(format!("{}/{name}", lib.crate_name)));
        }
        features.insert(name.clone(), Value::Array(list));
    }
    if let Some(lib) = &m.lib_dep {
        let mut dep = Table::new();
        dep.insert("package".into(), lib.package.as_str().into());
        dep.insert("path".into(), lib.path.as_str().into());
        let has_default = package.features.contains_key("default");
        dep.insert("default-features".into(), (!has_default).into());
        table
            .get_mut("dependencies")
            .and_then(Value::as_table_mut)
            .context("[dependencies]")?
            .insert(lib.crate_name.clone(), Value::Table(dep));
    }
    table.insert("features".into(), Value::Table(features));
    if !targets.is_empty() {
        table.insert("target".into(), Value::Table(targets));
    }
    Ok(with_header(template, &table))
}

/// A dependency as the user declared it, resolved: workspace inheritance is already
/// applied by cargo, paths are absolute.
fn dependency(dep: &Dependency) -> Table {
    let mut t = Table::new();
    if dep.rename.is_some() {
        t.insert("package".into(), dep.name.clone().into());
    }
    let req = dep.req.to_string();
    if let Some(path) = &dep.path {
        t.insert("path".into(), path.to_string().into());
        if req != "*" {
            t.insert("version".into(), req.into());
        }
    } else if let Some(source) = dep.source.as_ref().map(|s| s.repr.as_str())
        && let Some(git) = source.strip_prefix("git+")
    {
        let (url, rev) = git.split_once('#').unwrap_or((git, ""));
        let url = url.split('?').next().unwrap_or(url);
        t.insert("git".into(), url.into());
        if !rev.is_empty() {
            t.insert("rev".into(), rev.into());
        }
    } else {
        t.insert("version".into(), req.into());
    }
    if let Some(registry) = &dep.registry {
        t.insert("registry-index".into(), registry.clone().into());
    }
    if dep.optional {
        t.insert("optional".into(), true.into());
    }
    if !dep.uses_default_features {
        t.insert("default-features".into(), false.into());
    }
    if !dep.features.is_empty() {
        t.insert(
            "features".into(),
            Value::Array(
                dep.features
                    .iter()
                    .map(|f| Value::String(f.clone()))
                    .collect(),
            ),
        );
    }
    t
}

fn add_feature(dep: &mut Table, feature: &str) {
    let features = dep
        .entry("features")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .expect("features is an array");
    if !features.iter().any(|f| f.as_str() == Some(feature)) {
        features.push(Value::String(feature.to_owned()));
    }
}

/// Makes every `path = ".."` inside `value` absolute against `base`.
fn absolutize_paths(value: &mut Value, base: &Path) {
    match value {
        Value::Table(t) => {
            for (key, v) in t.iter_mut() {
                if key == "path"
                    && let Value::String(s) = v
                {
                    *s = base.join(&*s).display().to_string();
                } else {
                    absolutize_paths(v, base);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|v| absolutize_paths(v, base)),
        _ => {}
    }
}

/// The template's leading comment, then the table.
fn with_header(template: &str, table: &Table) -> String {
    let header: String = template
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    format!(
        "{header}\n{}",
        toml::to_string(table).expect("a TOML table serializes")
    )
}
