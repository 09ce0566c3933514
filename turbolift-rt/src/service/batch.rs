//! The answer to a batch: the frames of its calls, streamed to the caller as they finish.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::State;
use super::metrics::FunctionMetrics;
use crate::__private::FnInfo;

/// Pieces of a batch's answer that may wait between the calls and the connection.
const QUEUED_PIECES: usize = 8;

/// Where the calls of a batch write their frames. Holds the batch's place among the
/// calls the service runs at once until the last call is done, and counts as a call in
/// flight of its function until then.
pub struct BatchSink {
    sender: mpsc::Sender<Bytes>,
    state: Arc<State>,
    info: &'static FnInfo,
    /// The function's place in `state.metrics.functions`.
    index: usize,
    _permit: OwnedSemaphorePermit,
}

impl BatchSink {
    /// A sink, and the body that streams what is written to it.
    pub(crate) fn new(
        state: Arc<State>,
        info: &'static FnInfo,
        index: usize,
        permit: OwnedSemaphorePermit,
    ) -> (Self, FrameBody) {
        let (sender, receiver) = mpsc::channel(QUEUED_PIECES);
        let sink = BatchSink {
            sender,
            state,
            info,
            index,
            _permit: permit,
        };
        sink.metrics().start_running();
        (sink, FrameBody { receiver })
    }

    fn metrics(&self) -> &FunctionMetrics {
        &self.state.metrics.functions[self.index]
    }

    /// The function whose calls the batch runs.
    pub(crate) fn info(&self) -> &'static FnInfo {
        self.info
    }

    /// Sends frames from a task that cannot wait: the first piece of an answer, which a
    /// fresh sink always has room for; `false` when the caller is gone.
    pub(crate) fn send_now(&self, frames: Vec<u8>) -> bool {
        frames.is_empty() || self.sender.try_send(Bytes::from(frames)).is_ok()
    }

    /// Sends frames from a blocking thread; `false` when the caller is gone.
    pub(crate) fn send_blocking(&self, frames: Vec<u8>) -> bool {
        frames.is_empty() || self.sender.blocking_send(Bytes::from(frames)).is_ok()
    }

    /// Sends frames from a task; `false` when the caller is gone.
    pub(crate) async fn send(&self, frames: Vec<u8>) -> bool {
        frames.is_empty() || self.sender.send(Bytes::from(frames)).await.is_ok()
    }

    /// Counts and logs a call of the batch that panicked.
    pub(crate) fn panicked(&self, message: &str) {
        self.metrics().panicked();
        tracing::warn!(function = self.info.id(), %message, "the function panicked in a batch");
    }

    /// Times a call of the batch.
    pub(crate) fn took(&self, took: Duration) {
        self.metrics().batch_call_took(took);
    }
}

impl Drop for BatchSink {
    fn drop(&mut self) {
        self.metrics().stop_running();
    }
}

/// The body of a batch's answer: the frames, as the calls produce them.
pub(crate) struct FrameBody {
    receiver: mpsc::Receiver<Bytes>,
}

impl Body for FrameBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.receiver
            .poll_recv(cx)
            .map(|piece| piece.map(|bytes| Ok(Frame::data(bytes))))
    }
}
