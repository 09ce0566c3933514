//! Trace context across calls (the `otel` feature): a program's spans and a service's on
//! 127.0.0.1 go to one in-memory OpenTelemetry exporter, and the service's span of each
//! call is the child of the program's span the call was made in — alone, coalesced (two
//! spans' calls gathered at once) and in an explicit batch; a call made in no span sends
//! no `traceparent`, and its service span starts a trace of its own; a refused call makes
//! no span.
//!
//! `./test.sh` runs it: `cargo test -p turbolift --features otlp --test otel`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{handler, route, serve};
use futures_util::future::join_all;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use turbolift::opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TracerProvider};
use turbolift::tracing_opentelemetry::{self, OpenTelemetrySpanExt};

mod common;

const SECRET: &str = "otel-test-secret";

#[turbolift::distribute]
fn double(n: u64) -> u64 {
    let _inside = tracing::info_span!("inside_double").entered();
    n * 2
}

#[turbolift::distribute]
fn plus_one(n: u64) -> u64 {
    n + 1
}

#[turbolift::distribute]
async fn halve(n: u64) -> u64 {
    n / 2
}

#[turbolift::distribute]
fn lonely(n: u64) -> u64 {
    n
}

/// Served with another secret than the program's: every call is refused.
#[turbolift::distribute]
fn refused(n: u64) -> u64 {
    n
}

/// Routed to a listener that keeps the request's head and answers 404.
#[turbolift::distribute]
fn overheard(n: u64) -> u64 {
    n
}

/// The exporter every span of this test process ends in (installed once, with a
/// tracing-opentelemetry layer as the process's subscriber).
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("otel-test"));
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .expect("no other subscriber in this test process");
        exporter
    })
}

/// Held by each test: one at a time, so that no test's load slows another's calls (the
/// client coalesces only calls it has seen to be short).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A span of the program and its OpenTelemetry context.
fn program_span(name: &'static str) -> (tracing::Span, SpanContext) {
    exporter();
    let span = tracing::info_span!("program", test = name);
    let context = span.context().span().span_context().clone();
    assert!(
        context.is_valid(),
        "the layer gives the program's span a context"
    );
    (span, context)
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

/// The service's spans of `function` (`turbolift.call` and `turbolift.batch`) once
/// `enough` holds for them, within five seconds (a batch's span ends when its last frame
/// is sent, which may be after the program has its results).
async fn service_spans(function: &str, enough: impl Fn(&[SpanData]) -> bool) -> Vec<SpanData> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let spans: Vec<SpanData> = exporter()
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| {
                s.name.starts_with("turbolift.")
                    && attribute(s, "function").as_deref() == Some(function)
            })
            .collect();
        if enough(&spans) || Instant::now() > deadline {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn is_child_of(span: &SpanData, parent: &SpanContext) -> bool {
    span.span_context.trace_id() == parent.trace_id()
        && span.parent_span_id == parent.span_id()
        && span.parent_span_is_remote
}

#[tokio::test]
async fn the_service_span_of_a_call_is_the_child_of_the_program_span() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let service = serve(&[handler("otel::double"), handler("otel::halve")], SECRET).await;
    route("otel::double", &[&service.url], SECRET);
    route("otel::halve", &[&service.url], SECRET);

    let (program, parent) = program_span("alone");
    assert_eq!(double(21).instrument(program.clone()).await.unwrap(), 42);
    assert_eq!(halve(42).instrument(program.clone()).await.unwrap(), 21);
    drop(program);

    // `halve` is called in the batch test too, in traces of its own.
    let in_trace = |spans: &[SpanData]| -> Vec<SpanData> {
        spans
            .iter()
            .filter(|s| s.span_context.trace_id() == parent.trace_id())
            .cloned()
            .collect()
    };
    for function in ["otel::double", "otel::halve"] {
        let spans = in_trace(&service_spans(function, |s| !in_trace(s).is_empty()).await);
        assert_eq!(spans.len(), 1, "{function}: {spans:#?}");
        let call = &spans[0];
        assert_eq!(call.name, "turbolift.call");
        assert!(
            is_child_of(call, &parent),
            "{function}: {call:#?}\nparent {parent:?}"
        );
        assert_eq!(
            call.span_kind,
            turbolift::opentelemetry::trace::SpanKind::Server
        );
    }
    // The function's own span, run on the service, is the child of the service's span.
    let call = &service_spans("otel::double", |s| !s.is_empty()).await[0];
    let inside: Vec<SpanData> = exporter()
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.name == "inside_double")
        .collect();
    assert_eq!(inside.len(), 1, "{inside:#?}");
    assert_eq!(inside[0].span_context.trace_id(), parent.trace_id());
    assert_eq!(inside[0].parent_span_id, call.span_context.span_id());
    service.stop().await;
}

