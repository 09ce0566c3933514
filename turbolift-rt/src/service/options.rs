//! How a service runs: its options and their environment variables.

use std::net::SocketAddr;
use std::time::Duration;

use turbolift_shared::duration::parse_duration;
use turbolift_shared::protocol::env;

/// Default largest request body: 64 MiB.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024 * 1024;
/// Default number of calls a service runs at once; further calls wait in line.
pub const DEFAULT_MAX_CONCURRENCY: usize = 256;
/// Default number of calls that may wait in line; beyond, calls get a retryable `busy`.
pub const DEFAULT_MAX_QUEUE: usize = 4096;
/// Default time a client has to send a request's head.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a client has to send a request's body.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default number of connections a service serving plain HTTP holds open at once: an idle
/// connection costs about 11 KB, one whose request head is arriving up to about 19 KB, so
/// these stay within about 80 MiB, under Kubernetes' default memory limit of 128 MiB;
/// further connections wait in the listening socket's backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default number of connections a service serving TLS holds open at once (when
/// `TURBOLIFT_MAX_CONNECTIONS` is not set): a TLS connection also holds rustls' state and
/// its buffer of records, so an idle one costs about 21 KB once its handshake is done, and
/// one whose client sends most of a 64 KB ClientHello and never the rest (no certificate
/// needed) about 80 KB; these stay within about 90 MiB (measured, docs/security.md).
pub const DEFAULT_MAX_CONNECTIONS_TLS: usize = 1024;

/// How a service runs.
#[derive(Clone)]
pub struct ServiceOptions {
    /// The shared secret every call must carry.
    pub secret: String,
    /// Largest request body in bytes.
    pub max_body: usize,
    /// Calls run at once.
    pub max_concurrency: usize,
    /// Calls that may wait for one of the `max_concurrency` places.
    pub max_queue: usize,
    /// Time a client has to send a request's head (slow-loris defence).
    pub header_timeout: Duration,
    /// Time a client has to send a request's body.
    pub body_timeout: Duration,
    /// Name of this replica of the service, sent back in `x-turbolift-replica`.
    pub replica: String,
    /// Address to bind, unless `listen_fd` is set.
    pub bind: SocketAddr,
    /// A listening TCP socket inherited from the process that started the service, to
    /// serve on instead of binding `bind` (`TURBOLIFT_LISTEN_FD`).
    pub listen_fd: Option<i32>,
    /// Connections held open at once; further ones wait in the listening socket's backlog.
    /// [`DEFAULT_MAX_CONNECTIONS`], or [`DEFAULT_MAX_CONNECTIONS_TLS`] when
    /// [`ServiceOptions::from_env`] finds TLS files and no `TURBOLIFT_MAX_CONNECTIONS`.
    pub max_connections: usize,
    /// Longest call of a synchronous function that may run inline on an I/O thread, once
    /// the function has proven that short; `Duration::ZERO` runs every call on the
    /// blocking pool (see `docs/performance.md`).
    pub inline_max: Duration,
    /// Count calls for `GET /v1/metrics` (`TURBOLIFT_METRICS`, on unless `off`).
    pub metrics: bool,
    /// TLS: the service's certificate and key, and the authority whose signature a
    /// caller's certificate must carry (`TURBOLIFT_TLS_CA`/`_CERT`/`_KEY`; needs
    /// turbolift's `tls` feature). `None`: plain HTTP.
    pub tls: Option<crate::TlsFiles>,
    /// The run's directory for large arguments and results through shared memory
    /// (`TURBOLIFT_SHM_DIR`, set by `cargo turbolift run` on one machine): a directory of
    /// this user, mode `0700`. `None`, or with TLS: every body goes over the connection.
    pub shm_dir: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for ServiceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceOptions")
            .field("secret", &"<redacted>")
            .field("max_body", &self.max_body)
            .field("max_concurrency", &self.max_concurrency)
            .field("max_queue", &self.max_queue)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("replica", &self.replica)
            .field("bind", &self.bind)
            .field("listen_fd", &self.listen_fd)
            .field("max_connections", &self.max_connections)
            .field("inline_max", &self.inline_max)
            .field("metrics", &self.metrics)
            .field("tls", &self.tls)
            .field("shm_dir", &self.shm_dir)
            .finish()
    }
}

impl ServiceOptions {
    /// Options with this secret and the defaults: 127.0.0.1, an OS-assigned port.
    pub fn new(secret: impl Into<String>) -> Self {
        ServiceOptions {
            secret: secret.into(),
            max_body: DEFAULT_MAX_BODY,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_queue: DEFAULT_MAX_QUEUE,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            replica: format!("pid-{}", std::process::id()),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            listen_fd: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            inline_max: super::DEFAULT_INLINE_MAX,
            metrics: true,
            tls: None,
            shm_dir: None,
        }
    }

