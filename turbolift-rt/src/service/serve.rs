//! The accept loop: HTTP/1.1 connections with time limits, and a graceful drain.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use super::State;

/// Longest a drain waits for calls in flight before the service exits anyway.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// Accepts connections until `shutdown` completes, then drains: new calls get a
/// retryable `draining`, idle connections close, calls in flight finish.
pub(super) async fn serve(
    state: Arc<State>,
    router: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let service = TowerToHyperService::new(router);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // A client that does not finish its request head in time (slow-loris) is dropped.
        .header_read_timeout(state.header_timeout)
        .keep_alive(true);
    super::placement::watch(tokio::runtime::Handle::current());
    state.ready.store(true, Ordering::Release);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, say: wait a little rather than spin.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let connection = builder.serve_connection(TokioIo::new(stream), service.clone());
                let watched = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = watched.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    state.draining.store(true, Ordering::Release);
    drop(listener);
    tracing::info!("shutting down: finishing the calls in flight");
    if tokio::time::timeout(DRAIN_LIMIT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("calls still running after {DRAIN_LIMIT:?}; exiting anyway");
    }
    Ok(())
}
