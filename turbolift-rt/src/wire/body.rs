//! Bodies as both ends send and read them: an [`Encoded`] value as at most two frames,
//! and a reader that gathers a body into one buffer with at most one copy.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};

use crate::wire::Encoded;

/// An encoded value as an HTTP body: its head, then its tail, with an exact length (so
/// that `content-length` is sent).
#[derive(Debug, Default)]
pub(crate) struct Chunks {
    head: Option<Bytes>,
    tail: Option<Bytes>,
}

impl Chunks {
    pub(crate) fn new(encoded: Encoded) -> Self {
        let some = |b: Bytes| (!b.is_empty()).then_some(b);
        Chunks {
            head: some(encoded.head),
            tail: some(encoded.tail),
        }
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = match self.head.take() {
            Some(head) => Some(head),
            None => self.tail.take(),
        };
        Poll::Ready(next.map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.tail.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let len = |b: &Option<Bytes>| b.as_ref().map_or(0, |b| b.len() as u64);
        SizeHint::with_exact(len(&self.head) + len(&self.tail))
    }
}

/// The whole body in one buffer. A body that arrives as one frame is that frame, not
/// copied; a longer one is gathered into a buffer sized from its declared length (capped
/// at `cap`, the most the caller accepts), which owns its memory alone, so a `Vec<u8>`
/// decoded from it takes it over without another copy.
pub(crate) async fn read_all<B>(mut body: B, cap: usize) -> Result<Bytes, B::Error>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut first: Option<Bytes> = None;
    let mut gathered: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers: not part of the value
        };
        if data.is_empty() {
            continue;
        }
        match first.take() {
            None if gathered.is_empty() => first = Some(data),
            None => gathered.extend_from_slice(&data),
            Some(previous) => {
                let hint = body.size_hint();
                let expected = (previous.len() + data.len()) as u64 + hint.lower();
                let expected = usize::try_from(expected).unwrap_or(usize::MAX).min(cap);
                gathered.reserve_exact(expected.max(previous.len() + data.len()));
                gathered.extend_from_slice(&previous);
                gathered.extend_from_slice(&data);
            }
        }
    }
    Ok(match first {
        Some(only) => only,
        None => Bytes::from(gathered),
    })
}
