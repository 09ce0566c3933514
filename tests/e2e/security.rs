//! What an attacker on the same machine can do to a run, tried with the real binary: take a
//! replica's port while it restarts or after it was given up (a squatter of another user,
//! in a tight loop), hold thousands of idle connections to a service, ask for absurd
//! numbers of replicas. Runs the `faults` fixture, which no other test of this suite runs
//! (the fault suite is another test binary, which cargo runs after this one).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use crate::support::*;

/// These tests (and those of `tls` that run the `faults` fixture) kill replicas found by
/// executable and rebuild them with other features, so they run one at a time.
pub(crate) fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn built() {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let out = output(&mut turbolift(&fixture("faults"), &["build"]));
        assert_success("cargo turbolift build", &out);
    });
}

/// The executable of the `faults` service of `function` (`slow_double`).
pub(crate) fn exe(function: &str) -> PathBuf {
    target_dir()
        .join("debug")
        .join(format!("faults-{}", function.replace('_', "-")))
}

/// The user the squatter runs as: `nobody` when the tests run as root (CI), else this
/// user, which cannot take the port either. Under CI=true the tests must run as root.
fn squatter_uid() -> Option<libc::uid_t> {
    // SAFETY: geteuid has no failure and no memory effects.
    if unsafe { libc::geteuid() } == 0 {
        return Some(65534);
    }
    if on_ci() {
        cannot_run("the squatter runs as `nobody`, which needs the tests to run as root");
    }
    eprintln!(
        "note: not root, so the squatter runs as this user, not as `nobody` (under CI=true the tests run as root)"
    );
    None
}

/// `cargo turbolift run --replicas 2 FLAGS -- ARGS` of the `faults` fixture, its stderr
/// read as it comes.
pub(crate) struct Run {
    child: Running,
    stdout: std::io::Lines<BufReader<ChildStdout>>,
    stderr: Receiver<String>,
    stderr_seen: Vec<String>,
}

impl Run {
    pub(crate) fn start(flags: &[&str], args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut full = vec!["run", "--replicas", "2"];
        full.extend_from_slice(flags);
        full.push("--");
        full.extend_from_slice(args);
        let mut cmd = turbolift(&fixture("faults"), &full);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = Running(cmd.spawn().unwrap());
        let stdout = BufReader::new(child.0.stdout.take().unwrap()).lines();
        let stderr = child.0.stderr.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Run {
            child,
            stdout,
            stderr: rx,
            stderr_seen: Vec::new(),
        }
    }

    /// Lines of the program until `pause I` (excluded), and I.
    pub(crate) fn until_pause(&mut self) -> (Vec<String>, u64) {
        let mut lines = Vec::new();
        for line in self.stdout.by_ref() {
            let line = line.unwrap();
            if let Some(i) = line.strip_prefix("pause ") {
                return (lines, i.parse().unwrap());
            }
            lines.push(line);
        }
        panic!("the program ended before its next pause: {lines:?}");
    }

    /// Lines of the program until one that is `line` (excluded).
    pub(crate) fn until_line(&mut self, line: &str) -> Vec<String> {
        let mut lines = Vec::new();
        for seen in self.stdout.by_ref() {
            let seen = seen.unwrap();
            if seen == line {
                return lines;
            }
            lines.push(seen);
        }
        panic!("the program ended before a line `{line}`: {lines:?}");
    }

    /// Waits for a line of cargo turbolift's stderr that contains `text`.
    pub(crate) fn stderr_line(&mut self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(wait) {
                Ok(line) => {
                    self.stderr_seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with `{text}` on stderr within {limit:?}: {:?}",
                    self.stderr_seen
                ),
            }
        }
    }

    /// The rest of the program's lines, its exit code and cargo turbolift's stderr.
    pub(crate) fn finish(mut self) -> (Vec<String>, Option<i32>, String) {
        let rest: Vec<String> = self.stdout.by_ref().map_while(Result::ok).collect();
        let status = self.child.0.wait().unwrap();
        self.stderr_seen.extend(self.stderr.iter());
        (rest, status.code(), self.stderr_seen.join("\n"))
    }
}

