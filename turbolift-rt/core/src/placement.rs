//! Where a service runs a synchronous body: inline, on the I/O thread that read the call,
//! once the function has proven short; else on tokio's blocking pool.
//!
//! Handing a call to the blocking pool costs two cross-thread wake-ups (the I/O thread
//! wakes a pool thread, which wakes the connection's task back), tens of microseconds on
//! a small VM: more than a short function itself. So a function whose last
//! [`WARM_UP`] calls on the pool each took at most the inline limit
//! (`TURBOLIFT_INLINE_MAX`, default [`DEFAULT_INLINE_MAX`]) runs inline from then on, at
//! most on all I/O threads but one at a time, so one is always free for other
//! connections. An inline call that takes longer than the limit sends the function back
//! to the pool until it has again run short [`WARM_UP`] times there.
//!
//! A batch request of a function that runs inline runs its calls inline one after
//! another until they have taken the limit together, in one slot, each call's time
//! learnt as a single call's; the rest of the batch goes to the pool, whose calls teach
//! the function's placement as single calls on the pool do.
//!
//! An inline call that takes more than [`STRIKE_FACTOR`] times the limit makes the
//! function a suspect, and a call on the pool that also takes that long while it is one
//! is a *strike*; at the [`STRIKES`]th strike the function stays on the pool for the rest
//! of the process's life. [`FORGIVEN_AFTER`] short inline calls in a row wipe the strikes
//! out. So a function that is usually fast and sometimes slow stalls an I/O thread a few
//! times, and then runs on the pool. The confirmation on the pool is there because the
//! clock cannot tell a long body from a short one during which the OS ran another
//! thread: on a busy two-core machine one call of a 1 µs function in some ten thousand
//! "takes" 100 µs to 1 ms that way, and such calls come in bursts when the machine is
//! loaded (three within 10,000 calls sent `echo` to the pool for good in the benchmark).
//! The clock of a thread's own CPU time would tell them apart, but costs 0.5 µs to read
//! here, more than such a function; a suspect's next calls on the pool are timed anyway.
//!
//! A worker that runs a body inline is not polling tokio's I/O driver, and the other
//! workers may all be parked waiting to be told of work that only the driver would find:
//! a body that blocks after all would stop the whole service from reading its sockets. A
//! watchdog thread ([`watch`]) looks every [`WATCH_EVERY`]; when inline calls are running
//! and none has started for that long, it schedules an empty task on the runtime, which
//! wakes a parked worker, which then polls the driver and serves the other connections.
//! `Service::serve` starts it; a router served by other means runs every call on the
//! pool. After [`PARK_AFTER`] without an inline call the watchdog parks (an idle service
//! wakes no thread), and the next inline call unparks it: an atomic load per inline call,
//! and a wake-up only for the first after a quiet second.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Default longest call that may run inline.
pub const DEFAULT_INLINE_MAX: Duration = Duration::from_micros(100);

/// How many consecutive short calls on the pool make a function run inline.
pub const WARM_UP: u32 = 16;

/// Strikes after which a function runs on the pool for good.
pub const STRIKES: u32 = 3;

/// How many times the inline limit a call must take to make the function a suspect
/// (inline) or to be a strike (on the pool, while it is one).
pub const STRIKE_FACTOR: u32 = 10;

/// Consecutive short inline calls that wipe out a function's strikes.
pub const FORGIVEN_AFTER: u32 = 10_000;

/// The inline limit in nanoseconds; 0 turns inline execution off.
static INLINE_MAX_NANOS: AtomicU64 = AtomicU64::new(DEFAULT_INLINE_MAX.as_nanos() as u64);

/// Calls running inline now, across all functions.
static INLINE_NOW: AtomicUsize = AtomicUsize::new(0);

/// When the latest inline call started, in nanoseconds since [`epoch`].
static LATEST_START: AtomicU64 = AtomicU64::new(0);

/// Whether the watchdog runs: without it (a router served by other means than
/// `Service::serve`), no call runs inline.
static WATCHING: AtomicBool = AtomicBool::new(false);

/// How often the watchdog looks at the inline calls.
pub const WATCH_EVERY: Duration = Duration::from_millis(2);

