//! Many calls of one remote function: their arguments packed into a few requests, spread
//! over the replicas, the results streamed back in order.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use http_body_util::BodyExt;
use tokio::time::{Instant, timeout_at};
use turbolift_shared::protocol;

use super::retry::{Refusal, Retry};
use super::{Remote, post};
use crate::__private::Wire;
use crate::wire::frames::{self, FrameReader};
use crate::wire::{self, Encoded};
use crate::{Error, RemoteError};

/// Most calls in one request: well under what a service takes
/// ([`protocol::MAX_BATCH_CALLS`]), so that a service of another release takes them too.
const MAX_CALLS_PER_REQUEST: usize = 4096;
const _: () = assert!(MAX_CALLS_PER_REQUEST <= protocol::MAX_BATCH_CALLS);
/// A request is closed once its arguments reach this size (a larger single call travels
/// alone).
const MAX_REQUEST_BYTES: usize = 1 << 20;
/// Requests of one batch in flight per replica.
const REQUESTS_PER_REPLICA: usize = 2;

/// The encoded arguments of every call of a batch, one after another.
pub(super) struct Calls {
    bytes: Bytes,
    /// Where each call's arguments are in `bytes`, or why they did not encode.
    spans: Vec<Result<Range<usize>, Error>>,
}

impl Calls {
    fn encode<A: Wire>(function: &str, inputs: Vec<A>) -> Calls {
        let mut bytes = Vec::new();
        let mut spans = Vec::with_capacity(inputs.len());
        for args in inputs {
            let start = bytes.len();
            spans.push(match postcard::to_io(&args, &mut bytes) {
                Ok(_) => Ok(start..bytes.len()),
                Err(e) => {
                    bytes.truncate(start);
                    Err(Error::Encode {
                        function: function.to_owned(),
                        detail: e.to_string(),
                    })
                }
            });
        }
        Calls {
            bytes: Bytes::from(bytes),
            spans,
        }
    }

    /// The arguments of calls encoded one by one, copied into one buffer.
    pub(super) fn gather<'a>(args: impl Iterator<Item = &'a Encoded>) -> Calls {
        let mut bytes = Vec::new();
        let mut spans = Vec::new();
        for encoded in args {
            let start = bytes.len();
            bytes.extend_from_slice(&encoded.head);
            bytes.extend_from_slice(&encoded.tail);
            spans.push(Ok(start..bytes.len()));
        }
        Calls {
            bytes: Bytes::from(bytes),
            spans,
        }
    }

    /// The body of a request for the calls at `positions`: their count, then their
    /// arguments (a slice of the shared buffer when they are contiguous).
    fn body(&self, positions: &[usize]) -> Encoded {
        let mut head = Vec::with_capacity(10);
        frames::push_varint(&mut head, positions.len() as u64);
        let span = |p: usize| self.spans[p].as_ref().expect("only encoded calls are sent");
        let contiguous = positions
            .windows(2)
            .all(|w| span(w[0]).end == span(w[1]).start);
        let tail = match (positions.first(), positions.last()) {
            (Some(&first), Some(&last)) if contiguous => {
                self.bytes.slice(span(first).start..span(last).end)
            }
            _ => {
                let mut tail = Vec::new();
                for &p in positions {
                    tail.extend_from_slice(&self.bytes[span(p).clone()]);
                }
                Bytes::from(tail)
            }
        };
        Encoded {
            head: Bytes::from(head),
            tail,
        }
    }
}

/// The results of `inputs`, in order.
///
/// Only the encoding of the arguments and the decoding of the results depend on the
/// function's types; the requests are made by [`run_encoded`], compiled once in this crate.
pub(crate) fn run<A: Wire, R: Wire>(
    remote: Arc<Remote>,
    inputs: Vec<A>,
) -> BoxStream<'static, Result<R, Error>> {
    let function = remote.info.id();
    let mut recording = remote.stats.map(|s| s.start_many(inputs.len()));
    let calls = Calls::encode(function, inputs);
    run_encoded(remote, calls)
        .map(move |result| {
            let result = result.and_then(|payload| {
                wire::decode_owned(payload).map_err(|e| Error::Decode {
                    function: function.to_owned(),
                    detail: e.to_string(),
                })
            });
            if let Some(recording) = &mut recording {
                recording.finish_one(&result);
            }
            result
        })
        .boxed()
}