/// The file whose creation lets the `faults` program go on after its pause `i`.
fn go(dir: &Path, i: u64) {
    std::fs::write(dir.join(format!("go.{i}")), "").unwrap();
}

/// Checks `i v` lines: every call of `0..n` exactly once, `v = 2 i`.
pub(crate) fn assert_every_answer_right(lines: &[String], n: u64) {
    let mut seen = vec![false; n as usize];
    for line in lines.iter().filter(|l| *l != "done") {
        let (i, v) = line.split_once(' ').unwrap();
        let i: u64 = i.parse().unwrap();
        assert_eq!(
            v,
            (2 * i).to_string(),
            "call {i} got a wrong answer: `{line}`"
        );
        assert!(!seen[i as usize], "call {i} answered twice");
        seen[i as usize] = true;
    }
    assert!(seen.iter().all(|s| *s), "calls without an answer");
}

/// The port of 127.0.0.1 a replica serves: the socket it inherited, by its
/// `TURBOLIFT_LISTEN_FD`, looked up in `/proc/net/tcp`.
pub(crate) fn listen_port(pid: u32) -> u16 {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let fd = environ
        .split(|b| *b == 0)
        .find_map(|v| v.strip_prefix(b"TURBOLIFT_LISTEN_FD="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .expect("a replica inherits its socket");
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
    let inode = link
        .to_string_lossy()
        .strip_prefix("socket:[")
        .and_then(|s| s.strip_suffix(']'))
        .map(str::to_owned)
        .expect("a socket");
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(9) == Some(&inode.as_str()))
        .map(|f| f[1].to_owned())
        .expect("the socket in /proc/net/tcp");
    u16::from_str_radix(local.rsplit(':').next().unwrap(), 16).unwrap()
}

/// Waits until `exe` runs as `count` processes none of which is in `gone`; their pids.
pub(crate) fn wait_replaced(exe: &Path, gone: &[u32], count: usize) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = running(exe);
        if now.len() == count && now.iter().all(|p| !gone.contains(p)) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the replica did not come back: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_squatter_of_another_user_never_gets_a_restarting_replicas_port() {
    squatter_never_gets_a_restarting_replicas_port(false);
}

#[test]
fn a_squatter_of_another_user_never_gets_a_restarting_replicas_port_over_tls() {
    squatter_never_gets_a_restarting_replicas_port(true);
}

/// A squatter spins on a replica's port through three SIGKILLs and restarts, in a run in
/// plain HTTP or over TLS (where the program would not believe it anyway: the port must
/// stay the replica's all the same).
fn squatter_never_gets_a_restarting_replicas_port(tls: bool) {
    let _serial = serial();
    built();
    let uid = squatter_uid();
    let pauses = tempfile::tempdir().unwrap();
    let go_file = pauses.path().join("go");
    let n = 12_000;
    let at = [2_000u64, 6_000, 10_000];
    let at_text = at.map(|i| i.to_string()).join(",");
    let mut run = Run::start(
        if tls { &["--tls"] } else { &[] },
        &["burst", &n.to_string(), "16", "0"],
        &[
            ("FAULTS_PAUSE_AT", &at_text),
            ("FAULTS_GO", go_file.to_str().unwrap()),
        ],
    );
    let mut lines = Vec::new();
    let mut tries = Vec::new();
    for _ in at {
        let (seen, i) = run.until_pause();
        lines.extend(seen);
        let replicas = wait_replaced(&exe("slow_double"), &[], 2);
        let victim = replicas[0];
        let port = listen_port(victim);
        // The squatter spins before the kill, through the restart, and on while the
        // program calls the new replica.
        let squatter = Squatter::start(port, uid);
        std::thread::sleep(Duration::from_millis(20));
        kill(victim, "KILL");
        let started = Instant::now();
        std::fs::write(format!("{}.{i}", go_file.display()), "").unwrap();
        let back = wait_replaced(&exe("slow_double"), &[victim], 2);
        let restart = started.elapsed();
        assert!(
            back.iter().any(|p| listen_port(*p) == port),
            "the replica came back on its port {port}"
        );
        std::thread::sleep(Duration::from_millis(300));
        let seen = squatter.stop();
        if let Some(uid) = uid {
            assert_eq!(seen.uid, u64::from(uid), "the squatter ran as nobody");
        }
        assert!(
            seen.in_use > 1000,
            "the squatter tried hard, and the port was always taken: {seen:?}"
        );
        assert_eq!(seen.bound, 0, "the squatter never bound the port: {seen:?}");
        assert_eq!(seen.accepted, 0, "the squatter received no call: {seen:?}");
        assert_eq!(
            seen.other, 0,
            "no other error (the last: errno {}): {seen:?}",
            seen.last_errno
        );
        tries.push(format!(
            "try {}: {} binds refused (EADDRINUSE), 0 bound, 0 calls received, back in {restart:?}",
            tries.len() + 1,
            seen.in_use
        ));
    }
    let (rest, code, stderr) = run.finish();
    lines.extend(rest);
    assert_eq!(code, Some(0), "{stderr}");
    assert_every_answer_right(&lines, n);
    assert!(
        stderr.contains("(3 restarts during the run)"),
        "the three killed replicas came back: {stderr}"
    );
    let logs = logs_dir(&stderr);
    for entry in std::fs::read_dir(&logs).unwrap() {
        let log = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!log.contains("Address already in use"), "{log}");
    }
    assert_private(&logs);
    let ready = stderr
        .lines()
        .find(|l| l.contains("Ready `faults::slow_double`"))
        .unwrap_or_else(|| panic!("a Ready line: {stderr}"));
    assert_eq!(ready.ends_with(" (TLS)"), tls, "{ready}");
    let served: u64 = served_calls(&logs).iter().map(|(_, n)| n).sum();
    assert!(served > 0, "the replicas served the calls: {stderr}");
    let who = if uid.is_some() { "nobody" } else { "this user" };
    let over = if tls { ", over TLS" } else { "" };
    summary(&format!(
        "squatter ({who}) during 3 restarts of a SIGKILLed replica{over}: {}; {n} calls, all right",
        tries.join("; ")
    ));
}

