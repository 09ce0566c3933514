//! Concurrent calls of one function, coalesced: the calls that wait at the same moment
//! travel together in one batch request, without the caller doing anything.
//!
//! Each function has a few request slots ([`SLOTS_PER_REPLICA`] per replica). A call that
//! finds one free leaves at once, alone, as an ordinary call: a lone call's latency is
//! what it always was. A call that finds every slot taken waits in the function's lane;
//! the next request to finish hands its slot to the waiting calls, which leave together
//! as one batch request (at most [`MAX_CALLS`] calls and [`MAX_BYTES`] of arguments), on
//! a task of their own that keeps taking what gathered meanwhile until the lane is empty.
//! So a busy function sends a few large requests instead of one per call, while each
//! call keeps its own result, error, timeout and retries (the batch protocol's frames are
//! per call, and a batch request that fails is retried on another replica as a call is).
//! A call whose future is dropped while it waits is not sent; one dropped after it was
//! sent has its answer dropped.
//!
//! A batch's answers come back as its calls finish, each answered as its frame arrives,
//! and a service runs a batch's calls side by side (64 at once for an async function, on
//! two blocking threads for a synchronous one, after those that fit in the inline limit
//! of a function proven short), so a slow call holds up only the calls that wait for the
//! same thread; and a request that goes [`HELD_UP`] without an answer
//! does not keep the calls that gathered meanwhile waiting: they leave on a request of
//! their own, beyond the slots. What is not coalesced: a call whose arguments exceed
//! [`MAX_ALONE_BYTES`] (it would be copied into the batch; alone it is sent without a
//! copy); the calls of a function whose calls take long ([`SLOW`] on average: batching
//! saves nothing on them), learnt from the time calls take; and, for the rest of the
//! process, the calls of a function once a coalesced call of it timed out (it may have
//! been held up by the calls it travelled with).
//!
//! A function's calls gather from the first on, so that a burst of calls made before any
//! has come back (`join_all` at the start of a program) becomes a few requests. Whether
//! its calls take long is learnt from the shortest of its first times and then a moving
//! average; but the time of a call sent alone while others gathered behind it includes
//! the caller's own work on the burst, so only the time of a coalesced request, or of a
//! call that went alone while none waited, can show a function slow. When the first
//! answers of a burst look slow, one gathered call goes, on a request of its own, to
//! tell; if it confirms, the calls still waiting are handed back to their callers to go
//! alone, side by side. `coalesce = false` on the function, or
//! `TURBOLIFT_COALESCE=off` for the program, turns coalescing off from the start.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::Remote;
use super::batch::{self, Answers, Calls};
use crate::Error;
use crate::wire::Encoded;

/// Requests of one function in flight per replica before calls wait to be coalesced.
pub(crate) const SLOTS_PER_REPLICA: usize = 2;
/// Most calls in one coalesced request.
const MAX_CALLS: usize = 256;
/// Most bytes of arguments in one coalesced request.
const MAX_BYTES: usize = 1 << 20;
/// Arguments larger than this always travel alone.
const MAX_ALONE_BYTES: usize = 64 * 1024;
/// Calls that take longer than this on average (a round trip alone, or a batch's time
/// per call) are not coalesced.
pub(crate) const SLOW: Duration = Duration::from_millis(10);
/// A coalesced request that goes this long without a frame (or eight times a call's
/// usual time, if longer) is held up by slow calls: the calls waiting behind it leave on
/// a request of their own.
const HELD_UP: Duration = Duration::from_millis(5);
/// A function's first calls, whose shortest time stands for its calls' time before the
/// moving average takes over.
const WARM_UP: u32 = 8;

/// The calls of one function waiting for a request, and its requests in flight.
pub(crate) struct Lane {
    state: Mutex<State>,
    slots: usize,
    /// Whether this function's calls may be coalesced at all (attribute, environment).
    enabled: bool,
    /// Average time a call takes, in microseconds (exponentially weighted).
    micros: AtomicU64,
    /// Calls whose time went into `micros`, up to [`WARM_UP`].
    seen: AtomicU32,
    /// Set when a coalesced request stalled: no call is coalesced any more.
    stalled: AtomicBool,
    /// Set once a time that can tell a slow function has been taken: a coalesced
    /// request's, or a call's that went alone while no call waited. The time of a call
    /// sent alone at the start of a burst includes the caller's own work on the burst
    /// (the request may be written only once every call of it has been made), so such a
    /// time can show that calls are short, never that they are slow.
    confirmed: AtomicBool,
}

