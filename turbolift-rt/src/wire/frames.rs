//! The bodies of a batch (see `docs/protocol.md`, "Batches").
//!
//! A batch request is the arguments of many calls: postcard's encoding of a
//! `Vec<(A, ..)>`, a varint count followed by the argument tuples. The answer is one
//! frame per call, in the order of the arguments, streamed as the calls finish:
//!
//! ```text
//! frame := tag:u8 length:varint payload[length]
//! tag   := 0 the result, encoded | 1 a panic's message (UTF-8)
//!        | 2 why the result could not be encoded (UTF-8)
//! ```

use bytes::{Buf, Bytes, BytesMut};

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

/// Appends one frame.
pub fn push_frame(out: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    out.push(tag);
    push_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
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

    /// The next whole frame as `(tag, payload)`, `None` until one has fully arrived, or
    /// an error when the bytes cannot be frames.
    pub fn next_frame(&mut self) -> Result<Option<(u8, Bytes)>, WireError> {
        let Some(&tag) = self.buffer.first() else {
            return Ok(None);
        };
        if tag > FAILED {
            return Err(WireError(format!("unknown batch frame tag {tag}")));
        }
        let mut length = 0u64;
        let mut header = 1;
        loop {
            let Some(&byte) = self.buffer.get(header) else {
                return Ok(None);
            };
            if header > 10 {
                return Err(WireError("a batch frame length is not a varint".into()));
            }
            length |= u64::from(byte & 0x7f) << (7 * (header - 1));
            header += 1;
            if byte & 0x80 == 0 {
                break;
            }
        }
        if length > MAX_PAYLOAD {
            return Err(WireError(format!("a batch frame claims {length} bytes")));
        }
        let total = header + length as usize;
        if self.buffer.len() < total {
            return Ok(None);
        }
        self.buffer.advance(header);
        Ok(Some((tag, self.buffer.split_to(length as usize).freeze())))
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
        push_frame(&mut stream, OK, &[1, 2, 3]);
        push_frame(&mut stream, PANIC, b"boom");
        push_frame(&mut stream, OK, &vec![7u8; 300]);
        push_frame(&mut stream, FAILED, b"");
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
            assert_eq!(got[0], (OK, Bytes::from_static(&[1, 2, 3])));
            assert_eq!(got[1], (PANIC, Bytes::from_static(b"boom")));
            assert_eq!(got[2].1.len(), 300);
            assert_eq!(got[3], (FAILED, Bytes::new()));
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
    fn garbage_is_an_error_not_a_frame() {
        let mut reader = FrameReader::new();
        reader.push(&[9, 1, 2]);
        assert!(reader.next_frame().is_err());
        let mut reader = FrameReader::new();
        reader.push(&[
            0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ]);
        assert!(reader.next_frame().is_err());
        let mut reader = FrameReader::new();
        reader.push(&[0, 5, 1]);
        assert_eq!(reader.next_frame().unwrap(), None);
        assert!(reader.has_partial());
    }
}
