//! The benchmark of issue #5: turbolift next to the peers, in one run.
//!
//! ```sh
//! cargo run --release -p turbolift-bench -- [--quick] [--only N]... [--repeats R] [--ray] [--tls-cost] [--metrics-cost]
//! ```
//!
//! Measurements: (1) sequential round trips (p50, p99, calls/s), (2) calls/s with 64 in
//! flight, (3) a 10 MB `Vec<u8>` echoed (MB/s): a turbolift function served by real
//! service processes under `cargo turbolift run` (the program `bench/fixture` does the
//! timed calls and prints JSON lines) next to two peers, a bare axum + hyper-util one and
//! tarpc (each server a process of its own, their clients in `bench/peer`), with the same
//! postcard codec and payloads. For (1) and (2) the fixture calls all three, in rounds
//! whose order rotates (this machine's speed moves by a third from one second to the
//! next), and the ratios of each round are printed too ([`calls`]); (4) launch to the first remote result under `cargo turbolift run`, next to a
//! plain `cargo run` of the in-process build; (5) 40 calls of a ~50 ms CPU-bound function
//! with 1 and 2 replicas; (6) cold and incremental builds, `cargo turbolift build` next
//! to `cargo build`, of `examples/quickstart` and `examples/wordstats`; (7, also
//! `--tls-cost`) what TLS costs: the fixture's 1-3 once more under `cargo turbolift run
//! --tls`, after the plain runs, next to them; (8, also `--metrics-cost`) what the
//! services' metrics and the program's call counts cost: the fixture's 1-3 once more with
//! `TURBOLIFT_METRICS=off`, right before or after each run with them on.
//!
//! Every figure is the median over repeats, with min–max; results go to stdout and to
//! `target/bench/results.json`. Not part of the test suite: nothing here asserts timings.

mod calls;
mod peer;
mod ray;
mod stats;
mod tarpc_peer;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use stats::{Figure, Row};

/// What one run measures.
struct Options {
    quick: bool,
    only: Vec<u32>,
    repeats: usize,
    ray: bool,
}

impl Options {
    fn parse() -> Options {
        let mut options = Options {
            quick: false,
            only: Vec::new(),
            repeats: 0,
            ray: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => options.quick = true,
                "--ray" => options.ray = true,
                "--tls-cost" => options.only.push(7),
                "--metrics-cost" => options.only.push(8),
                "--only" => options.only.push(
                    args.next()
                        .and_then(|n| n.parse().ok())
                        .filter(|n| (1..=8).contains(n))
                        .unwrap_or_else(|| usage("--only takes a number from 1 to 8")),
                ),
                "--repeats" => {
                    options.repeats = args
                        .next()
                        .and_then(|n| n.parse().ok())
                        .filter(|n| *n >= 1)
                        .unwrap_or_else(|| usage("--repeats takes a number of at least 1"))
                }
                "-h" | "--help" => usage(""),
                other => usage(&format!("unknown argument `{other}`")),
            }
        }
        if options.repeats == 0 {
            options.repeats = if options.quick { 3 } else { 5 };
        }
        options
    }

    fn wants(&self, n: u32) -> bool {
        if self.only.is_empty() {
            !(self.quick && n == 6)
        } else {
            self.only.contains(&n)
        }
    }
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("error: {problem}");
    }
    eprintln!(
        "usage: cargo run --release -p turbolift-bench -- [--quick] [--only N]... [--repeats R] [--ray] [--tls-cost] [--metrics-cost]\n\
         \n  --quick      fewer calls and repeats, and no build measurement (6)\
         \n  --only N     only measurement N (1-8); may be repeated\
         \n  --repeats R  repeats of each measurement (default 5, 3 with --quick)\
         \n  --ray        also measure the Ray equivalents of 1-5 (needs target/bench/venv with ray)\
         \n  --tls-cost   the same as --only 7: 1-3 once more under `cargo turbolift run --tls`,\
         \n               next to the plain runs of 1-3 (made too, printed if asked for)\
         \n  --metrics-cost  the same as --only 8: 1-3 once more with TURBOLIFT_METRICS=off,\
         \n               each run next to one with metrics on"
    );
    std::process::exit(if problem.is_empty() { 0 } else { 2 });
}

