//! W3C trace context across calls (the `otel` feature): a call carries the span context of
//! the program's current `tracing` span in `traceparent` and `tracestate` headers, and
//! the service's span of the call (`turbolift.call`, or `turbolift.batch` for a batch
//! request) is its child. The span contexts come from tracing-opentelemetry's layer: a
//! program without that layer in its subscriber sends no header.
//!
//! Which context a request carries:
//! - a call sent alone: the span current where the call is awaited;
//! - coalesced calls: each call's own, taken when it starts waiting; the calls gathered
//!   for one request are split by context, and each group travels as a batch request of
//!   its own carrying its context (one request for calls made in one span, as with
//!   `try_join_all` in a span), the groups sent side by side;
//! - an explicit batch (`f_batch`): the span current where `f_batch` is called.
//!
//! Without the feature none of this is compiled, and no request carries these headers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::stream::{BoxStream, Stream, StreamExt};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use tracing_opentelemetry::OpenTelemetrySpanExt;

#[cfg(feature = "otlp")]
pub mod export;
#[cfg(feature = "service")]
mod incoming;
#[cfg(feature = "service")]
pub use incoming::{extract, serving};

/// The W3C header of the caller's span: `00-<trace id>-<span id>-<flags>`.
pub(crate) const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The W3C header of vendors' trace state, sent along with `traceparent`.
pub(crate) const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The trace context a call carries: its two headers' values, or none when no span with
/// an OpenTelemetry context was current. Cheap to clone and compare.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct CallContext(Option<Arc<Headers>>);

#[derive(PartialEq, Eq)]
struct Headers {
    parent: HeaderValue,
    state: Option<HeaderValue>,
}

impl CallContext {
    /// The context of the current `tracing` span.
    pub(crate) fn current() -> CallContext {
        let context = tracing::Span::current().context();
        CallContext::of(context.span().span_context())
    }

    fn of(span: &SpanContext) -> CallContext {
        if !span.is_valid() {
            return CallContext(None);
        }
        let parent = traceparent(span);
        let parent = HeaderValue::from_str(&parent).expect("hex digits and dashes");
        let state = span.trace_state().header();
        let state = (!state.is_empty())
            .then(|| HeaderValue::from_str(&state).ok())
            .flatten();
        CallContext(Some(Arc::new(Headers { parent, state })))
    }

    /// Sets the headers of this context on a request (none when there is no context).
    fn insert_into(&self, headers: &mut HeaderMap) {
        if let Some(context) = &self.0 {
            headers.insert(TRACEPARENT, context.parent.clone());
            if let Some(state) = &context.state {
                headers.insert(TRACESTATE, state.clone());
            }
        }
    }
}

fn traceparent(span: &SpanContext) -> String {
    format!(
        "00-{:032x}-{:016x}-{:02x}",
        span.trace_id(),
        span.span_id(),
        span.trace_flags().to_u8()
    )
}

tokio::task_local! {
    /// The context of the requests made while it is set: coalesced calls and explicit
    /// batches, whose requests are not sent where their calls were made.
    static CARRIED: CallContext;
}

/// Sets the trace context headers of a call's request: the context carried by the
/// request's calls, else the current span's.
pub(crate) fn inject(headers: &mut HeaderMap) {
    match CARRIED.try_with(|carried| carried.insert_into(headers)) {
        Ok(()) => {}
        Err(_) => CallContext::current().insert_into(headers),
    }
}

/// `future`, whose requests carry `context`.
pub(crate) fn carrying<F: Future>(
    context: CallContext,
    future: F,
) -> impl Future<Output = F::Output> {
    CARRIED.scope(context, future)
}

/// `results`, whose requests carry the context of the span current now.
pub(crate) fn carry<T: Send + 'static>(results: BoxStream<'static, T>) -> BoxStream<'static, T> {
    Carried {
        context: CallContext::current(),
        results,
    }
    .boxed()
}

struct Carried<T> {
    context: CallContext,
    results: BoxStream<'static, T>,
}

impl<T> Stream for Carried<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = &mut *self;
        CARRIED.sync_scope(this.context.clone(), || this.results.poll_next_unpin(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_span_no_headers() {
        let mut sent = HeaderMap::new();
        CallContext::current().insert_into(&mut sent);
        assert!(sent.is_empty());
    }
}