/// How long without an inline call before the watchdog parks until the next.
pub const PARK_AFTER: Duration = Duration::from_secs(1);

/// Set while the watchdog is parked (or about to be): an inline call that starts then
/// unparks it.
static PARKED: AtomicBool = AtomicBool::new(false);

/// The watchdog's thread, to unpark.
static WATCHDOG: OnceLock<std::thread::Thread> = OnceLock::new();

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn nanos_since_epoch() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Puts the runtime `handle` under the watchdog of inline calls (started with the first).
pub fn watch(handle: tokio::runtime::Handle) {
    static WATCHED: Mutex<Vec<tokio::runtime::Handle>> = Mutex::new(Vec::new());
    let mut watched = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
    if watched.iter().any(|h| h.id() == handle.id()) {
        return;
    }
    watched.push(handle);
    if watched.len() > 1 {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("turbolift-inline-watch".to_owned())
        .spawn(|| {
            let _ = WATCHDOG.set(std::thread::current());
            let mut poked_for = u64::MAX;
            let idle_ticks = (PARK_AFTER.as_millis() / WATCH_EVERY.as_millis()).max(1);
            let mut idle = 0;
            loop {
                std::thread::sleep(WATCH_EVERY);
                if INLINE_NOW.load(Ordering::SeqCst) == 0 {
                    idle += 1;
                    if idle >= idle_ticks {
                        idle = 0;
                        // Either this load sees a call that started, or that call sees
                        // `PARKED` and unparks this thread (both sequentially consistent).
                        PARKED.store(true, Ordering::SeqCst);
                        if INLINE_NOW.load(Ordering::SeqCst) == 0 {
                            std::thread::park();
                        }
                        PARKED.store(false, Ordering::SeqCst);
                    }
                    continue;
                }
                idle = 0;
                let latest = LATEST_START.load(Ordering::Acquire);
                let quiet = nanos_since_epoch().saturating_sub(latest);
                if quiet >= WATCH_EVERY.as_nanos() as u64 && poked_for != latest {
                    // Every running inline call has run for a while: wake a worker of
                    // each runtime (a runtime that has shut down ignores it).
                    poked_for = latest;
                    let watched = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
                    for handle in watched.iter() {
                        drop(handle.spawn(async {}));
                    }
                }
            }
        });
    // Without the watchdog, no call runs inline.
    WATCHING.store(spawned.is_ok(), Ordering::Release);
}

/// Sets the inline limit for this process (`Duration::ZERO`: never inline).
pub fn set_inline_max(max: Duration) {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    INLINE_MAX_NANOS.store(nanos, Ordering::Relaxed);
}

fn inline_max() -> u64 {
    INLINE_MAX_NANOS.load(Ordering::Relaxed)
}

/// The inline limit: also how long a batch's calls may run inline, one after another,
/// before the rest go to the pool.
pub fn inline_limit() -> Duration {
    Duration::from_nanos(inline_max())
}

/// What a service has learnt about one function's running time.
pub struct Placement {
    /// Consecutive calls on the pool that were short enough to run inline.
    short_streak: AtomicU32,
    /// Confirmed long calls, since the strikes were last wiped out.
    strikes: AtomicU32,
    /// Set by an inline call that ran far longer than the limit, until the function has
    /// earned inline execution again or a long call on the pool confirmed it (a strike).
    suspect: AtomicBool,
    /// Short inline calls in a row, counted while there are strikes.
    short_inline: AtomicU32,
    /// Set at the last strike: never inline again.
    demoted: AtomicBool,
}

impl Placement {
    /// Nothing learnt yet: the first calls go to the pool.
    pub const fn new() -> Self {
        Placement {
            short_streak: AtomicU32::new(0),
            strikes: AtomicU32::new(0),
            suspect: AtomicBool::new(false),
            short_inline: AtomicU32::new(0),
            demoted: AtomicBool::new(false),
        }
    }

    /// Whether the function's running times have earned it inline execution.
    fn learnt_short(&self) -> bool {
        !self.demoted.load(Ordering::Relaxed)
            && self.short_streak.load(Ordering::Relaxed) >= WARM_UP
    }

    /// Whether the function has earned inline execution and it is on in this service.
    fn earned(&self) -> bool {
        self.learnt_short() && inline_max() != 0 && WATCHING.load(Ordering::Relaxed)
    }

    /// A place to run inline now, if the function has earned it and an I/O thread can
    /// be spared.
    pub fn inline_slot(&self) -> Option<InlineSlot> {
        if !self.earned() {
            return None;
        }
        let handle = tokio::runtime::Handle::try_current().ok()?;
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return None; // one thread: a body inline would stall every connection
        }
        let spare = handle.metrics().num_workers().saturating_sub(1).max(1);
        if INLINE_NOW.fetch_add(1, Ordering::SeqCst) >= spare {
            INLINE_NOW.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        if PARKED.load(Ordering::SeqCst)
            && let Some(watchdog) = WATCHDOG.get()
        {
            watchdog.unpark();
        }
        let started = Instant::now();
        let since_epoch = started.saturating_duration_since(epoch()).as_nanos();
        LATEST_START.store(
            u64::try_from(since_epoch).unwrap_or(u64::MAX),
            Ordering::Release,
        );
        Some(InlineSlot { started })
    }

    /// Records a call that ran inline in `slot`, and gives the slot back; `function`
    /// names it in the log.
    pub fn ran_inline(&self, slot: InlineSlot, function: &str) {
        let took = slot.started.elapsed();
        drop(slot);
        self.took_inline(took, function);
    }

    /// What [`Placement::ran_inline`] learns from an inline call that took `took`; a
    /// batch's calls that run inline in one slot tell it each of theirs.
    pub fn took_inline(&self, took: Duration, function: &str) {
        let max = u128::from(inline_max());
        if took.as_nanos() <= max {
            // Counted only while there are strikes to wipe out, so that the usual short
            // call writes nothing shared; approximately under concurrent calls (a load and
            // a store): a heuristic, and one atomic read-modify-write less per call.
            if self.strikes.load(Ordering::Relaxed) != 0 {
                let short = self.short_inline.load(Ordering::Relaxed) + 1;
                if short >= FORGIVEN_AFTER {
                    self.strikes.store(0, Ordering::Relaxed);
                    self.short_inline.store(0, Ordering::Relaxed);
                } else {
                    self.short_inline.store(short, Ordering::Relaxed);
                }
            }
            return;
        }
        self.short_inline.store(0, Ordering::Relaxed);
        self.short_streak.store(0, Ordering::Relaxed);
        let suspect = took.as_nanos() > max * u128::from(STRIKE_FACTOR);
        if suspect {
            self.suspect.store(true, Ordering::Relaxed);
        }
        tracing::debug!(
            target: "turbolift::service::placement",
            function,
            took_us = took.as_micros() as u64,
            suspect,
            "a call ran longer than TURBOLIFT_INLINE_MAX; back to the blocking pool until it runs short again"
        );
    }

    /// Records a call that ran on the pool for `took` (`None`: it panicked); `function`
    /// names it in the log.
    pub fn ran_on_pool(&self, took: Option<Duration>, function: &str) {
        let max = u128::from(inline_max());
        match took {
            Some(t) if t.as_nanos() <= max => {
                let streak = self.short_streak.load(Ordering::Relaxed) + 1;
                if streak <= WARM_UP {
                    self.short_streak.store(streak, Ordering::Relaxed);
                }
                if streak == WARM_UP {
                    // Inline again: what made it a suspect was not the function.
                    self.suspect.store(false, Ordering::Relaxed);
                }
            }
            Some(t) => {
                self.short_streak.store(0, Ordering::Relaxed);
                if t.as_nanos() > max * u128::from(STRIKE_FACTOR)
                    && self.suspect.swap(false, Ordering::Relaxed)
                {
                    self.strike(function, t);
                }
            }
            None => self.short_streak.store(0, Ordering::Relaxed),
        }
    }

    /// A long inline call confirmed by a long call on the pool.
    fn strike(&self, function: &str, took: Duration) {
        let strikes = self.strikes.fetch_add(1, Ordering::Relaxed) + 1;
        if strikes < STRIKES {
            tracing::debug!(
                target: "turbolift::service::placement",
                function,
                took_us = took.as_micros() as u64,
                strikes,
                "a call ran far longer than TURBOLIFT_INLINE_MAX inline and then on the pool too"
            );
        } else if !self.demoted.swap(true, Ordering::Relaxed) {
            tracing::info!(
                target: "turbolift::service::placement",
                function,
                took_us = took.as_micros() as u64,
                strikes,
                "calls ran far longer than TURBOLIFT_INLINE_MAX again and again; this function runs on the blocking pool from now on"
            );
        }
    }

    /// Whether the function runs inline once a slot is free (for tests and logs).
    pub fn is_inline(&self) -> bool {
        self.earned()
    }
}

impl Default for Placement {
    fn default() -> Self {
        Placement::new()
    }
}

/// One of the inline places, given back when dropped (also on a panic).
pub struct InlineSlot {
    /// When the call started.
    started: Instant,
}

impl Drop for InlineSlot {
    fn drop(&mut self) {
        INLINE_NOW.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records an inline call that took `took`, as `ran_inline` sees one: its time given,
    /// not measured, so that a test thread preempted on a loaded machine does not turn a
    /// short call into a long one.
    fn ran(placement: &Placement, took: Duration) {
        INLINE_NOW.fetch_add(1, Ordering::AcqRel);
        drop(InlineSlot {
            started: Instant::now(),
        });
        placement.took_inline(took, "test");
    }

    fn warm(placement: &Placement) {
        for _ in 0..WARM_UP {
            placement.ran_on_pool(Some(Duration::from_micros(1)), "test");
        }
    }

    /// Far longer than the limit: a suspect inline, a strike on the pool.
    const FAR: Duration = DEFAULT_INLINE_MAX.saturating_mul(STRIKE_FACTOR + 1);

    /// A far-long inline call confirmed by a far-long call on the pool.
    fn strike(placement: &Placement) {
        ran(placement, FAR);
        placement.ran_on_pool(Some(FAR), "test");
    }

    #[test]
    fn a_long_inline_call_alone_sends_the_function_to_the_pool_never_for_good() {
        let placement = Placement::new();
        for took in [DEFAULT_INLINE_MAX * 2, FAR] {
            for _ in 0..10 * STRIKES {
                warm(&placement);
                assert!(placement.learnt_short());
                ran(&placement, took);
                assert!(!placement.learnt_short(), "back to the pool");
            }
        }
        warm(&placement);
        assert!(placement.learnt_short(), "the pool did not confirm them");
        // Nor does a long call on the pool strike when no inline call made it a suspect.
        placement.ran_on_pool(Some(FAR), "test");
        warm(&placement);
        placement.ran_on_pool(Some(FAR), "test");
        warm(&placement);
        assert!(placement.learnt_short());
    }

    #[test]
    fn the_third_long_inline_call_confirmed_on_the_pool_keeps_the_function_there() {
        let placement = Placement::new();
        for strike_number in 1..STRIKES {
            warm(&placement);
            assert!(placement.learnt_short());
            ran(&placement, Duration::from_micros(1));
            strike(&placement);
            assert!(
                !placement.learnt_short(),
                "strike {strike_number}: back on the pool"
            );
        }
        warm(&placement);
        assert!(
            placement.learnt_short(),
            "earned again after {} strikes",
            STRIKES - 1
        );
        strike(&placement);
        warm(&placement);
        assert!(!placement.learnt_short(), "the last strike lasts");
    }

    #[test]
    fn many_short_inline_calls_wipe_the_strikes_out() {
        let placement = Placement::new();
        for _ in 0..STRIKES - 1 {
            warm(&placement);
            strike(&placement);
        }
        warm(&placement);
        for _ in 0..FORGIVEN_AFTER {
            ran(&placement, Duration::from_micros(1));
        }
        // Two more strikes now would not reach the last one.
        for _ in 0..STRIKES - 1 {
            warm(&placement);
            strike(&placement);
        }
        warm(&placement);
        assert!(placement.learnt_short());
    }
}
