//! `cargo turbolift test`: for each package `cargo test` would test, build its tests with
//! turbolift's remote call path, start the services of every distributed function they
//! can reach, run each test binary against them as `cargo test` does, and stop
//! everything; exit with the tests' status.

use std::process::ExitCode;

use anyhow::{Context, Result};
use cargo_metadata::Package;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::build::cargo::{self as cargo_run, TestBinary};
use crate::build::{self, BuiltProgram, Programs};
use crate::cli::TestArgs;
use crate::platform::{Platform, Signals, Start, program};
use crate::project::{self, Project, Walk};
use crate::shell::Shell;

pub fn run(shell: &Shell, args: &TestArgs) -> Result<ExitCode> {
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("cannot install signal handlers")?;
    let mut platform = Platform::pick(&args.build)?;
    platform.check_tests_run_here()?;
    platform.check_start(&args.build)?;
    let metadata = project::metadata(&args.build)?;
    let mut failed: Vec<String> = Vec::new();
    for package in project::packages_to_test(&metadata, &args.build)? {
        let code = test_package(
            shell,
            args,
            &mut platform,
            &metadata,
            package,
            &mut signals,
            &mut failed,
        )?;
        if code != 0 && !args.no_fail_fast {
            return Ok(ExitCode::from(code));
        }
    }
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    shell.error(&anyhow::anyhow!(
        "{} target{} failed:\n    {}",
        failed.len(),
        if failed.len() == 1 { "" } else { "s" },
        failed.join("\n    ")
    ));
    Ok(ExitCode::from(101))
}

/// Builds and runs the tests of one package; the exit code of the first test binary that
/// failed (with `--no-fail-fast`, of the last), else 0.
fn test_package(
    shell: &Shell,
    args: &TestArgs,
    platform: &mut Platform,
    metadata: &cargo_metadata::Metadata,
    package: Package,
    signals: &mut Signals,
    failed: &mut Vec<String>,
) -> Result<u8> {
    let name = package.name.to_string();
    let workspace_root = metadata.workspace_root.as_std_path();
    if !project::depends_on_turbolift(&package) {
        // Without turbolift the package has no remote path: its tests run as under
        // `cargo test`.
        let target_dir = match &args.build.target_dir {
            Some(dir) => std::path::absolute(dir)?,
            None => metadata.target_directory.clone().into_std_path_buf(),
        };
        let tests = build_tests(shell, args, &package, &target_dir, None)?;
        return run_tests(
            shell,
            args,
            &name,
            workspace_root,
            &tests,
            failed,
            |test, run_args| program::run(shell, test, run_args, &[], signals),
        );
    }
    let project = Project::of(
        metadata.clone(),
        package.clone(),
        &args.build,
        Walk::WithDevDependencies,
    )?;
    let built = build::build(
        shell,
        &args.build,
        project,
        &platform.plan(&args.build),
        Programs::None,
    )?;
    platform.prepare(shell, &built, &[])?;
    // The remote call path of the package's turbolift, for every crate in its graph; with
    // TLS, over TLS.
    let key = &built.project.turbolift_key;
    let mut remote = vec![format!("{key}/distributed")];
    if args.build.tls() {
        remote.push(format!("{key}/tls"));
    }
    let tests = build_tests(
        shell,
        args,
        &package,
        &built.project.target_dir,
        Some(&remote),
    )?;
    let start = Start::new(
        shell,
        &args.build,
        &built,
        false,
        std::time::Duration::from_secs(300),
    )?;
    let mut running = platform.start(shell, &built, &start)?;
    let outcome = run_tests(
        shell,
        args,
        &name,
        workspace_root,
        &tests,
        failed,
        |test, run_args| {
            // Interrupted between two test binaries: run no more.
            if let Some(origin) = signals.pending().next() {
                return Ok(128u8.wrapping_add(origin.signal as u8));
            }
            running.run_program(shell, test, run_args, signals)
        },
    );
    running.stop(shell);
    outcome
}