#[derive(Default)]
struct State {
    in_flight: usize,
    waiting: VecDeque<Waiting>,
}

/// A call waiting in the lane: its arguments, and where its answer goes.
struct Waiting {
    args: Encoded,
    answer: oneshot::Sender<Went>,
    /// The trace context of the call, which its request carries (see `crate::trace`).
    #[cfg(feature = "otel")]
    trace: crate::trace::CallContext,
}

/// How a call goes.
pub(crate) enum Entry<'r> {
    /// At once, on its own request, holding a slot until the slot is dropped.
    Alone(Slot<'r>),
    /// With others: its answer comes here.
    Gathered(Gathered),
}

/// A call waiting in its function's lane for a request to take it.
pub(crate) struct Gathered(oneshot::Receiver<Went>);

/// How a gathered call went.
pub(crate) enum Went {
    /// With others: its answer, or why there is none.
    Together(Result<Bytes, Error>),
    /// Handed back to go alone, beyond the slots: it waited while the function's first
    /// calls were out, and they proved to take more than [`SLOW`].
    Alone,
}

impl Gathered {
    /// Waits until a request has answered the call, or it is handed back to go alone.
    pub(crate) async fn went(self, remote: &Remote) -> Went {
        self.0
            .await
            .unwrap_or_else(|_| Went::Together(Err(abandoned(remote))))
    }
}

impl Lane {
    pub(crate) fn new(replicas: usize, enabled: bool) -> Lane {
        Lane {
            state: Mutex::new(State::default()),
            slots: (SLOTS_PER_REPLICA * replicas).max(SLOTS_PER_REPLICA),
            enabled,
            micros: AtomicU64::new(0),
            seen: AtomicU32::new(0),
            stalled: AtomicBool::new(false),
            confirmed: AtomicBool::new(false),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the function's calls are known to take too long to coalesce: a time that
    /// can tell says so, or [`WARM_UP`] calls' do; or a coalesced call stalled.
    fn known_slow(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
            || (self.looks_slow()
                && (self.confirmed.load(Ordering::Relaxed)
                    || self.seen.load(Ordering::Relaxed) >= WARM_UP))
    }

    /// Whether the calls timed so far took more than [`SLOW`].
    fn looks_slow(&self) -> bool {
        self.seen.load(Ordering::Relaxed) > 0
            && self.micros.load(Ordering::Relaxed) > SLOW.as_micros() as u64
    }

    /// Stops coalescing the calls of `function` for the rest of the process, for `why`.
    pub(crate) fn stall(&self, function: &str, why: &str) {
        if !self.stalled.swap(true, Ordering::Relaxed) && self.enabled {
            tracing::debug!(
                target: "turbolift",
                function,
                "{why}; the function's calls go alone from now on"
            );
        }
    }

    /// Takes in that calls took `per_call` each; `telling`: a time that can tell a slow
    /// function (see `confirmed`).
    fn observe(&self, per_call: Duration, telling: bool) {
        let micros = u64::try_from(per_call.as_micros()).unwrap_or(u64::MAX);
        if telling {
            self.confirmed.store(true, Ordering::Relaxed);
        }
        if self.seen.load(Ordering::Relaxed) < WARM_UP {
            // The shortest of the first ones: the caller's own work can only lengthen a
            // call's time (above), never shorten it.
            let first = self.seen.fetch_add(1, Ordering::Relaxed) == 0;
            let old = self.micros.load(Ordering::Relaxed);
            let new = if first { micros } else { old.min(micros) };
            self.micros.store(new, Ordering::Relaxed);
            return;
        }
        let old = self.micros.load(Ordering::Relaxed);
        if !telling && micros >= old {
            // Warmed up too, a time that cannot tell shows calls short, never slow.
            return;
        }
        let new = old - old / 8 + micros / 8;
        self.micros.store(new, Ordering::Relaxed);
    }
}

/// Where the call `args` of `remote`'s function goes: alone at once, or gathered with
/// others.
pub(crate) fn enter<'r>(remote: &'r Arc<Remote>, args: &Encoded) -> Entry<'r> {
    let lane = &remote.lane;
    let mut state = lane.state();
    // A function's calls gather from its first ones on: a burst of calls at once before any
    // has come back (`join_all` at the start of a program) must not become as many
    // requests. Those of a function that proves slow are handed back to go alone.
    let alone = state.in_flight < lane.slots
        || !lane.enabled
        || args.len() > MAX_ALONE_BYTES
        || lane.known_slow();
    if alone {
        state.in_flight += 1;
        drop(state);
        return Entry::Alone(Slot {
            remote,
            started: Instant::now(),
            answered: false,
        });
    }
    let (answer, receiver) = oneshot::channel();
    state.waiting.push_back(Waiting {
        args: args.clone(),
        answer,
        #[cfg(feature = "otel")]
        trace: crate::trace::CallContext::current(),
    });
    Entry::Gathered(Gathered(receiver))
}