/// Sizes of the call measurements.
#[derive(Clone, Copy)]
pub struct Sizes {
    pub seq: u64,
    pub par: u64,
    pub inflight: u64,
    /// Rounds of measurements 1 and 2 per repeat, each side in turn.
    pub rounds: u64,
    pub blob_bytes: u64,
    pub blob_calls: u64,
    pub cpu_calls: u64,
    pub cpu_ms: u64,
}

/// Paths and tools shared by the measurements.
pub struct Env {
    pub root: PathBuf,
    pub out: PathBuf,
    pub cargo_turbolift: PathBuf,
    pub fixture_manifest: PathBuf,
    pub tl_target: PathBuf,
    pub plain_target: PathBuf,
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("--peer-server") => return peer::server_main(),
        Some("--tarpc-server") => return tarpc_peer::server_main(),
        _ => {}
    }
    let options = Options::parse();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ is inside the repository")
        .to_path_buf();
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out).expect("create target/bench");
    let env = Env {
        cargo_turbolift: root.join("target/release/cargo-turbolift"),
        fixture_manifest: root.join("bench/fixture/Cargo.toml"),
        tl_target: out.join("fixture-turbolift"),
        plain_target: out.join("fixture-plain"),
        root,
        out,
    };
    let sizes = Sizes {
        seq: if options.quick { 3_000 } else { 10_000 },
        par: if options.quick { 19_200 } else { 64_000 },
        inflight: 64,
        rounds: if options.quick { 2 } else { 4 },
        blob_bytes: 10 * 1024 * 1024,
        blob_calls: if options.quick { 5 } else { 10 },
        cpu_calls: 40,
        cpu_ms: 50,
    };

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!(
        "turbolift-bench: {cores} cores, {} repeats{}",
        options.repeats,
        if options.quick { ", quick" } else { "" }
    );
    let needs_fixture = [1, 2, 3, 4, 5, 7, 8].into_iter().any(|n| options.wants(n));
    if needs_fixture || options.wants(6) {
        prepare(&env, needs_fixture);
    }

    let mut rows: Vec<Row> = Vec::new();
    let mut tarpc_rows: Vec<Row> = Vec::new();
    let mut tls_rows: Vec<Row> = Vec::new();
    let mut metrics_rows: Vec<Row> = Vec::new();
    let mut ray_rows: Vec<Row> = Vec::new();
    let ray = if options.ray {
        ray::Ray::find(&env)
    } else {
        None
    };
    if options.ray && ray.is_none() {
        eprintln!(
            "turbolift-bench: --ray skipped: no Ray in target/bench/venv (python3 -m venv target/bench/venv && target/bench/venv/bin/pip install ray)"
        );
    }

    if [1, 2, 3, 7, 8].into_iter().any(|n| options.wants(n)) {
        let calls = calls::calls(&env, &options, sizes);
        rows.extend(calls.peer);
        tarpc_rows = calls.tarpc;
        tls_rows = calls.tls;
        metrics_rows = calls.metrics;
    }
    if options.wants(4) {
        rows.extend(launch(&env, &options));
    }
    if options.wants(5) {
        rows.extend(cpu(&env, &options, sizes));
    }
    if options.wants(6) {
        rows.extend(builds(&env, options.repeats));
    }
    if let Some(ray) = &ray {
        ray_rows = ray.run(&options.only, options.repeats, sizes, options.quick, &rows);
    }

    stats::print(&rows, &tarpc_rows, &ray_rows, &tls_rows, &metrics_rows);
    let json = json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "cores": cores,
        "repeats": options.repeats,
        "quick": options.quick,
        "unix_time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        "results": rows.iter().map(Row::json).collect::<Vec<Value>>(),
        "tarpc": tarpc_rows.iter().map(Row::json).collect::<Vec<Value>>(),
        "ray": ray_rows.iter().map(Row::json).collect::<Vec<Value>>(),
        "tls": tls_rows.iter().map(|r| r.renamed_json("tls", "plain")).collect::<Vec<Value>>(),
        "metrics": metrics_rows.iter().map(|r| r.renamed_json("on", "off")).collect::<Vec<Value>>(),
    });
    let path = env.out.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).expect("JSON"))
        .expect("write results.json");
    eprintln!("turbolift-bench: wrote {}", path.display());
}