/// `cargo test --no-run -p <package>` with the flags given and the `remote` call path's
/// features added.
fn build_tests(
    shell: &Shell,
    args: &TestArgs,
    package: &Package,
    target_dir: &std::path::Path,
    remote: Option<&[String]>,
) -> Result<Vec<TestBinary>> {
    let name = package.name.as_str();
    let dir = package
        .manifest_path
        .parent()
        .map_or_else(|| std::path::Path::new("."), |d| d.as_std_path());
    let mut cargo = cargo_run::test_command(shell, &args.build, target_dir, dir)?;
    cargo
        .arg("--manifest-path")
        .arg(package.manifest_path.as_std_path())
        .arg("-p")
        .arg(name);
    let mut features = args.build.feature_list();
    features.extend(remote.into_iter().flatten().cloned());
    if !features.is_empty() {
        cargo.arg("--features").arg(features.join(","));
    }
    select_targets(&mut cargo, args);
    if remote.is_some() {
        let over = if args.build.tls() { " over TLS" } else { "" };
        shell.status(
            "Building",
            format!("the tests of `{name}` with the remote call path{over}"),
        );
    }
    cargo_run::run_tests(cargo)
        .with_context(|| format!("could not build the tests of `{name}`; cargo's errors are above"))
}

/// Runs each test binary with `run`, as `cargo test` does: stops at the first that fails
/// (unless `--no-fail-fast`), noting it in `failed`; its exit code, else 0.
fn run_tests(
    shell: &Shell,
    args: &TestArgs,
    package: &str,
    workspace_root: &std::path::Path,
    tests: &[TestBinary],
    failed: &mut Vec<String>,
    mut run: impl FnMut(&BuiltProgram, &[String]) -> Result<u8>,
) -> Result<u8> {
    let run_args: Vec<String> = args.testname.iter().chain(&args.args).cloned().collect();
    let mut code = 0;
    for test in tests {
        let status = run(&program_in(test, workspace_root), &run_args)?;
        if status != 0 {
            code = status;
            failed.push(rerun_hint(package, test));
            shell.error(&anyhow::anyhow!(
                "test failed, to rerun pass `{}`",
                rerun_hint(package, test)
            ));
            if !args.no_fail_fast {
                break;
            }
        }
    }
    Ok(code)
}

/// `cargo test`'s target selection: `--lib`, `--bin`, `--bins`, `--test`, `--tests`.
fn select_targets(cargo: &mut std::process::Command, args: &TestArgs) {
    if args.lib {
        cargo.arg("--lib");
    }
    if let Some(bin) = &args.build.bin {
        cargo.arg("--bin").arg(bin);
    }
    if args.bins {
        cargo.arg("--bins");
    }
    for test in &args.test {
        cargo.arg("--test").arg(test);
    }
    if args.tests {
        cargo.arg("--tests");
    }
}

/// The test binary as a program to run, titled as `cargo test` titles it.
fn program_in(test: &TestBinary, workspace_root: &std::path::Path) -> BuiltProgram {
    let shown = |p: &std::path::Path| {
        p.strip_prefix(workspace_root)
            .unwrap_or(p)
            .display()
            .to_string()
    };
    let source = shown(&test.src_path);
    let what = match test.kind.as_str() {
        "lib" | "bin" | "rlib" | "proc-macro" => format!("unittests {source}"),
        _ => source,
    };
    BuiltProgram {
        name: test.target.clone(),
        executable: test.executable.clone(),
        by_arch: Vec::new(),
        title: Some(format!("{what} ({})", shown(&test.executable))),
    }
}

/// What to pass to `cargo turbolift test` to run this binary again, as cargo says it.
fn rerun_hint(package: &str, test: &TestBinary) -> String {
    match test.kind.as_str() {
        "lib" | "rlib" | "proc-macro" => format!("-p {package} --lib"),
        "bin" => format!("-p {package} --bin {}", test.target),
        "example" => format!("-p {package} --example {}", test.target),
        "bench" => format!("-p {package} --bench {}", test.target),
        _ => format!("-p {package} --test {}", test.target),
    }
}
