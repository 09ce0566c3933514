//! A virtual workspace whose distributed functions live in a member library and in a path
//! dependency outside the workspace (`tests/fixtures/graph` and `graph-extra`):
//! `cargo turbolift run` and `cargo turbolift test` at its root, and rustc's messages
//! about the member library pointing at the library's own file, once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::support::*;

/// The functions that have a service: every distributed function of the fixture but
/// `engine::made::plus_one`, which a `macro_rules!` macro defines, and
/// `engine::fancy_only`, behind the feature `fancy`, which is off. `extra::words::longest`
/// is marked `#[crate::distribute]`, through extra's re-export of the attribute.
const SERVED: [&str; 5] = [
    "engine::geometry::area",
    "engine::pid",
    "engine::stats::summary::mean",
    "extra::words::count_words",
    "extra::words::longest",
];

/// What the warning about a called function without a service says.
const NO_SERVICE: &str = "has no service in this run";

/// These tests look for the fixture's processes by executable and share its generated
/// workspace, so they run one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The function ids of the run's `Ready` lines.
fn ready_ids(stderr: &str) -> BTreeSet<String> {
    stderr
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("Ready"))
        .filter_map(|rest| rest.split('`').nth(1))
        .map(str::to_owned)
        .collect()
}

fn served_ids() -> BTreeSet<String> {
    SERVED.iter().map(|id| id.to_string()).collect()
}

/// Each service's replica count and the calls they served, from the log directories of
/// every `Stopped` line.
fn services(stderr: &str) -> BTreeMap<String, (usize, u64)> {
    let dirs: Vec<PathBuf> = stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("Stopped"))
        .map(|l| PathBuf::from(l.rsplit("logs in ").next().unwrap().trim()))
        .collect();
    assert!(!dirs.is_empty(), "no `Stopped` line in:\n{stderr}");
    let mut by_service: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for dir in dirs {
        for (file, calls) in served_calls(&dir) {
            let service = file.rsplit_once('-').unwrap().0.to_owned();
            let entry = by_service.entry(service).or_default();
            entry.0 += 1;
            entry.1 += calls;
        }
    }
    by_service
}

/// Waits until no service of `services`, no program and no test binary of the fixture
/// runs, and fails if one is still running after 5 s.
fn assert_nothing_left(services: &BTreeMap<String, (usize, u64)>) {
    let ours = |exe: &Path| {
        let name = exe.file_name().unwrap_or_default().to_string_lossy();
        let in_deps = exe.parent().is_some_and(|d| d.ends_with("deps"));
        services.contains_key(name.as_ref())
            || name == "graph-app"
            || (in_deps
                && ["graph_app-", "remote-", "engine-", "shapes-"]
                    .iter()
                    .any(|prefix| name.starts_with(prefix)))
    };
    let found: Vec<(u32, PathBuf)> = processes_under(&target_dir())
        .into_iter()
        .filter(|(_, exe)| ours(exe))
        .collect();
    let pids: Vec<u32> = found.iter().map(|(pid, _)| *pid).collect();
    let left = wait_gone(&pids, Duration::from_secs(5));
    let left: Vec<&(u32, PathBuf)> = found.iter().filter(|(p, _)| left.contains(p)).collect();
    assert!(left.is_empty(), "processes outlived the command: {left:?}");
}

#[test]
fn run_at_the_virtual_root() {
    let _serial = serial();
    let dir = fixture("graph");
    let plain = output(&mut cargo(&dir, &["run", "-q"]));
    assert_success("cargo run", &plain);
    assert!(text(&plain.stdout).ends_with("done\n"));
    assert!(!text(&plain.stderr).contains(NO_SERVICE));

    let lifted = output(&mut turbolift(&dir, &["run"]));
    assert_success("cargo turbolift run", &lifted);
    assert_eq!(
        text(&lifted.stdout),
        text(&plain.stdout),
        "stdout differs between `cargo turbolift run` and `cargo run`"
    );
    let stderr = text(&lifted.stderr);
    assert_eq!(ready_ids(&stderr), served_ids(), "{stderr}");
    let services = services(&stderr);
    assert_eq!(services.len(), SERVED.len(), "{services:?}");
    for (service, (replicas, calls)) in &services {
        assert_eq!(*replicas, 2, "two replicas of `{service}`: {services:?}");
        assert!(
            *calls > 0,
            "`{service}` served no call: the program did not use it"
        );
    }
    // `plus_one` is called twice; it is named once.
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains(NO_SERVICE)).collect();
    assert!(
        warnings.len() == 1 && warnings[0].contains("engine::made::plus_one"),
        "one warning, for `engine::made::plus_one`: {warnings:?}\n{stderr}"
    );
    assert_nothing_left(&services);
}

