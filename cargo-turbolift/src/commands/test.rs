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
use crate::generate;
use crate::platform::{Platform, Signals, Start, random_hex};
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
    if !project::depends_on_turbolift(&package) {
        // Without turbolift the package has no remote path: its tests run as under
        // `cargo test`.
        return test_without_services(shell, args, metadata, &package, signals, failed);
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
    let mut cargo = cargo_run::test_command(shell, &args.build, &built.project)?;
    cargo
        .arg("--manifest-path")
        .arg(package.manifest_path.as_std_path())
        .arg("-p")
        .arg(&name);
    let mut features = args.build.feature_list();
    // The remote call path of the package's turbolift, for every crate in its graph.
    features.push(format!("{}/distributed", built.project.turbolift_key));
    cargo.arg("--features").arg(features.join(","));
    select_targets(&mut cargo, args);
    shell.status(
        "Building",
        format!("the tests of `{name}` with the remote call path"),
    );
    let tests = cargo_run::run_tests(cargo).with_context(|| {
        format!("could not build the tests of `{name}`; cargo's errors are above")
    })?;
    let run_id = random_hex(6)?;
    let secret = random_hex(32)?;
    let start = Start {
        args: &args.build,
        run_id: &run_id,
        secret: &secret,
        logs: generate::workspace_dir(&built.project)
            .join("logs")
            .join(&run_id),
        keep: false,
        timeout: std::time::Duration::from_secs(300),
    };
    let mut running = platform.start(shell, &built, &start)?;
    let mut code = 0;
    for test in &tests {
        if signals.pending().next().is_some() {
            code = 130;
            break;
        }
        let outcome = running.run_program(
            shell,
            &program_of(test, &built.project),
            &test_args(args),
            signals,
        );
        match outcome {
            Ok(0) => {}
            Ok(status) => {
                code = status;
                failed.push(rerun_hint(&name, test));
                shell.error(&anyhow::anyhow!(
                    "test failed, to rerun pass `{}`",
                    rerun_hint(&name, test)
                ));
                if !args.no_fail_fast {
                    break;
                }
            }
            Err(e) => {
                running.stop(shell);
                return Err(e);
            }
        }
    }
    running.stop(shell);
    Ok(code)
}

/// A package that does not depend on turbolift: its tests built and run as `cargo test`
/// does, without services.
fn test_without_services(
    shell: &Shell,
    args: &TestArgs,
    metadata: &cargo_metadata::Metadata,
    package: &Package,
    signals: &mut Signals,
    failed: &mut Vec<String>,
) -> Result<u8> {
    let name = package.name.to_string();
    let target_dir = match &args.build.target_dir {
        Some(dir) => std::path::absolute(dir)?,
        None => metadata.target_directory.clone().into_std_path_buf(),
    };
    let mut cargo =
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args([
            "test",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .arg("--color")
        .arg(shell.cargo_color())
        .arg("--manifest-path")
        .arg(package.manifest_path.as_std_path())
        .arg("-p")
        .arg(&name)
        .args(args.build.resolve_flags());
    if args.build.release {
        cargo.arg("--release");
    }
    let features = args.build.feature_list();
    if !features.is_empty() {
        cargo.arg("--features").arg(features.join(","));
    }
    select_targets(&mut cargo, args);
    let tests = cargo_run::run_tests(cargo).with_context(|| {
        format!("could not build the tests of `{name}`; cargo's errors are above")
    })?;
    let root = metadata.workspace_root.as_std_path();
    for test in &tests {
        let status = crate::platform::program::run(
            shell,
            &program_in(test, root),
            &test_args(args),
            &[],
            signals,
        )?;
        if status != 0 {
            failed.push(rerun_hint(&name, test));
            shell.error(&anyhow::anyhow!(
                "test failed, to rerun pass `{}`",
                rerun_hint(&name, test)
            ));
            if !args.no_fail_fast {
                return Ok(status);
            }
        }
    }
    Ok(0)
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
fn program_of(test: &TestBinary, project: &Project) -> BuiltProgram {
    program_in(test, project.workspace_root())
}

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

/// The arguments of every test binary: `TESTNAME`, then what follows `--`.
fn test_args(args: &TestArgs) -> Vec<String> {
    args.testname.iter().chain(&args.args).cloned().collect()
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
