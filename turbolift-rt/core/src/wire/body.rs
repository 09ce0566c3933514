//! Bodies as both ends send and read them: an [`Encoded`] value as at most two frames,
//! and a reader that gathers a body into one buffer with at most one copy.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};

use crate::wire::Encoded;

/// The most hyper reads from a connection at once, on both ends (its default is about
/// 400 KiB). Its reads start small and double while they fill the buffer, so only a
/// connection that is receiving a large body fast grows it: a 10 MiB body then arrives in
/// a few reads instead of 25 or more, each a system call and a chunk to gather (10 MiB
/// echoed in-process: about 560 MB/s with the default, 770 MB/s with this).
pub const READ_BUFFER: usize = 4 << 20;

/// An encoded value as an HTTP body: its head, then its tail, with an exact length (so
/// that `content-length` is sent).
#[derive(Debug, Default)]
pub struct Chunks {
    head: Option<Bytes>,
    tail: Option<Bytes>,
}

impl Chunks {
    pub fn new(encoded: Encoded) -> Self {
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
/// at `cap`, the most the caller accepts), which owns its memory alone.
///
/// With `split` (the value is a byte buffer alone, see [`Encoded`]), a longer body that
/// is a length prefix and exactly that many bytes, by its declared length, is read as two
/// parts: the prefix in `head`, and the bytes in `tail`, gathered at the start of a buffer
/// of their own, so that the `Vec<u8>` decoded from it is that buffer, neither copied nor
/// moved over the prefix. Anything else comes whole, in `head`.
pub async fn read_all<B>(mut body: B, cap: usize, split: bool) -> Result<Encoded, B::Error>
where
    B: Body<Data = Bytes> + Unpin,
{
    let declared = body.size_hint().exact();
    let mut first: Option<Bytes> = None;
    let mut gathered: Vec<u8> = Vec::new();
    // The length prefix once it is known to lead a split body; `gathered` then holds the
    // bytes after it.
    let mut prefix: Option<Bytes> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers: not part of the value
        };
        if data.is_empty() {
            continue;
        }
        match first.take() {
            None if gathered.is_empty() && prefix.is_none() => first = Some(data),
            None => gathered.extend_from_slice(&data),
            Some(previous) => {
                let hint = body.size_hint();
                let expected = (previous.len() + data.len()) as u64 + hint.lower();
                let expected = usize::try_from(expected).unwrap_or(usize::MAX).min(cap);
                let (head, rest) = match split_point(split, declared, &previous) {
                    Some(at) => (Some(previous.slice(..at)), previous.slice(at..)),
                    None => (None, previous),
                };
                let reserve = expected.saturating_sub(head.as_ref().map_or(0, Bytes::len));
                gathered.reserve_exact(reserve.max(rest.len() + data.len()));
                gathered.extend_from_slice(&rest);
                gathered.extend_from_slice(&data);
                prefix = head;
            }
        }
    }
    Ok(match (first, prefix) {
        (Some(only), _) => Encoded::whole(only),
        (None, Some(prefix)) => Encoded {
            head: prefix,
            tail: Bytes::from(gathered),
        },
        (None, None) => Encoded::whole(Bytes::from(gathered)),
    })
}

