//! The bodies of a batch (see `docs/protocol.md`, "Batches").
//!
//! A batch request is the arguments of many calls: postcard's encoding of a
//! `Vec<(A, ..)>`, a varint count (at most [`MAX_BATCH_CALLS`]) followed by the argument
//! tuples, which a service decodes as the calls run ([`BatchArgs`]). The answer is one
//! frame per call, streamed as the calls finish, in the order they finish; each frame
//! names its call by its position among the arguments:
//!
//! ```text
//! frame := index:varint tag:u8 length:varint payload[length]
//! tag   := 0 the result, encoded | 1 a panic's message (UTF-8)
//!        | 2 why the result could not be encoded (UTF-8)
//! ```

use bytes::{Buf, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use turbolift_shared::protocol::MAX_BATCH_CALLS;

use super::WireError;

/// The payload is the call's encoded result.
pub const OK: u8 = 0;
/// The call panicked; the payload is the panic message.
pub const PANIC: u8 = 1;
/// The result did not encode; the payload says why.
pub const FAILED: u8 = 2;

/// Largest frame payload a reader accepts: larger is a broken stream, not a result.
const MAX_PAYLOAD: u64 = 1 << 40;

/// Appends `n` as a varint, as postcard writes lengths.
pub fn push_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Appends the frame of the call at `index` of its batch.
pub fn push_frame(out: &mut Vec<u8>, index: usize, tag: u8, payload: &[u8]) {
    push_varint(out, index as u64);
    out.push(tag);
    push_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// The number of calls a batch body says it carries (its leading varint), whatever it
/// is; see [`BatchArgs::new`] for the body as a whole.
pub fn batch_len(body: &[u8]) -> Result<u64, WireError> {
    let (count, _) = postcard::take_from_bytes::<usize>(body)
        .map_err(|e| WireError(format!("no count of calls: {e}")))?;
    Ok(count as u64)
}

/// The decoded arguments of the first calls of a batch are kept from the check of the
/// body, rather than decoded again, while they took at most this much of the body and
/// this much memory by their size (what they own besides is not counted, and is at most
/// a few times the bytes they took for ordinary types).
const KEEP_BYTES: usize = 64 * 1024;

/// The argument tuples of a batch request. Every tuple is decoded once to check the body;
/// those of the first calls are kept, within [`KEEP_BYTES`], and the others decoded again
/// one call at a time as the calls run. A batch thus holds its body and little more,
/// never the decoded arguments of every call at once.
#[derive(Debug)]
pub struct BatchArgs<A> {
    kept: std::vec::IntoIter<A>,
    body: Bytes,
    /// Where the arguments of the first call not kept begin.
    at: usize,
    /// Calls not yet handed out.
    left: usize,
    /// Why the previous call did not decode; then so does every later one.
    failed: Option<String>,
}

impl<A: DeserializeOwned> BatchArgs<A> {
    /// The calls of `body`, once it has proven to be exactly a count of at most
    /// [`MAX_BATCH_CALLS`] and that many argument tuples: the count is checked before
    /// anything else, then every tuple is decoded, so a bad batch is refused before any
    /// call runs.
    pub fn new(body: Bytes) -> Result<Self, WireError> {
        let (count, mut rest) = postcard::take_from_bytes::<usize>(&body)
            .map_err(|e| WireError(format!("no count of calls: {e}")))?;
        if count > MAX_BATCH_CALLS {
            return Err(WireError(format!(
                "the batch has {count} calls, more than the {MAX_BATCH_CALLS} a batch request may carry"
            )));
        }
        let most_kept = KEEP_BYTES / size_of::<A>().max(1);
        let mut kept = Vec::new();
        let mut keeping = true;
        let mut at = body.len() - rest.len();
        for _ in 0..count {
            let (args, after) =
                postcard::take_from_bytes::<A>(rest).map_err(|e| WireError(e.to_string()))?;
            let took = rest.len() - after.len();
            keeping &= kept.len() < most_kept && at + took <= KEEP_BYTES;
            if keeping {
                kept.push(args);
                at += took;
            }
            rest = after;
        }
        if !rest.is_empty() {
            return Err(WireError(format!(
                "{} unexpected byte(s) after the last call's arguments",
                rest.len()
            )));
        }
        Ok(BatchArgs {
            kept: kept.into_iter(),
            body,
            at,
            left: count,
            failed: None,
        })
    }
}

impl<A> BatchArgs<A> {
    /// The number of calls.
    pub fn len(&self) -> usize {
        self.left
    }

    /// Whether there is no call.
    pub fn is_empty(&self) -> bool {
        self.left == 0
    }
}

impl<A: DeserializeOwned> Iterator for BatchArgs<A> {
    /// A call's arguments, or why they did not decode this time (a `Deserialize` that
    /// does not decode the same bytes the same way twice).
    type Item = Result<A, String>;

    fn next(&mut self) -> Option<Self::Item> {
        self.left = self.left.checked_sub(1)?;
        if let Some(args) = self.kept.next() {
            return Some(Ok(args));
        }
        if let Some(why) = &self.failed {
            return Some(Err(why.clone()));
        }
        let rest = &self.body[self.at..];
        Some(match postcard::take_from_bytes::<A>(rest) {
            Ok((args, after)) => {
                self.at += rest.len() - after.len();
                Ok(args)
            }
            Err(e) => {
                let why = format!("the arguments did not decode a second time: {e}");
                self.failed = Some(why.clone());
                Err(why)
            }
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// One call's frame of a batch's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The call's position among the batch's arguments.
    pub index: u64,
    /// [`OK`], [`PANIC`] or [`FAILED`].
    pub tag: u8,
    /// The encoded result, or the message.
    pub payload: Bytes,
}

/// The varint at `at` in `bytes` and where it ends; `None` while it is incomplete.
fn varint_at(bytes: &[u8], at: usize, what: &str) -> Result<Option<(u64, usize)>, WireError> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().skip(at).enumerate() {
        if i >= 10 {
            return Err(WireError(format!("a batch frame {what} is not a varint")));
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, at + i + 1)));
        }
    }
    if bytes.len().saturating_sub(at) >= 10 {
        return Err(WireError(format!("a batch frame {what} is not a varint")));
    }
    Ok(None)
}

/// Splits a streamed answer into frames, whatever the pieces it arrives in.
#[derive(Debug, Default)]
pub struct FrameReader {
    buffer: BytesMut,
}

impl FrameReader {
    /// A reader with nothing buffered.
    pub fn new() -> Self {
        FrameReader::default()
    }

    /// Adds the next piece of the stream.
    pub fn push(&mut self, piece: &[u8]) {
        self.buffer.extend_from_slice(piece);
    }

    /// The next whole frame, `None` until one has fully arrived, or an error when the
    /// bytes cannot be frames.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        let Some((index, at)) = varint_at(&self.buffer, 0, "index")? else {
            return Ok(None);
        };
        let Some(&tag) = self.buffer.get(at) else {
            return Ok(None);
        };
        if tag > FAILED {
            return Err(WireError(format!("unknown batch frame tag {tag}")));
        }
        let Some((length, header)) = varint_at(&self.buffer, at + 1, "length")? else {
            return Ok(None);
        };
        if length > MAX_PAYLOAD {
            return Err(WireError(format!("a batch frame claims {length} bytes")));
        }
        let total = header + length as usize;
        if self.buffer.len() < total {
            return Ok(None);
        }
        self.buffer.advance(header);
        Ok(Some(Frame {
            index,
            tag,
            payload: self.buffer.split_to(length as usize).freeze(),
        }))
    }

    /// Whether bytes of an unfinished frame are left.
    pub fn has_partial(&self) -> bool {
        !self.buffer.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_back_whatever_the_pieces() {
        let mut stream = Vec::new();
        push_frame(&mut stream, 2, OK, &[1, 2, 3]);
        push_frame(&mut stream, 0, PANIC, b"boom");
        push_frame(&mut stream, 300, OK, &vec![7u8; 300]);
        push_frame(&mut stream, 1, FAILED, b"");
        for piece in [1, 2, 5, stream.len()] {
            let mut reader = FrameReader::new();
            let mut got = Vec::new();
            for chunk in stream.chunks(piece) {
                reader.push(chunk);
                while let Some(frame) = reader.next_frame().unwrap() {
                    got.push(frame);
                }
            }
            assert!(!reader.has_partial());
            assert_eq!(got.len(), 4, "pieces of {piece}");
            let frame = |index, tag, payload: &'static [u8]| Frame {
                index,
                tag,
                payload: Bytes::from_static(payload),
            };
            assert_eq!(got[0], frame(2, OK, &[1, 2, 3]));
            assert_eq!(got[1], frame(0, PANIC, b"boom"));
            assert_eq!((got[2].index, got[2].payload.len()), (300, 300));
            assert_eq!(got[3], frame(1, FAILED, b""));
        }
    }

    #[test]
    fn varints_are_postcards() {
        for n in [
            0u64,
            1,
            127,
            128,
            300,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut ours = Vec::new();
            push_varint(&mut ours, n);
            assert_eq!(ours, postcard::to_stdvec(&n).unwrap(), "{n}");
        }
    }

    #[test]
    fn batch_args_are_checked_whole_then_handed_out_in_order() {
        let calls = vec![(1u64, "a".to_owned()), (300, String::new())];
        let body = Bytes::from(postcard::to_stdvec(&calls).unwrap());
        let args = BatchArgs::<(u64, String)>::new(body.clone()).unwrap();
        assert_eq!(args.len(), 2);
        let decoded: Vec<_> = args.map(Result::unwrap).collect();
        assert_eq!(decoded, calls);
        assert_eq!(batch_len(&body).unwrap(), 2);
        // More than is kept from the check: the rest decoded again, in order.
        let many: Vec<(u64, String)> = (0..20_000).map(|i| (i, format!("call {i}"))).collect();
        let long = Bytes::from(postcard::to_stdvec(&many).unwrap());
        assert!(long.len() > 2 * KEEP_BYTES);
        let decoded: Vec<(u64, String)> =
            BatchArgs::new(long).unwrap().map(Result::unwrap).collect();
        assert!(decoded == many);

        let mut padded = body.to_vec();
        padded.push(0);
        let error = BatchArgs::<(u64, String)>::new(Bytes::from(padded)).unwrap_err();
        assert!(error.to_string().contains("1 unexpected byte"), "{error}");
        let truncated = body.slice(..body.len() - 1);
        assert!(BatchArgs::<(u64, String)>::new(truncated).is_err());
        assert!(BatchArgs::<()>::new(Bytes::new()).is_err());

        // Calls of no bytes: the count is all there is, and it is bounded.
        let mut most = Vec::new();
        push_varint(&mut most, MAX_BATCH_CALLS as u64);
        assert_eq!(
            BatchArgs::<()>::new(Bytes::from(most)).unwrap().count(),
            MAX_BATCH_CALLS
        );
        let mut huge = Vec::new();
        push_varint(&mut huge, 1 << 40);
        assert_eq!(batch_len(&huge).unwrap(), 1 << 40);
        let error = BatchArgs::<()>::new(Bytes::from(huge)).unwrap_err();
        assert!(error.to_string().contains("1099511627776 calls"), "{error}");
    }

    #[test]
    fn garbage_is_an_error_not_a_frame() {
        let mut reader = FrameReader::new();
        reader.push(&[0, 9, 1, 2]);
        assert!(reader.next_frame().is_err());
        let mut reader = FrameReader::new();
        reader.push(&[
            0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ]);
        assert!(reader.next_frame().is_err());
        let mut reader = FrameReader::new();
        reader.push(&[0xff; 11]);
        assert!(reader.next_frame().is_err());
        let mut reader = FrameReader::new();
        reader.push(&[3, 0, 5, 1]);
        assert_eq!(reader.next_frame().unwrap(), None);
        assert!(reader.has_partial());
    }
}
