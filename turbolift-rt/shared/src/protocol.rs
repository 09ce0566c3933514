//! Constants of the turbolift wire protocol (see `docs/protocol.md`).

/// Version of the wire protocol. Sent with every call in [`PROTOCOL_HEADER`]; a service
/// refuses calls of another version.
pub const PROTOCOL_VERSION: u32 = 2;

/// Media type of call and result bodies: postcard-encoded serde values.
pub const CONTENT_TYPE: &str = "application/vnd.turbolift.postcard";

/// Request header carrying [`PROTOCOL_VERSION`].
pub const PROTOCOL_HEADER: &str = "x-turbolift-protocol";
/// Request header carrying the 16-hex-digit signature hash of the called function.
pub const SIGNATURE_HEADER: &str = "x-turbolift-signature";
/// Request header carrying the run's shared secret.
pub const SECRET_HEADER: &str = "x-turbolift-secret";
/// Response header naming the kind of failure on a non-200 answer (see [`ErrorKind`]).
pub const ERROR_HEADER: &str = "x-turbolift-error";
/// Response header naming the replica of the service that answered (for logs and tests).
pub const REPLICA_HEADER: &str = "x-turbolift-replica";
/// Request header of a call whose arguments are in shared memory (see
/// [`env::SHM_DIR`]): `<region> <length>`, the region's file name in the run's directory
/// and the length of the encoded arguments at its start. The body is then empty.
pub const SHM_ARGS_HEADER: &str = "x-turbolift-shm-args";
/// Request header offering a region of shared memory (its file name) for the result: a
/// service may write a large result there instead of into the body.
pub const SHM_REPLY_HEADER: &str = "x-turbolift-shm-reply";
/// Response header of a result written into the offered region: its length. The body is
/// then empty.
pub const SHM_RESULT_HEADER: &str = "x-turbolift-shm-result";

/// Liveness endpoint: 200 while the process serves HTTP.
pub const HEALTH_PATH: &str = "/v1/health";
/// Readiness endpoint: 200 when calls are accepted, 503 while starting or draining.
pub const READY_PATH: &str = "/v1/ready";
/// Metrics endpoint: the service's counters in Prometheus' text format (OpenMetrics when
/// asked for), behind [`SECRET_HEADER`] unless [`env::METRICS_PUBLIC`] is `1`.
pub const METRICS_PATH: &str = "/v1/metrics";
/// Prefix of the call endpoints; see [`crate::naming::route`].
pub const CALL_PREFIX: &str = "/v1/call/";
/// Prefix of the batch endpoints: many calls of one function in one request; see
/// [`crate::naming::batch_route`].
pub const BATCH_PREFIX: &str = "/v1/batch/";

/// Most calls one batch request may carry. A service refuses a batch that says it has
/// more (`413 too-large`) before it decodes any call: a call whose arguments encode to no
/// bytes (`fn f()`) costs nothing in the body, so only this bounds the work of such a
/// batch. A client packs fewer (4,096), leaving room for clients that pack more.
pub const MAX_BATCH_CALLS: usize = 65_536;

/// The line a service prints on stdout once it listens, followed by its base URL.
pub const LISTENING_LINE: &str = "turbolift: listening on ";

/// The argument that makes a service binary check, instead of serving, whether the service
/// of this container answers [`READY_PATH`], and exit 0 if so, else 1 (for a container
/// `HEALTHCHECK` in an image that has no shell or curl).
pub const HEALTH_CHECK_FLAG: &str = "--health-check";

