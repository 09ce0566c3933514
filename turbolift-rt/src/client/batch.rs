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
    let calls = Calls::encode(function, inputs);
    run_encoded(remote, calls)
        .map(move |result| {
            result.and_then(|payload| {
                wire::decode_owned(payload).map_err(|e| Error::Decode {
                    function: function.to_owned(),
                    detail: e.to_string(),
                })
            })
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
        .map(move |positions| run_request(remote.clone(), calls.clone(), positions))
        .buffered(in_flight)
        .flat_map(stream::iter)
        .boxed()
}

/// The results of the calls at `positions`: sent as one request, and the calls that did
/// not get an answer again, until each has its result or its error.
pub(super) async fn run_request(
    remote: Arc<Remote>,
    calls: Arc<Calls>,
    positions: Range<usize>,
) -> Vec<Result<Bytes, Error>> {
    let function = remote.info.id();
    let first = positions.start;
    let mut results: Vec<Option<Result<Bytes, Error>>> = positions
        .clone()
        .map(|p| calls.spans[p].as_ref().err().cloned().map(Err))
        .collect();
    let todo: Vec<usize> = positions.filter(|&p| calls.spans[p].is_ok()).collect();
    let mut next = 0;
    let mut retry = Retry::new(&remote);
    // Each call has the function's timeout from the moment the previous result arrived
    // (the first, from now).
    let mut deadline = Instant::now() + remote.timeout;
    // Whether the deadline that may pass is that of a call a replica is running (the
    // answer has begun): then only that call timed out, and the rest go on.
    let mut running = false;
    while next < todo.len() {
        if Instant::now() >= deadline {
            let timeout = Error::Timeout {
                function: function.to_owned(),
                after: remote.timeout,
            };
            if running {
                results[todo[next] - first] = Some(Err(timeout));
                next += 1;
                deadline = Instant::now() + remote.timeout;
                running = false;
                continue;
            }
            // No replica took the calls within the timeout: none of them ran.
            fail_all(&mut results, first, &todo[next..], &timeout);
            break;
        }
        let Some(index) = retry.next(Some(deadline)).await else {
            fail_all(&mut results, first, &todo[next..], &retry.unavailable());
            break;
        };
        let replica = &remote.replicas[index];
        let _in_flight = replica.begin();
        let body = calls.body(&todo[next..]);
        let answer =
            match timeout_at(deadline, post(&remote, replica, &replica.batch_uri, body)).await {
                Ok(answer) => answer,
                Err(_) => continue, // no answer within the timeout: marked at the top
            };
        let mut answer = match answer {
            Ok(answer) => answer,
            Err(refusal) => {
                if let Refusal::Retry(reason) = &refusal {
                    tracing::debug!(function, replica = %replica.base, %reason, "retrying the rest of a batch on another replica");
                }
                if let Err(error) = retry.refused(index, refusal, Some(deadline)).await {
                    fail_all(&mut results, first, &todo[next..], &error);
                    break;
                }
                continue;
            }
        };
        // The answer: one frame per call sent, in order, as they finish.
        let sent = todo.len() - next;
        let mut received = 0;
        let mut reader = FrameReader::new();
        running = true;
        let lost = loop {
            let piece = match timeout_at(deadline, answer.frame()).await {
                Err(_) => break None, // the running call timed out: marked at the top
                Ok(None) if received < sent => {
                    break Some(format!(
                        "the answer ended after {received} of {sent} results"
                    ));
                }
                Ok(None) => break None,
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
                        let error = Error::Decode {
                            function: function.to_owned(),
                            detail: format!("the answer to a batch is not frames: {e}"),
                        };
                        fail_all(&mut results, first, &todo[next..], &error);
                        return finish(results);
                    }
                };
                if received == sent {
                    break; // more frames than calls: ignored
                }
                results[todo[next] - first] = Some(result_of(function, frame));
                received += 1;
                next += 1;
                deadline = Instant::now() + remote.timeout;
                // Progress: the replicas are answering again.
                retry.progress();
            }
        };
        if let Some(reason) = lost {
            running = false;
            retry.elsewhere(index, &reason);
        }
    }
    finish(results)
}

/// Gives each call at `positions` (indices from `first`) the same error.
fn fail_all(
    results: &mut [Option<Result<Bytes, Error>>],
    first: usize,
    positions: &[usize],
    error: &Error,
) {
    for &p in positions {
        results[p - first] = Some(Err(error.clone()));
    }
}

fn finish(results: Vec<Option<Result<Bytes, Error>>>) -> Vec<Result<Bytes, Error>> {
    results
        .into_iter()
        .map(|r| r.expect("every call of a batch gets a result or an error"))
        .collect()
}

/// One call's outcome from its frame: its encoded result, or its error.
fn result_of(function: &str, (tag, payload): (u8, Bytes)) -> Result<Bytes, Error> {
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
