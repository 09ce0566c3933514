//! The service side: serve distributed functions over HTTP with axum.
//!
//! A generated service crate's `main` is one call: [`main_for`]`("geo::area")`. Tests and
//! launchers of your own can build a [`Service`] and drive it directly.

mod batch;
mod check;
mod exposition;
pub(crate) mod handler;
mod headers;
mod metrics;
mod options;
mod program;
mod refusals;
mod router;
mod serve;

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderValue;
use axum::response::Response;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use turbolift_shared::protocol::{self, ErrorKind, env};

pub use crate::placement::{DEFAULT_INLINE_MAX, Placement};
pub use batch::BatchSink;
pub use handler::{Handler, InvokeError, registered};
#[doc(hidden)]
pub use program::{ProgramMain, program_main};

pub use options::{
    DEFAULT_MAX_BODY, DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_TLS, DEFAULT_MAX_QUEUE, ServiceOptions,
};

/// Shared state of a running service.
pub(crate) struct State {
    secret: Box<[u8]>,
    max_body: usize,
    header_timeout: Duration,
    body_timeout: Duration,
    max_connections: usize,
    /// A place per connection the service holds open, `max_connections` in all.
    connections: Arc<Semaphore>,
    limiter: Arc<Semaphore>,
    max_queue: usize,
    waiting: AtomicUsize,
    ready: AtomicBool,
    draining: AtomicBool,
    replica: HeaderValue,
    functions: Vec<String>,
    /// Calls served and panicked, per function, and what else `GET /v1/metrics` tells.
    metrics: metrics::Metrics,
    refusals: refusals::Refusals,
    busy: AtomicU64,
    /// Calls refused because the service is stopping (`draining`).
    drained: AtomicU64,
    /// The service's TLS files: TLS only, calls only from certified clients.
    tls: Option<crate::TlsFiles>,
    /// The run's directory for large bodies through shared memory, checked.
    shm: Option<std::path::PathBuf>,
}

impl State {
    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }

    // A refusal is an HTTP answer, built where the check fails.
    #[allow(clippy::result_large_err)]
    fn check_secret(&self, given: Option<&HeaderValue>) -> Result<(), Response> {
        let given = given.map(HeaderValue::as_bytes).unwrap_or_default();
        if turbolift_core::secret::is_secret(given, &self.secret) {
            Ok(())
        } else {
            Err(self.reject(
                ErrorKind::Unauthorized,
                format!("missing or wrong `{}` header", protocol::SECRET_HEADER),
            ))
        }
    }

    /// A place among the calls that run at once: waits in line for one, unless the line
    /// is full (a retryable `busy`) or the service is stopping (`draining`).
    #[allow(clippy::result_large_err)]
    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Response> {
        if let Ok(permit) = self.limiter.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            self.busy.fetch_add(1, Ordering::Relaxed);
            return Err(router::refusal(
                ErrorKind::Busy,
                "the service has as many calls waiting as it takes (TURBOLIFT_MAX_QUEUE); retry later",
            ));
        }
        let permit = self.limiter.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        permit.map_err(|_| self.draining("the service is shutting down; retry on another replica"))
    }

    /// A `draining` refusal, counted.
    fn draining(&self, reason: &'static str) -> Response {
        self.drained.fetch_add(1, Ordering::Relaxed);
        router::refusal(ErrorKind::Draining, reason)
    }

    /// Whether `GET /v1/metrics` is answered without the secret.
    fn metrics_public(&self) -> bool {
        self.metrics.public.load(Ordering::Relaxed)
    }

    /// A refusal, counted and logged (at most one line of its kind a second).
    fn reject(&self, kind: ErrorKind, reason: String) -> Response {
        self.refusals.refused(kind, &reason);
        router::refusal(kind, reason)
    }

    fn served_functions(&self) -> String {
        let names: Vec<String> = self.functions.iter().map(|f| format!("`{f}`")).collect();
        names.join(", ")
    }
}