#[test]
fn an_example_and_its_own_function_at_the_virtual_root() {
    let _serial = serial();
    let dir = fixture("graph");
    let plain = output(&mut cargo(&dir, &["run", "-q", "--example", "tour"]));
    assert_success("cargo run --example tour", &plain);
    let lifted = output(&mut turbolift(&dir, &["run", "--example", "tour"]));
    assert_success("cargo turbolift run --example tour", &lifted);
    assert_eq!(text(&lifted.stdout), text(&plain.stdout));
    let stderr = text(&lifted.stderr);
    let mut expected = served_ids();
    expected.insert("tour::label".to_owned());
    assert_eq!(ready_ids(&stderr), expected, "{stderr}");
    let services = services(&stderr);
    let (_, calls) = services
        .get("graph-app-tour-label")
        .unwrap_or_else(|| panic!("the example's own service: {services:?}"));
    assert_eq!(*calls, 2, "the example labels two shapes: {services:?}");
    assert_nothing_left(&services);
}

#[test]
fn test_at_the_virtual_root_passes_with_remote_calls() {
    let _serial = serial();
    let out = output(&mut turbolift(&fixture("graph"), &["test"]));
    assert_success("cargo turbolift test", &out);
    let stdout = text(&out.stdout);
    for line in [
        "test a_distributed_call_runs_in_another_process ... ok",
        "test the_functions_answer_right ... ok",
        "test fails_when_asked ... ok",
        "test tests::round2_keeps_two_decimals ... ok",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no `{line}` in:\n{stdout}"
        );
    }
    let stderr = text(&out.stderr);
    assert_eq!(ready_ids(&stderr), served_ids(), "{stderr}");
    assert_nothing_left(&services(&stderr));
    // The summary of `app`'s tests counts their calls: one of each function they call.
    let app = stderr
        .split_once("Running app/tests/remote.rs")
        .unwrap_or_else(|| panic!("no run of app's tests:\n{stderr}"))
        .1;
    assert!(
        app.contains("Summary of the calls, per function"),
        "{stderr}"
    );
    for (function, calls) in [
        ("engine::pid", "1"),
        ("engine::stats::summary::mean", "1"),
        ("engine::geometry::area", "1"),
        ("extra::words::count_words", "1"),
        ("extra::words::longest", "0"),
    ] {
        let row: Vec<&str> = app
            .lines()
            .find(|l| l.split_whitespace().next() == Some(function))
            .unwrap_or_else(|| panic!("no summary of `{function}`:\n{stderr}"))
            .split_whitespace()
            .collect();
        assert_eq!(row[1..5], [calls, calls, "0", "0"], "{function}: {stderr}");
    }
}

#[test]
fn a_failing_test_fails_the_command() {
    let _serial = serial();
    let out = output(turbolift(&fixture("graph"), &["test"]).env("GRAPH_FIXTURE_FAIL", "1"));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.code().is_some_and(|code| code != 0),
        "cargo turbolift test should fail: {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(
        stdout
            .lines()
            .chain(stderr.lines())
            .any(|l| l.contains("fails_when_asked") && l.contains("FAILED")),
        "--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l == "test a_distributed_call_runs_in_another_process ... ok"),
        "{stdout}"
    );
    assert_nothing_left(&services(&stderr));
}

#[test]
fn test_with_a_name_filter() {
    let _serial = serial();
    // `fails_when_asked` would fail: the command passes only if it did not run.
    let out = output(
        turbolift(&fixture("graph"), &["test", "the_functions_answer_right"])
            .env("GRAPH_FIXTURE_FAIL", "1"),
    );
    assert_success("cargo turbolift test the_functions_answer_right", &out);
    let stdout = text(&out.stdout);
    let tests: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("test ") && !l.starts_with("test result:"))
        .collect();
    assert_eq!(
        tests,
        ["test the_functions_answer_right ... ok"],
        "{stdout}"
    );
    let results: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("test result:"))
        .collect();
    assert_eq!(
        results.iter().filter(|l| l.contains(" 1 passed;")).count(),
        1,
        "{stdout}"
    );
    assert!(
        results
            .iter()
            .all(|l| l.contains(" 1 passed;") || l.contains(" 0 passed;")),
        "{stdout}"
    );
    assert_nothing_left(&services(&text(&out.stderr)));
}

#[test]
fn test_arguments_after_two_dashes_reach_the_test_binaries() {
    let _serial = serial();
    let out = output(
        turbolift(
            &fixture("graph"),
            &["test", "--", "--skip", "fails_when_asked"],
        )
        .env("GRAPH_FIXTURE_FAIL", "1"),
    );
    assert_success("cargo turbolift test -- --skip fails_when_asked", &out);
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("fails_when_asked"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l == "test a_distributed_call_runs_in_another_process ... ok"),
        "{stdout}"
    );
    assert_nothing_left(&services(&text(&out.stderr)));
}

