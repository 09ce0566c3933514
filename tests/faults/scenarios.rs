//! Scenarios 1–4, 6 and 7: killed workers, every replica down, a hung function, panics,
//! overload, and a graceful shutdown under load.

use std::time::Duration;

use crate::harness::*;
use crate::support::*;

#[test]
fn worker_loss_10000_calls_two_kills() {
    let _serial = serial();
    built();
    let n = 10_000;
    // Each kill lands while both replicas hold calls (the program's calls at a pause
    // last long), and before the program has run on.
    let (lines, run) = kill_a_replica_at(
        &["--message-format", "json"],
        &["burst", &n.to_string(), "16", "2"],
        &[2_500, 6_000],
    );
    let (code, stderr) = run.finish();
    let (correct, errors) = check_burst(&lines, n);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(correct, n, "{errors:?}");
    assert_eq!(
        restarts(&stderr),
        2,
        "both killed workers were restarted: {stderr}"
    );
    // The summary counts every call though a replica was killed twice: the program's
    // counts are exact.
    let calls = function_summary(&stderr, "faults::slow_double");
    assert_eq!(calls["calls"], n, "{calls}");
    assert_eq!(calls["served"], n, "{calls}");
    for kind in ["panic", "timeout", "decode", "unavailable", "refused"] {
        assert_eq!(calls["errors"][kind], 0, "{kind}: {calls}");
    }
    assert_eq!(calls["restarts"], 2, "{calls}");
    assert_eq!(calls["replicas"], 2, "{calls}");
    assert_eq!(calls["given_up"], 0, "{calls}");
    let ms = |time: &str, q: &str| calls[time][q].as_f64();
    let (p50, p99) = match (ms("call_time", "p50_ms"), ms("call_time", "p99_ms")) {
        (Some(p50), Some(p99)) => (p50, p99),
        _ => panic!("call p50/p99: {calls}"),
    };
    assert!(p50 > 0.0 && p99 >= p50, "{calls}");
    // Both replicas are up at the end (the killed one restarted): both answered.
    assert_eq!(calls["service_time"]["replicas_answered"], 2, "{calls}");
    assert!(ms("service_time", "p99_ms").is_some(), "{calls}");
    assert!(
        !stderr.contains("Summary of the calls"),
        "JSON instead of the table"
    );
    summary(
        "worker-loss",
        format!(
            "calls {n}, correct {correct}, errors {errors:?}, restarts 2 (two SIGKILLs); summary: calls {}, served {}, retries {}, call p50/p99 {p50:.2}/{p99:.2} ms",
            calls["calls"], calls["served"], calls["retries"]
        ),
    );
}

/// The summary's JSON line of `function` on cargo turbolift's stderr
/// (`--message-format json`); every such line must parse.
fn function_summary(stderr: &str, function: &str) -> serde_json::Value {
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.contains("\"reason\":\"turbolift-function-summary\""))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("`{l}`: {e}")))
        .collect();
    let mut of_function = lines.into_iter().filter(|l| l["function"] == function);
    let line = of_function
        .next()
        .unwrap_or_else(|| panic!("no summary of `{function}` in:\n{stderr}"));
    assert!(of_function.next().is_none(), "one line per function");
    line
}

#[test]
fn worker_loss_during_a_batch_of_10000_calls_two_kills() {
    let _serial = serial();
    built();
    let n = 10_000;
    // Both replicas hold requests of the batch in flight: one dies in the middle of one.
    let (lines, run) = kill_a_replica_at(&[], &["batch", &n.to_string(), "1"], &[2_500, 6_000]);
    let (code, stderr) = run.finish();
    let (correct, errors) = check_burst(&lines, n);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(correct, n, "{errors:?}");
    let in_order = lines
        .iter()
        .take(n as usize)
        .enumerate()
        .all(|(i, line)| line.split(' ').next() == Some(&i.to_string()));
    assert!(in_order, "a batch gives its results in input order");
    assert_eq!(
        restarts(&stderr),
        2,
        "both killed workers were restarted: {stderr}"
    );
    summary(
        "batch-worker-loss",
        format!(
            "one batch of {n} calls, correct {correct}, in order, errors {errors:?}, restarts 2 (two SIGKILLs)"
        ),
    );
}

