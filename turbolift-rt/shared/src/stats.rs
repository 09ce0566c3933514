//! What a program's remote calls added up to, per function: written by the runtime when
//! the program exits (into [`env::STATS_DIR`](crate::protocol::env::STATS_DIR), one file
//! per process), read by `cargo turbolift` for the summary at the end of a run or test.
//!
//! The program is the one witness of every call: a replica killed mid-run takes its own
//! counters with it, and only the caller knows of retries, timeouts and replicas it could
//! not reach. The format is plain text, one `key value` per line, so that a file is
//! readable by eye and a newer field in it is skipped by an older reader.
//!
//! ```text
//! turbolift-stats 1
//! function geo::area
//! calls 10000
//! served 10000
//! ...
//! time 0 0 3 9410 581 6 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
//! end
//! ```

use std::time::Duration;

/// The first line of a stats file, with the format's version.
pub const HEADER: &str = "turbolift-stats 1";

/// Upper bounds of the time buckets in nanoseconds: 1 µs to 10 s, in steps of 1, 2.5 and
/// 5. The services' histogram of service time (`GET /v1/metrics`) has the same buckets.
pub const TIME_BOUNDS_NANOS: [u64; 22] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Buckets of a histogram: one per bound and one above them all.
pub const TIME_BUCKETS: usize = TIME_BOUNDS_NANOS.len() + 1;

/// The bucket of a duration of `nanos`: the first whose bound is not below it.
pub fn bucket_of(nanos: u64) -> usize {
    TIME_BOUNDS_NANOS.partition_point(|&bound| bound < nanos)
}

/// Durations counted per bucket of [`TIME_BOUNDS_NANOS`] (not cumulative).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    pub counts: [u64; TIME_BUCKETS],
}

impl Histogram {
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn add(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// The `q` quantile (0 < q ≤ 1), interpolated linearly inside its bucket as
    /// Prometheus' `histogram_quantile` does; `None` without observations. A quantile in
    /// the bucket above every bound is that last bound (it is at least that).
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, &count) in self.counts.iter().enumerate() {
            if count > 0 && (below + count) as f64 >= rank {
                let Some(&upper) = TIME_BOUNDS_NANOS.get(i) else {
                    return Some(Duration::from_nanos(TIME_BOUNDS_NANOS[i - 1]));
                };
                let lower = if i == 0 { 0 } else { TIME_BOUNDS_NANOS[i - 1] };
                let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
                let nanos = lower as f64 + (upper - lower) as f64 * within;
                return Some(Duration::from_nanos(nanos.round() as u64));
            }
            below += count;
        }
        None
    }
}

/// One function's calls, as one program saw them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FunctionStats {
    /// The function's id (`geo::area`).
    pub function: String,
    /// Remote calls made (alone, coalesced or in a batch).
    pub calls: u64,
    /// Calls a replica answered: with the result (an `Err` value included) or a panic.
    pub served: u64,
    /// Served calls whose function panicked.
    pub panics: u64,
    /// Calls that got no answer within their timeout.
    pub timeouts: u64,
    /// Calls whose arguments could not be encoded or whose answer could not be decoded.
    pub decode: u64,
    /// Calls that no replica answered within the attempts.
    pub unavailable: u64,
    /// Calls a service refused (a secret or version mismatch, a body too large, …).
    pub refused: u64,
    /// Calls whose future was dropped before their result came.
    pub cancelled: u64,
    /// Calls sent again after an attempt got no answer (connection lost, replica busy or
    /// draining); a call sent three times counts two.
    pub retries: u64,
    /// Time from the call to its result or error, of every call that got one.
    pub time: Histogram,
}

impl FunctionStats {
    pub fn new(function: &str) -> Self {
        FunctionStats {
            function: function.to_owned(),
            ..FunctionStats::default()
        }
    }

    /// Adds another process's counts of the same function.
    pub fn add(&mut self, other: &FunctionStats) {
        self.calls += other.calls;
        self.served += other.served;
        self.panics += other.panics;
        self.timeouts += other.timeouts;
        self.decode += other.decode;
        self.unavailable += other.unavailable;
        self.refused += other.refused;
        self.cancelled += other.cancelled;
        self.retries += other.retries;
        self.time.add(&other.time);
    }

