//! One served function: how a service decodes its arguments, runs it and encodes its result,
//! for one call or for a batch of calls.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::batch::BatchSink;
use crate::__private::{FnInfo, Wire, inventory};
use crate::local::panic_message;
use crate::wire::frames::{self, BatchArgs};
use crate::wire::{self, Encoded};

/// A distributed function as a service sees it; registered by `#[turbolift::distribute]`
/// when the `service` feature is on.
pub struct Handler {
    info: &'static FnInfo,
    invoke: fn(Encoded) -> Invocation,
    batch: fn(Bytes, BatchSink) -> Result<usize, InvokeError>,
    /// Whether the arguments are a byte buffer alone, whose body a call's reader splits
    /// (see `wire::decode_received`).
    byte_buffer: fn() -> bool,
}

impl Handler {
    /// A handler of the function described by `info`: `invoke` runs one call, `batch`
    /// starts the calls of a batch.
    pub const fn new(
        info: &'static FnInfo,
        invoke: fn(Encoded) -> Invocation,
        batch: fn(Bytes, BatchSink) -> Result<usize, InvokeError>,
    ) -> Self {
        Handler {
            info,
            invoke,
            batch,
            byte_buffer: no_byte_buffer,
        }
    }

    /// The handler, told by `byte_buffer` (`wire::is_byte_buffer` of the argument tuple)
    /// whether the function's arguments are a byte buffer alone.
    pub const fn arguments(mut self, byte_buffer: fn() -> bool) -> Self {
        self.byte_buffer = byte_buffer;
        self
    }

    /// The function's compile-time facts.
    pub fn info(&self) -> &'static FnInfo {
        self.info
    }

    /// Runs the function on an encoded argument tuple.
    pub fn invoke(&self, body: Encoded) -> Invocation {
        (self.invoke)(body)
    }

    /// Whether the function's arguments are a byte buffer alone (then the body of a call
    /// is read into two parts, see `wire::body::read_all`).
    pub fn takes_a_byte_buffer(&self) -> bool {
        (self.byte_buffer)()
    }

    /// Checks a batch body (see [`BatchArgs`]) and starts its calls, which write their
    /// frames to `sink`; returns how many calls there are.
    pub fn start_batch(&self, body: Bytes, sink: BatchSink) -> Result<usize, InvokeError> {
        (self.batch)(body, sink)
    }
}

fn no_byte_buffer() -> bool {
    false
}

inventory::collect!(Handler);

/// Every handler linked into this binary.
pub fn registered() -> impl Iterator<Item = &'static Handler> {
    inventory::iter::<Handler>.into_iter()
}

/// Why an invocation did not produce an encoded result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeError {
    /// The body is not an encoded argument tuple of the function.
    BadArguments(String),
    /// The function panicked with this message.
    Panic(String),
    /// The result did not encode.
    Encode(String),
    /// The runtime shut down before the function finished.
    ShuttingDown,
}

/// The running function, as a service awaits it.
pub type Invocation = Pin<Box<dyn Future<Output = Result<Encoded, InvokeError>> + Send>>;

// Each function's handler is instantiated in the crate that defines the function (and in
// its service). The generic parts below are kept to decoding the arguments, running the
// body and encoding the result; what runs them (placement, the blocking pool, panics,
// batching and flushing) takes boxed closures and is compiled once, in this crate.

/// One call of a synchronous function, its arguments decoded and its result encoded.
type BlockingCall = Box<dyn FnOnce() -> Result<Encoded, InvokeError> + Send>;

/// Runs a synchronous function: inline when it has proven short (see
/// `service::placement`), else on the blocking pool, off the I/O threads.
pub fn invoke_blocking<A, R, F>(info: &'static FnInfo, body: Encoded, f: F) -> Invocation
where
    A: Wire,
    R: Wire,
    F: FnOnce(A) -> R + Send + 'static,
{
    match decode::<A>(body) {
        Ok(args) => run_blocking_call(info, Box::new(move || encode(f(args)))),
        Err(e) => Box::pin(std::future::ready(Err(e))),
    }
}

fn run_blocking_call(info: &'static FnInfo, call: BlockingCall) -> Invocation {
    Box::pin(async move {
        let placement = info.placement();
        if let Some(slot) = placement.inline_slot() {
            let outcome = catch_unwind(AssertUnwindSafe(call));
            placement.ran_inline(slot, info.id());
            return outcome
                .unwrap_or_else(|payload| Err(InvokeError::Panic(panic_message(&*payload))));
        }
        // The span of the call (with `otel`) goes with it to the blocking pool.
        #[cfg(feature = "otel")]
        let call: BlockingCall = {
            let span = tracing::Span::current();
            Box::new(move || span.in_scope(call))
        };
        let timed = move || {
            let started = Instant::now();
            let encoded = call();
            (encoded, started.elapsed())
        };
        match tokio::task::spawn_blocking(timed).await {
            Ok((encoded, took)) => {
                placement.ran_on_pool(Some(took), info.id());
                encoded
            }
            Err(e) if e.is_panic() => {
                placement.ran_on_pool(None, info.id());
                Err(InvokeError::Panic(panic_message(&*e.into_panic())))
            }
            Err(_) => Err(InvokeError::ShuttingDown),
        }
    })
}

/// Runs an async function on the service's runtime.
pub fn invoke_async<A, R, F, Fut>(body: Encoded, f: F) -> Invocation
where
    A: Wire,
    R: Wire,
    F: FnOnce(A) -> Fut + Send + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    match decode::<A>(body) {
        Ok(args) => run_async_call(Box::pin(f(args).map(encode))),
        Err(e) => Box::pin(std::future::ready(Err(e))),
    }
}

