//! The retry policy of every remote call, alone or in a batch: which replica takes the next
//! attempt, which outcomes count as attempts, the pauses between them, and the error once
//! they are spent.

use std::time::Duration;

use tokio::time::{Instant, sleep, timeout_at};

use super::Remote;
use crate::Error;

/// Why an attempt on a replica got no answer, and what that means for the call.
pub(crate) enum Refusal {
    /// A final answer: the call fails with this.
    Fatal(Error),
    /// The function did not run to an answer on this replica; another may take it.
    Retry(String),
    /// The replica is up but cannot take the call now (`busy`): try again after a pause,
    /// without counting it against the attempts; the call's timeout bounds the waiting.
    Busy(String),
}

/// The attempts of one call (or of the rest of one batch request) across the replicas.
pub(crate) struct Retry<'r> {
    remote: &'r Remote,
    /// The replicas that gave no answer, to be passed over while others are left.
    tried: Vec<bool>,
    /// Attempts counted against `remote.max_attempts`.
    attempts: u32,
    /// `busy` answers so far, which lengthen the next pause.
    busy: u32,
    /// What went wrong last, and where.
    last: String,
    /// Whether an attempt was handed out: each one after it is a retry, counted for the
    /// summary.
    sent: bool,
}

impl<'r> Retry<'r> {
    pub(crate) fn new(remote: &'r Remote) -> Self {
        Retry {
            remote,
            tried: vec![false; remote.replicas.len()],
            attempts: 0,
            busy: 0,
            last: String::new(),
            sent: false,
        }
    }

    /// The replica for the next attempt of `calls` calls, `None` once the attempts are
    /// spent. When every replica was tried, it first pauses for [`backoff`] (cut short at
    /// `deadline`, if given). Every attempt after the first counts `calls` retries.
    pub(crate) async fn next(&mut self, deadline: Option<Instant>, calls: usize) -> Option<usize> {
        if self.attempts >= self.remote.max_attempts {
            return None;
        }
        if self.attempts > 0 && self.tried.iter().all(|t| *t) {
            pause(backoff(self.attempts), deadline).await;
        }
        if std::mem::replace(&mut self.sent, true) {
            self.remote.count_retries(calls);
        }
        Some(self.remote.pick(&self.tried))
    }

    /// Takes in why replica `index` gave no answer: the call's error when it is final;
    /// else the next attempt goes elsewhere, or, after a `busy`, comes after a pause (cut
    /// short at `deadline`, if given) and is not counted.
    pub(crate) async fn refused(
        &mut self,
        index: usize,
        refusal: Refusal,
        deadline: Option<Instant>,
    ) -> Result<(), Error> {
        match refusal {
            Refusal::Fatal(error) => return Err(error),
            Refusal::Retry(reason) => self.elsewhere(index, &reason),
            Refusal::Busy(reason) => {
                self.busy += 1;
                self.last = self.reason(index, &reason);
                pause(busy_pause(self.busy), deadline).await;
            }
        }
        Ok(())
    }

    /// Counts an attempt on replica `index` that did not run to an answer, for `reason`:
    /// the next goes to another replica.
    pub(crate) fn elsewhere(&mut self, index: usize, reason: &str) {
        self.tried[index] = true;
        self.attempts += 1;
        self.last = self.reason(index, reason);
    }

    /// The replicas answer again: every attempt and replica is available anew.
    pub(crate) fn progress(&mut self) {
        self.attempts = 0;
        self.busy = 0;
        self.tried.iter_mut().for_each(|t| *t = false);
    }

    /// The error once the attempts are spent.
    pub(crate) fn unavailable(&self) -> Error {
        Error::Unavailable {
            function: self.remote.info.id().to_owned(),
            attempts: self.remote.max_attempts,
            last: self.last.clone(),
        }
    }

    fn reason(&self, index: usize, reason: &str) -> String {
        format!("{}: {reason}", self.remote.replicas[index].base)
    }
}

/// Sleeps for `duration`, or until `deadline` if that comes first.
async fn pause(duration: Duration, deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => {
            let _ = timeout_at(deadline, sleep(duration)).await;
        }
        None => sleep(duration).await,
    }
}

/// The pause before a retry once every replica was tried: 10 ms × 2^attempt, capped at
/// 500 ms.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((10u64 << attempt.min(6)).min(500))
}

/// The pause after the `n`th `busy`: 1–2 ms after the first, doubling to 50–100 ms, with
/// jitter so that callers turned away together do not come back together.
fn busy_pause(n: u32) -> Duration {
    let ceiling = (1u64 << n.min(7)).min(100);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    Duration::from_micros(ceiling * 500 + nanos % (ceiling * 500 + 1))
}
