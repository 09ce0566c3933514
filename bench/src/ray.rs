//! `--ray`: the Ray equivalents of measurements 1-5, from `bench/ray_bench.py` run by the
//! Python of `target/bench/venv`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;

use crate::stats::{Figure, Row};
use crate::{Env, Sizes, field};

pub struct Ray {
    python: PathBuf,
    script: PathBuf,
}

impl Ray {
    /// The venv's Python, if it can import ray.
    pub fn find(env: &Env) -> Option<Ray> {
        let python = env.out.join("venv/bin/python");
        let ok = Command::new(&python)
            .args(["-c", "import ray"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Ray {
            python,
            script: env.root.join("bench/ray_bench.py"),
        })
    }

    fn command(&self, args: &[String]) -> Command {
        let mut c = Command::new(&self.python);
        c.arg(&self.script)
            .args(args)
            .env("RAY_USAGE_STATS_ENABLED", "0");
        c
    }

    fn lines(&self, args: &[String]) -> Vec<Value> {
        crate::bench_lines(self.command(args))
    }

    pub fn run(
        &self,
        only: &[u32],
        repeats: usize,
        sizes: Sizes,
        quick: bool,
        rows: &[Row],
    ) -> Vec<Row> {
        let wants = |n: u32| only.is_empty() || only.contains(&n);
        let tl = |name: &str| {
            rows.iter()
                .find(|r| r.name() == name)
                .map(|r| Figure::of(vec![r.turbolift().median]))
        };
        let mut out = Vec::new();
        if wants(1) || wants(2) || wants(3) {
            // Ray's calls are slower: fewer of them.
            let seq = if quick { 500 } else { 2_000 };
            let par = if quick { 3_000 } else { 10_000 };
            let args: Vec<String> = vec![
                "suite".into(),
                seq.to_string(),
                par.to_string(),
                sizes.inflight.to_string(),
                sizes.blob_bytes.to_string(),
                sizes.blob_calls.to_string(),
            ];
            let mut runs = Vec::new();
            for r in 0..repeats {
                eprintln!("turbolift-bench: Ray 1-3, repeat {}/{repeats}", r + 1);
                runs.push(self.lines(&args));
            }
            let f = |kind: &str, name: &str| {
                Figure::of(runs.iter().map(|l| field(l, kind, name)).collect())
            };
            out.push(Row::other(
                "1. Ray sequential p50",
                "µs",
                f("seq", "p50_us"),
                tl("1. sequential p50"),
            ));
            out.push(Row::other(
                "1. Ray sequential p99",
                "µs",
                f("seq", "p99_us"),
                tl("1. sequential p99"),
            ));
            out.push(Row::other(
                "1. Ray sequential calls/s",
                "calls/s",
                f("seq", "calls_per_s"),
                tl("1. sequential calls/s"),
            ));
            out.push(Row::other(
                "2. Ray 64 in flight",
                "calls/s",
                f("par", "calls_per_s"),
                tl("2. 64 in flight"),
            ));
            out.push(Row::other(
                "3. Ray 10 MiB echo",
                "MB/s",
                f("blob", "mb_per_s"),
                tl("3. 10 MiB echo (vs serde_bytes)"),
            ));
        }
        if wants(4) {
            let mut first = Vec::new();
            for r in 0..repeats {
                eprintln!("turbolift-bench: Ray 4, repeat {}/{repeats}", r + 1);
                let started = Instant::now();
                let mut child = self
                    .command(&["launch".into()])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start python");
                let stdout = child.stdout.take().expect("piped");
                let mut at = None;
                for line in BufReader::new(stdout).lines() {
                    if line.expect("a line").starts_with("BENCH ") {
                        at.get_or_insert(started.elapsed());
                    }
                }
                let _ = child.wait();
                first.push(at.expect("Ray printed its result").as_secs_f64() * 1e3);
            }
            out.push(Row::other(
                "4. Ray launch to first result",
                "ms",
                Figure::of(first),
                tl("4. launch to first result"),
            ));
        }
        if wants(5) {
            let mut walls = [Vec::new(), Vec::new()];
            for r in 0..repeats {
                eprintln!("turbolift-bench: Ray 5, repeat {}/{repeats}", r + 1);
                for (i, cpus) in [1, 2].into_iter().enumerate() {
                    let lines = self.lines(&[
                        "cpu".into(),
                        sizes.cpu_calls.to_string(),
                        sizes.cpu_ms.to_string(),
                        cpus.to_string(),
                    ]);
                    walls[i].push(field(&lines, "cpu", "wall_ms"));
                }
            }
            let speedup: Vec<f64> = walls[0].iter().zip(&walls[1]).map(|(a, b)| a / b).collect();
            out.push(Row::other(
                "5. Ray wall, num_cpus=1",
                "ms",
                Figure::of(walls[0].clone()),
                None,
            ));
            out.push(Row::other(
                "5. Ray wall, num_cpus=2",
                "ms",
                Figure::of(walls[1].clone()),
                None,
            ));
            out.push(Row::other(
                "5. Ray speedup 2 vs 1 CPU",
                "×",
                Figure::of(speedup),
                tl("5. speedup 2 vs 1 replica (max concurrency 1)"),
            ));
        }
        out
    }
}