/// Copies `graph` and `graph-extra` into `into`, side by side as in `tests/fixtures`,
/// with turbolift's path made absolute; returns the copy of `graph`.
fn copy_of_the_fixture(into: &Path) -> PathBuf {
    let fixtures = fixture("graph").parent().unwrap().to_owned();
    let turbolift = repo().join("turbolift-rt");
    for name in ["graph", "graph-extra"] {
        copy_tree(&fixtures.join(name), &into.join(name));
        let manifest = into.join(name).join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let relative = "\"../../../turbolift-rt\"";
        assert!(text.contains(relative), "{}", manifest.display());
        let text = text.replace(relative, &format!("{:?}", turbolift.display().to_string()));
        std::fs::write(&manifest, text).unwrap();
    }
    into.join("graph")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "target" {
                copy_tree(&path, &to.join(entry.file_name()));
            }
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).unwrap();
        }
    }
}

/// Writes `file` as `original` with `statement` as the first line of `mean`'s body;
/// returns that line's number.
fn put_into_mean(file: &Path, original: &str, statement: &str) -> usize {
    let mut lines: Vec<&str> = original.lines().collect();
    let signature = lines
        .iter()
        .position(|l| l.starts_with("pub fn mean("))
        .expect("`mean` in summary.rs");
    let statement = format!("    {statement}");
    lines.insert(signature + 1, &statement);
    std::fs::write(file, lines.join("\n") + "\n").unwrap();
    signature + 2
}

/// `message` is on exactly one line of `stderr`, and the location under it is `file`
/// at `line`:`column`, not a file of a generated crate.
fn assert_reported_once(stderr: &str, message: &str, file: &Path, root: &Path, at: (usize, usize)) {
    let lines: Vec<&str> = stderr.lines().collect();
    let found: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains(message))
        .collect();
    assert_eq!(found.len(), 1, "`{message}` once in:\n{stderr}");
    let location = lines[found[0]..]
        .iter()
        .find_map(|l| l.trim_start().strip_prefix("-->"))
        .unwrap_or_else(|| panic!("no location under `{message}` in:\n{stderr}"))
        .trim();
    assert!(!location.contains("target/turbolift"), "{location}");
    let mut parts = location.rsplitn(3, ':');
    let (column, line, path) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
    assert_eq!(
        (line, column),
        (
            Some(at.0.to_string().as_str()),
            Some(at.1.to_string().as_str())
        ),
        "{location}"
    );
    assert!(path.ends_with("engine/src/stats/summary.rs"), "{location}");
    let path = Path::new(path);
    let resolved = if path.is_absolute() {
        path.to_owned()
    } else {
        root.join(path)
    };
    assert_eq!(
        resolved.canonicalize().ok(),
        Some(file.canonicalize().unwrap()),
        "`{location}` names the copied library's file"
    );
}

#[test]
fn errors_in_a_member_library_point_at_its_own_file_once() {
    let _serial = serial();
    let copy = tempfile::tempdir().unwrap();
    let root = copy_of_the_fixture(copy.path());
    let file = root.join("engine/src/stats/summary.rs");
    let original = std::fs::read_to_string(&file).unwrap();
    let run = || {
        output(
            turbolift(&root, &["run"])
                .env("CARGO_TARGET_DIR", target_dir())
                .env_remove("GRAPH_FIXTURE_FAIL"),
        )
    };

    let line = put_into_mean(&file, &original, "let unused_here = 1;");
    let out = run();
    assert_success("cargo turbolift run with a warning", &out);
    let stderr = text(&out.stderr);
    assert_reported_once(
        &stderr,
        "unused variable: `unused_here`",
        &file,
        &root,
        (line, 9),
    );
    assert_nothing_left(&services(&stderr));

    let line = put_into_mean(&file, &original, "let n: u32 = \"x\";");
    let out = run();
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "a type error in engine should fail the run:\n{stderr}"
    );
    assert_reported_once(&stderr, "mismatched types", &file, &root, (line, 18));
}

#[test]
#[ignore = "needs Docker (a daemon that answers `docker info`)"]
fn test_in_containers() {
    crate::docker::require_docker();
    let _serial = serial();
    let _docker = crate::docker::serial();
    let out = output(&mut turbolift(
        &fixture("graph"),
        &["test", "-p", "graph-app", "--platform", "docker"],
    ));
    assert_success("cargo turbolift test --platform docker", &out);
    let stdout = text(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l == "test a_distributed_call_runs_in_another_process ... ok"),
        "{stdout}"
    );
    let stderr = text(&out.stderr);
    assert_eq!(ready_ids(&stderr), served_ids(), "{stderr}");
    let left = crate::docker::docker_ok(&[
        "ps",
        "--all",
        "--quiet",
        "--filter",
        "label=turbolift.package=graph-app",
    ]);
    assert!(left.is_empty(), "containers left: {left}");
}
