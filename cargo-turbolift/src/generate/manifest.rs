//! The manifests of the generated workspace and of each generated package, from the
//! templates.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};
use cargo_metadata::{Dependency, DependencyKind, Package};
use toml::{Table, Value};

use super::{profile, runtime};
use crate::project::{Library, read_manifest};
use crate::templates::{self, Value as Filled};

/// The generated workspace's manifest: its members, and the `[profile]`, `[patch]` and
/// `[replace]` tables and the feature resolver of the user's workspace root, so that
/// dependencies build exactly as there, with the settings of [`profile::compile_runtime`]
/// for turbolift's runtime (`runtime_from_path`: its packages that are compiled from a
/// path, and the runtime package).
pub fn workspace(
    members: &[String],
    user_root_manifest: &Path,
    runtime_from_path: &BTreeSet<String>,
) -> Result<String> {
    let user = read_manifest(user_root_manifest)?;
    let base = user_root_manifest.parent().unwrap_or(Path::new("."));
    // The same feature resolver, so that features unify as in the user's own build.
    let resolver = match user
        .get("workspace")
        .and_then(|w| w.get("resolver"))
        .or_else(|| user.get("package").and_then(|p| p.get("resolver")))
    {
        Some(resolver) => resolver.clone(),
        None => match user
            .get("package")
            .and_then(|p| p.get("edition"))
            .and_then(Value::as_str)
        {
            Some("2015" | "2018") => "1".into(),
            Some("2021") => "2".into(),
            _ => "3".into(),
        },
    };
    let copied = |key: &str| match user.get(key).cloned() {
        Some(mut value) => {
            absolutize_paths(&mut value, base);
            Filled::Toml(value)
        }
        None => Filled::Absent,
    };
    let mut profile = match copied("profile") {
        Filled::Toml(Value::Table(profile)) => profile,
        _ => Table::new(),
    };
    profile::compile_runtime(&mut profile, runtime_from_path);
    let profile = if profile.is_empty() {
        Filled::Absent
    } else {
        Filled::Toml(Value::Table(profile))
    };
    templates::WORKSPACE_MANIFEST.render(&[
        ("profile", profile),
        ("patch", copied("patch")),
        ("replace", copied("replace")),
        ("members", Filled::toml(members.to_vec())),
        ("resolver", Filled::Toml(resolver)),
    ])
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
    /// The program package's examples (`--example`).
    pub examples: &'a [Bin],
    /// Whether the package's dev-dependencies are dependencies here too (for an example).
    pub dev_dependencies: bool,
    pub package: &'a Package,
    /// The key of the `turbolift` dependency.
    pub turbolift_key: &'a str,
    /// The features it gets beside the user's: `service`, and `tls` for runs over TLS.
    pub turbolift_features: &'a [&'a str],
    /// The `[lints]` table: the package's own (or its workspace's), or warnings allowed.
    pub lints: Option<Value>,
    /// The crates of the package compiled by other packages, as dependencies: the
    /// original library, which binaries' code uses (for a function in a binary target, and
    /// for the program, of a package that also has a library), and for the program the
    /// service packages whose libraries are its binaries' code.
    pub crate_deps: Vec<LibDep>,
    /// The runtime package, which its executables link as a shared library, if any.
    pub runtime: Option<&'a str>,
}

/// A binary target of a generated package.
pub struct Bin {
    pub name: String,
    /// Relative to the generated package.
    pub path: String,
    pub required_features: Vec<String>,
}

/// A crate of the package as a dependency: the original library (from the original
/// package itself, or from the generated package that already compiles it for the
/// library's services), or a binary's code compiled as its service package's library.
pub struct LibDep {
    /// The dependency's name in the manifest, which the code uses.
    pub crate_name: String,
    pub package: String,
    pub path: String,
}

