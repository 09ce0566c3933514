//! Running the `faults` fixture and looking at its processes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Lines, Write};
use std::path::PathBuf;
use std::process::{ChildStdout, Stdio};
use std::sync::{Mutex, MutexGuard, Once};

use crate::support::*;

/// Scenarios count processes by executable, so they run one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn built() {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let out = output(&mut turbolift(&fixture("faults"), &["build"]));
        assert_success("cargo turbolift build", &out);
    });
}

/// The executable of the service of `function` (`slow_double`), or of the program.
pub fn exe(service: &str) -> PathBuf {
    let name = if service.is_empty() {
        "faults".to_owned()
    } else {
        format!("faults-{}", service.replace('_', "-"))
    };
    target_dir().join("debug").join(name)
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// A run of the fixture: `cargo turbolift run [run_args] -- program_args`.
pub struct Run {
    pub child: Running,
    pub lines: Lines<BufReader<ChildStdout>>,
    /// cargo turbolift's stderr, read as it comes (the replicas' output streams there: a
    /// pipe left unread would fill and hold cargo turbolift's own lines up).
    stderr: Option<std::thread::JoinHandle<String>>,
}

pub fn start(run_args: &[&str], program_args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut args = vec!["run"];
    args.extend_from_slice(run_args);
    args.push("--");
    args.extend_from_slice(program_args);
    let mut cmd = turbolift(&fixture("faults"), &args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = Running(cmd.spawn().unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let mut stderr = child.0.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    Run {
        child,
        lines: BufReader::new(stdout).lines(),
        stderr: Some(stderr),
    }
}

impl Run {
    /// The next line of the program's output.
    pub fn line(&mut self) -> String {
        self.lines
            .next()
            .expect("the program printed another line")
            .unwrap()
    }

    /// Lines until one equals `last` (included).
    pub fn until(&mut self, last: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = self.line();
            let stop = line == last;
            seen.push(line);
            if stop {
                return seen;
            }
        }
    }

    /// Waits for the end; returns the exit code and cargo turbolift's stderr.
    pub fn finish(mut self) -> (Option<i32>, String) {
        let rest: Vec<String> = self.lines.by_ref().map_while(Result::ok).collect();
        assert!(rest.is_empty(), "unread output: {rest:?}");
        let status = self.child.0.wait().unwrap();
        let stderr = self
            .stderr
            .take()
            .expect("finished once")
            .join()
            .expect("the stderr reader does not panic");
        (status.code(), stderr)
    }
}

/// Restarts reported on the `Stopped` line.
pub fn restarts(stderr: &str) -> u32 {
    stderr
        .lines()
        .find(|l| l.trim_start().starts_with("Stopped"))
        .and_then(|l| l.split(" (").nth(1))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Checks `i v` lines of `burst`: every call from 0 to n exactly once, `v = 2 i`.
/// Returns the count of correct results and the errors by kind.
pub fn check_burst(lines: &[String], n: u64) -> (u64, BTreeMap<String, u64>) {
    let mut seen = vec![false; n as usize];
    let mut correct = 0;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for line in lines {
        if line == "done" {
            continue;
        }
        let (i, rest) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("odd line `{line}`"));
        let i: u64 = i.parse().unwrap();
        assert!(!seen[i as usize], "call {i} answered twice");
        seen[i as usize] = true;
        match rest.parse::<u64>() {
            Ok(v) => {
                assert_eq!(v, 2 * i, "a wrong value for call {i}");
                correct += 1;
            }
            Err(_) => {
                let kind = rest.split(':').nth(1).unwrap_or(rest).trim().to_owned();
                *errors.entry(kind).or_default() += 1;
            }
        }
    }
    let missing: Vec<usize> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| !**s)
        .map(|(i, _)| i)
        .collect();
    assert!(missing.is_empty(), "calls without an answer: {missing:?}");
    (correct, errors)
}

/// Appends the scenario's summary to `target/faults-summary.txt` and prints it.
pub fn summary(scenario: &str, text: String) {
    let line = format!("faults: {scenario:<16} {text}");
    println!("{line}");
    let path = repo().join("target").join("faults-summary.txt");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(file, "{line}").unwrap();
}