/// The directory of `options` for shared memory, if it may be used: not with TLS, and
/// only a directory of this user that no one else may enter (else a warning says why).
fn shm_dir(options: &ServiceOptions) -> Option<std::path::PathBuf> {
    let dir = options.shm_dir.as_ref().filter(|_| options.tls.is_none())?;
    match crate::shm::check_dir(dir) {
        Ok(()) => Some(dir.clone()),
        Err(e) => {
            tracing::warn!(target: "turbolift", error = %e, "large bodies go over TCP, not through shared memory");
            None
        }
    }
}

/// A service of a set of distributed functions.
pub struct Service {
    state: Arc<State>,
    router: Router,
    /// What a TLS connection without a client certificate reaches.
    probes: Router,
}

impl Service {
    /// A service of `handlers` (see [`registered`]).
    pub fn new(handlers: &[&'static Handler], options: &ServiceOptions) -> Self {
        let replica = HeaderValue::from_str(&options.replica)
            .unwrap_or_else(|_| HeaderValue::from_static("unnamed"));
        let state = Arc::new(State {
            secret: options.secret.as_bytes().into(),
            max_body: options.max_body,
            header_timeout: options.header_timeout,
            body_timeout: options.body_timeout,
            max_connections: options.max_connections,
            connections: Arc::new(Semaphore::new(options.max_connections)),
            limiter: Arc::new(Semaphore::new(options.max_concurrency)),
            max_queue: options.max_queue,
            waiting: AtomicUsize::new(0),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            replica,
            functions: handlers.iter().map(|h| h.info().id().to_owned()).collect(),
            metrics: metrics::Metrics::new(handlers.iter().map(|h| h.info().id()), options.metrics),
            refusals: refusals::Refusals::new(),
            busy: AtomicU64::new(0),
            drained: AtomicU64::new(0),
            tls: options.tls.clone(),
            shm: shm_dir(options),
        });
        crate::placement::set_inline_max(options.inline_max);
        let router = router::build(state.clone(), handlers);
        let probes = router::probes_only(state.clone());
        Service {
            state,
            router,
            probes,
        }
    }

    /// Answers `GET /v1/metrics` without the shared secret when `public` (and, with TLS,
    /// to clients without a certificate too); see `TURBOLIFT_METRICS_PUBLIC`.
    pub fn public_metrics(self, public: bool) -> Self {
        self.state.metrics.public.store(public, Ordering::Relaxed);
        self
    }

    /// The router, for in-process tests (`tower::ServiceExt::oneshot`). It reports ready.
    pub fn router(&self) -> Router {
        self.state.ready.store(true, Ordering::Release);
        self.router.clone()
    }

    /// Serves on `listener` until `shutdown` completes, then stops taking calls (readiness
    /// turns 503, new calls get a retryable `draining`) and finishes the calls in flight.
    /// Refusals are logged at most once a second per kind, the rest counted and logged
    /// within two seconds of the last; when it stops
    /// it logs the refusals not yet logged, then what it served and refused.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state.clone();
        let teller = state.clone();
        let telling = tokio::spawn(async move { teller.refusals.tell_untold_later().await });
        let served = serve::serve(self.state, self.router, self.probes, listener, shutdown).await;
        telling.abort();
        state.refusals.tell_untold(true);
        served?;
        if state.metrics.on {
            tracing::info!(
                served = state.metrics.served(),
                rejected = state.refusals.total(),
                refusals = %state.refusals,
                panicked = state.metrics.panicked(),
                busy = state.busy.load(Ordering::Relaxed),
                "stopped"
            );
        } else {
            tracing::info!(
                rejected = state.refusals.total(),
                refusals = %state.refusals,
                busy = state.busy.load(Ordering::Relaxed),
                "stopped (calls not counted: TURBOLIFT_METRICS=off)"
            );
        }
        Ok(())
    }
}