/// The manifest of a service package, or of the program package when `m.lib` is `None`.
pub fn package(m: &PackageManifest<'_>) -> Result<String> {
    let package = m.package;
    let mut sections: [Table; 3] = Default::default();
    let [dependencies, build_dependencies, targets] = &mut sections;
    for dep in &package.dependencies {
        let section = match dep.kind {
            DependencyKind::Normal => "dependencies",
            DependencyKind::Build => "build-dependencies",
            DependencyKind::Development if m.dev_dependencies => "dependencies",
            _ => continue,
        };
        let key = dep.rename.clone().unwrap_or_else(|| dep.name.clone());
        let mut value = dependency(dep);
        if key == m.turbolift_key && dep.kind == DependencyKind::Normal {
            for feature in m.turbolift_features {
                add_feature(&mut value, feature);
            }
        }
        let table = match (&dep.target, section) {
            (None, "dependencies") => &mut *dependencies,
            (None, _) => &mut *build_dependencies,
            (Some(platform), _) => targets
                .entry(platform.to_string())
                .or_insert_with(|| Value::Table(Table::new()))
                .as_table_mut()
                .expect("target entries are tables")
                .entry(section)
                .or_insert_with(|| Value::Table(Table::new()))
                .as_table_mut()
                .expect("dependency sections are tables"),
        };
        // A dev-dependency that is also a normal one adds its features to it.
        match table.get_mut(&key).and_then(Value::as_table_mut) {
            Some(existing) => {
                if let Some(Value::Array(features)) = value.get("features") {
                    for feature in features.iter().filter_map(Value::as_str) {
                        add_feature(existing, feature);
                    }
                }
            }
            None => {
                table.insert(key, Value::Table(value));
            }
        }
    }
    let mut features = Table::new();
    for (name, enables) in &package.features {
        let mut list: Vec<Value> = enables.iter().map(|f| Value::String(f.clone())).collect();
        for lib in &m.crate_deps {
            list.push(Value::String(format!("{}/{name}", lib.crate_name)));
        }
        features.insert(name.clone(), Value::Array(list));
    }
    for lib in &m.crate_deps {
        let mut dep = Table::new();
        dep.insert("package".into(), lib.package.as_str().into());
        dep.insert("path".into(), lib.path.as_str().into());
        let has_default = package.features.contains_key("default");
        dep.insert("default-features".into(), (!has_default).into());
        dependencies.insert(lib.crate_name.clone(), Value::Table(dep));
    }
    if let Some(runtime) = m.runtime {
        dependencies.insert(runtime::DEPENDENCY.into(), runtime_dependency(runtime));
    }
    let [dependencies, build_dependencies, targets] = sections;
    let mut values = vec![
        ("name", Filled::toml(m.name)),
        ("version", Filled::toml(package.version.to_string())),
        ("edition", Filled::toml(package.edition.as_str())),
        ("rust_version", rust_version(package)),
        ("dependencies", Filled::toml(dependencies)),
        ("build_dependencies", Filled::toml(build_dependencies)),
        ("features", Filled::toml(features)),
        (
            "lints",
            m.lints.clone().map_or(Filled::Absent, Filled::Toml),
        ),
        (
            "target",
            if targets.is_empty() {
                Filled::Absent
            } else {
                Filled::toml(targets)
            },
        ),
    ];
    match m.lib {
        Some((crate_name, root)) => {
            let [bin] = m.bins else {
                anyhow::bail!("a service package has one executable");
            };
            values.extend([
                ("lib_name", Filled::toml(crate_name)),
                ("lib_path", Filled::toml(root.display().to_string())),
                ("bin_path", Filled::toml(bin.path.as_str())),
            ]);
            templates::SERVICE_MANIFEST.render(&values)
        }
        None => {
            let bins: Vec<Value> = m.bins.iter().map(program_bin).collect();
            values.push(("bins", Filled::toml(bins)));
            let examples: Vec<Value> = m.examples.iter().map(program_bin).collect();
            values.push((
                "examples",
                if examples.is_empty() {
                    Filled::Absent
                } else {
                    Filled::toml(examples)
                },
            ));
            templates::PROGRAM_MANIFEST.render(&values)
        }
    }
}

/// The manifest of the service package of one of the user's libraries: its executable,
/// `main.rs`, links the library as the program does (the original package, by path) and
/// `turbolift` with `turbolift_features` (its `service` feature, and `tls` for TLS), and
/// the runtime package, if any, with a build script that says where to find it.
pub fn library_package(
    name: &str,
    library: &Library,
    crate_name: &str,
    turbolift_features: &[&str],
    runtime: Option<&str>,
) -> Result<String> {
    let package = &library.package;
    let turbolift = package
        .dependencies
        .iter()
        .find(|d| d.name == "turbolift" && d.kind == DependencyKind::Normal)
        .with_context(|| format!("`{}` does not depend on `turbolift`", package.name))?;
    let mut turbolift = dependency(turbolift);
    for feature in turbolift_features {
        add_feature(&mut turbolift, feature);
    }
    let mut lib = Table::new();
    lib.insert("package".into(), package.name.as_str().into());
    lib.insert("path".into(), library.root().display().to_string().into());
    let mut dependencies = Table::new();
    dependencies.insert(crate_name.to_owned(), Value::Table(lib));
    dependencies.insert("turbolift".into(), Value::Table(turbolift));
    if let Some(runtime) = runtime {
        dependencies.insert(runtime::DEPENDENCY.into(), runtime_dependency(runtime));
    }
    templates::LIBRARY_MANIFEST.render(&[
        ("name", Filled::toml(name)),
        (
            "build",
            match runtime {
                Some(_) => Filled::toml("build.rs"),
                None => Filled::Absent,
            },
        ),
        ("version", Filled::toml(package.version.to_string())),
        ("edition", Filled::toml(package.edition.as_str())),
        ("rust_version", rust_version(package)),
        ("dependencies", Filled::toml(dependencies)),
    ])
}