/// The error of a gathered call whose request was abandoned (the runtime shut down).
fn abandoned(remote: &Remote) -> Error {
    Error::Unavailable {
        function: remote.info.id().to_owned(),
        attempts: 0,
        last: "the request that was to carry the call was abandoned (the runtime is shutting down)"
            .to_owned(),
    }
}

/// A request slot of a call sent alone. Dropped when the call ends (answered, failed,
/// timed out or cancelled): the slot goes to the calls waiting, or back to the lane.
pub(crate) struct Slot<'r> {
    remote: &'r Arc<Remote>,
    started: Instant,
    answered: bool,
}

impl Slot<'_> {
    /// The call got its answer: its time tells how long the function's calls take.
    pub(crate) fn answered(&mut self) {
        self.answered = true;
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let took = self.answered.then(|| self.started.elapsed());
        release(self.remote, took);
    }
}

/// Hands the slot of a request that ended to the calls waiting, on a task of their own,
/// or gives it back; `took`: the time of the call it carried alone, if answered.
fn release(remote: &Arc<Remote>, took: Option<Duration>) {
    let Some(calls) = take_waiting(&remote.lane, took) else {
        return;
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(drive(remote.clone(), calls));
        }
        // No runtime to send them on: their receivers see the senders dropped.
        Err(_) => {
            drop(calls);
            give_back(&remote.lane);
        }
    }
}

/// The calls to send next, up to a request's worth, keeping the slot; `None` (and the
/// slot given back) when none waits. The calls of a function known to be slow are handed
/// back to go alone, side by side, rather than wait for each other in one request; while
/// only calls sent alone have timed it, and took more than [`SLOW`], one call goes, a
/// request of its own whose time tells. `alone_took`: the time of the call sent alone
/// whose slot this is, if it was answered.
fn take_waiting(lane: &Lane, alone_took: Option<Duration>) -> Option<Vec<Waiting>> {
    let mut state = lane.state();
    if let Some(took) = alone_took {
        // A call that went alone in a burst is not timed alone (see `confirmed`).
        lane.observe(took, state.waiting.is_empty());
    }
    if lane.known_slow() {
        for waiting in state.waiting.drain(..) {
            let _ = waiting.answer.send(Went::Alone);
        }
    }
    let most = if lane.looks_slow() { 1 } else { MAX_CALLS };
    // Calls whose callers went away are not sent.
    while state.waiting.front().is_some_and(|w| w.answer.is_closed()) {
        state.waiting.pop_front();
    }
    if state.waiting.is_empty() {
        state.in_flight -= 1;
        return None;
    }
    let mut calls = Vec::new();
    let mut bytes = 0;
    while let Some(next) = state.waiting.front() {
        if calls.len() == most || (!calls.is_empty() && bytes + next.args.len() > MAX_BYTES) {
            break;
        }
        let call = state.waiting.pop_front().expect("a call is in front");
        if call.answer.is_closed() {
            continue;
        }
        bytes += call.args.len();
        calls.push(call);
    }
    Some(calls)
}