/// The encoded results of `calls`, in order.
fn run_encoded(remote: Arc<Remote>, calls: Calls) -> BoxStream<'static, Result<Bytes, Error>> {
    let calls = Arc::new(calls);
    let in_flight = (REQUESTS_PER_REPLICA * remote.replicas.len()).max(2);
    // Enough requests to keep every replica busy, each of a few thousand calls at most.
    let per_request = calls
        .spans
        .len()
        .div_ceil(in_flight * 2)
        .clamp(1, MAX_CALLS_PER_REQUEST);
    let mut requests = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, span) in calls.spans.iter().enumerate() {
        bytes += span.as_ref().map_or(0, Range::len);
        if i + 1 - start == per_request || bytes >= MAX_REQUEST_BYTES {
            requests.push(start..i + 1);
            (start, bytes) = (i + 1, 0);
        }
    }
    if start < calls.spans.len() {
        requests.push(start..calls.spans.len());
    }
    stream::iter(requests)
        .map(move |positions| {
            let (remote, calls) = (remote.clone(), calls.clone());
            async move {
                let mut results = Collected {
                    first: positions.start,
                    results: positions.clone().map(|_| None).collect(),
                };
                run_request(remote, calls, positions, &mut results).await;
                results.finish()
            }
        })
        .buffered(in_flight)
        .flat_map(stream::iter)
        .boxed()
}

/// Where the calls of a request get their results, as they come.
pub(super) trait Answers: Send {
    /// The result of the call at `position` of the calls.
    fn answer(&mut self, position: usize, result: Result<Bytes, Error>);
    /// Whether the call at `position` still wants its result (its caller is waiting).
    fn wanted(&self, _position: usize) -> bool {
        true
    }
    /// How long a request may go without a frame before it counts as held up by slow
    /// calls ([`Answers::held_up`]); `None`: never.
    fn held_up_after(&self) -> Option<std::time::Duration> {
        None
    }
    /// The request went [`Answers::held_up_after`] without a frame (said once per request).
    fn held_up(&mut self) {}
}

/// The results of the calls from `first` on, in order.
struct Collected {
    first: usize,
    results: Vec<Option<Result<Bytes, Error>>>,
}

impl Answers for Collected {
    fn answer(&mut self, position: usize, result: Result<Bytes, Error>) {
        self.results[position - self.first] = Some(result);
    }
}

impl Collected {
    fn finish(self) -> Vec<Result<Bytes, Error>> {
        self.results
            .into_iter()
            .map(|r| r.expect("every call of a batch gets a result or an error"))
            .collect()
    }
}

