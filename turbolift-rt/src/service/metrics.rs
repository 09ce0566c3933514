//! A service's metrics, answered at `GET /v1/metrics` in Prometheus' text format, or in
//! OpenMetrics when the scraper asks for it (Prometheus does).
//!
//! The call path only adds to atomics held here (no lock, no allocation): per function,
//! the calls served, the calls that panicked, the calls running, the batches and their
//! calls, and a histogram of service time. A scrape reads them, and the counters the
//! service keeps anyway (refusals by kind, calls waiting in line, `busy` refusals), the
//! process's resident memory and its open connections, and writes them in the scraper's
//! format (see `exposition`).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

use turbolift_shared::protocol::ErrorKind;

use super::State;
use super::exposition::{Exposition, Kind};

/// Upper bounds of the service-time buckets in nanoseconds: 1 µs to 10 s, in steps of
/// 1, 2.5 and 5 (a call run inline takes microseconds, one on the blocking pool tens of
/// microseconds more, a real computation milliseconds to seconds); the program's own
/// histogram of call time has the same ones.
use turbolift_shared::stats::{TIME_BOUNDS_NANOS as BOUNDS, bucket_of};

/// The metrics of a service.
pub(crate) struct Metrics {
    /// One per served function, in the order the router was built with.
    pub(crate) functions: Box<[FunctionMetrics]>,
    /// Answers `GET /v1/metrics` without the secret (`TURBOLIFT_METRICS_PUBLIC=1`).
    pub(crate) public: AtomicBool,
    /// `false` (`TURBOLIFT_METRICS=off`): calls count nothing, and `GET /v1/metrics` says
    /// the metrics are off.
    pub(crate) on: bool,
}

impl Metrics {
    pub(crate) fn new(functions: impl IntoIterator<Item = &'static str>, on: bool) -> Self {
        Metrics {
            functions: functions
                .into_iter()
                .map(|id| FunctionMetrics::new(id, on))
                .collect(),
            public: AtomicBool::new(false),
            on,
        }
    }

    /// Calls served, by every function.
    pub(crate) fn served(&self) -> u64 {
        self.functions.iter().map(|f| f.calls.load(Relaxed)).sum()
    }

    /// Calls that panicked, of every function.
    pub(crate) fn panicked(&self) -> u64 {
        self.functions.iter().map(|f| f.panics.load(Relaxed)).sum()
    }
}

/// What one function's calls add to.
pub(crate) struct FunctionMetrics {
    id: &'static str,
    /// Whether calls are counted ([`Metrics::on`]).
    on: bool,
    /// Calls that ran, alone (whatever their outcome but bad arguments) or in a batch
    /// (counted when it starts).
    calls: AtomicU64,
    panics: AtomicU64,
    /// Calls and batches holding a place among the calls that run at once.
    in_flight: AtomicU64,
    batches: AtomicU64,
    batch_calls: AtomicU64,
    service_time: ServiceTime,
}

impl FunctionMetrics {
    fn new(id: &'static str, on: bool) -> Self {
        FunctionMetrics {
            id,
            on,
            calls: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            batch_calls: AtomicU64::new(0),
            service_time: ServiceTime::default(),
        }
    }

    /// When a call starts, for [`FunctionMetrics::served`]; `None` when calls are not
    /// counted (no clock read).
    pub(crate) fn clock(&self) -> Option<Instant> {
        self.on.then(Instant::now)
    }

    /// A call that ran since `started` ([`FunctionMetrics::clock`]).
    pub(crate) fn served(&self, started: Option<Instant>) {
        if let Some(started) = started {
            self.calls.fetch_add(1, Relaxed);
            self.service_time.observe(started.elapsed());
        }
    }

    /// A batch of `calls` calls, started.
    pub(crate) fn batch_started(&self, calls: u64) {
        if !self.on {
            return;
        }
        self.batches.fetch_add(1, Relaxed);
        self.batch_calls.fetch_add(calls, Relaxed);
        self.calls.fetch_add(calls, Relaxed);
    }

    /// A call of a batch that ran for `took` (counted when its batch started).
    pub(crate) fn batch_call_took(&self, took: Duration) {
        if !self.on {
            return;
        }
        self.service_time.observe(took);
    }

    pub(crate) fn panicked(&self) {
        if !self.on {
            return;
        }
        self.panics.fetch_add(1, Relaxed);
    }

    /// A call or batch is running until the guard drops.
    pub(crate) fn running(&self) -> Running<'_> {
        self.start_running();
        Running(self)
    }

    pub(crate) fn start_running(&self) {
        if !self.on {
            return;
        }
        self.in_flight.fetch_add(1, Relaxed);
    }

    pub(crate) fn stop_running(&self) {
        if !self.on {
            return;
        }
        self.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A call in flight; see [`FunctionMetrics::running`].
pub(crate) struct Running<'a>(&'a FunctionMetrics);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.stop_running();
    }
}

