//! No process outlives a run, however it ends, nor its directory of shared memory; a
//! killed service comes back; runs do not collide.

use std::io::{BufRead, BufReader, Lines};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Stdio};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::Duration;

use crate::support::*;

/// These tests count processes by executable, so they run one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn service_exe() -> PathBuf {
    target_dir().join("debug/lifecycle-double")
}

fn program_exe() -> PathBuf {
    target_dir().join("debug/lifecycle")
}

fn built() {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let out = output(&mut turbolift(&fixture("lifecycle"), &["build"]));
        assert_success("cargo turbolift build", &out);
    });
}

fn assert_nothing_left() {
    let left = wait_gone(&running(&service_exe()), Duration::from_secs(5));
    assert!(
        left.is_empty(),
        "service processes outlived the run: {left:?}"
    );
    let left = wait_gone(&running(&program_exe()), Duration::from_secs(5));
    assert!(left.is_empty(), "the program outlived the run: {left:?}");
}

fn spawn(args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut full = vec!["run", "--replicas", "2", "--"];
    full.extend_from_slice(args);
    Running(
        turbolift(&fixture("lifecycle"), &full)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// `TURBOLIFT_SHM_DIR` in the environment the process `pid` started with.
fn shm_dir_of(pid: u32) -> Option<PathBuf> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    environ
        .split(|b| *b == 0)
        .find_map(|var| var.strip_prefix(b"TURBOLIFT_SHM_DIR="))
        .map(|dir| PathBuf::from(std::ffi::OsStr::from_bytes(dir)))
}

/// The directory of shared memory of the run of `cargo turbolift` `pid`, after checking
/// that the program and every one of `services` got the same one:
/// `/dev/shm/turbolift-<uid>-<pid>-<run id>`, readable by this user only.
fn shared_memory(pid: u32, services: &[u32]) -> PathBuf {
    let programs = running(&program_exe());
    assert_eq!(programs.len(), 1);
    let dir = shm_dir_of(programs[0]).expect("the program has TURBOLIFT_SHM_DIR");
    for service in services {
        assert_eq!(
            shm_dir_of(*service).as_ref(),
            Some(&dir),
            "replica {service}"
        );
    }
    // SAFETY: getuid has no failure and no memory effects.
    let uid = unsafe { libc::getuid() };
    let name = dir.strip_prefix("/dev/shm").unwrap().to_str().unwrap();
    assert!(
        name.starts_with(&format!("turbolift-{uid}-{pid}-")),
        "{}",
        dir.display()
    );
    let metadata = std::fs::metadata(&dir).unwrap();
    assert!(metadata.is_dir());
    assert_eq!(metadata.permissions().mode() & 0o777, 0o700);
    dir
}

fn assert_removed(dir: &Path) {
    assert!(!dir.exists(), "{} outlived the run", dir.display());
}

#[test]
fn a_normal_exit_leaves_no_process() {
    let _serial = serial();
    built();
    let out = output(&mut turbolift(&fixture("lifecycle"), &["run", "--", "ok"]));
    assert_success("run", &out);
    assert_eq!(text(&out.stdout), "doubled 42\n");
    assert_nothing_left();
}

#[test]
fn a_panicking_program_passes_its_exit_code_on_and_leaves_no_process() {
    let _serial = serial();
    built();
    let out = output(&mut turbolift(
        &fixture("lifecycle"),
        &["run", "--", "panic"],
    ));
    assert_eq!(out.status.code(), Some(101), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("the program panics on purpose"));
    assert_nothing_left();
}

#[test]
fn a_main_that_returns_an_error_exits_as_under_cargo_run() {
    let _serial = serial();
    built();
    let dir = fixture("lifecycle");
    let plain = output(&mut cargo(&dir, &["run", "-q", "--", "err"]));
    let lifted = output(&mut turbolift(&dir, &["run", "--", "err"]));
    let message = "Error: \"the program fails on purpose after 42\"";
    for (how, out) in [("cargo run", &plain), ("cargo turbolift run", &lifted)] {
        assert_eq!(out.status.code(), Some(1), "{how}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "doubled 42\n", "{how}");
        assert!(
            text(&out.stderr).lines().any(|l| l == message),
            "{how}: {}",
            text(&out.stderr)
        );
    }
    assert_nothing_left();
}

/// A run whose program waits after its first call, and the pids of its two replicas.
fn waiting_run(env: &[(&str, &str)]) -> (Running, Vec<u32>) {
    let mut run = spawn(&["wait"], env);
    let mut lines = BufReader::new(run.0.stdout.take().unwrap()).lines();
    read_until(&mut lines, "waiting");
    let services = running(&service_exe());
    assert_eq!(services.len(), 2, "two replicas run");
    (run, services)
}

/// A run whose program makes `n` calls one after another, its output read up to the
/// 100th call's line (the lines seen, and the rest to read), and the pids of its two
/// replicas.
fn steady_run(
    n: u64,
) -> (
    Running,
    Lines<BufReader<ChildStdout>>,
    Vec<String>,
    Vec<u32>,
) {
    let mut run = spawn(&["steady", &n.to_string()], &[]);
    let mut lines = BufReader::new(run.0.stdout.take().unwrap()).lines();
    let seen = read_until(&mut lines, "100 ");
    let services = running(&service_exe());
    assert_eq!(services.len(), 2, "two replicas run");
    (run, lines, seen, services)
}

#[test]
fn sigint_to_cargo_turbolift_stops_everything() {
    let _serial = serial();
    built();
    let (mut run, services) = waiting_run(&[]);
    let child = &mut run.0;
    let shm = shared_memory(child.id(), &services);
    kill(child.id(), "INT");
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "the program's death by SIGINT is passed on"
    );
    assert!(wait_gone(&services, Duration::from_secs(5)).is_empty());
    assert_nothing_left();
    assert_removed(&shm);
    // Killed by a signal, the program left no counts: the summary says so, and shows
    // none.
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("Summary without the program's counts of its calls: a signal ended it before it wrote them"),
        "{stderr}"
    );
    let row = summary_row(&stderr);
    assert_eq!(
        row[..5],
        ["lifecycle::double", "—", "—", "—", "—"],
        "{stderr}"
    );
    assert_eq!(row[row.len() - 3..], ["2", "0", "0"], "{stderr}");
}