/// Checks that a run's log folder and its logs are this user's only.
pub(crate) fn assert_private(logs: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(logs), 0o700, "{}", logs.display());
    assert_eq!(mode(logs.parent().unwrap()), 0o700);
    for entry in std::fs::read_dir(logs).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

/// Moves an executable away until dropped, so that starting it fails.
struct Moved(PathBuf);

impl Moved {
    fn away(exe: &Path) -> Moved {
        let moved = exe.with_extension("moved-away");
        std::fs::rename(exe, &moved).unwrap();
        Moved(exe.to_owned())
    }
}

impl Drop for Moved {
    fn drop(&mut self) {
        let _ = std::fs::rename(self.0.with_extension("moved-away"), &self.0);
    }
}

#[test]
fn a_replica_given_up_refuses_calls_keeps_its_port_and_is_reported() {
    let _serial = serial();
    built();
    let uid = squatter_uid();
    let pauses = tempfile::tempdir().unwrap();
    let n = 4_000;
    let mut run = Run::start(
        &[],
        &["burst", &n.to_string(), "16", "0"],
        &[
            ("FAULTS_PAUSE_AT", "1000"),
            ("FAULTS_GO", pauses.path().join("go").to_str().unwrap()),
        ],
    );
    let (mut lines, i) = run.until_pause();
    let replicas = wait_replaced(&exe("slow_double"), &[], 2);
    let victim = replicas[0];
    let port = listen_port(victim);
    let started = Instant::now();
    {
        // Every restart fails at once: the executable is gone.
        let _moved = Moved::away(&exe("slow_double"));
        kill(victim, "KILL");
        let warning = run.stderr_line("gave up on replica", Duration::from_secs(60));
        assert!(
            warning.contains("after 21 failures in a row")
                && warning.contains(&format!("127.0.0.1:{port} refuses calls"))
                && warning.contains("its log: "),
            "{warning}"
        );
    }
    let gave_up_after = started.elapsed();
    // Refused at once, and no one else can bind it.
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let refused = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let squatter = Squatter::start(port, uid);
    std::thread::sleep(Duration::from_millis(300));
    let seen = squatter.stop();
    assert!(
        seen.in_use > 100 && seen.bound == 0 && seen.other == 0,
        "{seen:?}"
    );
    // The rest of the calls go to the other replica, without hanging.
    let going_on = Instant::now();
    go(pauses.path(), i);
    let (rest, code, stderr) = run.finish();
    let rest_took = going_on.elapsed();
    lines.extend(rest);
    assert_eq!(code, Some(0), "{stderr}");
    assert_every_answer_right(&lines, n);
    assert!(
        rest_took < Duration::from_secs(20),
        "calls after the give-up did not hang: {rest_took:?}"
    );
    let stopped = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("Stopped"))
        .unwrap();
    assert!(
        stopped.contains("(20 restarts during the run, 1 replica given up)"),
        "{stopped}"
    );
    // The summary: every call served, the function's restarts and replica given up, and
    // the service time of the other replica alone, the one given up named.
    let row: Vec<&str> = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("faults::slow_double "))
        .unwrap_or_else(|| panic!("no summary of slow_double:\n{stderr}"))
        .split_whitespace()
        .collect();
    let calls = n.to_string();
    assert_eq!(
        row[..4],
        ["faults::slow_double", &calls, &calls, "0"],
        "{row:?}"
    );
    assert_eq!(row[row.len() - 3..], ["2", "20", "1"], "{row:?}");
    assert!(
        stderr.contains(&format!(
            "service time of `faults::slow_double` without 1 of its 2 replicas: 127.0.0.1:{port}: "
        )),
        "{stderr}"
    );
    let logs = logs_dir(&stderr);
    let log = logs.join("faults-slow-double-0.log");
    let log = if std::fs::read_to_string(&log).is_ok_and(|l| l.contains("not restarting")) {
        log
    } else {
        logs.join("faults-slow-double-1.log")
    };
    assert!(
        stderr.contains(&format!(
            "was given up during the run; why is in its log: {}",
            log.display()
        )),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("not restarting it again"), "{text}");
    summary(&format!(
        "given up after {gave_up_after:?} (21 failed starts): port {port} refused connections, the squatter ({} binds) never bound it, the other {} calls right in {rest_took:?}",
        seen.in_use,
        n - i
    ));
}

