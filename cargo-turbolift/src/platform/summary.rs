//! The summary at the end of `cargo turbolift run` and `test`: per function, the calls the
//! program made and how they ended, their time, the replicas' service time, and what
//! happened to the replicas; a table on stderr, or one JSON object per function per line
//! (`--message-format json`).
//!
//! Three witnesses, each of what it alone knows: the program's counts
//! (`turbolift_shared::stats`, one file per process in the run's stats directory, written
//! when it exits) for calls, errors, retries and call time, exact even when a replica was
//! killed; the replicas alive at the end (`scrape`) for service time; the platform for
//! replicas, restarts and replicas given up.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anstyle::Style;
use serde_json::{Value, json};
use turbolift_shared::stats::{self, FunctionStats, Histogram};

use super::program::ReplicaCounts;
use super::scrape::ServiceTime;
use crate::build::plural;
use crate::cli::MessageFormat;
use crate::shell::Shell;

/// The `reason` of a summary's JSON line, as cargo names its messages.
pub const JSON_REASON: &str = "turbolift-function-summary";

const HEADER: Style = Style::new().bold();
/// Before each line of the table, under the status line that introduces it.
const INDENT: &str = "    ";

/// What the program's processes counted, read from the run's stats directory.
#[derive(Debug, Default)]
pub struct ProgramCounts {
    /// Every file's functions, merged; `None` when no file could be read.
    pub functions: Option<Vec<FunctionStats>>,
    /// Files that could not be read, and why.
    pub warnings: Vec<String>,
    /// Whether a signal ended a process of the program (`128 + signal`), which then wrote
    /// no counts.
    pub signalled: bool,
}

/// Reads and merges every `*.stats` file in `dir` (one per process of the program).
pub fn read_counts(dir: &Path) -> ProgramCounts {
    let mut counts = ProgramCounts::default();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "stats"))
            .collect(),
        Err(e) => {
            counts
                .warnings
                .push(format!("cannot read {}: {e}", dir.display()));
            return counts;
        }
    };
    files.sort();
    for file in files {
        let parsed = std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|text| stats::parse(&text));
        match parsed {
            Ok(functions) => {
                stats::merge(counts.functions.get_or_insert_with(Vec::new), &functions)
            }
            Err(why) => counts.warnings.push(format!(
                "the program's counts in {} are left out of the summary: {why}",
                file.display()
            )),
        }
    }
    counts
}

/// One function's line of the summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub function: String,
    /// The program's counts; `None` when it left none.
    pub calls: Option<FunctionStats>,
    /// The service time of the replicas that answered; `None` when none was asked.
    pub service: Option<ServiceTime>,
    pub replicas: ReplicaCounts,
}

/// The rows of the functions the platform served, in its order, then of any other the
/// program counted.
pub fn rows(
    program: Option<&[FunctionStats]>,
    mut service: Vec<(String, ServiceTime)>,
    replicas: Vec<ReplicaCounts>,
) -> Vec<Row> {
    let mut rows: Vec<Row> = replicas
        .into_iter()
        .map(|replicas| {
            let function = replicas.function.clone();
            let calls = program.map(|functions| {
                functions
                    .iter()
                    .find(|f| f.function == function)
                    .cloned()
                    .unwrap_or_else(|| FunctionStats::new(&function))
            });
            let service = service
                .iter()
                .position(|(f, _)| *f == function)
                .map(|i| service.swap_remove(i).1);
            Row {
                function,
                calls,
                service,
                replicas,
            }
        })
        .collect();
    for f in program.into_iter().flatten() {
        if !rows.iter().any(|r| r.function == f.function) {
            rows.push(Row {
                function: f.function.clone(),
                calls: Some(f.clone()),
                service: None,
                replicas: ReplicaCounts::new(&f.function),
            });
        }
    }
    rows
}