fn give_back(lane: &Lane) {
    lane.state().in_flight -= 1;
}

/// Sends gathered calls as batch requests, one after another, while calls keep waiting;
/// then gives the slot back.
async fn drive(remote: Arc<Remote>, mut calls: Vec<Waiting>) {
    loop {
        calls.retain(|w| !w.answer.is_closed());
        if !calls.is_empty() {
            let started = Instant::now();
            let count = calls.len();
            #[cfg(not(feature = "otel"))]
            let timed_out = send(&remote, std::mem::take(&mut calls)).await;
            #[cfg(feature = "otel")]
            let timed_out = send_by_trace(&remote, std::mem::take(&mut calls)).await;
            if timed_out {
                remote
                    .lane
                    .stall(remote.info.id(), "a call of a coalesced request timed out");
            } else {
                remote.lane.observe(started.elapsed() / count as u32, true);
            }
        }
        match take_waiting(&remote.lane, None) {
            Some(next) => calls = next,
            None => return,
        }
    }
}

/// Sends `calls` as one batch request; whether a call of it timed out.
async fn send(remote: &Arc<Remote>, calls: Vec<Waiting>) -> bool {
    let count = calls.len();
    let gathered = Calls::gather(calls.iter().map(|w| &w.args));
    let mut waiters = Waiters {
        answers: calls.into_iter().map(|w| Some(w.answer)).collect(),
        timed_out: false,
        remote: remote.clone(),
    };
    batch::run_request(remote.clone(), Arc::new(gathered), 0..count, &mut waiters).await;
    waiters.timed_out
}

/// Sends `calls` as one batch request per trace context, side by side, each carrying its
/// context (one request when they were made in one span); whether a call timed out.
#[cfg(feature = "otel")]
async fn send_by_trace(remote: &Arc<Remote>, calls: Vec<Waiting>) -> bool {
    let mut groups: Vec<(crate::trace::CallContext, Vec<Waiting>)> = Vec::new();
    for call in calls {
        match groups
            .iter_mut()
            .rev()
            .find(|(trace, _)| *trace == call.trace)
        {
            Some((_, group)) => group.push(call),
            None => groups.push((call.trace.clone(), vec![call])),
        }
    }
    let requests = groups
        .into_iter()
        .map(|(trace, calls)| crate::trace::carrying(trace, send(remote, calls)));
    futures_util::future::join_all(requests)
        .await
        .into_iter()
        .any(|timed_out| timed_out)
}

/// The callers of a coalesced request, each answered as its frame arrives.
struct Waiters {
    answers: Vec<Option<oneshot::Sender<Went>>>,
    timed_out: bool,
    remote: Arc<Remote>,
}

impl Answers for Waiters {
    fn answer(&mut self, position: usize, result: Result<Bytes, Error>) {
        self.timed_out |= matches!(result, Err(Error::Timeout { .. }));
        if let Some(answer) = self.answers[position].take() {
            let _ = answer.send(Went::Together(result));
        }
    }

    fn wanted(&self, position: usize) -> bool {
        self.answers[position]
            .as_ref()
            .is_some_and(|answer| !answer.is_closed())
    }

    fn held_up_after(&self) -> Option<Duration> {
        let usual = Duration::from_micros(self.remote.lane.micros.load(Ordering::Relaxed));
        Some((usual * 8).max(HELD_UP))
    }

    /// The request waits for slow calls: the calls waiting in the lane go on a request of
    /// their own, beyond the slots, rather than wait for them.
    fn held_up(&mut self) {
        let lane = &self.remote.lane;
        let calls = {
            let mut state = lane.state();
            if state.waiting.is_empty() {
                return;
            }
            state.in_flight += 1;
            drop(state);
            take_waiting(lane, None)
        };
        // `take_waiting` gave the extra slot back if every waiting call was gone.
        if let Some(calls) = calls {
            tokio::spawn(drive(self.remote.clone(), calls));
        }
    }
}