    /// Reads `TURBOLIFT_SECRET` (required), `TURBOLIFT_BIND`, `TURBOLIFT_LISTEN_FD`,
    /// `TURBOLIFT_MAX_CONNECTIONS`, `TURBOLIFT_MAX_BODY`, `TURBOLIFT_MAX_CONCURRENCY`,
    /// `TURBOLIFT_MAX_QUEUE`, `TURBOLIFT_HEADER_TIMEOUT`, `TURBOLIFT_BODY_TIMEOUT`,
    /// `TURBOLIFT_REPLICA`, `TURBOLIFT_INLINE_MAX`, `TURBOLIFT_METRICS`,
    /// `TURBOLIFT_SHM_DIR` and `TURBOLIFT_TLS_CA`/`_CERT`/`_KEY`.
    pub fn from_env() -> Result<Self, String> {
        let secret = std::env::var(env::SECRET).ok().filter(|s| !s.is_empty()).ok_or_else(|| {
            format!(
                "{} is not set: a service refuses to run without a shared secret (`cargo turbolift run` sets one for you)",
                env::SECRET
            )
        })?;
        let mut options = ServiceOptions::new(secret);
        if let Ok(bind) = std::env::var(env::BIND) {
            options.bind = bind.parse().map_err(|_| {
                format!(
                    "{}=`{bind}` is not an address like 127.0.0.1:8080",
                    env::BIND
                )
            })?;
        }
        if let Ok(text) = std::env::var(env::LISTEN_FD) {
            let fd = text.trim().parse::<i32>().ok().filter(|fd| *fd >= 0);
            options.listen_fd = Some(fd.ok_or_else(|| {
                format!(
                    "{}=`{text}` must be the number of an open file descriptor",
                    env::LISTEN_FD
                )
            })?);
        }
        let max_connections = positive(env::MAX_CONNECTIONS)?;
        if let Some(n) = positive(env::MAX_BODY)? {
            options.max_body = n;
        }
        if let Some(n) = positive(env::MAX_CONCURRENCY)? {
            options.max_concurrency = n;
        }
        if let Ok(text) = std::env::var(env::MAX_QUEUE) {
            options.max_queue = text
                .trim()
                .parse()
                .map_err(|_| format!("{}=`{text}` must be a whole number", env::MAX_QUEUE))?;
        }
        if let Some(d) = duration(env::HEADER_TIMEOUT)? {
            options.header_timeout = d;
        }
        if let Some(d) = duration(env::BODY_TIMEOUT)? {
            options.body_timeout = d;
        }
        if let Ok(replica) = std::env::var(env::REPLICA) {
            options.replica = replica;
        }
        if let Ok(text) = std::env::var(env::INLINE_MAX) {
            options.inline_max = match text.trim() {
                "0" | "off" => Duration::ZERO,
                _ => parse_duration(&text).map_err(|e| {
                    format!(
                        "{}: {e}, or `0` to run every call on the blocking pool",
                        env::INLINE_MAX
                    )
                })?,
            };
        }
        options.metrics = env::switch(
            env::METRICS,
            std::env::var(env::METRICS).ok().as_deref(),
            true,
        )?;
        options.tls = crate::TlsFiles::from_vars(|name| std::env::var(name).ok())?;
        options.shm_dir = std::env::var_os(env::SHM_DIR)
            .filter(|d| !d.is_empty())
            .map(Into::into);
        options.max_connections = match (max_connections, &options.tls) {
            (Some(n), _) => n,
            (None, Some(_)) => DEFAULT_MAX_CONNECTIONS_TLS,
            (None, None) => DEFAULT_MAX_CONNECTIONS,
        };
        if options.tls.is_some() && !cfg!(feature = "tls") {
            return Err(format!(
                "{} is set, but this service was built without turbolift's `tls` feature; build it with `cargo turbolift build --tls` (or unset the TURBOLIFT_TLS_* variables to serve plain HTTP)",
                env::TLS_CA
            ));
        }
        Ok(options)
    }
}

fn positive(var: &str) -> Result<Option<usize>, String> {
    match std::env::var(var) {
        Err(_) => Ok(None),
        Ok(text) => text
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| format!("{var}=`{text}` must be a whole number above 0")),
    }
}

fn duration(var: &str) -> Result<Option<Duration>, String> {
    match std::env::var(var) {
        Err(_) => Ok(None),
        Ok(text) => parse_duration(&text)
            .map(Some)
            .map_err(|e| format!("{var}: {e}")),
    }
}