/// Prints the summary of `rows` after the run's last status line: the table unless `-q`,
/// or the JSON lines; with notes on what it could not count.
pub fn print(shell: &Shell, format: MessageFormat, rows: &[Row], program: &ProgramCounts) {
    for warning in &program.warnings {
        shell.warn(warning);
    }
    if program.signalled && program.functions.is_some() {
        shell.warn("the summary leaves out the calls of a run of the program that a signal ended: it wrote no counts");
    }
    match format {
        MessageFormat::Json => {
            let mut text = String::new();
            for line in json_lines(rows) {
                text.push_str(&line);
                text.push('\n');
            }
            shell.print_rendered(&text);
        }
        MessageFormat::Human if shell.is_quiet() => {}
        MessageFormat::Human => {
            let what = match (&program.functions, program.signalled) {
                (Some(_), _) => "of the calls, per function",
                (None, true) => {
                    "without the program's counts of its calls: a signal ended it before it wrote them"
                }
                (None, false) => {
                    "without the program's counts of its calls: it wrote none (it made no remote \
                     call, or ran with TURBOLIFT_METRICS=off)"
                }
            };
            shell.status("Summary", what);
            shell.print_rendered(&table(rows, shell.stderr_has_color()));
            for row in rows {
                if let Some(time) = &row.service
                    && !time.failures.is_empty()
                {
                    shell.status(
                        "Note",
                        format!(
                            "service time of `{}` without {} of its {} replica{}: {}",
                            row.function,
                            time.failures.len(),
                            time.asked,
                            plural(time.asked as usize),
                            time.failures.join("; ")
                        ),
                    );
                }
            }
        }
    }
}

/// The table: a header and one line per function, columns aligned, indented by
/// [`INDENT`].
pub fn table(rows: &[Row], color: bool) -> String {
    let cancelled = rows
        .iter()
        .any(|r| r.calls.as_ref().is_some_and(|c| c.cancelled > 0));
    let mut header: Vec<&str> = vec!["function", "calls", "served", "errors"];
    if cancelled {
        header.push("cancelled");
    }
    header.extend([
        "retries",
        "call p50/p99",
        "service p50/p99",
        "replicas",
        "restarts",
        "given up",
    ]);
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for row in rows {
        let counted = |value: fn(&FunctionStats) -> u64| {
            row.calls
                .as_ref()
                .map_or("—".to_owned(), |c| value(c).to_string())
        };
        let mut line = vec![
            row.function.clone(),
            counted(|c| c.calls),
            counted(|c| c.served),
            row.calls.as_ref().map_or("—".to_owned(), errors),
        ];
        if cancelled {
            line.push(counted(|c| c.cancelled));
        }
        line.extend([
            counted(|c| c.retries),
            row.calls
                .as_ref()
                .map_or("—".to_owned(), |c| quantiles(&c.time)),
            row.service
                .as_ref()
                .filter(|s| s.answered > 0)
                .map_or("—".to_owned(), |s| quantiles(&s.histogram)),
            row.replicas.replicas.to_string(),
            row.replicas.restarts.to_string(),
            row.replicas.given_up.to_string(),
        ]);
        lines.push(line);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    // Text columns to the left, numbers to the right.
    let left = |i: usize| header[i] == "function" || header[i] == "errors";
    let mut text = String::new();
    for (n, line) in lines.iter().enumerate() {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let pad = " ".repeat(widths[i] - cell.chars().count());
                if left(i) {
                    format!("{cell}{pad}")
                } else {
                    format!("{pad}{cell}")
                }
            })
            .collect();
        let line = cells.join("  ");
        let line = line.trim_end();
        if n == 0 && color {
            text.push_str(&format!("{INDENT}{HEADER}{line}{HEADER:#}\n"));
        } else {
            text.push_str(&format!("{INDENT}{line}\n"));
        }
    }
    text
}

/// `2 panic, 1 timeout`, or `0`.
fn errors(calls: &FunctionStats) -> String {
    let kinds: Vec<String> = error_kinds(calls)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    if kinds.is_empty() {
        "0".to_owned()
    } else {
        kinds.join(", ")
    }
}

