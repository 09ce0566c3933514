//! The program's counts of its remote calls, per function, for the summary `cargo
//! turbolift` prints when a run or test ends.
//!
//! A call adds to atomics of its function (no lock, no allocation): whether it was
//! served, how it failed, how often it was sent again, and how long it took. When the
//! environment names a directory ([`env::STATS_DIR`]), the counts of every function are
//! written there as the process exits (`program-<pid>.stats`, in the format of
//! [`turbolift_shared::stats`]): from `exit`, so after `main` returns, after
//! `std::process::exit` (a test harness's way out) and after a panic that ends `main`; a
//! process killed by a signal or aborted writes nothing, and the summary says so.
//! `TURBOLIFT_METRICS=off` keeps no counts at all.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Mutex, Once, OnceLock};
use std::time::Instant;

use turbolift_shared::protocol::env;
use turbolift_shared::stats::{self, FunctionStats, TIME_BUCKETS};

use crate::Error;

/// One function's counts (see [`FunctionStats`] for what each means).
pub(crate) struct CallStats {
    function: &'static str,
    calls: AtomicU64,
    served: AtomicU64,
    panics: AtomicU64,
    timeouts: AtomicU64,
    decode: AtomicU64,
    unavailable: AtomicU64,
    refused: AtomicU64,
    cancelled: AtomicU64,
    retries: AtomicU64,
    time: [AtomicU64; TIME_BUCKETS],
}

/// Every function's counts, in the order of their first call; each lives as long as the
/// process, so that the exit handler can read them.
static ALL: Mutex<Vec<&'static CallStats>> = Mutex::new(Vec::new());

impl CallStats {
    /// The counts of `function`, made at its first call in the process.
    pub(crate) fn of(function: &'static str) -> &'static CallStats {
        let mut all = ALL.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = all.iter().find(|s| s.function == function) {
            return found;
        }
        let made: &'static CallStats = Box::leak(Box::new(CallStats::new(function)));
        all.push(made);
        drop(all);
        write_at_exit();
        made
    }

    fn new(function: &'static str) -> CallStats {
        CallStats {
            function,
            calls: AtomicU64::new(0),
            served: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            decode: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            time: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// A call starts: counted as cancelled unless [`Recording::finish`] gives its outcome.
    pub(crate) fn start(&'static self) -> Recording {
        self.start_many(1)
    }

    /// `calls` calls start together (a batch): each is counted as cancelled unless
    /// [`Recording::finish_one`] gives its outcome.
    pub(crate) fn start_many(&'static self, calls: usize) -> Recording {
        let calls = calls as u64;
        self.calls.fetch_add(calls, Relaxed);
        Recording {
            stats: self,
            started: Instant::now(),
            left: calls,
        }
    }

    /// `calls` calls were sent again after an attempt that got no answer.
    pub(crate) fn retried(&self, calls: usize) {
        self.retries.fetch_add(calls as u64, Relaxed);
    }

    fn finish<T>(&self, started: Instant, outcome: &Result<T, Error>) {
        let counter = match outcome {
            Ok(_) => &self.served,
            Err(Error::Panic { .. }) => {
                self.served.fetch_add(1, Relaxed);
                &self.panics
            }
            Err(Error::Timeout { .. }) => &self.timeouts,
            Err(Error::Encode { .. } | Error::Decode { .. }) => &self.decode,
            Err(Error::Unavailable { .. }) => &self.unavailable,
            Err(_) => &self.refused,
        };
        counter.fetch_add(1, Relaxed);
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.time[stats::bucket_of(nanos)].fetch_add(1, Relaxed);
    }

    fn snapshot(&self) -> FunctionStats {
        let mut f = FunctionStats::new(self.function);
        f.calls = self.calls.load(Relaxed);
        f.served = self.served.load(Relaxed);
        f.panics = self.panics.load(Relaxed);
        f.timeouts = self.timeouts.load(Relaxed);
        f.decode = self.decode.load(Relaxed);
        f.unavailable = self.unavailable.load(Relaxed);
        f.refused = self.refused.load(Relaxed);
        f.cancelled = self.cancelled.load(Relaxed);
        f.retries = self.retries.load(Relaxed);
        for (count, bucket) in f.time.counts.iter_mut().zip(&self.time) {
            *count = bucket.load(Relaxed);
        }
        f
    }
}

/// Calls being counted, from one start; those dropped without an outcome (their future
/// or stream was dropped) count as cancelled.
pub(crate) struct Recording {
    stats: &'static CallStats,
    started: Instant,
    left: u64,
}

impl Recording {
    pub(crate) fn finish<T>(mut self, outcome: &Result<T, Error>) {
        self.finish_one(outcome);
    }

    /// The outcome of the next of the calls.
    pub(crate) fn finish_one<T>(&mut self, outcome: &Result<T, Error>) {
        if self.left > 0 {
            self.left -= 1;
            self.stats.finish(self.started, outcome);
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if self.left > 0 {
            self.stats.cancelled.fetch_add(self.left, Relaxed);
        }
    }
}

/// Every function's counts so far.
pub(crate) fn snapshot() -> Vec<FunctionStats> {
    let all = ALL.lock().unwrap_or_else(|e| e.into_inner());
    all.iter().map(|s| s.snapshot()).collect()
}

/// Writes every function's counts into `dir` as `program-<pid>.stats` (through a
/// temporary file renamed into place, so that a reader never sees half a file).
pub(crate) fn write(dir: &std::path::Path) -> std::io::Result<PathBuf> {
    let text = stats::encode(&snapshot());
    let pid = std::process::id();
    let path = dir.join(format!("program-{pid}.stats"));
    let partial = dir.join(format!(".program-{pid}.stats.partial"));
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, &path)?;
    Ok(path)
}

/// The directory of [`env::STATS_DIR`], read once.
fn stats_dir() -> Option<&'static PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        std::env::var_os(env::STATS_DIR)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
    })
    .as_ref()
}