/// The manifest of the runtime package `name`, whose library `lib_name` is `turbolift` as
/// `package` depends on it (under `turbolift_key`), with `turbolift_features`, built as
/// one shared library.
pub fn runtime_package(
    name: &str,
    lib_name: &str,
    package: &Package,
    turbolift_key: &str,
    turbolift_features: &[&str],
) -> Result<String> {
    let turbolift = package
        .dependencies
        .iter()
        .find(|d| {
            d.kind == DependencyKind::Normal
                && d.rename.as_deref().unwrap_or(&d.name) == turbolift_key
        })
        .with_context(|| format!("`{}` does not depend on `turbolift`", package.name))?;
    let mut turbolift = dependency(turbolift);
    // The runtime always holds it, whichever of the package's features are on.
    turbolift.remove("optional");
    for feature in turbolift_features {
        add_feature(&mut turbolift, feature);
    }
    // Under its own name, which the runtime's `lib.rs` uses.
    turbolift.insert("package".into(), "turbolift".into());
    let mut dependencies = Table::new();
    dependencies.insert("turbolift".into(), Value::Table(turbolift));
    templates::RUNTIME_MANIFEST.render(&[
        ("name", Filled::toml(name)),
        ("version", Filled::toml(package.version.to_string())),
        ("lib_name", Filled::toml(lib_name)),
        ("dependencies", Filled::toml(dependencies)),
    ])
}

/// The dependency on the runtime package `package`, beside the generated package.
fn runtime_dependency(package: &str) -> Value {
    let mut dep = Table::new();
    dep.insert("package".into(), package.into());
    dep.insert("path".into(), format!("../{package}").into());
    Value::Table(dep)
}

/// Whether `package` turns on `turbolift`'s `otel` feature (or `otlp`), in its dependency
/// on `turbolift` or in a feature of its own (`turbolift/otel`, under the dependency's
/// key): its generated packages then get `otlp`, so that the services export their spans.
pub fn enables_otel(package: &Package) -> bool {
    const FEATURES: [&str; 2] = ["otel", "otlp"];
    package
        .dependencies
        .iter()
        .filter(|d| d.name == "turbolift" && d.kind == DependencyKind::Normal)
        .any(|d| {
            let key = d.rename.as_deref().unwrap_or("turbolift");
            let by_feature = |enabled: &String| {
                let enabled = enabled.replacen("?/", "/", 1);
                FEATURES.iter().any(|f| enabled == format!("{key}/{f}"))
            };
            d.features.iter().any(|f| FEATURES.contains(&f.as_str()))
                || package.features.values().flatten().any(by_feature)
        })
}

/// The `[lints]` of a binary's code compiled as a library (its service package's, which
/// the program links): the package's own, but `missing_docs`, which a binary's public
/// items do not meet in `cargo build` and a library's do.
pub fn binary_as_library_lints(lints: Option<Value>) -> Option<Value> {
    let mut lints = match lints {
        Some(Value::Table(lints)) => lints,
        _ => Table::new(),
    };
    let rust = lints
        .entry("rust")
        .or_insert_with(|| Value::Table(Table::new()));
    if let Value::Table(rust) = rust {
        rust.insert("missing_docs".into(), "allow".into());
    }
    Some(Value::Table(lints))
}

/// The package's `rust-version`, if it has one.
fn rust_version(package: &Package) -> Filled {
    match &package.rust_version {
        Some(v) => Filled::toml(v.to_string()),
        None => Filled::Absent,
    }
}