#[test]
fn replicas_beyond_256_are_a_clear_error() {
    for (replicas, says) in [
        ("100000", "at most 256 replicas of each service"),
        ("0", "at least 1 replica"),
    ] {
        let out = output(
            turbolift(&fixture("faults"), &["run", "--replicas", replicas])
                .env("RUST_BACKTRACE", "1"),
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "invalid value '{replicas}' for '--replicas <N>': "
            )) && stderr.contains(says),
            "{stderr}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{stderr}"
        );
    }
}

/// The fault fixture's `double` service started alone on 127.0.0.1 for a storm of
/// connections, with its connection cap left to its default and `env` added: the
/// process, its log, and the scheme and address of its listening line.
pub(crate) fn storm_service(
    env: &[(&str, String)],
) -> (Running, tempfile::NamedTempFile, String, SocketAddr) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut command = std::process::Command::new(exe("double"));
    command
        .env("TURBOLIFT_SECRET", "0".repeat(64))
        .env("TURBOLIFT_BIND", "127.0.0.1:0")
        // The storm's connections stay open until the test closes them.
        .env("TURBOLIFT_HEADER_TIMEOUT", "600s")
        .env_remove("TURBOLIFT_MAX_CONNECTIONS")
        .env_remove("TURBOLIFT_LISTEN_FD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.reopen().unwrap());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut service = Running(command.spawn().unwrap());
    let mut listening = String::new();
    BufReader::new(service.0.stdout.take().unwrap())
        .read_line(&mut listening)
        .unwrap();
    let (scheme, addr) = listening.trim().rsplit_once("://").unwrap();
    let scheme = scheme.rsplit(' ').next().unwrap().to_owned();
    (service, log, scheme, addr.parse().unwrap())
}