/// Environment variables read by the runtime.
pub mod env {
    /// `id=url,url;id=url`: which functions are remote, and their replicas.
    pub const ENDPOINTS: &str = "TURBOLIFT_ENDPOINTS";
    /// The run's shared secret (caller and service).
    pub const SECRET: &str = "TURBOLIFT_SECRET";
    /// Default per-call timeout for functions without `timeout = ".."`.
    pub const TIMEOUT: &str = "TURBOLIFT_TIMEOUT";
    /// `id=duration;id=duration`: per-function timeouts that win over the attribute.
    pub const TIMEOUTS: &str = "TURBOLIFT_TIMEOUTS";
    /// Attempts per call across replicas (first try included).
    pub const MAX_ATTEMPTS: &str = "TURBOLIFT_MAX_ATTEMPTS";
    /// The function a service executable serves when the name it was started under does
    /// not say (a container image's `/service`): its id, e.g. `geo::area`.
    pub const FUNCTION: &str = "TURBOLIFT_FUNCTION";
    /// Address a service binds (default `127.0.0.1:0`); unused when [`LISTEN_FD`] is set.
    pub const BIND: &str = "TURBOLIFT_BIND";
    /// The number of a listening TCP socket the service inherits and serves on instead of
    /// binding [`BIND`]: `cargo turbolift run` reserves each replica's port for the whole
    /// run, so that no one else can take it, and hands every start of the replica a
    /// socket listening on it.
    pub const LISTEN_FD: &str = "TURBOLIFT_LISTEN_FD";
    /// Connections a service holds open at once; further ones wait in the listening
    /// socket's backlog until one closes.
    pub const MAX_CONNECTIONS: &str = "TURBOLIFT_MAX_CONNECTIONS";
    /// Largest request body a service accepts, in bytes.
    pub const MAX_BODY: &str = "TURBOLIFT_MAX_BODY";
    /// Calls a service runs at once; more wait in line.
    pub const MAX_CONCURRENCY: &str = "TURBOLIFT_MAX_CONCURRENCY";
    /// Calls that may wait in line for a service; beyond, a retryable `busy`.
    pub const MAX_QUEUE: &str = "TURBOLIFT_MAX_QUEUE";
    /// Time a client has to send a request's head before the connection is closed.
    pub const HEADER_TIMEOUT: &str = "TURBOLIFT_HEADER_TIMEOUT";
    /// Time a client has to send a request's body before the call is refused (408).
    pub const BODY_TIMEOUT: &str = "TURBOLIFT_BODY_TIMEOUT";
    /// Name of the replica of the service, echoed in [`super::REPLICA_HEADER`].
    pub const REPLICA: &str = "TURBOLIFT_REPLICA";
    /// Service: `1` answers [`super::METRICS_PATH`] without the secret (and, with TLS,
    /// to clients without a certificate); unset or `0` asks for the secret.
    pub const METRICS_PUBLIC: &str = "TURBOLIFT_METRICS_PUBLIC";
    /// Program: a directory where the runtime writes, when the process exits, what its
    /// remote calls added up to (`program-<pid>.stats`, see [`crate::stats`]); `cargo
    /// turbolift` sets it for the summary at the end of a run or test.
    pub const STATS_DIR: &str = "TURBOLIFT_STATS_DIR";
    /// `off` (or `0`): services count nothing for `GET /v1/metrics` and the program
    /// keeps no counts for the summary; on by default.
    pub const METRICS: &str = "TURBOLIFT_METRICS";
    /// Log filter of a service: `TARGET=LEVEL` or `LEVEL` directives, comma-separated
    /// (tracing-subscriber's `Targets` syntax).
    pub const LOG: &str = "TURBOLIFT_LOG";
    /// Service: longest call of a synchronous function that runs inline on an I/O
    /// thread once the function has proven that short; `0` turns it off.
    pub const INLINE_MAX: &str = "TURBOLIFT_INLINE_MAX";
    /// Program: `off` sends every call on its own request; `on` (the default) lets
    /// concurrent calls of a function travel together in batch requests.
    pub const COALESCE: &str = "TURBOLIFT_COALESCE";
    /// Program and service: a directory on a tmpfs (mode `0700`, owned by the user), where
    /// the program and the services of one run on one machine pass large arguments and
    /// results through shared memory instead of TCP. `cargo turbolift run` and `test`
    /// create one per run on the local platform (not with `--tls`), and remove it after.
    pub const SHM_DIR: &str = "TURBOLIFT_SHM_DIR";
    /// `cargo turbolift`: `off` sets up no shared memory for the run (every body goes
    /// over TCP).
    pub const SHM: &str = "TURBOLIFT_SHM";
    /// `cargo turbolift`: `off` links turbolift's runtime into every executable of a
    /// `dev` build for this machine; `on` (the default) builds it as one shared library
    /// that they load, so that an edit links only the user's code again.
    pub const DYNAMIC_LINKING: &str = "TURBOLIFT_DYNAMIC_LINKING";
    /// Path of a PEM file of the certificate authority of the run or deployment. A
    /// service with it takes only TLS connections and only calls from clients whose
    /// certificate this authority signed; a program with it verifies the service's
    /// certificate at `https://` endpoints. Set together with [`TLS_CERT`] and
    /// [`TLS_KEY`], or none of the three.
    pub const TLS_CA: &str = "TURBOLIFT_TLS_CA";
    /// Path of a PEM file of this side's certificate (chain), signed by [`TLS_CA`]'s
    /// authority: a service's names it is reached by, or the program's client certificate.
    pub const TLS_CERT: &str = "TURBOLIFT_TLS_CERT";
    /// Path of a PEM file of the private key of [`TLS_CERT`] (readable by its user only).
    pub const TLS_KEY: &str = "TURBOLIFT_TLS_KEY";