/// The words of the summary's row of `double`.
fn summary_row(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .find(|l| l.trim_start().starts_with("lifecycle::double "))
        .unwrap_or_else(|| panic!("no summary of double:\n{stderr}"))
        .split_whitespace()
        .collect()
}

#[test]
fn sigkill_to_cargo_turbolift_still_takes_the_services_down() {
    let _serial = serial();
    built();
    let (mut run, services) = waiting_run(&[]);
    let child = &mut run.0;
    let programs = running(&program_exe());
    assert_eq!(programs.len(), 1);
    let shm = shared_memory(child.id(), &services);
    kill(child.id(), "KILL");
    child.wait().unwrap();
    assert!(
        wait_gone(&services, Duration::from_secs(10)).is_empty(),
        "services died with their parent"
    );
    assert!(
        wait_gone(&programs, Duration::from_secs(10)).is_empty(),
        "the program died with its parent"
    );
    // The directory of shared memory that SIGKILL left behind, the next run removes.
    let out = output(&mut turbolift(&fixture("lifecycle"), &["run", "--", "ok"]));
    assert_success("the next run", &out);
    assert_removed(&shm);
}

#[test]
fn a_runs_shared_memory_is_private_and_removed_when_the_program_ends() {
    let _serial = serial();
    built();
    let (mut run, lines, seen, services) = steady_run(1000);
    let child = &mut run.0;
    let shm = shared_memory(child.id(), &services);
    finish_steady(child, seen, lines, 1000);
    assert_removed(&shm);
    assert_nothing_left();
}

#[test]
fn turbolift_shm_off_gives_a_run_no_shared_memory() {
    let _serial = serial();
    built();
    // Not even a directory this environment names.
    let env = [
        ("TURBOLIFT_SHM", "off"),
        ("TURBOLIFT_SHM_DIR", "/dev/shm/not-this-run"),
    ];
    let (mut run, services) = waiting_run(&env);
    let child = &mut run.0;
    let programs = running(&program_exe());
    assert_eq!(programs.len(), 1);
    for pid in programs.iter().chain(&services) {
        assert_eq!(shm_dir_of(*pid), None, "process {pid}");
    }
    kill(child.id(), "INT");
    child.wait().unwrap();
    assert_nothing_left();
    // A value it does not know stops the run before anything is built.
    let out =
        output(turbolift(&fixture("lifecycle"), &["run", "--", "ok"]).env("TURBOLIFT_SHM", "fast"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("error: TURBOLIFT_SHM must be `on` or `off`, not `fast`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_killed_service_is_restarted_and_every_call_still_succeeds() {
    let _serial = serial();
    built();
    let (mut run, lines, seen, victims) = steady_run(400);
    let child = &mut run.0;
    kill(victims[0], "KILL");
    let stderr = finish_steady(child, seen, lines, 400);
    assert!(stderr.contains("(1 restart during the run)"), "{stderr}");
    assert_nothing_left();
    // The first call and the 400: every one served, the restart counted for `double`.
    let row = summary_row(&stderr);
    assert_eq!(
        row[..4],
        ["lifecycle::double", "401", "401", "0"],
        "{stderr}"
    );
    assert_eq!(row[row.len() - 3..], ["2", "1", "0"], "{stderr}");
}

#[test]
fn two_runs_at_once_do_not_collide() {
    let _serial = serial();
    built();
    let mut runs: Vec<Running> = (0..2).map(|_| spawn(&["steady", "150"], &[])).collect();
    for run in &mut runs {
        let child = std::mem::replace(
            &mut run.0,
            std::process::Command::new("true").spawn().unwrap(),
        );
        let out = child.wait_with_output().unwrap();
        assert_success("concurrent run", &out);
        let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), 151);
        assert_eq!(lines[149], "149 298");
    }
    assert_nothing_left();
}