#[test]
fn twenty_thousand_idle_connections_are_capped_and_their_memory_returns() {
    let _serial = serial();
    built();
    let (mut service, log, scheme, addr) = storm_service(&[]);
    assert_eq!(scheme, "http");
    let pid = service.0.id();
    turbolift_shared::probe::ready(addr, Duration::from_secs(5)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(pid);

    let storm = 20_000;
    let openers = Openers::start(addr, storm);
    assert_eq!(openers.opened, storm, "every connection was opened");
    // The service takes connections up to its cap, then stops taking more, and says so.
    let held = wait_steady(|| accepted(addr.port()));
    let said = std::fs::read_to_string(log.path()).unwrap();
    let cap: usize = said
        .lines()
        .find_map(|l| {
            let (before, _) = l.split_once(" connections are open, as many as ")?;
            before.rsplit(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("the service said it reached its cap: {said}"));
    assert!(
        (cap - 16..=cap).contains(&held),
        "the service holds at most {cap} connections, and about that many: {held}"
    );
    // One more is not served while the cap is reached: it waits in the backlog (or is
    // not even accepted by the kernel).
    let late = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok();
    if let Some(mut late) = late.as_ref() {
        write!(late, "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        late.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut byte = [0u8];
        assert!(
            late.read(&mut byte).is_err(),
            "a connection beyond the cap got no answer"
        );
    }
    let during = rss_kib(pid);
    assert_eq!(accepted(addr.port()), held, "still at the cap");

    openers.stop();
    // Once the storm's connections close, the waiting one is served.
    let late = match late {
        Some(mut late) => {
            late.set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let mut answer = [0u8; 12];
            late.read_exact(&mut answer).unwrap();
            assert_eq!(&answer, b"HTTP/1.1 200");
            "one more connection waited without an answer, then was answered once the storm closed"
        }
        None => "one more connection was not even accepted by the kernel (its backlog full)",
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut after = rss_kib(pid);
    while after >= 2 * before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        after = rss_kib(pid);
    }
    let per_connection = (during - before) * 1024 / held as u64;
    let line = format!(
        "{storm} idle connections to one service: {held} held (cap {cap}), the rest waited; {late}; RSS {before} KiB before, {during} KiB during ({per_connection} bytes per connection), {after} KiB after"
    );
    assert!(
        after < 2 * before,
        "memory returned after the storm: {line}"
    );
    kill(pid, "TERM");
    let _ = service.0.wait();
    summary(&line);
}

/// Resident memory of a process, in KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// Connections to `port` of 127.0.0.1 that its server accepted: established, with a
/// socket of their own (those still waiting in the backlog have none, inode 0).
pub(crate) fn accepted(port: u16) -> usize {
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 9 && f[1] == local && f[3] == "01" && f[9] != "0")
        .count()
}

/// Polls `count` until it stays the same for a second (at most 30 s); its last value.
pub(crate) fn wait_steady(count: impl Fn() -> usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = count();
    let mut since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = count();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() > Duration::from_secs(1) {
            break;
        }
    }
    last
}

/// Appends a line to `target/security-summary.txt` and prints it.
pub(crate) fn summary(text: &str) {
    let line = format!("security: {text}");
    println!("{line}");
    let path = repo().join("target").join("security-summary.txt");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(file, "{line}").unwrap();
}

/// A process forked from the test that runs raw system calls only (the test process has
/// threads; between fork and exit the child must not allocate or take a lock), dies with
/// the test, and reports through a pipe when the test tells it to stop.
struct Forked {
    pid: libc::pid_t,
    stop: OwnedFd,
    report: OwnedFd,
    reaped: std::cell::Cell<bool>,
}

impl Forked {
    /// Forks a child that runs `body(stop, report)`, then exits.
    fn start(body: impl FnOnce(RawFd, RawFd)) -> Forked {
        let (stop_read, stop_write) = pipe();
        let (report_read, report_write) = pipe();
        // SAFETY: the child runs only `body`, which makes raw system calls, then _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: in the child: prctl, close and _exit are async-signal-safe.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                libc::close(stop_write.as_raw_fd());
                libc::close(report_read.as_raw_fd());
            }
            body(stop_read.as_raw_fd(), report_write.as_raw_fd());
            // SAFETY: ends the child without running anything of the parent's.
            unsafe { libc::_exit(0) }
        }
        Forked {
            pid,
            stop: stop_write,
            report: report_read,
            reaped: std::cell::Cell::new(false),
        }
    }

    /// Reads `N` numbers the child reports (before or after it is told to stop).
    fn read<const N: usize>(&self) -> [u64; N] {
        let mut numbers = [0u64; N];
        // SAFETY: `numbers` is valid for writes of its size.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(numbers.as_mut_ptr().cast::<u8>(), N * 8) };
        let mut file = std::fs::File::from(self.report.try_clone().unwrap());
        file.read_exact(bytes).expect("the child reports");
        numbers
    }

    /// Tells the child to stop.
    fn stop(&self) {
        let mut file = std::fs::File::from(self.stop.try_clone().unwrap());
        let _ = file.write_all(b"s");
    }

    /// Waits for the child to exit.
    fn wait(&self) {
        let mut status = 0;
        // SAFETY: waits for this test's own child.
        unsafe {
            libc::waitpid(self.pid, &mut status, 0);
        }
        self.reaped.set(true);
    }
}

