//! How a build links turbolift's runtime: as one shared library that every executable
//! loads, in a `dev` build for this machine; into each executable with
//! `TURBOLIFT_DYNAMIC_LINKING=off`.

use std::path::{Path, PathBuf};

use crate::support::*;

/// A copy of the quickstart under the package name `name`, in the shared target
/// directory: builds of it with other settings do not rewrite the quickstart's generated
/// workspace while other tests use it, and its dependencies are the quickstart's, with
/// the repository's lock file and profile, already compiled.
fn quickstart_as(name: &str) -> PathBuf {
    let dir = target_dir().join("fixtures").join(name);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::copy(
        repo().join("examples/quickstart/src/main.rs"),
        dir.join("src/main.rs"),
    )
    .unwrap();
    std::fs::copy(repo().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
turbolift = {{ path = "{}" }}
tokio = {{ version = "1", features = ["full"] }}

[workspace]

[profile.dev.package."*"]
debug = false

[profile.dev]
debug = "line-tables-only"
"#,
        repo().join("turbolift-rt").display()
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    dir
}

/// Whether the executable `exe` names the shared library `lib` among those it needs (its
/// dynamic string table holds the name).
fn names_library(exe: &Path, lib: &str) -> bool {
    let bytes = std::fs::read(exe).unwrap();
    let needle = format!("{lib}\0");
    bytes
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

const SUMS: &str = "sum: 285\nsum of 10,000 squares: 333283335000\n";

/// Runs `program` as `cargo build`'s would run, from any folder and with nothing in its
/// environment (its calls in-process), and checks what it prints.
fn assert_runs_alone(program: &Path) {
    let out = output(
        std::process::Command::new(program)
            .env_clear()
            .current_dir("/"),
    );
    assert_success("the program alone", &out);
    assert!(text(&out.stdout).ends_with(SUMS), "{}", text(&out.stdout));
}

#[test]
fn a_dev_build_links_the_runtime_as_one_shared_library_and_its_executables_run_from_anywhere() {
    let dir = quickstart_as("linking-shared");
    assert_success("build", &output(&mut turbolift(&dir, &["build"])));
    let debug = target_dir().join("debug");
    let runtime = "liblinking_shared_turbolift_runtime.so";
    assert!(debug.join(runtime).is_file());
    assert!(
        target_dir()
            .join("turbolift/linking-shared/services/linking-shared-turbolift-runtime/lib.rs")
            .is_file()
    );
    let (program, service) = (
        debug.join("linking-shared"),
        debug.join("linking-shared-square"),
    );
    assert!(names_library(&program, runtime));
    assert!(names_library(&service, runtime));
    // The runtime is not in them: each is a small part of it.
    let size = |path: &Path| std::fs::metadata(path).unwrap().len();
    assert!(size(&program) * 4 < size(&debug.join(runtime)));

    // Its search path finds the runtime and the toolchain's libstd.
    assert_runs_alone(&program);

    // And under `cargo turbolift run`, its calls go to the services.
    let out = output(&mut turbolift(&dir, &["run"]));
    assert_success("run", &out);
    assert!(text(&out.stdout).ends_with(SUMS), "{}", text(&out.stdout));
    let served: u64 = served_calls(&logs_dir(&text(&out.stderr)))
        .iter()
        .map(|(_, calls)| calls)
        .sum();
    assert!(served >= 10, "served {served} calls");
}

#[test]
fn turbolift_dynamic_linking_off_links_the_runtime_into_each_executable() {
    let dir = quickstart_as("linking-static");
    let build =
        |value: &str| output(turbolift(&dir, &["build"]).env("TURBOLIFT_DYNAMIC_LINKING", value));
    let refused = build("maybe");
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("TURBOLIFT_DYNAMIC_LINKING must be `on` or `off`, not `maybe`"),
        "{stderr}"
    );
    assert!(!stderr.contains("Compiling"), "{stderr}");

    assert_success("build", &build("off"));
    let debug = target_dir().join("debug");
    let services = target_dir().join("turbolift/linking-static/services");
    assert!(!services.join("linking-static-turbolift-runtime").exists());
    let runtime = "liblinking_static_turbolift_runtime.so";
    let (program, service) = (
        debug.join("linking-static"),
        debug.join("linking-static-square"),
    );
    assert!(!names_library(&program, runtime));
    assert!(!names_library(&service, runtime));
    assert_runs_alone(&program);

    // Turned on again, the runtime package comes back and the executables need it.
    assert_success("build", &build("on"));
    assert!(services.join("linking-static-turbolift-runtime").is_dir());
    assert!(names_library(&program, runtime));
}