/// The `main` of a generated service package's executable, which serves each of the
/// package's functions: `services` pairs each service's name with its function's id. The
/// executable serves the function of the service it is started as, by the file name it is
/// started under (`cargo turbolift build` links it under each service's name), else the
/// function named by `TURBOLIFT_FUNCTION` (a container image's `/service`); see
/// [`main_for`].
pub fn main_named(services: &[(&str, &str)]) -> ExitCode {
    if check::requested() {
        return check::health_check();
    }
    let started_as = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|path| Some(path.file_name()?.to_string_lossy().into_owned()));
    if let Some(&(_, id)) = services
        .iter()
        .find(|(name, _)| started_as.as_deref() == Some(*name))
    {
        return main_for(id);
    }
    match std::env::var(env::FUNCTION) {
        Ok(id) => main_for(&id),
        Err(_) => {
            let names: Vec<&str> = services.iter().map(|(name, _)| *name).collect();
            eprintln!(
                "error: this executable serves the function of the service it is started as ({}), by its file name or by {}=<function id>; it was started as `{}`",
                names.join(", "),
                env::FUNCTION,
                started_as.as_deref().unwrap_or_default()
            );
            ExitCode::from(2)
        }
    }
}

/// Serves the registered function `id` with options from the environment, until SIGTERM
/// or SIGINT.
pub fn main_for(id: &str) -> ExitCode {
    if check::requested() {
        return check::health_check();
    }
    init_logging(id);
    let Some(handler) = registered().find(|h| h.info().id() == id) else {
        let known: Vec<&str> = registered().map(|h| h.info().id()).collect();
        eprintln!(
            "error: this binary has no distributed function `{id}` (it has: {}); regenerate it with `cargo turbolift build`",
            known.join(", ")
        );
        return ExitCode::from(2);
    };
    let options = match ServiceOptions::from_env() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let public_metrics = match metrics_public_from_env() {
        Ok(public) => public,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    // A socket handed over by `cargo turbolift run`, which keeps the port for the replica.
    let inherited = match options.listen_fd.map(serve::inherited_listener).transpose() {
        Ok(inherited) => inherited,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let listener = match inherited {
            Some(listener) => TcpListener::from_std(listener).map_err(|e| e.to_string())?,
            None => TcpListener::bind(options.bind)
                .await
                .map_err(|e| format!("cannot listen on {}: {e}", options.bind))?,
        };
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        announce(addr, options.tls.is_some());
        tracing::info!(function = handler.info().id(), %addr, replica = %options.replica, tls = options.tls.is_some(), "serving");
        Service::new(&[handler], &options)
            .public_metrics(public_metrics)
            .serve(listener, shutdown_signal())
            .await
            .map_err(|e| format!("serving failed: {e}"))
    });
    // With `otlp`, the spans not yet sent go to the collector.
    #[cfg(feature = "otlp")]
    crate::trace::export::shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `TURBOLIFT_METRICS_PUBLIC`: `1` (or `on`, `true`) answers metrics without the secret;
/// unset, empty, `0` (or `off`, `false`) does not.
fn metrics_public_from_env() -> Result<bool, String> {
    let value = std::env::var(env::METRICS_PUBLIC).ok();
    env::switch(env::METRICS_PUBLIC, value.as_deref(), false)
}

/// Prints the line `cargo turbolift run` waits for: where the service listens.
fn announce(addr: SocketAddr, tls: bool) {
    use std::io::Write;
    let scheme = if tls { "https" } else { "http" };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}{scheme}://{addr}", protocol::LISTENING_LINE);
    let _ = out.flush();
}

/// Logs to stderr at `TURBOLIFT_LOG`'s levels; with `otlp`, also exports the spans of the
/// service `function` when an OTLP endpoint is set.
fn init_logging(#[cfg_attr(not(feature = "otlp"), allow(unused_variables))] function: &str) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    // `TARGET=LEVEL` and bare `LEVEL` directives, comma-separated; empty ones are ignored.
    let value = std::env::var(env::LOG).unwrap_or_default();
    let directives: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    let default = || Targets::new().with_default(tracing::Level::INFO);
    let filter = if directives.is_empty() {
        default()
    } else {
        directives.join(",").parse::<Targets>().unwrap_or_else(|e| {
            eprintln!(
                "warning: {}=`{value}` is not a log filter ({e}); expected e.g. `debug` or `turbolift=debug,warn`; logging at `info`",
                env::LOG
            );
            default()
        })
    };
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .finish()
        .with(filter);
    #[cfg(feature = "otlp")]
    let subscriber = subscriber.with(crate::trace::export::layer(function));
    let _ = subscriber.try_init();
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    tokio::select! {
        _ = async { match &mut term { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
        _ = async { match &mut int { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
    }
}
