//! Refused requests, counted by kind and logged sparingly: the first of a kind at once,
//! then at most one line per kind per second, which says how many more there were. A
//! flood of bad requests then costs the log a few lines a second, not one per request.
//!
//! Counting and the choice to log are a few atomic operations (no lock, no allocation),
//! and good calls never come here.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use turbolift_shared::protocol::ErrorKind;

/// The least time between two lines about refusals of one kind.
pub(crate) const QUIET: Duration = Duration::from_secs(1);

const KINDS: usize = ErrorKind::ALL.len();

/// The refusals of one service.
pub(crate) struct Refusals {
    kinds: [Kind; KINDS],
    epoch: Instant,
    /// Told when a refusal is counted but not logged, so that the count is logged later
    /// ([`Refusals::tell_untold_later`]); nothing waits on a timer otherwise.
    suppressed: tokio::sync::Notify,
}

#[derive(Default)]
struct Kind {
    /// Every refusal of this kind.
    total: AtomicU64,
    /// Refusals of this kind that no line has told of yet.
    untold: AtomicU64,
    /// When the last line about this kind was logged: nanoseconds since `epoch`, plus
    /// one; 0 while none was.
    told_at: AtomicU64,
}

impl Refusals {
    pub(crate) fn new() -> Self {
        Refusals {
            kinds: Default::default(),
            epoch: Instant::now(),
            suppressed: tokio::sync::Notify::new(),
        }
    }

    /// Counts a refusal of `kind` and logs it, with the number of refusals of its kind
    /// not yet logged, unless a line about its kind was logged less than [`QUIET`] ago.
    pub(crate) fn refused(&self, kind: ErrorKind, reason: &str) {
        let counts = &self.kinds[index(kind)];
        counts.total.fetch_add(1, Ordering::Relaxed);
        let now = self.now();
        let last = counts.told_at.load(Ordering::Acquire);
        let due = last == 0 || now.saturating_sub(last) >= QUIET.as_nanos() as u64;
        if !due
            || counts
                .told_at
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            if counts.untold.fetch_add(1, Ordering::AcqRel) == 0 {
                self.suppressed.notify_one();
            }
            return;
        }
        let more = counts.untold.swap(0, Ordering::AcqRel);
        let kind = kind.as_str();
        if more == 0 {
            tracing::warn!(kind, refused = 1u64, "{reason}");
        } else {
            let refused = more + 1;
            let seconds = self.seconds(now - last);
            tracing::warn!(
                kind,
                refused,
                "refused {refused} more requests ({kind}) in the last {seconds:.1} s; the latest: {reason}"
            );
        }
    }

    /// Logs, for each kind with refusals not yet logged, how many there were, unless a
    /// line about the kind was logged less than [`QUIET`] ago; `at_once` logs them
    /// whatever the time (when the service stops).
    pub(crate) fn tell_untold(&self, at_once: bool) {
        for (kind, counts) in ErrorKind::ALL.into_iter().zip(&self.kinds) {
            if counts.untold.load(Ordering::Acquire) == 0 {
                continue;
            }
            let now = self.now();
            let last = counts.told_at.load(Ordering::Acquire);
            if !at_once && now.saturating_sub(last) < QUIET.as_nanos() as u64 {
                continue;
            }
            if counts
                .told_at
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue; // a refusal just logged them
            }
            let refused = counts.untold.swap(0, Ordering::AcqRel);
            if refused > 0 {
                let kind = kind.as_str();
                let seconds = self.seconds(now.saturating_sub(last));
                tracing::warn!(
                    kind,
                    refused,
                    "refused {refused} more requests ({kind}) in the last {seconds:.1} s"
                );
            }
        }
    }

    /// Logs what [`Refusals::tell_untold`] would, every [`QUIET`] while refusals are left
    /// untold, for ever: the end of a flood is told of within two seconds, not at the next
    /// refusal. Between floods it waits without a timer, so an idle service never wakes.
    pub(crate) async fn tell_untold_later(&self) {
        loop {
            self.suppressed.notified().await;
            loop {
                tokio::time::sleep(QUIET).await;
                self.tell_untold(false);
                if self
                    .kinds
                    .iter()
                    .all(|k| k.untold.load(Ordering::Acquire) == 0)
                {
                    break;
                }
            }
        }
    }

    /// The refusals of `kind`.
    pub(crate) fn count(&self, kind: ErrorKind) -> u64 {
        self.kinds[index(kind)].total.load(Ordering::Relaxed)
    }

    /// Every refusal, of any kind.
    pub(crate) fn total(&self) -> u64 {
        self.kinds
            .iter()
            .map(|k| k.total.load(Ordering::Relaxed))
            .sum()
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    fn seconds(&self, nanos: u64) -> f64 {
        Duration::from_nanos(nanos).as_secs_f64()
    }
}

/// The refusals of each kind there was one of: `unauthorized 5000, bad-request 2`, or
/// `none`.
impl fmt::Display for Refusals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut any = false;
        for (kind, counts) in ErrorKind::ALL.into_iter().zip(&self.kinds) {
            let total = counts.total.load(Ordering::Relaxed);
            if total > 0 {
                let comma = if any { ", " } else { "" };
                write!(f, "{comma}{} {total}", kind.as_str())?;
                any = true;
            }
        }
        if !any {
            f.write_str("none")?;
        }
        Ok(())
    }
}

fn index(kind: ErrorKind) -> usize {
    ErrorKind::ALL
        .iter()
        .position(|k| *k == kind)
        .expect("every kind is in ErrorKind::ALL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind_and_says_which() {
        let refusals = Refusals::new();
        assert_eq!(refusals.to_string(), "none");
        for _ in 0..3 {
            refusals.refused(ErrorKind::Unauthorized, "no secret");
        }
        refusals.refused(ErrorKind::BadRequest, "garbage");
        assert_eq!(refusals.total(), 4);
        assert_eq!(refusals.to_string(), "bad-request 1, unauthorized 3");
        let unauthorized = &refusals.kinds[index(ErrorKind::Unauthorized)];
        assert_eq!(
            unauthorized.untold.load(Ordering::Relaxed),
            2,
            "the first is told"
        );
        refusals.tell_untold(false);
        assert_eq!(
            unauthorized.untold.load(Ordering::Relaxed),
            2,
            "not a second yet"
        );
        refusals.tell_untold(true);
        assert_eq!(unauthorized.untold.load(Ordering::Relaxed), 0);
    }
}