/// One of the program's binaries: the original's name, path and required features.
fn program_bin(b: &Bin) -> Value {
    let mut bin = Table::new();
    bin.insert("name".into(), b.name.as_str().into());
    bin.insert("path".into(), b.path.as_str().into());
    if !b.required_features.is_empty() {
        bin.insert(
            "required-features".into(),
            b.required_features.clone().into(),
        );
    }
    for key in ["test", "bench", "doc"] {
        bin.insert(key.into(), false.into());
    }
    Value::Table(bin)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A package as `cargo metadata` describes it: a library and a binary, dependencies of
    /// every kind (renamed, target-specific, build, optional), features and a build script.
    fn package() -> (tempfile::TempDir, Package) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("src/lib.rs"), "").unwrap();
        std::fs::write(root.join("src/main.rs"), "fn main() {}").unwrap();
        std::fs::write(root.join("build.rs"), "fn main() {}").unwrap();
        std::fs::create_dir_all(root.join("turbolift")).unwrap();
        std::fs::write(
            root.join("turbolift/Cargo.toml"),
            "[package]\nname = \"turbolift\"\nversion = \"0.2.0\"\nedition = \"2024\"\n[features]\nservice = []\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("turbolift/src")).unwrap();
        std::fs::write(root.join("turbolift/src/lib.rs"), "").unwrap();
        std::fs::write(
            root.join("Cargo.toml"),
            r#"[package]
name = "shop-app"
version = "1.2.3"
edition = "2024"
rust-version = "1.90"

[dependencies]
tl = { package = "turbolift", path = "turbolift" }
serde = { version = "1", features = ["derive"], optional = true }

[target.'cfg(unix)'.dependencies]
libc = "0.2"

[build-dependencies]
cc = { version = "1", default-features = false }

[features]
default = ["json"]
json = ["dep:serde"]

[profile.release]
lto = true

[patch.crates-io]
libc = { path = "vendor/libc" }
"#,
        )
        .unwrap();
        let metadata = cargo_metadata::MetadataCommand::new()
            .manifest_path(root.join("Cargo.toml"))
            .no_deps()
            .exec()
            .unwrap();
        let package = metadata
            .packages
            .into_iter()
            .find(|p| p.name.as_str() == "shop-app")
            .unwrap();
        (dir, package)
    }

    /// Absolute paths of the temporary package, as `<package>`.
    fn redact(text: &str, root: &Path) -> String {
        let root = root.canonicalize().unwrap();
        text.replace(&root.display().to_string(), "<package>")
    }

    #[test]
    fn a_service_package_manifest() {
        let (dir, package) = package();
        let text = library_services(&package, &["service"]);
        assert!(
            text.contains("[dependencies.tl]\npackage = \"turbolift\""),
            "{text}"
        );
        insta::assert_snapshot!(redact(&text, dir.path()));
    }

    /// The manifest of the services package of shop-app's library, with turbolift's
    /// `turbolift_features`.
    fn library_services(package: &cargo_metadata::Package, turbolift_features: &[&str]) -> String {
        let bins = [Bin {
            name: "shop-app-services".into(),
            path: "turbolift-services/main.rs".into(),
            required_features: Vec::new(),
        }];
        super::package(&PackageManifest {
            name: "shop-app-lib-services",
            lints: None,
            examples: &[],
            dev_dependencies: false,
            lib: Some(("shop_app", Path::new("src/lib.rs"))),
            bins: &bins,
            package,
            turbolift_key: "tl",
            turbolift_features,
            crate_deps: Vec::new(),
            runtime: None,
        })
        .unwrap()
    }

    #[test]
    fn the_runtime_package_holds_turbolift_as_the_package_depends_on_it() {
        let (dir, mut package) = package();
        let text = |package: &Package| {
            runtime_package(
                "shop-app-turbolift-runtime",
                "shop_app_turbolift_runtime",
                package,
                "tl",
                &["service", "tls"],
            )
            .unwrap()
        };
        let manifest = text(&package);
        assert!(manifest.contains("crate-type = [\"dylib\"]"), "{manifest}");
        insta::assert_snapshot!(redact(&manifest, dir.path()));
        // An optional `turbolift` is always there in the runtime.
        let turbolift = package
            .dependencies
            .iter_mut()
            .find(|d| d.name == "turbolift")
            .unwrap();
        turbolift.optional = true;
        assert_eq!(text(&package), manifest);
        // Without it, the error names the package.
        package.dependencies.retain(|d| d.name != "turbolift");
        let error = runtime_package("r", "r", &package, "tl", &[]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`shop-app` does not depend on `turbolift`"
        );
    }

    #[test]
    fn otel_is_seen_in_the_dependency_and_in_the_package_features() {
        let (_dir, package) = package();
        assert!(!enables_otel(&package));
        let turbolift = |package: &mut Package| {
            package
                .dependencies
                .iter_mut()
                .find(|d| d.name == "turbolift")
                .unwrap()
                .features
                .push("otel".into());
        };
        let mut in_dependency = package.clone();
        turbolift(&mut in_dependency);
        assert!(enables_otel(&in_dependency));
        for enabling in ["tl/otel", "tl?/otel", "tl/otlp"] {
            let mut by_feature = package.clone();
            by_feature
                .features
                .insert("tracing".into(), vec![enabling.into()]);
            assert!(enables_otel(&by_feature), "{enabling}");
        }
        // Under another key, `turbolift/otel` is a feature of some other package.
        let mut other = package.clone();
        other
            .features
            .insert("tracing".into(), vec!["turbolift/otel".into()]);
        assert!(!enables_otel(&other));
    }

    #[test]
    fn with_tls_turbolift_gets_its_tls_feature_and_nothing_else_changes() {
        let (_dir, package) = package();
        let manifest = |features| library_services(&package, features);
        let plain = manifest(&["service"]);
        let tls = manifest(&["service", "tls"]);
        assert!(plain.contains("features = [\"service\"]\n"), "{plain}");
        assert!(tls.contains("features = [\"service\", \"tls\"]\n"), "{tls}");
        assert_eq!(tls.replace(", \"tls\"]", "]"), plain);
    }

    #[test]
    fn a_program_package_manifest() {
        let (dir, package) = package();
        // `shop-app` has distributed functions, `report` has none.
        let bins = [
            Bin {
                name: "shop-app".into(),
                path: "turbolift-program/shop-app.rs".into(),
                required_features: vec!["json".into()],
            },
            Bin {
                name: "report".into(),
                path: "src/bin/report.rs".into(),
                required_features: Vec::new(),
            },
        ];
        let text = super::package(&PackageManifest {
            name: "shop-app-program",
            lints: None,
            examples: &[],
            dev_dependencies: false,
            lib: None,
            bins: &bins,
            package: &package,
            turbolift_key: "tl",
            turbolift_features: &["service"],
            crate_deps: vec![
                LibDep {
                    crate_name: "shop_app".into(),
                    package: "shop-app-lib-services".into(),
                    path: "../shop-app-lib-services".into(),
                },
                LibDep {
                    crate_name: "turbolift_binary_shop_app".into(),
                    package: "shop-app-services".into(),
                    path: "../shop-app-services".into(),
                },
            ],
            runtime: Some("shop-app-turbolift-runtime"),
        })
        .unwrap();
        insta::assert_snapshot!(redact(&text, dir.path()));
    }

    #[test]
    fn a_binary_compiled_as_a_library_keeps_its_lints_but_missing_docs() {
        let lints: Value = toml::from_str(
            "[rust]\nunsafe_code = \"forbid\"\nmissing_docs = \"deny\"\n[clippy]\nall = \"warn\"\n",
        )
        .unwrap();
        let lints = binary_as_library_lints(Some(lints)).unwrap();
        assert_eq!(lints["rust"]["unsafe_code"].as_str(), Some("forbid"));
        assert_eq!(lints["rust"]["missing_docs"].as_str(), Some("allow"));
        assert_eq!(lints["clippy"]["all"].as_str(), Some("warn"));
        let none = binary_as_library_lints(None).unwrap();
        assert_eq!(none["rust"]["missing_docs"].as_str(), Some("allow"));
        assert_eq!(none.as_table().map(|t| t.len()), Some(1));
    }

    #[test]
    fn the_workspace_manifest() {
        let (dir, _) = package();
        let text = workspace(
            &[
                "services/shop-app-lib-services".into(),
                "services/shop-app-program".into(),
            ],
            &dir.path().join("Cargo.toml"),
            &BTreeSet::new(),
        )
        .unwrap();
        insta::assert_snapshot!(redact(&text, dir.path()));
    }

    #[test]
    fn the_workspace_manifest_adds_the_runtime_settings_to_the_users_profile() {
        let (dir, _) = package();
        let manifest = dir.path().join("Cargo.toml");
        let runtime: BTreeSet<String> = ["turbolift".to_owned()].into();
        let text = workspace(&["services/shop-services".into()], &manifest, &runtime).unwrap();
        let table: Table = toml::from_str(&text).unwrap();
        let profile = &table["profile"];
        assert_eq!(profile["release"]["lto"].as_bool(), Some(true), "{text}");
        let turbolift = &profile["dev"]["package"]["turbolift"];
        assert_eq!(turbolift["incremental"].as_bool(), Some(false), "{text}");
    }
}
