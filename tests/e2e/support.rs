//! Running the real `cargo-turbolift` binary and plain cargo on fixture crates.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .canonicalize()
        .unwrap()
}

/// The target directory every fixture builds into.
pub fn target_dir() -> PathBuf {
    repo().join("target").join("e2e")
}

/// A fixture crate's root (or an example's, for `examples/NAME`), with the repository's
/// `Cargo.lock` copied in when it has none, so that crate versions match the workspace's
/// and compiled dependencies are shared.
pub fn fixture(name: &str) -> PathBuf {
    let dir = if name.starts_with("examples/") {
        repo().join(name)
    } else {
        repo().join("tests/fixtures").join(name)
    };
    assert!(
        dir.join("Cargo.toml").is_file(),
        "no fixture at {}",
        dir.display()
    );
    let lock = dir.join("Cargo.lock");
    if !name.starts_with("examples/") && !lock.exists() {
        let _ = std::fs::copy(repo().join("Cargo.lock"), lock);
    }
    dir
}

/// The `cargo-turbolift` binary under test, run as cargo runs subcommands.
pub fn turbolift(dir: &Path, args: &[&str]) -> Command {
    let (subcommand, rest) = args.split_first().expect("a subcommand");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cargo-turbolift"));
    cmd.arg("turbolift")
        .arg(subcommand)
        .arg("--target-dir")
        .arg(target_dir())
        .arg("--color")
        .arg("never")
        .args(rest)
        .current_dir(dir)
        .stdin(Stdio::null());
    cmd
}

/// Plain `cargo ARGS` in `dir`, into the shared target directory.
pub fn cargo(dir: &Path, args: &[&str]) -> Command {
    let (subcommand, rest) = args.split_first().expect("a subcommand");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.arg(subcommand)
        .arg("--target-dir")
        .arg(target_dir())
        .args(rest)
        .current_dir(dir)
        .stdin(Stdio::null());
    cmd
}

/// Runs a command to its end; builds of fixtures go one at a time, as they would
/// anyway wait for each other on the target directory's lock.
pub fn output(cmd: &mut Command) -> Output {
    static BUILDS: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    cmd.output().expect("the command starts")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether this is a CI machine (`CI=true`): one that has every tool the tests need.
pub fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Fails the running test, which cannot run on this machine: `why` says what is missing
/// and how to get it. The tests that call this are `#[ignore]`d: `./test.sh` runs them
/// where their tools are present and always under `CI=true`, and otherwise counts them
/// as not run; a test that lacks its tool never passes.
#[track_caller]
pub fn cannot_run(why: &str) -> ! {
    if on_ci() {
        panic!(
            "this test cannot run on this CI machine (CI=true), which must have what it needs: {why}"
        );
    }
    panic!(
        "this test cannot run here: {why} (it is #[ignore]d; ./test.sh runs it only where what it needs is present)"
    );
}

/// Asserts success, showing both streams otherwise.
pub fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The service logs directory a run reported on its `Stopped` line.
pub fn logs_dir(stderr: &str) -> PathBuf {
    let line = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("Stopped"))
        .unwrap_or_else(|| panic!("no `Stopped` line in:\n{stderr}"));
    PathBuf::from(line.rsplit("logs in ").next().unwrap().trim())
}

/// Calls each service replica served, from the `stopped served=N` line of its log, by
/// log file name.
pub fn served_calls(logs: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(logs).unwrap() {
        let path = entry.unwrap().path();
        let log = std::fs::read_to_string(&path).unwrap();
        let served: u64 = log
            .lines()
            .filter_map(|l| l.split("served=").nth(1))
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        out.push((
            path.file_name().unwrap().to_string_lossy().into_owned(),
            served,
        ));
    }
    out.sort();
    out
}

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rfind(')').and_then(|i| stat[i + 2..].chars().next());
            !matches!(state, Some('Z') | Some('X'))
        }
        Err(_) => false,
    }
}

/// Live processes running the executable `exe`.
pub fn running(exe: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == exe) && alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Reads lines until one starting with `prefix` (included).
pub fn read_until(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    prefix: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let stop = line.starts_with(prefix);
        seen.push(line);
        if stop {
            return seen;
        }
    }
    panic!("the output ended before a line starting with `{prefix}`: {seen:?}");
}

/// Reads the rest of a `lifecycle steady N` run, waits for it, and checks that it
/// succeeded with every `i 2i` line and `done`; returns cargo turbolift's stderr.
pub fn finish_steady(
    child: &mut std::process::Child,
    mut seen: Vec<String>,
    lines: impl Iterator<Item = std::io::Result<String>>,
    n: u64,
) -> String {
    seen.extend(lines.map(Result::unwrap));
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    let expected: Vec<String> = (0..n)
        .map(|i| format!("{i} {}", 2 * i))
        .chain(["done".to_owned()])
        .collect();
    assert_eq!(seen, expected, "{stderr}");
    stderr
}

/// Builds the package in `dir` as the images hold a program: static, for `triple`, with
/// the remote call path, into `target/e2e/turbolift-static`; returns the executable named
/// `bin`.
pub fn static_program(dir: &Path, triple: &str, bin: &str) -> PathBuf {
    static_program_with(dir, triple, bin, "turbolift/service")
}

/// [`static_program`] with turbolift's `features` (`turbolift/service,turbolift/tls`).
pub fn static_program_with(dir: &Path, triple: &str, bin: &str, features: &str) -> PathBuf {
    let built = output(
        Command::new(env!("CARGO"))
            .args(["build", "-q", "--features", features, "--target", triple])
            .arg("--target-dir")
            .arg(target_dir().join("turbolift-static"))
            .env(
                "CARGO_ENCODED_RUSTFLAGS",
                "-Ctarget-feature=+crt-static\x1f-Cstrip=debuginfo",
            )
            .env_remove("RUSTFLAGS")
            .current_dir(dir)
            .stdin(Stdio::null()),
    );
    assert_success(
        &format!("the static build of the program ({features})"),
        &built,
    );
    target_dir().join(format!("turbolift-static/{triple}/debug/{bin}"))
}

/// Waits until none of `pids` is alive; returns those still alive after `limit`.
pub fn wait_gone(pids: &[u32], limit: Duration) -> Vec<u32> {
    let deadline = Instant::now() + limit;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process that is killed if a test fails before it ends.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Live processes whose executable lies under `dir`, with that executable (a replaced
/// or deleted file's path without its ` (deleted)` mark).
pub fn processes_under(dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
            continue;
        };
        let exe = match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
            Some(path) => PathBuf::from(path),
            None => exe,
        };
        if exe.starts_with(dir) && alive(pid) {
            found.push((pid, exe));
        }
    }
    found
}