#[tokio::test]
async fn coalesced_calls_of_two_spans_are_children_of_their_own_span() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let service = serve(&[handler("otel::plus_one")], SECRET).await;
    route("otel::plus_one", &[&service.url], SECRET);
    exporter();
    // Calls one after another teach the client that the function's calls are short,
    // which they must be to be coalesced.
    for n in 0..20 {
        assert_eq!(plus_one(n).await.unwrap(), n + 1);
    }
    let (first, first_context) = program_span("coalesced, first");
    let (second, second_context) = program_span("coalesced, second");
    let calls = (0..4_000u64).map(|n| {
        let span = if n % 2 == 0 { &first } else { &second };
        plus_one(n).instrument(span.clone())
    });
    for (n, answer) in join_all(calls).await.into_iter().enumerate() {
        assert_eq!(answer.unwrap(), n as u64 + 1);
    }
    drop((first, second));

    let in_either = |s: &SpanData| {
        s.span_context.trace_id() == first_context.trace_id()
            || s.span_context.trace_id() == second_context.trace_id()
    };
    // The calls that travelled under `parent`'s context: one per call request, the
    // batch's count per batch request; and the batch requests among them.
    let under = |spans: &[SpanData], parent: &SpanContext| -> (u64, usize) {
        let children = spans.iter().filter(|s| is_child_of(s, parent));
        let calls = children
            .clone()
            .map(|s| match s.name.as_ref() {
                "turbolift.batch" => attribute(s, "calls").unwrap().parse::<u64>().unwrap(),
                _ => 1,
            })
            .sum();
        let batches = children.filter(|s| s.name == "turbolift.batch").count();
        (calls, batches)
    };
    let spans = service_spans("otel::plus_one", |spans| {
        under(spans, &first_context).0 == 2_000 && under(spans, &second_context).0 == 2_000
    })
    .await;
    let traced: Vec<&SpanData> = spans.iter().filter(|s| in_either(s)).collect();
    // Every call travelled with its own span's context, most of them in batch requests.
    for parent in [&first_context, &second_context] {
        let (calls, batches) = under(&spans, parent);
        assert_eq!(calls, 2_000, "{traced:#?}");
        assert!(batches > 0, "{traced:#?}");
    }
    // Fewer requests than calls: the calls of each span travelled together.
    assert!(traced.len() < 4_000 / 2, "{} requests", traced.len());
    for span in &traced {
        assert!(
            is_child_of(span, &first_context) || is_child_of(span, &second_context),
            "{span:#?}"
        );
    }
    // The calls made in no span started traces of their own.
    let untraced = spans.iter().filter(|s| !in_either(s));
    assert_eq!(untraced.clone().count(), 20);
    assert!(
        untraced
            .into_iter()
            .all(|s| s.parent_span_id == SpanId::INVALID)
    );
    service.stop().await;
}

#[tokio::test]
async fn an_explicit_batch_carries_the_span_it_was_made_in() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let service = serve(&[handler("otel::halve")], SECRET).await;
    route("otel::halve", &[&service.url], SECRET);
    let (program, parent) = program_span("batch");
    // Made in the span, awaited outside it.
    let batch = program.in_scope(|| halve_batch(0..1_000u64));
    drop(program);
    let halves = batch.await.unwrap();
    assert_eq!(halves, (0..1_000u64).map(|n| n / 2).collect::<Vec<_>>());

    let mine = |spans: &[SpanData]| -> Vec<SpanData> {
        spans
            .iter()
            .filter(|s| {
                s.name == "turbolift.batch" && s.span_context.trace_id() == parent.trace_id()
            })
            .cloned()
            .collect()
    };
    let spans = service_spans("otel::halve", |s| !mine(s).is_empty()).await;
    let batches = mine(&spans);
    assert!(!batches.is_empty(), "{spans:#?}");
    assert!(
        batches.iter().all(|s| is_child_of(s, &parent)),
        "{batches:#?}"
    );
    service.stop().await;
}

#[tokio::test]
async fn a_call_in_no_span_starts_a_trace_of_its_own() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let service = serve(&[handler("otel::lonely")], SECRET).await;
    route("otel::lonely", &[&service.url], SECRET);
    exporter();
    assert_eq!(lonely(7).await.unwrap(), 7);
    let spans = service_spans("otel::lonely", |s| !s.is_empty()).await;
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(spans[0].parent_span_id, SpanId::INVALID);
    assert!(spans[0].span_context.is_valid());
    service.stop().await;
}

#[tokio::test]
async fn a_refused_call_makes_no_service_span() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let service = serve(&[handler("otel::refused")], "not-the-program-secret").await;
    route("otel::refused", &[&service.url], SECRET);
    let (program, _) = program_span("refused");
    let error = refused(1).instrument(program).await.unwrap_err();
    assert!(error.to_string().contains("secret"), "{error}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let spans = service_spans("otel::refused", |_| true).await;
    assert!(spans.is_empty(), "{spans:#?}");
    service.stop().await;
}

/// A listener that answers every request 404 and sends each request's head here.
async fn eavesdropper() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (heads, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let heads = heads.clone();
            tokio::spawn(async move {
                let mut read = Vec::new();
                let mut buf = [0u8; 4096];
                while !read.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&read).to_lowercase();
                let _ = heads.send(head.split("\r\n\r\n").next().unwrap().to_owned());
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    (url, received)
}

#[tokio::test]
async fn a_call_sends_traceparent_only_from_a_span() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (url, mut heads) = eavesdropper().await;
    route("otel::overheard", &[&url], SECRET);
    exporter();

    assert!(overheard(1).await.is_err());
    let head = heads.recv().await.unwrap();
    assert!(!head.contains("traceparent"), "{head}");
    assert!(!head.contains("tracestate"), "{head}");

    let (program, parent) = program_span("on the wire");
    assert!(overheard(2).instrument(program).await.is_err());
    let head = heads.recv().await.unwrap();
    let expected = format!(
        "traceparent: 00-{:032x}-{:016x}-01",
        parent.trace_id(),
        parent.span_id()
    );
    assert!(
        head.lines().any(|line| line == expected),
        "{expected}\n{head}"
    );
}
