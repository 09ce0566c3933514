//! What the services print reaches the terminal: under `cargo turbolift run`, each line a
//! replica writes (stdout and stderr) is on `cargo turbolift`'s stderr prefixed with the
//! replica's name, and in its log; the program's stdout is `cargo run`'s; turbolift's own
//! lines show only with `-v`; `--service-output log` keeps them in the logs alone. The
//! fixture `output` has one distributed function, `greet`, that prints marker lines and a
//! line of 100,000 bytes when it runs as a service.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::*;

/// `cargo run`'s stdout, which `cargo turbolift run`'s must equal.
fn plain_stdout() -> String {
    let out = output(&mut cargo(&fixture("output"), &["run", "-q"]));
    assert_success("cargo run", &out);
    let stdout = text(&out.stdout);
    assert_eq!(stdout, "greeted 10\ndone\n");
    stdout
}

fn run(args: &[&str]) -> Output {
    let mut full = vec!["run"];
    full.extend_from_slice(args);
    let out = output(&mut turbolift(&fixture("output"), &full));
    assert_success(&format!("cargo turbolift {}", full.join(" ")), &out);
    out
}

/// The replica that served the call, named by the marker on the stream `stream` in
/// `stderr`, whose line must carry that replica's prefix.
fn streamed_by(stderr: &str, stream: &str) -> String {
    let marker = format!("output-marker on {stream}: call 1 served by ");
    let line = stderr
        .lines()
        .find(|l| l.contains(&marker))
        .unwrap_or_else(|| panic!("no {stream} marker on stderr:\n{stderr}"));
    let (prefix, text) = line.split_once(" | ").expect("a prefixed line");
    let replica = text
        .strip_prefix(&marker)
        .expect("the marker after the prefix");
    assert_eq!(prefix.trim_end(), replica, "{line}");
    assert!(replica.starts_with("output-fixture-greet-"), "{line}");
    replica.to_owned()
}

/// The log of `replica` in the run's logs directory.
fn log_of(stderr: &str, replica: &str) -> String {
    let path: PathBuf = logs_dir(stderr).join(format!("{replica}.log"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every log of the run, concatenated.
fn all_logs(dir: &Path) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        all += &std::fs::read_to_string(entry.unwrap().path()).unwrap();
    }
    all
}

/// What a streaming run shows and keeps, on any platform.
fn assert_streamed(out: &Output, plain: &str) {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(stdout, plain, "the program's stdout is `cargo run`'s");
    let replica = streamed_by(&stderr, "stdout");
    assert_eq!(streamed_by(&stderr, "stderr"), replica);
    // The long line: cut, its prefix and the marker on one line.
    let long = stderr
        .lines()
        .find(|l| l.contains("long line x"))
        .unwrap_or_else(|| panic!("no long line on stderr:\n{stderr}"));
    assert!(
        long.starts_with(&format!("{replica} | long line ")),
        "{}",
        &long[..80]
    );
    assert!(
        long.ends_with(" more bytes of this line left out]"),
        "{}",
        &long[long.len() - 80..]
    );
    assert!(long.len() < 64 * 1024 + 200, "{} bytes", long.len());
    // turbolift's own lines stay in the logs.
    assert!(!stderr.contains("turbolift::service"), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
    let log = log_of(&stderr, &replica);
    for marker in ["stdout", "stderr"] {
        assert!(
            log.contains(&format!(
                "output-marker on {marker}: call 1 served by {replica}"
            )),
            "{log}"
        );
    }
    assert!(log.contains("turbolift::service: serving"), "{log}");
}

/// What a run with `--service-output log` shows and keeps.
fn assert_only_logged(out: &Output, plain: &str) {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(stdout, plain);
    assert!(!stderr.contains("output-marker"), "{stderr}");
    let prefixed = |l: &&str| l.starts_with("output-fixture-greet-");
    assert_eq!(stderr.lines().find(prefixed), None, "{stderr}");
    let logs = all_logs(&logs_dir(&stderr));
    for marker in ["stdout", "stderr"] {
        assert!(
            logs.contains(&format!("output-marker on {marker}: call 1 served by ")),
            "{logs}"
        );
    }
}

/// The summary's table after the `Stopped` line: its header, and `greet`'s row with the
/// one call served, its times, and `replicas` replicas.
fn assert_summary(stderr: &str, replicas: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    let stopped = lines
        .iter()
        .position(|l| l.trim_start().starts_with("Stopped every service"))
        .unwrap_or_else(|| panic!("no `Stopped` line:\n{stderr}"));
    let at = lines
        .iter()
        .position(|l| l.trim_start() == "Summary of the calls, per function")
        .unwrap_or_else(|| panic!("no summary:\n{stderr}"));
    assert!(
        at > stopped,
        "the summary follows the `Stopped` line:\n{stderr}"
    );
    let words = |line: &str| {
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        words(lines[at + 1]),
        [
            "function", "calls", "served", "errors", "retries", "call", "p50/p99", "service",
            "p50/p99", "replicas", "restarts", "given", "up"
        ],
        "{stderr}"
    );
    let row = words(lines[at + 2]);
    assert_eq!(row.len(), 10, "{stderr}");
    assert_eq!(
        row[..5],
        ["output_fixture::greet", "1", "1", "0", "0"],
        "{stderr}"
    );
    // p50/p99 of the call (the program's) and of the service (its replicas'), each a
    // duration with its unit.
    for times in &row[5..7] {
        let (p50, p99) = times.split_once('/').unwrap_or_else(|| panic!("{times}"));
        for time in [p50, p99] {
            let digits = time.trim_end_matches(|c: char| c.is_alphabetic() || c == 'µ');
            assert!(
                digits.parse::<f64>().is_ok() && digits != time,
                "{times}: {stderr}"
            );
        }
    }
    assert_eq!(row[7..], [replicas, "0", "0"], "{stderr}");
}

#[test]
fn a_replicas_lines_are_on_stderr_prefixed_with_its_name() {
    let plain = plain_stdout();
    let out = run(&["--replicas", "2"]);
    assert_streamed(&out, &plain);
    assert_summary(&text(&out.stderr), "2");
}

/// A terminal that does not read (stderr a pipe nobody drains while the program runs)
/// holds up neither the replicas nor the program: the replicas' lines wait in a bounded
/// queue, or are left out of the terminal, never block the replica that writes them.
#[test]
fn a_terminal_that_does_not_read_holds_up_no_replica() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let mut command = turbolift(&fixture("output"), &["run", "--", "flood", "40"]);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    // 40 lines of 64 KiB on the terminal are 2.5 MiB, forty times what a pipe holds.
    let flooded = seen.recv_timeout(std::time::Duration::from_secs(300));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        flooded.as_deref(),
        Ok("flooded"),
        "the program did not finish while stderr was not read:\n{stderr}"
    );
    assert!(status.success(), "{stderr}");
}

