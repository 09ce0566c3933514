//! The error every distributed call can return.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a call to a distributed function did not produce its value.
///
/// The function's own errors are not here: a function returning `Result<T, E>` gives
/// `Ok(Err(e))`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The function panicked (in a service, or in-process).
    #[error("`{function}` panicked: {message}")]
    Panic {
        /// The function, as `crate::module::name`.
        function: String,
        /// The panic message.
        message: String,
    },
    /// The call did not finish within its timeout.
    #[error(
        "call to `{function}` timed out after {after:?} (set `timeout = \"..\"` on the function or TURBOLIFT_TIMEOUTS to allow more)"
    )]
    Timeout {
        /// The function, as `crate::module::name`.
        function: String,
        /// The timeout that ran out.
        after: Duration,
    },
    /// Caller and service were built from different versions of the code.
    #[error(
        "`{function}`: {detail}; rebuild and restart both with `cargo turbolift run` (or `cargo turbolift build`)"
    )]
    VersionMismatch {
        /// The function, as `crate::module::name`.
        function: String,
        /// Which side is stale.
        detail: String,
    },
    /// The arguments could not be encoded.
    #[error("could not encode the arguments of `{function}`: {detail}")]
    Encode {
        /// The function, as `crate::module::name`.
        function: String,
        /// The codec's message.
        detail: String,
    },
    /// The service's answer could not be decoded as the function's result.
    #[error("could not decode the result of `{function}`: {detail}")]
    Decode {
        /// The function, as `crate::module::name`.
        function: String,
        /// The codec's message.
        detail: String,
    },
    /// No replica of the service could take the call.
    #[error(
        "no replica of `{function}` could take the call after {attempts} attempt(s); last error: {last}"
    )]
    Unavailable {
        /// The function, as `crate::module::name`.
        function: String,
        /// How many attempts were made across replicas.
        attempts: u32,
        /// What went wrong on the last attempt.
        last: String,
    },
    /// The service refused the call (see [`RemoteError`]).
    #[error("the service of `{function}` refused the call: {error}")]
    Remote {
        /// The function, as `crate::module::name`.
        function: String,
        /// What the service said.
        error: RemoteError,
    },
    /// The configuration in the environment is invalid.
    #[error("invalid turbolift configuration: {0}")]
    Config(String),
}

/// What a service reports when it refuses or fails a call (see `docs/protocol.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// 400: the body did not decode as the function's arguments.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 401: missing or wrong shared secret.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 404: the service does not serve this function.
    #[error("unknown function: {0}")]
    UnknownFunction(String),
    /// 413: the arguments are larger than the service accepts.
    #[error("request too large: {0}")]
    TooLarge(String),
    /// 415: wrong content type.
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// 500: the service failed outside the function (its result did not encode, say).
    #[error("internal error: {0}")]
    Internal(String),
    /// Any other HTTP status (a proxy in between, say).
    #[error("HTTP {status}: {reason}")]
    Http {
        /// The status code.
        status: u16,
        /// The first line of the body.
        reason: String,
    },
}