/// The program's pause points (`FAULTS_PAUSE_AT`) and the files that let it go on
/// (`FAULTS_GO`.I), in a directory removed with it.
struct Pauses {
    dir: tempfile::TempDir,
    at: String,
}

impl Pauses {
    fn at(points: &[u64]) -> Pauses {
        let at = points.iter().map(u64::to_string).collect::<Vec<_>>();
        Pauses {
            dir: tempfile::tempdir().unwrap(),
            at: at.join(","),
        }
    }

    fn go(&self) -> String {
        self.dir.path().join("go").to_str().unwrap().to_owned()
    }

    /// Starts the program over two replicas of each service, with these pause points.
    fn start(&self, run_args: &[&str], program_args: &[&str]) -> Run {
        let go = self.go();
        let env = [("FAULTS_PAUSE_AT", self.at.as_str()), ("FAULTS_GO", &go)];
        let mut args = vec!["--replicas", "2"];
        args.extend_from_slice(run_args);
        start(&args, program_args, &env)
    }

    /// Reads the program's lines up to its next `pause I`, runs `act` and lets the program
    /// go on; the result lines read.
    fn next(&self, run: &mut Run, act: impl FnOnce()) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = run.line();
            if let Some(i) = line.strip_prefix("pause ") {
                act();
                std::fs::write(format!("{}.{i}", self.go()), "").unwrap();
                return lines;
            }
            lines.push(line);
        }
    }
}

/// Starts `burst`/`batch` (with `run_args` for cargo turbolift) with a pause at each of
/// `at`, SIGKILLs one replica of `slow_double` at each pause, and reads the rest of the
/// run; the result lines.
fn kill_a_replica_at(run_args: &[&str], program_args: &[&str], at: &[u64]) -> (Vec<String>, Run) {
    let pauses = Pauses::at(at);
    let mut run = pauses.start(run_args, program_args);
    let mut lines = Vec::new();
    for _ in at {
        lines.extend(pauses.next(&mut run, || {
            // The replica killed before is back (restarted) before the next kill.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let mut replicas = running(&exe("slow_double"));
            while replicas.len() < 2 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
                replicas = running(&exe("slow_double"));
            }
            assert_eq!(replicas.len(), 2, "both replicas run before the kill");
            kill(replicas[0], "KILL");
        }));
    }
    lines.extend(run.until("done"));
    (lines, run)
}

#[test]
fn every_replica_down_fails_fast_and_names_the_function() {
    let _serial = serial();
    built();
    let go = tempfile::tempdir().unwrap();
    let go_file = go.path().join("go");
    let mut run = start(
        &["--replicas", "2"],
        &["down"],
        &[("FAULTS_GO", go_file.to_str().unwrap())],
    );
    assert_eq!(run.line(), "ready");
    // Freeze the supervisor so that nothing restarts, then take every replica down.
    let supervisor = run.child.0.id();
    kill(supervisor, "STOP");
    let replicas = running(&exe("double"));
    assert_eq!(replicas.len(), 2);
    for pid in &replicas {
        kill(*pid, "KILL");
    }
    assert!(wait_gone(&replicas, Duration::from_secs(5)).is_empty());
    std::fs::write(&go_file, "").unwrap();
    let lines = run.until("done");
    kill(supervisor, "CONT");
    let (code, stderr) = run.finish();
    assert_eq!(code, Some(0), "{stderr}\n{lines:?}");
    let mut slowest = 0;
    for line in &lines[..20] {
        assert!(
            line.contains("no replica of `faults::double` could take the call after 4 attempt(s)"),
            "{line}"
        );
        let ms: u64 = line
            .rsplit('(')
            .next()
            .unwrap()
            .trim_end_matches(" ms)")
            .parse()
            .unwrap();
        assert!(ms < 2_000, "bounded retries, not a hang: {line}");
        slowest = slowest.max(ms);
    }
    summary(
        "all-down",
        format!(
            "calls 20, correct 0, errors {{Unavailable: 20}}, slowest failure {slowest} ms, restarts 0"
        ),
    );
}

