//! The service's side of trace context: the span context a request carries, and the
//! service's span of the call, its child.

use http::header::HeaderMap;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{TRACEPARENT, TRACESTATE};

/// The span context a request carries (its caller's span), if its `traceparent` is valid (W3C Trace Context
/// level 1); `tracestate` is kept when it parses too.
pub fn extract(headers: &HeaderMap) -> Option<SpanContext> {
    let mut parents = headers.get_all(TRACEPARENT).iter();
    let parent = parents.next()?;
    if parents.next().is_some() {
        return None; // more than one: none is to be trusted
    }
    let (trace_id, span_id, flags) = parse_traceparent(parent.to_str().ok()?)?;
    let state = tracestate(headers).unwrap_or_default();
    Some(SpanContext::new(trace_id, span_id, flags, true, state))
}

/// The trace id, parent span id and flags of a `traceparent` value.
fn parse_traceparent(value: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
    let value = value.trim();
    let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let version = value.get(0..2)?;
    if !lower_hex(version) || version == "ff" {
        return None;
    }
    // Version 00 is exactly 55 characters; a later version may add fields after a dash.
    if value.len() < 55
        || (version == "00" && value.len() != 55)
        || (value.len() > 55 && value.as_bytes()[55] != b'-')
    {
        return None;
    }
    let bytes = value.as_bytes();
    if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let (trace, span, flags) = (&value[3..35], &value[36..52], &value[53..55]);
    if !lower_hex(trace) || !lower_hex(span) || !lower_hex(flags) {
        return None;
    }
    let trace = TraceId::from_hex(trace).ok()?;
    let span = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    if trace == TraceId::INVALID || span == SpanId::INVALID {
        return None;
    }
    // Only the `sampled` flag is defined; the others are not passed on.
    Some((trace, span, TraceFlags::new(flags) & TraceFlags::SAMPLED))
}

/// The `tracestate` of a request, its fields joined; `None` when absent or invalid.
fn tracestate(headers: &HeaderMap) -> Option<TraceState> {
    let mut joined = String::new();
    for value in headers.get_all(TRACESTATE) {
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(value.to_str().ok()?);
    }
    if joined.is_empty() {
        return None;
    }
    joined.parse().ok()
}

/// The service's span of a call of `function` (`batch`: of a batch request, whose
/// `calls` the service records), a child of `parent`, the span context the request
/// carried ([`extract`]), if any. Made once the request is admitted: a request refused
/// (no secret, say) makes no span.
pub fn serving(function: &str, batch: bool, parent: Option<SpanContext>) -> tracing::Span {
    let span = if batch {
        tracing::info_span!(
            target: "turbolift",
            "turbolift.batch",
            otel.kind = "server",
            function,
            calls = tracing::field::Empty
        )
    } else {
        tracing::info_span!(target: "turbolift", "turbolift.call", otel.kind = "server", function)
    };
    if let Some(parent) = parent {
        // Fails only when the span is disabled or no OpenTelemetry layer is installed:
        // then there is no span to make a child.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    }
    span
}

#[cfg(test)]
mod tests {
    use http::header::HeaderValue;

    use super::super::CallContext;
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(parents: &[&str], states: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for p in parents {
            headers.append(TRACEPARENT, HeaderValue::from_str(p).unwrap());
        }
        for s in states {
            headers.append(TRACESTATE, HeaderValue::from_str(s).unwrap());
        }
        headers
    }

    #[test]
    fn a_valid_traceparent_is_the_remote_parent() {
        let span = extract(&headers(
            &[VALID],
            &["congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7"],
        ))
        .unwrap();
        assert_eq!(
            span.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(
            span.span_id(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap()
        );
        assert!(span.is_sampled());
        assert!(span.is_remote());
        assert_eq!(span.trace_state().get("congo"), Some("t61rcWkgMzE"));
        assert_eq!(span.trace_state().get("rojo"), Some("00f067aa0ba902b7"));
        // What is extracted is what would be sent.
        let mut sent = HeaderMap::new();
        CallContext::of(&span).insert_into(&mut sent);
        assert_eq!(sent[TRACEPARENT], VALID);
        assert_eq!(sent[TRACESTATE], "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
    }

    #[test]
    fn an_invalid_traceparent_is_no_parent() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(extract(&headers(&[bad], &[])).is_none(), "{bad}");
        }
        assert!(extract(&headers(&[VALID, VALID], &[])).is_none());
        assert!(extract(&HeaderMap::new()).is_none());
    }

    #[test]
    fn a_later_version_is_read_as_version_00() {
        let later = format!("01{}-what-comes-later", &VALID[2..]);
        assert!(extract(&headers(&[&later], &[])).is_some());
        let glued = format!("01{}x", &VALID[2..]);
        assert!(extract(&headers(&[&glued], &[])).is_none());
    }

    #[test]
    fn a_bad_tracestate_is_dropped_and_the_parent_kept() {
        let span = extract(&headers(&[VALID], &["not a list member"])).unwrap();
        assert_eq!(span.trace_state().header(), "");
    }
}
