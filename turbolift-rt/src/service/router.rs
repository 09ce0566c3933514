//! The HTTP face of a service: call endpoints, health, readiness, metrics, and every
//! refusal.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State as Extract};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{LengthLimitError, Limited};
use turbolift_shared::naming;
use turbolift_shared::protocol::{self, ErrorKind};

use tokio::sync::OwnedSemaphorePermit;
use tower::util::MapResponseLayer;

use super::State;
use super::batch::BatchSink;
use super::handler::{Handler, InvokeError};
use super::headers::CallHeaders;
use super::{exposition, metrics};
use crate::shm;
use crate::wire::body::{Chunks, read_all};
use crate::wire::{Encoded, frames};

pub(super) fn build(state: Arc<State>, handlers: &[&'static Handler]) -> Router {
    let mut router = Router::new()
        .route(protocol::HEALTH_PATH, get(health))
        .route(protocol::READY_PATH, get(ready))
        .route(protocol::METRICS_PATH, get(metrics));
    // `index`: the function's place in `state.metrics.functions`.
    for (index, &handler) in handlers.iter().enumerate() {
        let id = handler.info().id();
        router = router
            .route(
                &naming::route(id),
                post(
                    move |Extract(state): Extract<Arc<State>>, request: Request| {
                        call(state, handler, index, request)
                    },
                ),
            )
            .route(
                &naming::batch_route(id),
                post(
                    move |Extract(state): Extract<Arc<State>>, request: Request| {
                        batch(state, handler, index, request)
                    },
                ),
            );
    }
    router
        .fallback(fallback)
        .layer(stamp(state.replica.clone()))
        .with_state(state)
}

/// The router of a TLS connection whose client showed no certificate (a kubelet's probe,
/// a health check): health and readiness, metrics when they are public, and every other
/// request refused.
pub(super) fn probes_only(state: Arc<State>) -> Router {
    Router::new()
        .route(protocol::HEALTH_PATH, get(health))
        .route(protocol::READY_PATH, get(ready))
        .route(protocol::METRICS_PATH, get(public_metrics))
        .fallback(|Extract(state): Extract<Arc<State>>| async move { no_certificate(&state) })
        .layer(stamp(state.replica.clone()))
        .with_state(state)
}

fn no_certificate(state: &State) -> Response {
    state.reject(
        ErrorKind::Unauthorized,
        format!(
            "this service takes calls only from clients with a certificate of its authority ({}); this connection showed none",
            protocol::env::TLS_CA
        ),
    )
}

/// The layer that names the replica on every answer, including axum's own (405, say).
fn stamp(replica: HeaderValue) -> MapResponseLayer<impl Fn(Response) -> Response + Clone> {
    const REPLICA: HeaderName = HeaderName::from_static(protocol::REPLICA_HEADER);
    MapResponseLayer::new(move |mut response: Response| {
        response.headers_mut().insert(REPLICA, replica.clone());
        response
    })
}

async fn health() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

async fn ready(Extract(state): Extract<Arc<State>>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else if state.draining.load(Ordering::Acquire) {
        refusal(ErrorKind::Draining, "the service is shutting down")
    } else {
        refusal(ErrorKind::Busy, "the service is starting")
    }
}

/// The service's metrics, with the secret or when they are public.
async fn metrics(Extract(state): Extract<Arc<State>>, headers: HeaderMap) -> Response {
    if !state.metrics_public()
        && let Err(refused) = state.check_secret(headers.get(protocol::SECRET_HEADER))
    {
        return refused;
    }
    metrics_answer(&state, &headers)
}

/// The service's metrics to a TLS client without a certificate: only when public.
async fn public_metrics(Extract(state): Extract<Arc<State>>, headers: HeaderMap) -> Response {
    if state.metrics_public() {
        metrics_answer(&state, &headers)
    } else {
        no_certificate(&state)
    }
}

/// OpenMetrics when the scraper accepts it (Prometheus does), else Prometheus' text format.
fn metrics_answer(state: &Arc<State>, headers: &HeaderMap) -> Response {
    if !state.metrics.on {
        let reason = format!(
            "this service counts nothing: it was started with {}=off",
            protocol::env::METRICS
        );
        return (StatusCode::NOT_FOUND, reason).into_response();
    }
    let openmetrics = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let content_type = if openmetrics {
        exposition::OPENMETRICS
    } else {
        exposition::PROMETHEUS_TEXT
    };
    let text = metrics::encode(state, openmetrics);
    ([(CONTENT_TYPE, content_type)], text).into_response()
}

async fn fallback(Extract(state): Extract<Arc<State>>, request: Request) -> Response {
    let path = request.uri().path();
    if path.starts_with(protocol::CALL_PREFIX) || path.starts_with(protocol::BATCH_PREFIX) {
        if let Err(refused) = state.check_secret(request.headers().get(protocol::SECRET_HEADER)) {
            refused
        } else {
            let name = naming::id_from_route(path).unwrap_or_else(|| path.to_owned());
            let reason = format!(
                "this service does not serve `{name}`; it serves {}",
                state.served_functions()
            );
            state.reject(ErrorKind::UnknownFunction, reason)
        }
    } else {
        (
            StatusCode::NOT_FOUND,
            format!(
                "no such endpoint `{path}`; a turbolift service answers {}, {}, {}, POST {}<function> and POST {}<function>\n",
                protocol::HEALTH_PATH,
                protocol::READY_PATH,
                protocol::METRICS_PATH,
                protocol::CALL_PREFIX,
                protocol::BATCH_PREFIX
            ),
        )
            .into_response()
    }
}

async fn call(
    state: Arc<State>,
    handler: &'static Handler,
    index: usize,
    request: Request,
) -> Response {
    #[cfg(feature = "otel")]
    let parent = crate::trace::extract(request.headers());
    let split = handler.takes_a_byte_buffer();
    let Admitted {
        body,
        permit: _permit,
        reply,
    } = match admit(&state, handler, request, split).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let metrics = &state.metrics.functions[index];
    let running = metrics.running();
    let started = metrics.clock();
    let invocation = handler.invoke(body);
    #[cfg(feature = "otel")]
    let invocation = tracing::Instrument::instrument(
        invocation,
        crate::trace::serving(handler.info().id(), false, parent),
    );
    let outcome = invocation.await;
    drop(running);
    match outcome {
        Ok(result) => {
            metrics.served(started);
            if let Some(answer) = shm_answer(&state, handler, reply.as_deref(), &result) {
                return answer;
            }
            encoded_answer(Body::new(Chunks::new(result)))
        }
        Err(e) => {
            match e {
                InvokeError::Panic(_) => {
                    metrics.served(started);
                    metrics.panicked();
                }
                InvokeError::Encode(_) => metrics.served(started),
                InvokeError::BadArguments(_) | InvokeError::ShuttingDown => {}
            }
            invoke_error(&state, handler.info().id(), e)
        }
    }
}

/// Many calls of one function: their frames stream back in order as they finish.
async fn batch(
    state: Arc<State>,
    handler: &'static Handler,
    index: usize,
    request: Request,
) -> Response {
    #[cfg(feature = "otel")]
    let parent = crate::trace::extract(request.headers());
    let (body, permit) = match admit(&state, handler, request, false).await {
        Ok(admitted) => (admitted.body.to_bytes(), admitted.permit),
        Err(refused) => return refused,
    };
    let function = handler.info().id();
    // Checked before the calls are: the count alone may claim any number of calls that
    // take no bytes. A body without a count is the handler's to refuse.
    if let Ok(calls) = frames::batch_len(&body)
        && calls > protocol::MAX_BATCH_CALLS as u64
    {
        let reason = format!(
            "the batch has {calls} calls, more than this service takes in one request ({} calls); split it into smaller batches",
            protocol::MAX_BATCH_CALLS
        );
        return state.reject(ErrorKind::TooLarge, reason);
    }
    let (sink, answer) = BatchSink::new(state.clone(), handler.info(), index, permit);
    // With `otel`, the batch's calls run in its span (see `handler`).
    #[cfg(feature = "otel")]
    let span = crate::trace::serving(function, true, parent);
    #[cfg(feature = "otel")]
    let start = span.in_scope(|| handler.start_batch(body, sink));
    #[cfg(not(feature = "otel"))]
    let start = handler.start_batch(body, sink);
    match start {
        Ok(calls) => {
            #[cfg(feature = "otel")]
            span.record("calls", calls);
            state.metrics.functions[index].batch_started(calls as u64);
            encoded_answer(Body::new(answer))
        }
        Err(InvokeError::BadArguments(detail)) => state.reject(
            ErrorKind::BadRequest,
            format!(
                "the body is not a batch of argument tuples of `{function}` (a count, then the tuples): {detail}"
            ),
        ),
        Err(e) => invoke_error(&state, function, e),
    }
}

/// A `200` whose result is in the region `reply` the program offered, when the result is
/// large enough and the region can take it (else the result goes in the body).
fn shm_answer(
    state: &State,
    handler: &Handler,
    reply: Option<&str>,
    result: &Encoded,
) -> Option<Response> {
    let (dir, name) = state.shm.as_deref().zip(reply)?;
    if result.len() < shm::MIN_LEN {
        return None;
    }
    match shm::write_result(dir, name, result) {
        Ok(()) => {
            let mut response = encoded_answer(Body::empty());
            response.headers_mut().insert(
                HeaderName::from_static(protocol::SHM_RESULT_HEADER),
                HeaderValue::from(result.len()),
            );
            Some(response)
        }
        Err(e) => {
            tracing::warn!(target: "turbolift", function = handler.info().id(), error = %e, "the result goes in the body: the offered region cannot take it");
            None
        }
    }
}

/// A `200` with an encoded body: a result, or the frames of a batch.
fn encoded_answer(body: Body) -> Response {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(protocol::CONTENT_TYPE),
    );
    response
}

