//! A service's spans sent to an OpenTelemetry collector (the `otlp` feature): OTLP over
//! HTTP with protobuf bodies, from a batch span processor, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set.
//!
//! The exporter reads the standard variables itself (endpoint, headers, timeout,
//! compression, `OTEL_TRACES_SAMPLER`, `OTEL_RESOURCE_ATTRIBUTES`); the service's
//! `service.name` is `OTEL_SERVICE_NAME`, else the function's id. The requests go through
//! hyper over plain HTTP (no TLS: a collector next to the service, or a sidecar), on a
//! thread of their own with a small tokio runtime, so a slow collector never holds up
//! the calls.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

/// The variables that turn the exporter on.
const ENDPOINTS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// How long an export may take (`OTEL_EXPORTER_OTLP_TIMEOUT` overrides it).
const TIMEOUT: Duration = Duration::from_secs(10);

/// The provider whose spans are flushed when the service stops.
static PROVIDER: Mutex<Option<SdkTracerProvider>> = Mutex::new(None);

/// The layer that exports the service's spans, when an OTLP endpoint is set (and
/// `OTEL_SDK_DISABLED` is not `true`); `None` without one, or (said on stderr) when the
/// exporter cannot be built.
pub fn layer<S>(function: &str) -> Option<OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled =
        std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if disabled || !ENDPOINTS.iter().any(|name| set(name)) {
        return None;
    }
    match provider(function, None) {
        Ok(provider) => {
            let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("turbolift"));
            *PROVIDER.lock().unwrap_or_else(|e| e.into_inner()) = Some(provider);
            Some(layer)
        }
        Err(e) => {
            eprintln!("warning: the service's spans are not exported: {e}");
            None
        }
    }
}

/// Sends the spans not yet exported, and stops exporting.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.lock().unwrap_or_else(|e| e.into_inner()).take()
        && let Err(e) = provider.shutdown()
    {
        eprintln!("warning: the last spans may not have been exported: {e}");
    }
}

/// A tracer provider exporting to `endpoint`, else where the environment says.
fn provider(function: &str, endpoint: Option<&str>) -> Result<SdkTracerProvider, String> {
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OnRuntime::start()?);
    if let Some(endpoint) = endpoint {
        exporter = exporter.with_endpoint(endpoint);
    }
    let exporter = exporter.build().map_err(|e| e.to_string())?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(function.to_owned());
    }
    Ok(SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_batch_exporter(exporter)
        .build())
}

/// hyper's client, run on a runtime of its own: the SDK's batch processor exports from a
/// plain thread, where hyper's client (which needs a tokio runtime) cannot run.
struct OnRuntime {
    client: HyperClient,
    runtime: tokio::runtime::Handle,
}

impl OnRuntime {
    fn start() -> Result<OnRuntime, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the exporter's runtime: {e}"))?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("turbolift-otlp".to_owned())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .map_err(|e| format!("cannot start the exporter's thread: {e}"))?;
        let timeout = std::env::var("OTEL_EXPORTER_OTLP_TIMEOUT")
            .ok()
            .and_then(|ms| ms.trim().parse().ok())
            .map_or(TIMEOUT, Duration::from_millis);
        Ok(OnRuntime {
            client: HyperClient::with_default_connector(timeout, None),
            runtime: handle,
        })
    }
}

impl fmt::Debug for OnRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnRuntime(HyperClient)")
    }
}

type Sent<'a> = Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'a>>;

impl HttpClient for OnRuntime {
    // The trait is declared with `#[async_trait]`: this is the method it expects.
    fn send_bytes<'life0, 'async_trait>(&'life0 self, request: Request<Bytes>) -> Sent<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let client = self.client.clone();
        let sent = self
            .runtime
            .spawn(async move { client.send_bytes(request).await });
        Box::pin(async move { sent.await.map_err(|e| Box::new(e) as HttpError)? })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// A span of a subscriber with the exporter's layer reaches a collector on
    /// 127.0.0.1 as an OTLP/HTTP protobuf request, when the provider shuts down.
    #[test]
    fn spans_reach_the_collector() {
        let collector = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}/v1/traces", collector.local_addr().unwrap());
        let received = std::thread::spawn(move || {
            let (mut stream, _) = collector.accept().unwrap();
            let mut read = Vec::new();
            let mut buf = [0u8; 4096];
            while !read.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "the exporter closed the connection");
                read.extend_from_slice(&buf[..n]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .unwrap();
            String::from_utf8_lossy(&read).to_lowercase()
        });
        let provider = provider("geo::area", Some(&endpoint)).unwrap();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("turbolift"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let _span = tracing::info_span!("turbolift.call").entered();
        });
        provider.shutdown().unwrap();
        let head = received.join().unwrap();
        assert!(head.starts_with("post /v1/traces http/1.1"), "{head}");
        assert!(
            head.contains("content-type: application/x-protobuf"),
            "{head}"
        );
    }
}