impl Drop for Forked {
    /// A test that fails before it stops its child still ends it.
    fn drop(&mut self) {
        if !self.reaped.get() {
            // SAFETY: the pid is this test's own child, not reaped yet, so not reused.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is valid for two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both are new descriptors that nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Whether the test asked the child to stop.
fn told_to_stop(stop: RawFd) -> bool {
    let mut poll = libc::pollfd {
        fd: stop,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `poll` is one valid pollfd.
    unsafe { libc::poll(&mut poll, 1, 0) > 0 }
}

fn report(fd: RawFd, numbers: &[u64]) {
    // SAFETY: `numbers` is valid for reads of its size.
    unsafe {
        libc::write(fd, numbers.as_ptr().cast(), std::mem::size_of_val(numbers));
    }
}

fn sockaddr(ip: [u8; 4], port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_be_bytes(ip).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// What a squatter saw.
#[derive(Debug)]
struct Seen {
    uid: u64,
    in_use: u64,
    bound: u64,
    accepted: u64,
    other: u64,
    last_errno: u64,
}

/// A process that binds `port` in a tight loop, as `uid` when given: on 127.0.0.1 and on
/// 0.0.0.0, with `SO_REUSEADDR` and every other time `SO_REUSEPORT` too; when a bind
/// succeeds, it listens and accepts what comes for 20 ms.
struct Squatter(Forked);

impl Squatter {
    fn start(port: u16, uid: Option<libc::uid_t>) -> Squatter {
        Squatter(Forked::start(move |stop, out| {
            // SAFETY: raw system calls on values of this function's own stack.
            unsafe {
                if let Some(uid) = uid
                    && (libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(uid) != 0
                        || libc::setuid(uid) != 0)
                {
                    libc::_exit(3);
                }
                let mut seen = [u64::from(libc::getuid()), 0, 0, 0, 0, 0];
                let one: libc::c_int = 1;
                let mut round = 0u64;
                while !told_to_stop(stop) {
                    round += 1;
                    let ip = if round.is_multiple_of(2) {
                        [127, 0, 0, 1]
                    } else {
                        [0, 0, 0, 0]
                    };
                    let addr = sockaddr(ip, port);
                    let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                    let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
                    libc::setsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        libc::SO_REUSEADDR,
                        (&raw const one).cast(),
                        size,
                    );
                    if round % 4 < 2 {
                        libc::setsockopt(
                            fd,
                            libc::SOL_SOCKET,
                            libc::SO_REUSEPORT,
                            (&raw const one).cast(),
                            size,
                        );
                    }
                    let bound = libc::bind(
                        fd,
                        (&raw const addr).cast(),
                        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    );
                    if bound == 0 {
                        seen[2] += 1;
                        if libc::listen(fd, 16) == 0 {
                            let mut poll = libc::pollfd {
                                fd,
                                events: libc::POLLIN,
                                revents: 0,
                            };
                            if libc::poll(&mut poll, 1, 20) > 0 {
                                let call =
                                    libc::accept(fd, std::ptr::null_mut(), std::ptr::null_mut());
                                if call >= 0 {
                                    seen[3] += 1;
                                    libc::close(call);
                                }
                            }
                        }
                    } else {
                        let errno = *libc::__errno_location();
                        if errno == libc::EADDRINUSE {
                            seen[1] += 1;
                        } else {
                            seen[4] += 1;
                            seen[5] = errno as u64;
                        }
                    }
                    libc::close(fd);
                }
                report(out, &seen);
            }
        }))
    }

    fn stop(self) -> Seen {
        self.0.stop();
        let [uid, in_use, bound, accepted, other, last_errno] = self.0.read::<6>();
        self.0.wait();
        Seen {
            uid,
            in_use,
            bound,
            accepted,
            other,
            last_errno,
        }
    }
}

/// Processes that each open thousands of idle connections to a service (non-blocking
/// connects, nothing sent), hold them until stopped, then exit, which closes them all. A
/// process holds at most as many as its limit of open files allows.
pub(crate) struct Openers {
    children: Vec<Forked>,
    pub(crate) opened: usize,
}

impl Openers {
    pub(crate) fn start(addr: SocketAddr, total: usize) -> Openers {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is valid for writes.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        let per_child = (limit.rlim_max as usize).saturating_sub(64).min(10_000);
        assert!(
            per_child >= 1_000,
            "a hard limit of open files of {}",
            limit.rlim_max
        );
        let SocketAddr::V4(v4) = addr else {
            panic!("an IPv4 address")
        };
        let (ip, port) = (v4.ip().octets(), v4.port());
        let mut children = Vec::new();
        let mut left = total;
        while left > 0 {
            let count = left.min(per_child);
            left -= count;
            children.push(Forked::start(move |stop, out| {
                // SAFETY: raw system calls on values of this function's own stack.
                unsafe {
                    let mut limit = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
                    limit.rlim_cur = limit.rlim_max;
                    libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
                    let addr = sockaddr(ip, port);
                    let mut opened = 0u64;
                    for _ in 0..count {
                        let fd =
                            libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
                        if fd < 0 {
                            break;
                        }
                        let done = libc::connect(
                            fd,
                            (&raw const addr).cast(),
                            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                        );
                        if done == 0 || *libc::__errno_location() == libc::EINPROGRESS {
                            opened += 1;
                        }
                    }
                    report(out, &[opened]);
                    // Until the test says stop (or is gone).
                    let mut byte = 0u8;
                    libc::read(stop, (&raw mut byte).cast(), 1);
                }
            }));
        }
        let opened = children.iter().map(|c| c.read::<1>()[0] as usize).sum();
        Openers { children, opened }
    }

    /// Closes every connection: the processes exit.
    pub(crate) fn stop(self) {
        for child in &self.children {
            child.stop();
        }
        for child in &self.children {
            child.wait();
        }
    }
}
