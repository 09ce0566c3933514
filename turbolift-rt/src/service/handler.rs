//! One served function: how a service decodes its arguments, runs it and encodes its result.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use crate::__private::{FnInfo, Wire};
use crate::local::{CatchUnwind, panic_message};
use crate::wire::{self, Encoded};

/// A distributed function as a service sees it; registered by `#[turbolift::distribute]`
/// when the `service` feature is on.
pub struct Handler {
    info: &'static FnInfo,
    invoke: fn(Bytes) -> Invocation,
}

impl Handler {
    /// A handler of the function described by `info`, run by `invoke`.
    pub const fn new(info: &'static FnInfo, invoke: fn(Bytes) -> Invocation) -> Self {
        Handler { info, invoke }
    }

    /// The function's compile-time facts.
    pub fn info(&self) -> &'static FnInfo {
        self.info
    }

    /// Runs the function on an encoded argument tuple.
    pub fn invoke(&self, body: Bytes) -> Invocation {
        (self.invoke)(body)
    }
}

inventory::collect!(Handler);

/// Every handler linked into this binary.
pub fn registered() -> impl Iterator<Item = &'static Handler> {
    inventory::iter::<Handler>.into_iter()
}

/// Why an invocation did not produce an encoded result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeError {
    /// The body is not an encoded argument tuple of the function.
    BadArguments(String),
    /// The function panicked with this message.
    Panic(String),
    /// The result did not encode.
    Encode(String),
    /// The runtime shut down before the function finished.
    ShuttingDown,
}

/// The running function, as a service awaits it.
pub type Invocation = Pin<Box<dyn Future<Output = Result<Encoded, InvokeError>> + Send>>;

/// Runs a synchronous function on the blocking pool, off the I/O threads.
pub fn invoke_blocking<A, R, F>(body: Bytes, f: F) -> Invocation
where
    A: Wire,
    R: Wire,
    F: FnOnce(A) -> R + Send + 'static,
{
    Box::pin(async move {
        let args: A = decode(body)?;
        match tokio::task::spawn_blocking(move || f(args)).await {
            Ok(value) => encode(value),
            Err(e) if e.is_panic() => Err(InvokeError::Panic(panic_message(&*e.into_panic()))),
            Err(_) => Err(InvokeError::ShuttingDown),
        }
    })
}

/// Runs an async function on the service's runtime.
pub fn invoke_async<A, R, F, Fut>(body: Bytes, f: F) -> Invocation
where
    A: Wire,
    R: Wire,
    F: FnOnce(A) -> Fut + Send + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    Box::pin(async move {
        let args: A = decode(body)?;
        match CatchUnwind::new(f(args)).await {
            Ok(value) => encode(value),
            Err(payload) => Err(InvokeError::Panic(panic_message(&*payload))),
        }
    })
}

fn decode<A: Wire>(body: Bytes) -> Result<A, InvokeError> {
    wire::decode_owned(body).map_err(|e| InvokeError::BadArguments(e.to_string()))
}

fn encode<R: Wire>(value: R) -> Result<Encoded, InvokeError> {
    wire::encode_owned(value).map_err(|e| InvokeError::Encode(e.to_string()))
}