    /// The value of an on/off variable: `on`, `1` or `true`; `off`, `0` or `false`; unset
    /// or empty is `default`. Anything else is an error naming the variable.
    pub fn switch(name: &str, value: Option<&str>, default: bool) -> Result<bool, String> {
        match value.map(str::trim).unwrap_or_default() {
            "" => Ok(default),
            "on" | "1" | "true" => Ok(true),
            "off" | "0" | "false" => Ok(false),
            other => Err(format!("{name} must be `on` or `off`, not `{other}`")),
        }
    }
}

/// Where the TLS files are inside a container (Docker and Kubernetes): the service's
/// certificate, key and the authority's certificate, under the names of a
/// `kubernetes.io/tls` Secret.
pub mod tls_in_container {
    /// The folder, mounted read-only.
    pub const DIR: &str = "/etc/turbolift/tls";
    /// The certificate (chain).
    pub const CERT: &str = "/etc/turbolift/tls/tls.crt";
    /// Its private key.
    pub const KEY: &str = "/etc/turbolift/tls/tls.key";
    /// The authority's certificate.
    pub const CA: &str = "/etc/turbolift/tls/ca.crt";
}

/// The kinds of failure a service reports in [`ERROR_HEADER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the body does not decode as the function's arguments.
    BadRequest,
    /// 401: missing or wrong shared secret.
    Unauthorized,
    /// 404: no function at this path.
    UnknownFunction,
    /// 409: the caller speaks another protocol version.
    ProtocolMismatch,
    /// 409: the caller was built from another signature of the function.
    SignatureMismatch,
    /// 408: the body did not arrive in time.
    SlowBody,
    /// 413: the body is larger than the service's limit.
    TooLarge,
    /// 415: the content type is not [`CONTENT_TYPE`].
    UnsupportedMediaType,
    /// 500: the function panicked; the body is the panic message.
    Panic,
    /// 500: the service failed outside the function (its result did not encode, say).
    Internal,
    /// 503: the service cannot take the call now (it is starting, or its line of waiting
    /// calls is full); retry later or elsewhere.
    Busy,
    /// 503: the service is shutting down; retry elsewhere.
    Draining,
}

impl ErrorKind {
    /// Every kind, for tests and documentation.
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::BadRequest,
        ErrorKind::Unauthorized,
        ErrorKind::UnknownFunction,
        ErrorKind::ProtocolMismatch,
        ErrorKind::SignatureMismatch,
        ErrorKind::SlowBody,
        ErrorKind::TooLarge,
        ErrorKind::UnsupportedMediaType,
        ErrorKind::Panic,
        ErrorKind::Internal,
        ErrorKind::Busy,
        ErrorKind::Draining,
    ];

    /// The token sent in [`ERROR_HEADER`].
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad-request",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::UnknownFunction => "unknown-function",
            ErrorKind::ProtocolMismatch => "protocol-mismatch",
            ErrorKind::SignatureMismatch => "signature-mismatch",
            ErrorKind::SlowBody => "slow-body",
            ErrorKind::TooLarge => "too-large",
            ErrorKind::UnsupportedMediaType => "unsupported-media-type",
            ErrorKind::Panic => "panic",
            ErrorKind::Internal => "internal",
            ErrorKind::Busy => "busy",
            ErrorKind::Draining => "draining",
        }
    }

    /// The HTTP status that goes with the kind.
    pub const fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::UnknownFunction => 404,
            ErrorKind::ProtocolMismatch | ErrorKind::SignatureMismatch => 409,
            ErrorKind::SlowBody => 408,
            ErrorKind::TooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::Panic | ErrorKind::Internal => 500,
            ErrorKind::Busy | ErrorKind::Draining => 503,
        }
    }

    /// Parses the token of [`ERROR_HEADER`].
    pub fn parse(token: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == token)
    }

    /// Whether a caller may retry the call on another replica.
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Busy | ErrorKind::Draining | ErrorKind::SlowBody
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_round_trip_through_their_tokens() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(kind.as_str()), Some(kind));
            assert!((400..600).contains(&kind.status()));
        }
        assert_eq!(ErrorKind::parse("nonsense"), None);
    }
}
