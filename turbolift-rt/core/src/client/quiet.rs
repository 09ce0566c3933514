//! The HTTP client's work, hidden from the program's `tracing` subscriber.
//!
//! hyper-util's client logs through `tracing` whenever its `client` feature is on, which
//! no feature turns off: its pool and connector emit a few `DEBUG` and `TRACE` events per
//! call (`connecting to ..`, `reuse idle connection for ..`, `pooling idle connection
//! for ..`) and `WARN` when a socket option cannot be set, under the targets
//! `hyper_util::client::legacy::*`. They are turbolift's plumbing, not the program's
//! events: the client's calls, the futures it spawns and their drops run here with no
//! subscriber, so a program's own subscriber, at any level, sees none of them. (hyper
//! itself logs only when built with `--cfg hyper_unstable_tracing`.)

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tracing::Dispatch;
use tracing::level_filters::LevelFilter;

/// Runs `f` with no `tracing` subscriber on this thread. When no subscriber is set at
/// all, nobody would see an event: `f` runs as it is, for the cost of one atomic load.
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> T {
    if LevelFilter::current() == LevelFilter::OFF {
        return f();
    }
    tracing::dispatcher::with_default(&Dispatch::none(), f)
}

/// A future polled, and dropped, [`quietly`].
pub(crate) struct Quiet<F: Future + Unpin>(Option<F>);

impl<F: Future + Unpin> Quiet<F> {
    pub(crate) fn new(future: F) -> Self {
        Quiet(Some(future))
    }
}

impl<F: Future + Unpin> Future for Quiet<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let future = self.0.as_mut().expect("the future is there until the drop");
        quietly(|| Pin::new(future).poll(cx))
    }
}

impl<F: Future + Unpin> Drop for Quiet<F> {
    fn drop(&mut self) {
        // A dropped checkout or connection logs too (`checkout dropped for ..`).
        let future = self.0.take();
        quietly(move || drop(future));
    }
}

/// Spawns the client's background futures (connections, a connection going back to the
/// pool) on tokio, as hyper-util's `TokioExecutor` does, but [`Quiet`].
#[derive(Clone, Copy)]
pub(crate) struct QuietExecutor;

impl<F> hyper::rt::Executor<F> for QuietExecutor
where
    F: Future + Send + Unpin + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(Quiet::new(future));
    }
}