/// Runs the calls at `positions`: sent as one request, and those that got no answer
/// again, until each has its result or its error, given to `answers` as it comes. The
/// answer's frames come in the order the calls finish, each naming its call.
pub(super) async fn run_request(
    remote: Arc<Remote>,
    calls: Arc<Calls>,
    positions: Range<usize>,
    answers: &mut dyn Answers,
) {
    let function = remote.info.id();
    let mut todo = Vec::with_capacity(positions.len());
    for p in positions {
        match &calls.spans[p] {
            Ok(_) => todo.push(p),
            Err(error) => answers.answer(p, Err(error.clone())),
        }
    }
    let fail = |answers: &mut dyn Answers, todo: &[usize], error: &Error| {
        for &p in todo {
            answers.answer(p, Err(error.clone()));
        }
    };
    let mut retry = Retry::new(&remote);
    // The calls have the function's timeout from the moment the previous result arrived
    // (the first, from now): a request that answers nothing for that long timed out.
    let mut deadline = Instant::now() + remote.timeout;
    loop {
        todo.retain(|&p| answers.wanted(p));
        if todo.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            let timeout = Error::Timeout {
                function: function.to_owned(),
                after: remote.timeout,
            };
            return fail(answers, &todo, &timeout);
        }
        let Some(index) = retry.next(Some(deadline), todo.len()).await else {
            return fail(answers, &todo, &retry.unavailable());
        };
        let replica = &remote.replicas[index];
        let _in_flight = replica.begin();
        let body = calls.body(&todo);
        let answer =
            match timeout_at(deadline, post(&remote, replica, &replica.batch_uri, body)).await {
                Ok(answer) => answer,
                Err(_) => continue, // no answer within the timeout: marked at the top
            };
        let mut answer = match answer {
            Ok(answer) => answer,
            Err(refusal) => {
                if let Refusal::Retry(reason) = &refusal {
                    tracing::debug!(target: "turbolift::client::batch", function, replica = %replica.base, %reason, "retrying the rest of a batch on another replica");
                }
                if let Err(error) = retry.refused(index, refusal, Some(deadline)).await {
                    return fail(answers, &todo, &error);
                }
                continue;
            }
        };
        // The answer: one frame per call sent, each naming the call by its place in
        // `todo`, as the calls finish.
        let mut answered = vec![false; todo.len()];
        let mut left = todo.len();
        let mut reader = FrameReader::new();
        let mut held_up = answers.held_up_after();
        let lost = loop {
            let piece = loop {
                if let Some(after) = held_up {
                    let by = deadline.min(Instant::now() + after);
                    // Cancel-safe: a frame not yet read stays in the body.
                    match timeout_at(by, answer.frame()).await {
                        Ok(piece) => break Ok(piece),
                        Err(_) if Instant::now() < deadline => {
                            held_up = None;
                            answers.held_up();
                            continue;
                        }
                        Err(elapsed) => break Err(elapsed),
                    }
                }
                break timeout_at(deadline, answer.frame()).await;
            };
            let piece = match piece {
                Err(_) => break None, // nothing more within the timeout: marked at the top
                Ok(None) => {
                    break Some(format!(
                        "the answer ended with {left} of {} results missing",
                        todo.len()
                    ));
                }
                Ok(Some(Err(e))) => break Some(format!("connection lost in the answer: {e}")),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = piece.into_data() else {
                continue;
            };
            reader.push(&data);
            loop {
                let frame = match reader.next_frame() {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => {
                        let error = decode_error(function, &format!("it is not frames: {e}"));
                        return fail(answers, &unanswered(&todo, &answered), &error);
                    }
                };
                let slot = usize::try_from(frame.index)
                    .ok()
                    .filter(|&i| i < todo.len() && !answered[i]);
                let Some(slot) = slot else {
                    let why = format!(
                        "a frame names call {} of {}, or one answered",
                        frame.index,
                        todo.len()
                    );
                    let error = decode_error(function, &why);
                    return fail(answers, &unanswered(&todo, &answered), &error);
                };
                answered[slot] = true;
                left -= 1;
                answers.answer(todo[slot], result_of(function, frame.tag, frame.payload));
                deadline = Instant::now() + remote.timeout;
                // Progress: the replicas are answering again.
                retry.progress();
            }
            if left == 0 {
                return;
            }
        };
        todo = unanswered(&todo, &answered);
        if let Some(reason) = lost {
            retry.elsewhere(index, &reason);
        }
    }
}

/// The calls of `todo` not `answered`.
fn unanswered(todo: &[usize], answered: &[bool]) -> Vec<usize> {
    todo.iter()
        .zip(answered)
        .filter(|(_, answered)| !**answered)
        .map(|(p, _)| *p)
        .collect()
}

fn decode_error(function: &str, why: &str) -> Error {
    Error::Decode {
        function: function.to_owned(),
        detail: format!("the answer to a batch is broken: {why}"),
    }
}

/// One call's outcome from its frame: its encoded result, or its error.
fn result_of(function: &str, tag: u8, payload: Bytes) -> Result<Bytes, Error> {
    let text = || String::from_utf8_lossy(&payload).into_owned();
    match tag {
        frames::OK => Ok(payload),
        frames::PANIC => Err(Error::Panic {
            function: function.to_owned(),
            message: text(),
        }),
        _ => Err(Error::Remote {
            function: function.to_owned(),
            error: RemoteError::Internal(text()),
        }),
    }
}
