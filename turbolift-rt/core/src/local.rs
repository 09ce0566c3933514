//! The in-process path: the body runs in the calling process.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};

use futures_util::FutureExt;

use crate::__private::FnInfo;
use crate::Error;

/// Runs a synchronous body on tokio's blocking pool when a tokio runtime is current (so a
/// CPU-heavy body does not stall the caller's other tasks), else on the calling thread.
pub(crate) async fn run_blocking<R, F>(info: &FnInfo, f: F) -> Result<R, Error>
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => match handle.spawn_blocking(f).await {
            Ok(value) => Ok(value),
            Err(e) if e.is_panic() => Err(info.panic_error(panic_message(&*e.into_panic()))),
            Err(_) => Err(Error::Unavailable {
                function: info.id().to_owned(),
                attempts: 1,
                last: "the tokio runtime shut down before the call finished".to_owned(),
            }),
        },
        Err(_) => catch_unwind(AssertUnwindSafe(f))
            .map_err(|payload| info.panic_error(panic_message(&*payload))),
    }
}

/// Runs an async body on the caller's task, turning a panic into [`Error::Panic`].
pub(crate) async fn run_async<R, Fut>(info: &FnInfo, fut: Fut) -> Result<R, Error>
where
    Fut: Future<Output = R>,
{
    AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(|payload| info.panic_error(panic_message(&*payload)))
}

/// The message of a panic payload (`&str` or `String`, as `panic!` makes them).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