/// A histogram of durations: a count per bucket (not cumulative, the last one above
/// every bound) and the sum, in nanoseconds.
#[derive(Default)]
struct ServiceTime {
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl ServiceTime {
    fn observe(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(nanos)].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// The buckets (upper bound in seconds, count in that bucket alone) and the sum in
    /// seconds.
    fn snapshot(&self) -> (Vec<(f64, u64)>, f64) {
        let bounds = BOUNDS
            .iter()
            .map(|&b| Duration::from_nanos(b).as_secs_f64())
            .chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds
            .zip(&self.buckets)
            .map(|(bound, count)| (bound, count.load(Relaxed)))
            .collect();
        let sum = Duration::from_nanos(self.sum_nanos.load(Relaxed)).as_secs_f64();
        (buckets, sum)
    }
}

/// The metrics of the service in Prometheus' text format, or OpenMetrics'.
pub(crate) fn encode(state: &State, openmetrics: bool) -> String {
    let mut out = Exposition::new(openmetrics);
    let functions = &state.metrics.functions;
    let per_function = |out: &mut Exposition,
                        name: &str,
                        help: &str,
                        kind: Kind,
                        value: fn(&FunctionMetrics) -> u64| {
        let mut family = out.family(name, help, None, kind);
        for f in functions.iter() {
            family.value(&[("function", f.id)], value(f));
        }
    };
    per_function(
        &mut out,
        "turbolift_calls",
        "Calls served: calls that ran alone, and the calls of batches that started.",
        Kind::Counter,
        |f| f.calls.load(Relaxed),
    );
    {
        let mut errors = out.family(
            "turbolift_errors",
            "Calls that failed, by kind: panics per function; refusals (every other kind) by the whole service.",
            None,
            Kind::Counter,
        );
        for f in functions.iter() {
            let labels = [("function", f.id), ("kind", ErrorKind::Panic.as_str())];
            errors.value(&labels, f.panics.load(Relaxed));
        }
        for kind in ErrorKind::ALL {
            let count = match kind {
                ErrorKind::Panic => continue,
                ErrorKind::Busy => state.busy.load(Relaxed),
                ErrorKind::Draining => state.drained.load(Relaxed),
                kind => state.refusals.count(kind),
            };
            errors.value(&[("kind", kind.as_str())], count);
        }
    }
    per_function(
        &mut out,
        "turbolift_calls_in_flight",
        "Calls running now; a batch counts as one until its last call is done.",
        Kind::Gauge,
        |f| f.in_flight.load(Relaxed),
    );
    out.family(
        "turbolift_calls_waiting",
        "Calls and batches waiting in line for a place among the calls that run at once (TURBOLIFT_MAX_CONCURRENCY).",
        None,
        Kind::Gauge,
    )
    .value(&[], state.waiting.load(Relaxed) as u64);
    {
        let mut histogram = out.family(
            "turbolift_service_time",
            "Time a call took from its arguments decoded to its result encoded, alone or in a batch, not counting its wait in line.",
            Some("seconds"),
            Kind::Histogram,
        );
        for f in functions.iter() {
            let (buckets, sum) = f.service_time.snapshot();
            histogram.histogram(&[("function", f.id)], &buckets, sum);
        }
    }
    per_function(
        &mut out,
        "turbolift_batches",
        "Batch requests started.",
        Kind::Counter,
        |f| f.batches.load(Relaxed),
    );
    per_function(
        &mut out,
        "turbolift_batch_calls",
        "Calls in the batch requests started.",
        Kind::Counter,
        |f| f.batch_calls.load(Relaxed),
    );
    // Each connection the service holds takes one of the places of its cap.
    let open = state.max_connections - state.connections.available_permits();
    out.family(
        "turbolift_open_connections",
        "Connections the service holds open (at most TURBOLIFT_MAX_CONNECTIONS).",
        None,
        Kind::Gauge,
    )
    .value(&[], open as u64);
    if let Some(bytes) = resident_memory() {
        out.family(
            "process_resident_memory",
            "Resident memory of the service's process.",
            Some("bytes"),
            Kind::Gauge,
        )
        .value(&[], bytes);
    }
    out.finish()
}

/// The process's resident memory: the second field of `/proc/self/statm`, in pages.
fn resident_memory() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_in_the_bucket_of_the_least_bound_not_below_them() {
        let time = ServiceTime::default();
        time.observe(Duration::from_nanos(1_000)); // le 1 µs
        time.observe(Duration::from_nanos(1_001)); // le 2.5 µs
        time.observe(Duration::from_millis(3)); // le 5 ms
        time.observe(Duration::from_secs(60)); // +Inf
        let (buckets, sum) = time.snapshot();
        let count: u64 = buckets.iter().map(|(_, n)| n).sum();
        assert_eq!(count, 4);
        assert!((sum - 60.003_002_001).abs() < 1e-9, "{sum}");
        let counted: Vec<(f64, u64)> = buckets.into_iter().filter(|(_, n)| *n > 0).collect();
        assert_eq!(
            counted,
            [
                (0.000_001, 1),
                (0.000_002_5, 1),
                (0.005, 1),
                (f64::INFINITY, 1)
            ]
        );
    }

    #[test]
    fn resident_memory_is_read() {
        assert!(resident_memory().is_some_and(|bytes| bytes > 1024 * 1024));
    }
}