fn run_async_call(call: BoxFuture<'static, Result<Encoded, InvokeError>>) -> Invocation {
    Box::pin(async move {
        AssertUnwindSafe(call)
            .catch_unwind()
            .await
            .unwrap_or_else(|payload| Err(InvokeError::Panic(panic_message(&*payload))))
    })
}

/// A batch's results are sent when this much is waiting...
const FLUSH_BYTES: usize = 64 * 1024;
/// ...when the oldest waiting result is this old, or after a call that took this long.
const FLUSH_AFTER: Duration = Duration::from_millis(1);
/// Calls of an async function that a batch runs at once.
const ASYNC_BATCH_CONCURRENCY: usize = 64;
/// Blocking-pool threads that run the calls of one batch of a synchronous function: more
/// than one, so that one slow call does not hold up the calls after it.
const BLOCKING_BATCH_WORKERS: usize = 2;

/// One call of a batch as it ended: its encoded result (or why it did not encode), or
/// the message of its panic.
type Outcome = Result<Result<Vec<u8>, String>, String>;

/// One call of a batch of a synchronous function, ready to run.
type BatchCall = Box<dyn FnOnce() -> Outcome + Send>;

/// Checks a batch of a synchronous function and runs its calls on the blocking pool
/// ([`BLOCKING_BATCH_WORKERS`] threads taking them in turn), their arguments decoded as
/// [`BatchArgs`] hands them out, streaming each call's frame as it finishes.
pub fn invoke_blocking_batch<A, R, F>(
    body: Bytes,
    sink: BatchSink,
    f: F,
) -> Result<usize, InvokeError>
where
    A: Wire,
    R: Wire,
    F: Fn(A) -> R + Send + Sync + 'static,
{
    let calls = decode_batch::<A>(body)?;
    let count = calls.len();
    let f = std::sync::Arc::new(f);
    let calls = calls.map(move |args| -> BatchCall {
        let f = f.clone();
        Box::new(move || match args {
            Ok(args) => catch_unwind(AssertUnwindSafe(|| f(args)))
                .map(|value| encode_frame(&value))
                .map_err(|payload| panic_message(&*payload)),
            Err(why) => Ok(Err(why)),
        })
    });
    run_blocking_batch(sink, count, Box::new(calls));
    Ok(count)
}

/// The calls of a batch not yet taken, and the index of the next.
type Pending = std::sync::Mutex<(Box<dyn Iterator<Item = BatchCall> + Send>, usize)>;

/// Runs the calls of a batch: inline, one after another on this I/O thread, when the
/// function has earned it (see `service::placement`) and for as long as they stay within
/// the inline limit together (the first frames then go out at once); the rest on up to
/// [`BLOCKING_BATCH_WORKERS`] blocking-pool threads, each taking the next call when it is
/// done with one. A batch of short calls so costs no hand-over between threads at all.
fn run_blocking_batch(
    sink: BatchSink,
    count: usize,
    mut calls: Box<dyn Iterator<Item = BatchCall> + Send>,
) {
    let mut next = 0;
    let info = sink.info();
    if let Some(slot) = info.placement().inline_slot() {
        let limit = crate::placement::inline_limit();
        let mut frames = Vec::new();
        let since = Instant::now();
        for call in calls.by_ref() {
            let started = Instant::now();
            let outcome = call();
            let now = Instant::now();
            let took = now - started;
            sink.took(took);
            push_result(&sink, &mut frames, next, outcome);
            next += 1;
            info.placement().took_inline(took, info.id());
            if took > limit || now - since >= limit || frames.len() >= FLUSH_BYTES {
                break;
            }
        }
        drop(slot);
        if !sink.send_now(frames) || next == count {
            return; // the caller went away, or every call is answered
        }
    }
    let shared = std::sync::Arc::new((sink, Pending::new((calls, next))));
    for _ in 0..count.saturating_sub(next).clamp(1, BLOCKING_BATCH_WORKERS) {
        let shared = shared.clone();
        // The batch's span (with `otel`) goes with its calls to the blocking pool.
        #[cfg(feature = "otel")]
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            #[cfg(feature = "otel")]
            let _span = span.enter();
            let (sink, pending) = &*shared;
            let placement = sink.info().placement();
            let mut frames = Vec::new();
            let mut since = Instant::now();
            loop {
                let next = {
                    let mut pending = pending.lock().unwrap_or_else(|e| e.into_inner());
                    let index = pending.1;
                    pending.1 += 1;
                    pending.0.next().map(|call| (index, call))
                };
                let Some((index, call)) = next else { break };
                let started = Instant::now();
                let outcome = call();
                let now = Instant::now();
                sink.took(now - started);
                // The pool's calls teach the function's placement as single calls do, so
                // that a function called only in batches earns inline execution too.
                let took = outcome.is_ok().then_some(now - started);
                placement.ran_on_pool(took, sink.info().id());
                push_result(sink, &mut frames, index, outcome);
                if frames.len() >= FLUSH_BYTES
                    || now - since >= FLUSH_AFTER
                    || now - started >= FLUSH_AFTER
                {
                    if !sink.send_blocking(std::mem::take(&mut frames)) {
                        return; // the caller went away: the rest is not wanted
                    }
                    since = now;
                }
            }
            sink.send_blocking(frames);
        });
    }
}