/// Registers, once, the writing of the counts at exit when [`env::STATS_DIR`] is set.
fn write_at_exit() {
    static REGISTERED: Once = Once::new();
    if stats_dir().is_none() {
        return;
    }
    REGISTERED.call_once(|| {
        // SAFETY: `atexit` only records the address of a function that takes and returns
        // nothing; `on_exit` neither unwinds nor relies on anything torn down before it.
        let failed = unsafe { libc::atexit(on_exit) } != 0;
        if failed {
            eprintln!(
                "warning: turbolift: cannot register the writing of call counts at exit; the summary of this run will miss this process"
            );
        }
    });
}

extern "C" fn on_exit() {
    // Unwinding out of an `extern "C"` function aborts: catch anything, say it, go on.
    let outcome = std::panic::catch_unwind(|| stats_dir().map(|dir| write(dir)));
    match outcome {
        Ok(Some(Err(e))) => eprintln!(
            "warning: turbolift: cannot write the call counts into {}: {e}",
            stats_dir().map_or_else(String::new, |d| d.display().to_string())
        ),
        Err(_) => eprintln!("warning: turbolift: writing the call counts panicked"),
        Ok(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(kind: &str) -> Error {
        let function = "f".to_owned();
        match kind {
            "panic" => Error::Panic {
                function,
                message: "boom".into(),
            },
            "timeout" => Error::Timeout {
                function,
                after: std::time::Duration::from_secs(1),
            },
            "decode" => Error::Decode {
                function,
                detail: "x".into(),
            },
            "unavailable" => Error::Unavailable {
                function,
                attempts: 3,
                last: "x".into(),
            },
            _ => Error::Config("x".into()),
        }
    }

    #[test]
    fn each_outcome_lands_in_its_counter_and_a_dropped_call_is_cancelled() {
        let stats = CallStats::of("stats::tests::outcomes");
        stats.start().finish(&Ok::<(), Error>(()));
        for kind in ["panic", "timeout", "decode", "unavailable", "other"] {
            stats.start().finish(&Err::<(), _>(error(kind)));
        }
        drop(stats.start());
        stats.retried(3);
        // A batch of three whose stream was dropped after one result.
        let mut batch = stats.start_many(3);
        batch.finish_one(&Ok::<(), Error>(()));
        drop(batch);
        let f = stats.snapshot();
        assert_eq!(f.function, "stats::tests::outcomes");
        assert_eq!(
            (f.calls, f.served, f.panics, f.timeouts, f.decode),
            (10, 3, 1, 1, 1)
        );
        assert_eq!(
            (f.unavailable, f.refused, f.cancelled, f.retries),
            (1, 1, 3, 3)
        );
        // The seven calls that finished have a time; the cancelled ones have none.
        assert_eq!(f.time.total(), 7);
        assert!(std::ptr::eq(stats, CallStats::of("stats::tests::outcomes")));
    }

    #[test]
    fn the_file_written_reads_back() {
        let stats = CallStats::of("stats::tests::file");
        for _ in 0..5 {
            stats.start().finish(&Ok::<(), Error>(()));
        }
        let dir = std::env::temp_dir().join(format!("turbolift-stats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = write(&dir).unwrap();
        let read = stats::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let f = read
            .iter()
            .find(|f| f.function == "stats::tests::file")
            .unwrap();
        assert_eq!((f.calls, f.served, f.time.total()), (5, 5, 5));
    }
}
