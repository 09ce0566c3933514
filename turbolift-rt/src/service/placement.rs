//! Where a service runs a synchronous body: inline, on the I/O thread that read the call,
//! once the function has proven short; else on tokio's blocking pool.
//!
//! Handing a call to the blocking pool costs two cross-thread wake-ups (the I/O thread
//! wakes a pool thread, which wakes the connection's task back), tens of microseconds on
//! a small VM: more than a short function itself. So a function whose last
//! [`WARM_UP`] calls on the pool each took at most the inline limit
//! (`TURBOLIFT_INLINE_MAX`, default [`DEFAULT_INLINE_MAX`]) runs inline from then on, at
//! most on all I/O threads but one at a time, so one is always free for other
//! connections. The first inline call that takes longer than the limit sends the function
//! back to the pool for the rest of the process's life: a function that is usually fast
//! and sometimes slow stalls an I/O thread at most once.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Default longest call that may run inline.
pub const DEFAULT_INLINE_MAX: Duration = Duration::from_micros(100);

/// How many consecutive short calls on the pool make a function run inline.
pub const WARM_UP: u32 = 16;

/// The inline limit in nanoseconds; 0 turns inline execution off.
static INLINE_MAX_NANOS: AtomicU64 = AtomicU64::new(DEFAULT_INLINE_MAX.as_nanos() as u64);

/// Calls running inline now, across all functions.
static INLINE_NOW: AtomicUsize = AtomicUsize::new(0);

/// Sets the inline limit for this process (`Duration::ZERO`: never inline).
pub(crate) fn set_inline_max(max: Duration) {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    INLINE_MAX_NANOS.store(nanos, Ordering::Relaxed);
}

fn inline_max() -> u64 {
    INLINE_MAX_NANOS.load(Ordering::Relaxed)
}

/// What a service has learnt about one function's running time.
pub struct Placement {
    /// Consecutive calls on the pool that were short enough to run inline.
    short_streak: AtomicU32,
    /// Set when an inline call ran too long: never inline again.
    demoted: AtomicBool,
}

impl Placement {
    /// Nothing learnt yet: the first calls go to the pool.
    pub const fn new() -> Self {
        Placement {
            short_streak: AtomicU32::new(0),
            demoted: AtomicBool::new(false),
        }
    }

    /// A place to run inline now, if the function has earned it and an I/O thread can
    /// be spared.
    pub(crate) fn inline_slot(&self) -> Option<InlineSlot> {
        if self.demoted.load(Ordering::Relaxed)
            || self.short_streak.load(Ordering::Relaxed) < WARM_UP
            || inline_max() == 0
        {
            return None;
        }
        let handle = tokio::runtime::Handle::try_current().ok()?;
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return None; // one thread: a body inline would stall every connection
        }
        let spare = handle.metrics().num_workers().saturating_sub(1).max(1);
        if INLINE_NOW.fetch_add(1, Ordering::AcqRel) >= spare {
            INLINE_NOW.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(InlineSlot)
    }

    /// Records a call that ran inline for `took`; `function` names it in the log.
    pub(crate) fn ran_inline(&self, took: Duration, function: &str) {
        if took.as_nanos() > u128::from(inline_max()) && !self.demoted.swap(true, Ordering::Relaxed)
        {
            tracing::info!(
                function,
                took_us = took.as_micros() as u64,
                "a call ran longer than TURBOLIFT_INLINE_MAX; this function runs on the blocking pool from now on"
            );
        }
    }

    /// Records a call that ran on the pool for `took` (`None`: it panicked).
    pub(crate) fn ran_on_pool(&self, took: Option<Duration>) {
        match took {
            Some(t) if t.as_nanos() <= u128::from(inline_max()) => {
                let streak = self.short_streak.load(Ordering::Relaxed);
                if streak < WARM_UP {
                    self.short_streak.store(streak + 1, Ordering::Relaxed);
                }
            }
            _ => self.short_streak.store(0, Ordering::Relaxed),
        }
    }

    /// Whether the function runs inline once a slot is free (for tests and logs).
    pub fn is_inline(&self) -> bool {
        !self.demoted.load(Ordering::Relaxed)
            && self.short_streak.load(Ordering::Relaxed) >= WARM_UP
            && inline_max() != 0
    }
}

impl Default for Placement {
    fn default() -> Self {
        Placement::new()
    }
}

/// One of the inline places, given back when dropped (also on a panic).
pub(crate) struct InlineSlot;

impl Drop for InlineSlot {
    fn drop(&mut self) {
        INLINE_NOW.fetch_sub(1, Ordering::AcqRel);
    }
}