/// A call let in: its arguments, its place among the calls that run at once, and the
/// region the program offers for a large result.
struct Admitted {
    body: Encoded,
    permit: OwnedSemaphorePermit,
    reply: Option<String>,
}

/// The checks every call and batch passes, then its body and its place among the calls
/// that run at once.
// A refusal is an HTTP answer, built where the check fails.
#[allow(clippy::result_large_err)]
async fn admit(
    state: &State,
    handler: &'static Handler,
    request: Request,
    split: bool,
) -> Result<Admitted, Response> {
    let info = handler.info();
    if state.draining.load(Ordering::Acquire) {
        return Err(state.draining("the service is shutting down; retry on another replica"));
    }
    let headers = CallHeaders::of(request.headers());
    state.check_secret(headers.secret)?;
    check_content_type(state, headers.content_type)?;
    check_protocol(state, headers.protocol)?;
    let expected = info.signature_hex();
    match headers.signature.and_then(|v| v.to_str().ok()) {
        Some(got) if got == expected => {}
        got => {
            let reason = format!(
                "caller and service of `{}` were built from different sources (caller signature {}, service signature {expected})",
                info.id(),
                got.unwrap_or("missing"),
            );
            return Err(state.reject(ErrorKind::SignatureMismatch, reason));
        }
    }
    let declared = headers
        .content_length
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > state.max_body as u64) {
        return Err(too_large(state));
    }
    let shm_args = match headers.shm_args {
        Some(value) => Some(shm_arguments(state, value, declared)?),
        None => None,
    };
    let reply = headers
        .shm_reply
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let permit = state.permit().await?;
    if let Some((dir, name, len)) = shm_args {
        let body = shm::read_arguments(dir, name, len, split).map_err(|e| {
            let reason = format!("the arguments in shared memory could not be read: {e}");
            state.reject(ErrorKind::BadRequest, reason)
        })?;
        return Ok(Admitted {
            body,
            permit,
            reply,
        });
    }
    let read = read_all(
        Limited::new(request.into_body(), state.max_body),
        state.max_body,
        split,
    );
    // A small body has usually arrived with the head: then no timer is needed.
    let mut read = std::pin::pin!(read);
    let first = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
    let read = match first {
        Poll::Ready(result) => Ok(result),
        Poll::Pending => tokio::time::timeout(state.body_timeout, read).await,
    };
    let body = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(too_large(state));
        }
        Ok(Err(e)) => {
            let reason = format!("the body could not be read: {e}");
            return Err(state.reject(ErrorKind::BadRequest, reason));
        }
        Err(_) => {
            let reason = format!(
                "the body did not arrive within {:?} (TURBOLIFT_BODY_TIMEOUT)",
                state.body_timeout
            );
            let mut refused = state.reject(ErrorKind::SlowBody, reason);
            // The rest of a body that is late may never come: close the connection.
            refused.headers_mut().insert(
                axum::http::header::CONNECTION,
                HeaderValue::from_static("close"),
            );
            return Err(refused);
        }
    };
    Ok(Admitted {
        body,
        permit,
        reply,
    })
}