/// Builds `cargo-turbolift` and the fixture both ways (not timed).
fn prepare(env: &Env, fixture: bool) {
    eprintln!("turbolift-bench: building cargo-turbolift (release)");
    run_ok(Command::new(cargo()).current_dir(&env.root).args([
        "build",
        "--release",
        "-q",
        "-p",
        "cargo-turbolift",
    ]));
    if !fixture {
        return;
    }
    eprintln!("turbolift-bench: building bench/fixture with cargo turbolift build --release");
    run_ok(
        Command::new(&env.cargo_turbolift)
            .args(["turbolift", "build", "--release", "-q", "--manifest-path"])
            .arg(&env.fixture_manifest)
            .arg("--target-dir")
            .arg(&env.tl_target),
    );
    eprintln!("turbolift-bench: building bench/fixture with cargo build --release");
    run_ok(
        Command::new(cargo())
            .args(["build", "--release", "-q", "--manifest-path"])
            .arg(&env.fixture_manifest)
            .arg("--target-dir")
            .arg(&env.plain_target),
    );
}

/// Builds the fixture with `cargo turbolift build --release --tls` (not timed): the same
/// target directory as the plain build, its services and program rebuilt with turbolift's
/// `tls` feature.
fn prepare_tls(env: &Env) {
    eprintln!("turbolift-bench: building bench/fixture with cargo turbolift build --release --tls");
    run_ok(
        Command::new(&env.cargo_turbolift)
            .args([
                "turbolift",
                "build",
                "--release",
                "-q",
                "--tls",
                "--manifest-path",
            ])
            .arg(&env.fixture_manifest)
            .arg("--target-dir")
            .arg(&env.tl_target),
    );
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn run_ok(command: &mut Command) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(status.success(), "{command:?} failed: {status}");
}

/// `cargo turbolift run --release` of the fixture with these program arguments.
fn turbolift_run(env: &Env, replicas: Option<u32>, args: &[String]) -> Command {
    turbolift_run_tls(env, replicas, false, args)
}

/// [`turbolift_run`], over TLS (`--tls`) if `tls`.
fn turbolift_run_tls(env: &Env, replicas: Option<u32>, tls: bool, args: &[String]) -> Command {
    let mut command = Command::new(&env.cargo_turbolift);
    command
        .args(["turbolift", "run", "--release", "-q", "--manifest-path"])
        .arg(&env.fixture_manifest)
        .arg("--target-dir")
        .arg(&env.tl_target);
    if tls {
        command.arg("--tls");
    }
    if let Some(n) = replicas {
        command.arg("--replicas").arg(n.to_string());
    }
    command.arg("--").args(args);
    command
}

/// [`turbolift_run`] with the services' metrics and the program's call counts off
/// (`TURBOLIFT_METRICS=off`, which the replicas and the program inherit).
fn turbolift_run_uncounted(env: &Env, replicas: Option<u32>, args: &[String]) -> Command {
    let mut command = turbolift_run(env, replicas, args);
    command.env("TURBOLIFT_METRICS", "off");
    command
}

/// Runs the fixture and collects its `BENCH` lines.
fn bench_lines(mut command: Command) -> Vec<Value> {
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        output.status
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("BENCH "))
        .map(|l| serde_json::from_str(l).expect("a BENCH line is JSON"))
        .collect()
}

fn field(lines: &[Value], kind: &str, name: &str) -> f64 {
    lines
        .iter()
        .find(|l| l["kind"] == kind)
        .and_then(|l| l[name].as_f64())
        .unwrap_or_else(|| panic!("no {kind}.{name} in {lines:?}"))
}