/// Checks a batch of an async function and runs up to 64 of its calls at once on the
/// service's runtime, their arguments decoded as [`BatchArgs`] hands them out, streaming
/// each call's frame as it finishes.
pub fn invoke_async_batch<A, R, F, Fut>(
    body: Bytes,
    sink: BatchSink,
    f: F,
) -> Result<usize, InvokeError>
where
    A: Wire,
    R: Wire,
    F: Fn(A) -> Fut + Send + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    let calls = decode_batch::<A>(body)?;
    let count = calls.len();
    let calls = calls.map(move |args| match args {
        Ok(args) => f(args).map(|value| encode_frame(&value)).boxed(),
        Err(why) => std::future::ready(Err(why)).boxed(),
    });
    run_async_batch(sink, Box::new(calls));
    Ok(count)
}

/// Runs up to 64 of the calls at once, streaming each call's frame as it finishes.
fn run_async_batch(
    sink: BatchSink,
    calls: Box<dyn Iterator<Item = BoxFuture<'static, Result<Vec<u8>, String>>> + Send>,
) {
    let batch = async move {
        let mut calls = calls.enumerate();
        let mut running = FuturesUnordered::new();
        let mut frames = Vec::new();
        loop {
            while running.len() < ASYNC_BATCH_CONCURRENCY {
                match calls.next() {
                    Some((index, call)) => {
                        let started = Instant::now();
                        running.push(
                            AssertUnwindSafe(call)
                                .catch_unwind()
                                .map(move |outcome| (index, outcome, started)),
                        )
                    }
                    None => break,
                }
            }
            let next = match running.next().now_or_never() {
                Some(next) => next,
                None => {
                    // Nothing finished right now: send what is waiting, then wait.
                    if !frames.is_empty() && !sink.send(std::mem::take(&mut frames)).await {
                        return;
                    }
                    running.next().await
                }
            };
            let Some((index, outcome, started)) = next else {
                break;
            };
            sink.took(started.elapsed());
            push_result(
                &sink,
                &mut frames,
                index,
                outcome.map_err(|p| panic_message(&*p)),
            );
            if frames.len() >= FLUSH_BYTES && !sink.send(std::mem::take(&mut frames)).await {
                return;
            }
        }
        sink.send(frames).await;
    };
    // The batch's span (with `otel`) goes with its calls.
    #[cfg(feature = "otel")]
    let batch = tracing::Instrument::in_current_span(batch);
    tokio::spawn(batch);
}

/// A result's encoding, or why it did not encode.
fn encode_frame<R: Wire>(value: &R) -> Result<Vec<u8>, String> {
    wire::encode(value).map_err(|e| format!("the result could not be encoded: {e}"))
}

/// Appends the frame of the outcome of the call at `index`.
fn push_result(sink: &BatchSink, frames: &mut Vec<u8>, index: usize, outcome: Outcome) {
    match outcome {
        Ok(Ok(encoded)) => frames::push_frame(frames, index, frames::OK, &encoded),
        Ok(Err(message)) => frames::push_frame(frames, index, frames::FAILED, message.as_bytes()),
        Err(message) => {
            sink.panicked(&message);
            frames::push_frame(frames, index, frames::PANIC, message.as_bytes());
        }
    }
}

fn decode<A: Wire>(body: Encoded) -> Result<A, InvokeError> {
    wire::decode_received(body).map_err(|e| InvokeError::BadArguments(e.to_string()))
}

/// The calls of a batch, checked whole, their arguments decoded as they are handed out.
fn decode_batch<A: Wire>(body: Bytes) -> Result<BatchArgs<A>, InvokeError> {
    BatchArgs::new(body).map_err(|e| InvokeError::BadArguments(e.to_string()))
}

fn encode<R: Wire>(value: R) -> Result<Encoded, InvokeError> {
    wire::encode_owned(value).map_err(|e| InvokeError::Encode(e.to_string()))
}