    fn counters(&self) -> [(&'static str, u64); 9] {
        [
            ("calls", self.calls),
            ("served", self.served),
            ("panics", self.panics),
            ("timeouts", self.timeouts),
            ("decode", self.decode),
            ("unavailable", self.unavailable),
            ("refused", self.refused),
            ("cancelled", self.cancelled),
            ("retries", self.retries),
        ]
    }

    fn counter_mut(&mut self, key: &str) -> Option<&mut u64> {
        Some(match key {
            "calls" => &mut self.calls,
            "served" => &mut self.served,
            "panics" => &mut self.panics,
            "timeouts" => &mut self.timeouts,
            "decode" => &mut self.decode,
            "unavailable" => &mut self.unavailable,
            "refused" => &mut self.refused,
            "cancelled" => &mut self.cancelled,
            "retries" => &mut self.retries,
            _ => return None,
        })
    }
}

/// The text of a stats file holding `functions`.
pub fn encode(functions: &[FunctionStats]) -> String {
    let mut text = format!("{HEADER}\n");
    for f in functions {
        text.push_str(&format!("function {}\n", f.function));
        for (key, value) in f.counters() {
            text.push_str(&format!("{key} {value}\n"));
        }
        let counts: Vec<String> = f.time.counts.iter().map(u64::to_string).collect();
        text.push_str(&format!("time {}\nend\n", counts.join(" ")));
    }
    text
}

/// The functions of a stats file; why not, for a file that is not one.
pub fn parse(text: &str) -> Result<Vec<FunctionStats>, String> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, HEADER)) => {}
        Some((_, first)) => {
            return Err(format!(
                "the first line is `{first}`, not `{HEADER}`: not a turbolift stats file, or one of another version"
            ));
        }
        None => return Err("the file is empty".to_owned()),
    }
    let mut functions = Vec::new();
    let mut current: Option<FunctionStats> = None;
    for (number, line) in lines {
        let at = || format!("line {}", number + 1);
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match (key, current.as_mut()) {
            ("function", None) if !value.is_empty() => current = Some(FunctionStats::new(value)),
            ("end", Some(_)) => functions.extend(current.take()),
            ("time", Some(f)) => {
                let counts: Result<Vec<u64>, _> = value.split(' ').map(str::parse).collect();
                match counts.ok().and_then(|c| c.try_into().ok()) {
                    Some(counts) => f.time.counts = counts,
                    None => {
                        return Err(format!(
                            "{}: `time` needs {TIME_BUCKETS} counts: `{line}`",
                            at()
                        ));
                    }
                }
            }
            (key, Some(f)) => {
                let value: u64 = value
                    .parse()
                    .map_err(|_| format!("{}: `{line}` is not `key number`", at()))?;
                // A counter of a newer format is skipped.
                if let Some(counter) = f.counter_mut(key) {
                    *counter = value;
                }
            }
            _ => return Err(format!("{}: `{line}` is out of place", at())),
        }
    }
    match current {
        Some(f) => Err(format!(
            "the file ends inside function `{}`: it was cut short",
            f.function
        )),
        None => Ok(functions),
    }
}

/// Adds `more` into `into`, function by function (in the order they first appear).
pub fn merge(into: &mut Vec<FunctionStats>, more: &[FunctionStats]) {
    for f in more {
        match into.iter_mut().find(|g| g.function == f.function) {
            Some(g) => g.add(f),
            None => into.push(f.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(function: &str) -> FunctionStats {
        let mut f = FunctionStats::new(function);
        f.calls = 10;
        f.served = 8;
        f.panics = 1;
        f.timeouts = 1;
        f.cancelled = 1;
        f.retries = 3;
        f.time.counts[bucket_of(3_000)] = 7;
        f.time.counts[TIME_BUCKETS - 1] = 2;
        f
    }

    #[test]
    fn a_file_reads_back_as_written() {
        let written = vec![sample("geo::area"), FunctionStats::new("square")];
        assert_eq!(parse(&encode(&written)).unwrap(), written);
    }

    #[test]
    fn unknown_counters_are_skipped_and_broken_files_say_where() {
        let text = encode(&[sample("a")]).replace("retries 3\n", "retries 3\nnewer 5\n");
        assert_eq!(parse(&text).unwrap(), [sample("a")]);
        let cut = encode(&[sample("a")]).replace("end\n", "");
        assert!(parse(&cut).unwrap_err().contains("cut short"));
        let bad = encode(&[sample("a")]).replace("calls 10", "calls ten");
        assert!(parse(&bad).unwrap_err().contains("line 3"), "{bad}");
        assert!(
            parse("hello\n")
                .unwrap_err()
                .contains("not a turbolift stats file")
        );
        let short_time = encode(&[sample("a")]).replace("time 0 0 ", "time ");
        assert!(parse(&short_time).unwrap_err().contains("needs 23 counts"));
    }

    #[test]
    fn merging_adds_the_same_function_and_keeps_the_order() {
        let mut all = vec![sample("a")];
        merge(&mut all, &[sample("b"), sample("a")]);
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].function.as_str(), all[0].calls), ("a", 20));
        assert_eq!(all[0].time.total(), 18);
        assert_eq!((all[1].function.as_str(), all[1].calls), ("b", 10));
    }

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        // 100 calls between 2.5 µs and 5 µs: the median is halfway, 3.75 µs.
        h.counts[bucket_of(3_000)] = 100;
        assert_eq!(h.quantile(0.5), Some(Duration::from_nanos(3_750)));
        assert_eq!(h.quantile(1.0), Some(Duration::from_micros(5)));
        // One call above every bound: the p99 of 100 stays in the first bucket, the max
        // is at least the last bound.
        h.counts[TIME_BUCKETS - 1] = 1;
        assert!(h.quantile(0.99).unwrap() <= Duration::from_micros(5));
        assert_eq!(h.quantile(1.0), Some(Duration::from_secs(10)));
    }

    #[test]
    fn durations_fall_in_the_bucket_of_the_least_bound_not_below_them() {
        assert_eq!(bucket_of(1_000), 0);
        assert_eq!(bucket_of(1_001), 1);
        assert_eq!(bucket_of(3_000_000), 11);
        assert_eq!(bucket_of(u64::MAX), TIME_BUCKETS - 1);
    }
}