fn error_kinds(calls: &FunctionStats) -> [(&'static str, u64); 5] {
    [
        ("panic", calls.panics),
        ("timeout", calls.timeouts),
        ("decode", calls.decode),
        ("unavailable", calls.unavailable),
        ("refused", calls.refused),
    ]
}

/// `1.02ms/3.10ms`, or `—` without a duration.
fn quantiles(histogram: &Histogram) -> String {
    match (histogram.quantile(0.5), histogram.quantile(0.99)) {
        (Some(p50), Some(p99)) => format!("{}/{}", duration(p50), duration(p99)),
        _ => "—".to_owned(),
    }
}

/// A duration with three significant digits in the unit that suits it: `850ns`,
/// `12.3µs`, `1.00ms`, `2.50s`.
pub fn duration(d: Duration) -> String {
    let nanos = d.as_nanos() as f64;
    if nanos == 0.0 {
        return "0s".to_owned();
    }
    let scale = 10f64.powi(nanos.log10().floor() as i32 - 2);
    let nanos = (nanos / scale).round() * scale;
    let (value, unit) = if nanos < 1e3 {
        return format!("{nanos:.0}ns");
    } else if nanos < 1e6 {
        (nanos / 1e3, "µs")
    } else if nanos < 1e9 {
        (nanos / 1e6, "ms")
    } else {
        (nanos / 1e9, "s")
    };
    let decimals = (2 - value.log10().floor() as i32).max(0) as usize;
    format!("{value:.decimals$}{unit}")
}

/// One JSON object per function, as the lines of `--message-format json`.
pub fn json_lines(rows: &[Row]) -> Vec<String> {
    rows.iter().map(|row| json_of(row).to_string()).collect()
}

fn json_of(row: &Row) -> Value {
    let counted = |value: fn(&FunctionStats) -> u64| -> Value {
        row.calls.as_ref().map_or(Value::Null, |c| value(c).into())
    };
    let errors = row.calls.as_ref().map_or(Value::Null, |c| {
        let kinds = error_kinds(c)
            .into_iter()
            .map(|(kind, n)| (kind.to_owned(), Value::from(n)));
        Value::Object(kinds.collect())
    });
    let call_time = row.calls.as_ref().map_or(Value::Null, |c| times(&c.time));
    let service_time = match &row.service {
        Some(s) if s.answered > 0 => {
            let mut time = times(&s.histogram);
            time["replicas_answered"] = s.answered.into();
            time
        }
        _ => Value::Null,
    };
    json!({
        "reason": JSON_REASON,
        "function": row.function,
        "calls": counted(|c| c.calls),
        "served": counted(|c| c.served),
        "errors": errors,
        "cancelled": counted(|c| c.cancelled),
        "retries": counted(|c| c.retries),
        "call_time": call_time,
        "service_time": service_time,
        "replicas": row.replicas.replicas,
        "restarts": row.replicas.restarts,
        "given_up": row.replicas.given_up,
    })
}

/// `{"p50_ms": .., "p99_ms": ..}` to the nanosecond (null without a duration).
fn times(histogram: &Histogram) -> Value {
    let ms = |q: f64| {
        histogram
            .quantile(q)
            .map_or(Value::Null, |d| (d.as_nanos() as f64 / 1e6).into())
    };
    json!({ "p50_ms": ms(0.5), "p99_ms": ms(0.99) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use turbolift_shared::stats::bucket_of;

    /// `geo::area`: 10,000 calls, 9,997 served, two panics and a timeout among them, one
    /// call unavailable, two cancelled, 31 retries; 9,000 calls between 1 and 2.5 ms, 1,000
    /// between 5 and 10 ms.
    fn area() -> FunctionStats {
        let mut f = FunctionStats::new("geo::area");
        f.calls = 10_000;
        f.served = 9_997;
        f.panics = 2;
        f.timeouts = 1;
        f.unavailable = 1;
        f.cancelled = 2;
        f.retries = 31;
        f.time.counts[bucket_of(2_000_000)] = 9_000;
        f.time.counts[bucket_of(7_000_000)] = 1_000;
        f
    }

    fn replicas(function: &str, replicas: u32, restarts: u32, given_up: u32) -> ReplicaCounts {
        ReplicaCounts {
            function: function.to_owned(),
            replicas,
            restarts,
            given_up,
        }
    }

    /// Service time of `answered` of `asked` replicas: 100 calls between 10 and 25 µs.
    fn service(answered: u32, asked: u32) -> ServiceTime {
        let mut time = ServiceTime {
            asked,
            answered,
            ..ServiceTime::default()
        };
        time.histogram.counts[bucket_of(20_000)] = 100;
        time.failures = (answered..asked)
            .map(|i| format!("127.0.0.1:{}: connection refused", 4000 + i))
            .collect();
        time
    }

    fn sample_rows() -> Vec<Row> {
        let program = [area(), FunctionStats::new("geo::idle")];
        rows(
            Some(&program),
            vec![
                ("geo::idle".to_owned(), service(0, 1)),
                ("geo::area".to_owned(), service(1, 2)),
            ],
            vec![
                replicas("geo::area", 2, 3, 1),
                replicas("geo::idle", 1, 0, 0),
            ],
        )
    }

    #[test]
    fn durations_have_three_significant_digits_in_their_unit() {
        for (nanos, shown) in [
            (0, "0s"),
            (850, "850ns"),
            (1_000, "1.00µs"),
            (12_345, "12.3µs"),
            (123_456, "123µs"),
            (999_600, "1.00ms"),
            (1_234_567, "1.23ms"),
            (20_700_000, "20.7ms"),
            (2_500_000_000, "2.50s"),
            (10_000_000_000, "10.0s"),
        ] {
            assert_eq!(duration(Duration::from_nanos(nanos)), shown, "{nanos} ns");
        }
    }

    #[test]
    fn the_table_has_a_line_per_function_in_aligned_columns() {
        let table = table(&sample_rows(), false);
        let expected = "    function   calls  served  errors                             cancelled  retries   call p50/p99  service p50/p99  replicas  restarts  given up
    geo::area  10000    9997  2 panic, 1 timeout, 1 unavailable          2       31  1.83ms/9.50ms    17.5µs/24.9µs         2         3         1
    geo::idle      0       0  0                                          0        0              —                —         1         0         0
";
        assert_eq!(table, expected, "\n{table}");
        // Coloured, only the header is bold.
        let coloured = super::table(&sample_rows(), true);
        assert!(coloured.starts_with("    \u{1b}[1mfunction"), "{coloured}");
        assert_eq!(coloured.matches('\u{1b}').count(), 2, "{coloured}");
    }

    #[test]
    fn without_the_programs_counts_its_columns_say_so() {
        let rows = rows(None, Vec::new(), vec![replicas("geo::area", 2, 1, 0)]);
        let table = table(&rows, false);
        let line = table.lines().nth(1).unwrap();
        assert_eq!(
            line.split_whitespace().collect::<Vec<_>>(),
            ["geo::area", "—", "—", "—", "—", "—", "—", "2", "1", "0"],
            "{table}"
        );
        assert!(!table.contains("cancelled"), "{table}");
        let json: Value = serde_json::from_str(&json_lines(&rows)[0]).unwrap();
        assert_eq!(json["calls"], Value::Null);
        assert_eq!(json["errors"], Value::Null);
        assert_eq!(json["restarts"], 1);
    }

    #[test]
    fn json_lines_are_one_object_per_function() {
        let lines = json_lines(&sample_rows());
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| !l.contains('\n')));
        let area: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(
            area,
            json!({
                "reason": "turbolift-function-summary",
                "function": "geo::area",
                "calls": 10000,
                "served": 9997,
                "errors": {"panic": 2, "timeout": 1, "decode": 0, "unavailable": 1, "refused": 0},
                "cancelled": 2,
                "retries": 31,
                "call_time": {"p50_ms": 1.833333, "p99_ms": 9.5},
                "service_time": {"p50_ms": 0.0175, "p99_ms": 0.02485, "replicas_answered": 1},
                "replicas": 2,
                "restarts": 3,
                "given_up": 1,
            })
        );
        // The keys in the order written, as a reader by eye expects.
        assert!(lines[0].starts_with(
            r#"{"reason":"turbolift-function-summary","function":"geo::area","calls":10000,"#
        ));
        let idle: Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(idle["calls"], 0);
        assert_eq!(idle["call_time"], json!({"p50_ms": null, "p99_ms": null}));
        assert_eq!(idle["service_time"], Value::Null, "no replica answered");
    }

    #[test]
    fn counts_of_every_process_are_merged_and_broken_files_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_counts(dir.path()).functions.is_none());
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("program-10.stats", &stats::encode(&[area()]));
        write(
            "program-11.stats",
            &stats::encode(&[area(), FunctionStats::new("geo::idle")]),
        );
        write(
            "program-12.stats",
            "turbolift-stats 1\nfunction geo::area\ncalls 3\n",
        );
        write("program-13.stats.tmp", "half written");
        let counts = read_counts(dir.path());
        let functions = counts.functions.unwrap();
        assert_eq!(functions.len(), 2);
        assert_eq!(functions[0].calls, 20_000);
        assert_eq!(functions[0].time.total(), 20_000);
        assert_eq!(counts.warnings.len(), 1, "{:?}", counts.warnings);
        let warning = &counts.warnings[0];
        assert!(warning.contains("program-12.stats"), "{warning}");
        assert!(warning.contains("cut short"), "{warning}");
        assert!(read_counts(&dir.path().join("gone")).warnings[0].contains("cannot read"));
    }
}