/// Measurement 4: launch to the first remote result, and `cargo run` to the in-process one.
fn launch(env: &Env, options: &Options) -> Vec<Row> {
    let first_line = |mut command: Command| -> (f64, f64) {
        let started = Instant::now();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the program");
        let stdout = child.stdout.take().expect("piped");
        let mut at = None;
        let mut inner = 0.0;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("a line");
            if let Some(json) = line.strip_prefix("BENCH ") {
                at.get_or_insert(started.elapsed());
                let v: Value = serde_json::from_str(json).expect("JSON");
                inner = v["main_to_result_us"].as_f64().unwrap_or(0.0) / 1e3;
            }
        }
        let status = child.wait().expect("wait");
        assert!(status.success(), "{command:?} failed: {status}");
        (
            at.expect("the program printed its result").as_secs_f64() * 1e3,
            inner,
        )
    };
    let mut tl = Vec::new();
    let mut tl_main = Vec::new();
    let mut plain = Vec::new();
    let mut plain_main = Vec::new();
    let launch = ["launch".to_owned()];
    for r in 0..options.repeats {
        eprintln!(
            "turbolift-bench: 4 launch, repeat {}/{}",
            r + 1,
            options.repeats
        );
        let (a, b) = first_line(turbolift_run(env, None, &launch));
        tl.push(a);
        tl_main.push(b);
        let mut command = Command::new(cargo());
        command
            .args(["run", "--release", "-q", "--manifest-path"])
            .arg(&env.fixture_manifest)
            .arg("--target-dir")
            .arg(&env.plain_target)
            .arg("--")
            .args(&launch);
        let (a, b) = first_line(command);
        plain.push(a);
        plain_main.push(b);
    }
    vec![
        Row::pair(
            "4. launch to first result",
            "ms",
            Figure::of(tl),
            Figure::of(plain),
            None,
        )
        .with_goal_absolute("< 200 ms", 200.0, false),
        Row::pair(
            "4. program main to first result",
            "ms",
            Figure::of(tl_main),
            Figure::of(plain_main),
            None,
        ),
    ]
}

/// Iterations of `work` that take about `ms` milliseconds here.
fn calibrate(ms: u64) -> u64 {
    let probe = 2_000_000u64;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        std::hint::black_box(work(std::hint::black_box(probe)));
        best = best.min(t.elapsed().as_secs_f64());
    }
    (probe as f64 * (ms as f64 / 1e3) / best) as u64
}

/// The same pure CPU work as `burn` in the fixture.
fn work(iters: u64) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..iters {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    std::hint::black_box(x)
}

/// Measurement 5: 40 CPU-bound calls with 1 and with 2 replicas.
fn cpu(env: &Env, options: &Options, sizes: Sizes) -> Vec<Row> {
    let iters = calibrate(sizes.cpu_ms);
    let serial_ms = {
        let mut t = Vec::new();
        for _ in 0..3 {
            let s = Instant::now();
            work(iters);
            t.push(s.elapsed().as_secs_f64() * 1e3);
        }
        Figure::of(t).median
    };
    eprintln!(
        "turbolift-bench: 5 cpu: {iters} iterations take {serial_ms:.1} ms here; {} calls",
        sizes.cpu_calls
    );
    let args = [
        "cpu".to_owned(),
        sizes.cpu_calls.to_string(),
        iters.to_string(),
    ];
    // With the default concurrency one replica already runs calls on every core (the
    // blocking pool); with TURBOLIFT_MAX_CONCURRENCY=1 a replica is one core.
    let mut walls: Vec<Vec<f64>> = vec![Vec::new(); 4];
    for r in 0..options.repeats {
        eprintln!(
            "turbolift-bench: 5 cpu, repeat {}/{}",
            r + 1,
            options.repeats
        );
        for (i, (replicas, one_at_a_time)) in [(1, true), (2, true), (1, false), (2, false)]
            .into_iter()
            .enumerate()
        {
            let mut command = turbolift_run(env, Some(replicas), &args);
            if one_at_a_time {
                command.env("TURBOLIFT_MAX_CONCURRENCY", "1");
            } else {
                command.env_remove("TURBOLIFT_MAX_CONCURRENCY");
            }
            walls[i].push(field(&bench_lines(command), "cpu", "wall_ms"));
        }
    }
    let ideal = serial_ms * sizes.cpu_calls as f64;
    let speedup = |a: &[f64], b: &[f64]| -> Vec<f64> {
        a.iter().zip(b).map(|(x, y)| x / y).collect::<Vec<f64>>()
    };
    vec![
        Row::single(
            "5. wall, 1 replica (max concurrency 1)",
            "ms",
            Figure::of(walls[0].clone()),
        ),
        Row::single(
            "5. wall, 2 replicas (max concurrency 1)",
            "ms",
            Figure::of(walls[1].clone()),
        ),
        Row::single(
            "5. speedup 2 vs 1 replica (max concurrency 1)",
            "×",
            Figure::of(speedup(&walls[0], &walls[1])),
        )
        .with_goal_absolute("≥ 1.8×", 1.8, true),
        Row::single(
            "5. wall, 1 replica (default concurrency)",
            "ms",
            Figure::of(walls[2].clone()),
        ),
        Row::single(
            "5. wall, 2 replicas (default concurrency)",
            "ms",
            Figure::of(walls[3].clone()),
        ),
        Row::single(
            "5. serial in-process time of the 40 calls",
            "ms",
            Figure::of(vec![ideal]),
        ),
    ]
}