/// Where a call's arguments are, by its [`protocol::SHM_ARGS_HEADER`]: the run's
/// directory, the region's name and the arguments' length.
#[allow(clippy::result_large_err)]
fn shm_arguments<'a>(
    state: &'a State,
    value: &'a HeaderValue,
    declared: Option<u64>,
) -> Result<(&'a std::path::Path, &'a str, usize), Response> {
    let Some(dir) = state.shm.as_deref() else {
        let reason = format!(
            "the arguments are in shared memory, but this service has none ({} is not set, or not usable, or TLS is on): start the program and the services with the same `cargo turbolift run`",
            protocol::env::SHM_DIR
        );
        return Err(state.reject(ErrorKind::BadRequest, reason));
    };
    let parsed = value.to_str().ok().and_then(|v| {
        let (name, len) = v.split_once(' ')?;
        Some((name, len.parse::<usize>().ok()?))
    });
    let Some((name, len)) = parsed else {
        let reason = format!(
            "`{}` must be a region's name and a length, not {value:?}",
            protocol::SHM_ARGS_HEADER
        );
        return Err(state.reject(ErrorKind::BadRequest, reason));
    };
    if declared.is_some_and(|d| d > 0) {
        let reason = "a call whose arguments are in shared memory has an empty body".to_owned();
        return Err(state.reject(ErrorKind::BadRequest, reason));
    }
    if len > state.max_body {
        return Err(too_large(state));
    }
    Ok((dir, name, len))
}