/// A `cargo turbolift run` whose own environment names a stats folder (it runs under
/// another `cargo turbolift`, say) keeps its program's counts out of that folder, with
/// its summary and without, and its summary counts its own calls.
#[test]
fn an_inherited_stats_folder_is_not_written_into() {
    let outer = tempfile::tempdir().unwrap();
    for summary in [true, false] {
        let mut args = vec!["run", "--replicas", "2"];
        if !summary {
            args.push("--no-summary");
        }
        let mut command = turbolift(&fixture("output"), &args);
        command.env("TURBOLIFT_STATS_DIR", outer.path());
        let out = output(&mut command);
        assert_success("cargo turbolift run", &out);
        let left: Vec<_> = std::fs::read_dir(outer.path()).unwrap().collect();
        assert!(left.is_empty(), "summary {summary}: {left:?}");
        if summary {
            assert_summary(&text(&out.stderr), "2");
        }
    }
}

#[test]
fn with_service_output_log_they_are_in_the_logs_only() {
    let plain = plain_stdout();
    let out = run(&["--service-output", "log", "--no-summary"]);
    assert_only_logged(&out, &plain);
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("Summary"), "--no-summary:\n{stderr}");
    assert!(!stderr.contains("p50/p99"), "--no-summary:\n{stderr}");
}

#[test]
fn verbose_shows_turbolifts_own_lines_too() {
    let out = run(&["-v"]);
    let stderr = text(&out.stderr);
    let serving = stderr
        .lines()
        .find(|l| l.contains("INFO turbolift::service: serving"))
        .unwrap_or_else(|| panic!("no `serving` line with -v:\n{stderr}"));
    assert!(serving.starts_with("output-fixture-greet-"), "{serving}");
    assert!(stderr.contains(" | output-marker on stdout"), "{stderr}");
}

#[test]
#[ignore = "needs Docker (a daemon that answers `docker info`)"]
fn on_docker_a_containers_lines_are_on_stderr_prefixed_with_its_name() {
    crate::docker::require_docker();
    let _serial = crate::docker::serial();
    let plain = plain_stdout();
    let out = run(&["--platform", "docker", "--replicas", "2"]);
    assert_streamed(&out, &plain);
    // The service time over TLS, with the program's certificate.
    assert_summary(&text(&out.stderr), "2");
    assert_only_logged(
        &run(&["--platform", "docker", "--service-output", "log"]),
        &plain,
    );
}