/// Restores a file's text when dropped, so an edit for the incremental build never stays.
struct Restore {
    path: PathBuf,
    text: String,
}

impl Drop for Restore {
    fn drop(&mut self) {
        std::fs::write(&self.path, &self.text).expect("restore the edited file");
    }
}

/// Measurement 6: cold and incremental builds, both ways, taking turns. Cold builds
/// `min(repeats, 3)` times each way (from empty target directories; a pair takes most of
/// a minute on two cores); incremental builds `repeats` times each way, the one-line
/// change made and undone in turns (each build compiles one change).
fn builds(env: &Env, repeats: usize) -> Vec<Row> {
    let cases = [
        (
            "quickstart",
            "examples/quickstart/src/main.rs",
            "    u * u\n}",
            "    u.wrapping_mul(u)\n}",
        ),
        (
            "wordstats",
            "examples/wordstats/src/analysis/mod.rs",
            "let score = words_per_sentence + 2.0 * letters_per_word;",
            "let score = words_per_sentence + letters_per_word * 2.0;",
        ),
    ];
    let mut rows = Vec::new();
    for (name, file, from, to) in cases {
        let manifest = env.root.join("examples").join(name).join("Cargo.toml");
        let tl_dir = env.out.join("build").join(format!("turbolift-{name}"));
        let plain_dir = env.out.join("build").join(format!("plain-{name}"));
        let tl_build = || {
            let mut c = Command::new(&env.cargo_turbolift);
            c.args(["turbolift", "build", "-q", "--manifest-path"])
                .arg(&manifest)
                .arg("--target-dir")
                .arg(&tl_dir);
            timed(c)
        };
        let plain_build = || {
            let mut c = Command::new(cargo());
            c.args(["build", "-q", "--manifest-path"])
                .arg(&manifest)
                .arg("--target-dir")
                .arg(&plain_dir);
            timed(c)
        };
        let (mut tl_cold, mut plain_cold) = (Vec::new(), Vec::new());
        let cold_repeats = repeats.min(3);
        for r in 0..cold_repeats {
            eprintln!(
                "turbolift-bench: 6 cold builds of {name}, {}/{cold_repeats}",
                r + 1
            );
            let _ = std::fs::remove_dir_all(&tl_dir);
            tl_cold.push(tl_build());
            let _ = std::fs::remove_dir_all(&plain_dir);
            plain_cold.push(plain_build());
        }
        let path = env.root.join(file);
        let text = std::fs::read_to_string(&path).expect("read the example");
        assert!(text.contains(from), "{file} no longer contains `{from}`");
        let (mut tl_inc, mut plain_inc) = (Vec::new(), Vec::new());
        {
            let _restore = Restore {
                path: path.clone(),
                text: text.clone(),
            };
            let edited = text.replacen(from, to, 1);
            for r in 0..repeats {
                eprintln!(
                    "turbolift-bench: 6 incremental builds of {name}, {}/{repeats}",
                    r + 1
                );
                let version = if r % 2 == 0 { &edited } else { &text };
                std::fs::write(&path, version).expect("edit the example");
                tl_inc.push(tl_build());
                plain_inc.push(plain_build());
            }
        }
        rows.push(
            Row::pair(
                &format!("6. cold build, {name}"),
                "s",
                Figure::of(tl_cold),
                Figure::of(plain_cold),
                Some(("≤ 1.6× peer", 1.6, false)),
            )
            .with_peer_name("cargo build"),
        );
        rows.push(
            Row::pair(
                &format!("6. incremental build, {name}"),
                "s",
                Figure::of(tl_inc),
                Figure::of(plain_inc),
                Some(("≤ 1.5× peer", 1.5, false)),
            )
            .with_peer_name("cargo build"),
        );
    }
    rows
}

/// Seconds a command takes; it must succeed.
fn timed(mut command: Command) -> f64 {
    let t = Instant::now();
    run_ok(&mut command);
    t.elapsed().as_secs_f64()
}

/// Sleeps a little between phases, so that sockets in TIME_WAIT and exiting processes
/// settle.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(200));
}