fn invoke_error(state: &State, function: &str, error: InvokeError) -> Response {
    match error {
        InvokeError::BadArguments(detail) => state.reject(
            ErrorKind::BadRequest,
            format!("the body is not an encoded argument tuple of `{function}`: {detail}"),
        ),
        // Counted by the caller, in the function's metrics.
        InvokeError::Panic(message) => {
            tracing::warn!(function, %message, "the function panicked");
            refusal(ErrorKind::Panic, message)
        }
        InvokeError::ShuttingDown => state
            .draining("the service shut down before the call finished; retry on another replica"),
        InvokeError::Encode(detail) => state.reject(
            ErrorKind::Internal,
            format!("the result of `{function}` could not be encoded: {detail}"),
        ),
    }
}

#[allow(clippy::result_large_err)]
fn check_content_type(state: &State, got: Option<&HeaderValue>) -> Result<(), Response> {
    // What turbolift's client sends, compared at once.
    if got.is_some_and(|v| v.as_bytes() == protocol::CONTENT_TYPE.as_bytes()) {
        return Ok(());
    }
    let got = got.and_then(|v| v.to_str().ok());
    let essence = got.map(|v| v.split(';').next().unwrap_or_default().trim());
    if essence.is_some_and(|v| v.eq_ignore_ascii_case(protocol::CONTENT_TYPE)) {
        return Ok(());
    }
    Err(state.reject(
        ErrorKind::UnsupportedMediaType,
        format!(
            "expected content-type `{}`, got `{}`",
            protocol::CONTENT_TYPE,
            got.unwrap_or("none")
        ),
    ))
}

#[allow(clippy::result_large_err)]
fn check_protocol(state: &State, got: Option<&HeaderValue>) -> Result<(), Response> {
    let got = got.and_then(|v| v.to_str().ok());
    if got.and_then(|v| v.trim().parse::<u32>().ok()) == Some(protocol::PROTOCOL_VERSION) {
        return Ok(());
    }
    Err(state.reject(
        ErrorKind::ProtocolMismatch,
        format!(
            "the caller speaks turbolift protocol `{}`, this service speaks {}",
            got.unwrap_or("none"),
            protocol::PROTOCOL_VERSION
        ),
    ))
}

fn too_large(state: &State) -> Response {
    state.reject(
        ErrorKind::TooLarge,
        format!(
            "the body is larger than this service's limit of {} bytes (set TURBOLIFT_MAX_BODY to raise it)",
            state.max_body
        ),
    )
}

/// A refusal: the kind's status, the kind in [`protocol::ERROR_HEADER`], one line of text.
pub(super) fn refusal(kind: ErrorKind, reason: impl Into<String>) -> Response {
    let mut reason = reason.into();
    reason.push('\n');
    let status = StatusCode::from_u16(kind.status()).expect("protocol statuses are valid");
    let mut response = (status, reason).into_response();
    response.headers_mut().insert(
        protocol::ERROR_HEADER,
        HeaderValue::from_static(kind.as_str()),
    );
    response
}
