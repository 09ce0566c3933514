//! The generated service packages, file by file, as a reviewer would read them.

use std::fmt::Write;
use std::path::Path;

use crate::support::*;

/// Every file of the generated workspace of `package` under `==== path ====` headers;
/// symlinks are shown as links into the package.
fn render(package: &str, package_root: &Path) -> String {
    let root = target_dir().join("turbolift").join(package);
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    files.sort();
    let mut out = String::new();
    for rel in files {
        let path = root.join(&rel);
        let shown = rel.display().to_string();
        if let Ok(link) = std::fs::read_link(&path) {
            let target = link
                .strip_prefix(package_root)
                .map(|p| p.display().to_string());
            let _ = writeln!(
                out,
                "==== {shown} -> <package>/{} ====",
                target.unwrap_or_default()
            );
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text
            .replace(&repo().display().to_string(), "<repo>")
            .replace(&package_root.display().to_string(), "<package>");
        let _ = writeln!(out, "==== {shown} ====\n{text}");
    }
    out
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap().to_path_buf();
        let name = entry.file_name().to_string_lossy().into_owned();
        // Lock files and logs are not generated code; `docker/` (images, compose file) and
        // `kubernetes/` (manifests) are there only after builds for those platforms, in
        // whatever order the tests ran, and have their own tests.
        if name.starts_with("Cargo.lock")
            || name == "logs"
            || name == "docker"
            || name == "kubernetes"
        {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            collect(root, &path, out);
        } else {
            out.push(rel);
        }
    }
}

#[test]
fn the_quickstart_service_crate() {
    let dir = fixture("examples/quickstart");
    assert_success("build", &output(&mut turbolift(&dir, &["build"])));
    insta::assert_snapshot!("quickstart", render("quickstart", &dir));
}

#[test]
fn the_layout_service_crates() {
    let dir = fixture("layout");
    assert_success(
        "build",
        &output(&mut turbolift(&dir, &["build", "--features", "fancy"])),
    );
    insta::assert_snapshot!("layout", render("layout-fixture", &dir));
}

#[test]
fn a_second_build_without_changes_writes_nothing() {
    let dir = fixture("examples/quickstart");
    assert_success("build", &output(&mut turbolift(&dir, &["build"])));
    let generated = target_dir().join("turbolift/quickstart/services");
    let stamp = |f: &str| {
        std::fs::metadata(generated.join(f))
            .unwrap()
            .modified()
            .unwrap()
    };
    let files = [
        "quickstart-services/Cargo.toml",
        "quickstart-services/build.rs",
        "quickstart-services/turbolift-services/main.rs",
        "quickstart-program/Cargo.toml",
        "quickstart-program/build.rs",
        "quickstart-turbolift-runtime/Cargo.toml",
        "quickstart-turbolift-runtime/lib.rs",
        // The runtime, which every executable loads.
        "../../../debug/libquickstart_turbolift_runtime.so",
        // The service's executable: the package's, linked under the service's name.
        "../../../debug/quickstart-square",
    ];
    let before: Vec<_> = files.iter().map(|f| stamp(f)).collect();
    let out = output(&mut turbolift(&dir, &["build", "-v"]));
    assert_success("second build", &out);
    assert_eq!(before, files.iter().map(|f| stamp(f)).collect::<Vec<_>>());
    let stderr = text(&out.stderr);
    assert!(
        !stderr.contains("Compiling"),
        "nothing is compiled again:\n{stderr}"
    );
    assert!(stderr.contains("Fresh quickstart-services"), "{stderr}");
    assert!(stderr.contains("Fresh quickstart-program"), "{stderr}");
    assert!(
        stderr.contains("Fresh quickstart-turbolift-runtime"),
        "{stderr}"
    );
}

#[test]
fn a_service_executable_serves_the_function_it_is_started_as_and_says_so_otherwise() {
    let dir = fixture("examples/quickstart");
    assert_success("build", &output(&mut turbolift(&dir, &["build"])));
    let debug = target_dir().join("debug");
    let package_exe = debug.join("quickstart-services");
    let service_exe = debug.join("quickstart-square");
    // One file under two names: the package's executable, and the service's.
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (
        std::fs::metadata(&package_exe).unwrap(),
        std::fs::metadata(&service_exe).unwrap(),
    );
    assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));

    // Under the service's name it serves that function (the name wins over
    // TURBOLIFT_FUNCTION): it answers a health check on the address it announces.
    let mut service = std::process::Command::new(&service_exe)
        .env("TURBOLIFT_FUNCTION", "quickstart::cube")
        .env("TURBOLIFT_SECRET", "0".repeat(64))
        .env("TURBOLIFT_BIND", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(service.stdout.take().unwrap());
    let mut lines = std::io::BufRead::lines(stdout);
    let seen = read_until(&mut lines, "turbolift: listening on ");
    let url = seen.last().unwrap()["turbolift: listening on ".len()..].to_owned();
    let health = output(
        std::process::Command::new(&service_exe)
            .arg("--health-check")
            .env("TURBOLIFT_BIND", url.trim_start_matches("http://")),
    );
    kill(service.id(), "TERM");
    let stopped = service.wait_with_output().unwrap();
    assert!(health.status.success(), "{}", text(&health.stderr));
    let log = text(&stopped.stderr);
    assert!(log.contains("quickstart::square"), "{log}");

    // Under its own name and without TURBOLIFT_FUNCTION it does not know what to serve.
    let out = output(
        std::process::Command::new(&package_exe)
            .env_remove("TURBOLIFT_FUNCTION")
            .env("TURBOLIFT_SECRET", "0".repeat(64)),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("(quickstart-square)")
            && stderr.contains("TURBOLIFT_FUNCTION=<function id>")
            && stderr.contains("started as `quickstart-services`"),
        "{stderr}"
    );

    // TURBOLIFT_FUNCTION naming a function it does not have.
    let out = output(
        std::process::Command::new(&package_exe)
            .env("TURBOLIFT_FUNCTION", "quickstart::cube")
            .env("TURBOLIFT_SECRET", "0".repeat(64)),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no distributed function `quickstart::cube`")
            && stderr.contains("quickstart::square"),
        "{stderr}"
    );
}