#[test]
fn a_hung_function_times_out_and_its_service_keeps_answering() {
    let _serial = serial();
    built();
    let mut run = start(&["--replicas", "1"], &["hang"], &[]);
    let lines = run.until("done");
    let (code, stderr) = run.finish();
    assert_eq!(code, Some(0), "{stderr}\n{lines:?}");
    assert!(lines[0].starts_with("others: 200 ok in "), "{lines:?}");
    let sleepy = &lines[1];
    assert!(
        sleepy.starts_with("sleepy: call to `faults::sleepy` timed out after 500ms"),
        "{sleepy}"
    );
    let waited: u64 = sleepy
        .rsplit("after ")
        .next()
        .unwrap()
        .trim_end_matches(" ms")
        .parse()
        .unwrap();
    assert!(
        waited < 1_500,
        "timeout of 500 ms plus a small margin: {waited} ms"
    );
    summary(
        "hung-function",
        format!(
            "calls 201, correct 200, errors {{Timeout: 1}} after {waited} ms (timeout 500 ms), restarts 0"
        ),
    );
}

#[test]
fn panics_are_errors_with_their_message_and_the_service_serves_on() {
    let _serial = serial();
    built();
    let mut run = start(&["--replicas", "2"], &["panics", "1000"], &[]);
    let lines = run.until("done");
    let (code, stderr) = run.finish();
    assert_eq!(code, Some(0), "{stderr}\n{lines:?}");
    assert_eq!(lines[0], "ok 667 panicked 333 other 0");
    assert_eq!(lines[1], "after: Ok(7)");
    assert_eq!(
        restarts(&stderr),
        0,
        "a panic does not bring a service down"
    );
    summary(
        "panics",
        "calls 1001, correct 668, errors {Panic: 333}, restarts 0".to_owned(),
    );
}

#[test]
fn overload_queues_or_answers_busy_and_every_call_completes() {
    let _serial = serial();
    built();
    let n = 2_000;
    let mut run = start(
        &["--replicas", "1"],
        &["burst", &n.to_string(), "2000", "2"],
        &[
            ("TURBOLIFT_MAX_CONCURRENCY", "4"),
            ("TURBOLIFT_MAX_QUEUE", "16"),
            // One request per call, which is what fills a service's line: coalesced,
            // 2,000 calls at once are a few batch requests, each holding one place.
            ("TURBOLIFT_COALESCE", "off"),
        ],
    );
    let lines = run.until("done");
    let (code, stderr) = run.finish();
    let (correct, errors) = check_burst(&lines, n);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(correct, n, "{errors:?}");
    let busy: u64 = log_counts(&stderr, "slow-double", "busy=");
    assert!(
        busy > 0,
        "the small line of waiting calls filled up and answered busy"
    );
    summary(
        "overload",
        format!(
            "calls {n}, correct {correct}, errors {errors:?}, busy answers retried {busy}, restarts {}",
            restarts(&stderr)
        ),
    );
}

#[test]
fn sigterm_to_a_service_under_load_finishes_its_calls() {
    let _serial = serial();
    built();
    let n = 3_000;
    // The SIGTERM lands while both replicas hold calls (the program's calls at its pause
    // last long).
    let pauses = Pauses::at(&[1_000]);
    let mut run = pauses.start(&[], &["burst", &n.to_string(), "64", "2"]);
    let mut lines = pauses.next(&mut run, || {
        let replicas = running(&exe("slow_double"));
        assert_eq!(replicas.len(), 2);
        kill(replicas[0], "TERM");
    });
    lines.extend(run.until("done"));
    let (code, stderr) = run.finish();
    let (correct, errors) = check_burst(&lines, n);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(correct, n, "{errors:?}");
    let logs = logs_dir(&stderr);
    let drained = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .any(|log| log.contains("shutting down: finishing the calls in flight"));
    assert!(drained, "the terminated replica drained");
    summary(
        "graceful-stop",
        format!(
            "calls {n}, correct {correct}, errors {errors:?}, restarts {} (SIGTERM)",
            restarts(&stderr)
        ),
    );
}

/// The sum of a `key=N` counter over the `stopped` lines of a service's logs.
pub fn log_counts(stderr: &str, service: &str, key: &str) -> u64 {
    let logs = logs_dir(stderr);
    std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("faults-{service}-"))
        })
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .flat_map(|log| {
            log.lines()
                .filter_map(|l| {
                    l.split(key)
                        .nth(1)?
                        .split_whitespace()
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
                .collect::<Vec<_>>()
        })
        .sum()
}