/// Where a body of `declared` bytes that begins with `first` splits into a byte buffer's
/// length prefix and its bytes: after the prefix, when `split` is asked and the prefix
/// says the bytes are all the rest.
fn split_point(split: bool, declared: Option<u64>, first: &[u8]) -> Option<usize> {
    if !split {
        return None;
    }
    let (at, len) = crate::wire::byte_buffer_prefix(first)?;
    // Subtracted, not added: a prefix may announce any length, even one that overflows.
    (declared?.checked_sub(at as u64) == Some(len as u64)).then_some(at)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::wire::{self, decode_received};

    /// A body of `frames`, declaring `declared` bytes (a `content-length`) or not.
    struct Frames {
        frames: VecDeque<Bytes>,
        declared: Option<u64>,
    }

    impl Body for Frames {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            let next = self.frames.pop_front();
            if let (Some(frame), Some(declared)) = (&next, &mut self.declared) {
                *declared -= frame.len() as u64;
            }
            Poll::Ready(next.map(|b| Ok(Frame::data(b))))
        }

        fn size_hint(&self) -> SizeHint {
            match self.declared {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            }
        }
    }

    /// `encoded` cut into frames of `size` bytes, declaring its length if `declared`.
    fn frames(encoded: &[u8], size: usize, declared: bool) -> Frames {
        Frames {
            frames: encoded.chunks(size).map(Bytes::copy_from_slice).collect(),
            declared: declared.then_some(encoded.len() as u64),
        }
    }

    fn read(body: Frames, split: bool) -> Encoded {
        futures_util::FutureExt::now_or_never(read_all(body, usize::MAX, split))
            .expect("the body is ready")
            .unwrap()
    }

    #[test]
    fn a_byte_buffer_s_bytes_come_apart_from_their_prefix_and_become_the_vec() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let encoded = wire::encode(&data).unwrap();
        let received = read(frames(&encoded, 7_000, true), true);
        assert_eq!(received.head, wire::encode(&data.len()).unwrap());
        assert_eq!(received.tail.len(), data.len());
        let at = received.tail.as_ptr();
        let back: Vec<u8> = decode_received(received).unwrap();
        assert_eq!(back, data);
        assert_eq!(
            back.as_ptr(),
            at,
            "the Vec is the buffer the bytes were read into"
        );
        // As a one-tuple (the argument tuple of a function of one byte buffer) too.
        let (back,): (Vec<u8>,) =
            decode_received(read(frames(&encoded, 7_000, true), true)).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn anything_else_comes_whole() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 7) as u8).collect();
        let encoded = wire::encode(&data).unwrap();
        // Not asked to split; no declared length; one frame.
        for (body, split) in [
            (frames(&encoded, 4_096, true), false),
            (frames(&encoded, 4_096, false), true),
            (frames(&encoded, encoded.len(), true), true),
        ] {
            let received = read(body, split);
            assert!(received.tail.is_empty());
            assert_eq!(received.head, encoded);
            assert_eq!(decode_received::<Vec<u8>>(received).unwrap(), data);
        }
        // A prefix that does not account for the rest: whole, and the decoder says so.
        let mut padded = encoded.clone();
        padded.push(0);
        let received = read(frames(&padded, 4_096, true), true);
        assert!(received.tail.is_empty());
        assert!(decode_received::<Vec<u8>>(received).is_err());
        // A string has the same shape: asked not to split, it comes whole.
        let text = "ab".repeat(20_000);
        let encoded = wire::encode(&text).unwrap();
        let received = read(frames(&encoded, 4_096, true), false);
        assert!(received.tail.is_empty());
        assert_eq!(decode_received::<String>(received).unwrap(), text);
    }

    #[test]
    fn a_prefix_announcing_more_than_can_exist_is_not_split_and_does_not_panic() {
        let mut body = wire::encode(&usize::MAX).unwrap();
        body.extend_from_slice(&[7; 9_000]);
        let received = read(frames(&body, 4_096, true), true);
        assert!(received.tail.is_empty());
        assert!(decode_received::<Vec<u8>>(received).is_err());
    }

    #[test]
    fn a_body_in_two_parts_decodes_as_one_for_any_other_type() {
        let text = "xy".repeat(1_000);
        let encoded = wire::encode(&text).unwrap();
        let (head, tail) = encoded.split_at(2);
        let received = Encoded {
            head: Bytes::copy_from_slice(head),
            tail: Bytes::copy_from_slice(tail),
        };
        assert_eq!(decode_received::<String>(received).unwrap(), text);
        // A byte buffer whose parts do not fit together is decoded whole: here, an error.
        let received = Encoded {
            head: Bytes::from(wire::encode(&5usize).unwrap()),
            tail: Bytes::from_static(b"abc"),
        };
        assert!(decode_received::<Vec<u8>>(received).is_err());
    }
}
