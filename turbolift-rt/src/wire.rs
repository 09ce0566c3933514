//! The wire encoding of arguments and results: [postcard], a compact binary serde format.
//!
//! Arguments travel as one tuple `(a, b, ..)`; the result as the function's return type.
//! A body must be exactly one value: trailing bytes are an error, so a truncated or
//! padded body is never mistaken for a valid call.

#[cfg(feature = "distributed")]
pub(crate) mod body;
pub mod frames;

use std::any::{Any, TypeId};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a value did not encode or decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub(crate) String);

/// Encodes `value` into a fresh buffer.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, WireError> {
    postcard::to_stdvec(value).map_err(|e| WireError(e.to_string()))
}

/// Decodes exactly one `T` from `bytes`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let (value, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|e| WireError(e.to_string()))?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(WireError(format!(
            "{} unexpected byte(s) after the value",
            rest.len()
        )))
    }
}

/// An encoded value as it travels: `head`, then `tail`.
///
/// A `Vec<u8>` (a result, or the only argument) is encoded as its length prefix in `head`
/// and its own buffer, moved and not copied, in `tail`: the same bytes as [`encode`], one
/// copy fewer. Every other value is all in `head`.
#[derive(Debug, Clone, Default)]
pub struct Encoded {
    /// The encoding, or its first part.
    pub head: Bytes,
    /// The rest of the encoding (often empty).
    pub tail: Bytes,
}

impl Encoded {
    /// The length of the encoding.
    pub fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    /// Whether the encoding is empty (the unit value).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The encoding as one buffer (copied when it has two parts).
    pub fn to_bytes(&self) -> Bytes {
        if self.tail.is_empty() {
            self.head.clone()
        } else {
            let mut all = Vec::with_capacity(self.len());
            all.extend_from_slice(&self.head);
            all.extend_from_slice(&self.tail);
            Bytes::from(all)
        }
    }
}

/// Encodes `value`, moving the buffer of a `Vec<u8>` or `(Vec<u8>,)` into the encoding.
pub fn encode_owned<T: Serialize + 'static>(value: T) -> Result<Encoded, WireError> {
    match take_byte_vec(value) {
        Ok(bytes) => Ok(Encoded {
            // postcard writes a sequence's length as a varint `usize`, then a `u8` as
            // itself: the prefix, then the bytes.
            head: Bytes::from(encode(&bytes.len())?),
            tail: Bytes::from(bytes),
        }),
        Err(value) => Ok(Encoded {
            head: Bytes::from(encode(&value)?),
            tail: Bytes::new(),
        }),
    }
}

/// Decodes exactly one `T` from `body`, like [`decode`]; a `Vec<u8>` or `(Vec<u8>,)` takes
/// the body's buffer when it can instead of being rebuilt byte by byte.
pub fn decode_owned<T: DeserializeOwned + 'static>(body: Bytes) -> Result<T, WireError> {
    if is_byte_vec::<T>()
        && let Ok((len, rest)) = postcard::take_from_bytes::<usize>(&body)
        && rest.len() == len
    {
        // Exactly a length prefix and that many bytes: what postcard would decode, too.
        let prefix = body.len() - len;
        let mut bytes = Vec::from(body);
        bytes.drain(..prefix);
        if let Some(value) = give_byte_vec(bytes) {
            return Ok(value);
        }
        unreachable!("is_byte_vec said T is a byte vector");
    }
    // Anything else, including a malformed byte vector, takes the general path, with its
    // errors.
    decode(&body)
}

fn is_byte_vec<T: 'static>() -> bool {
    let t = TypeId::of::<T>();
    t == TypeId::of::<Vec<u8>>() || t == TypeId::of::<(Vec<u8>,)>()
}

/// The buffer of a `Vec<u8>` or `(Vec<u8>,)`, else the value back.
fn take_byte_vec<T: 'static>(value: T) -> Result<Vec<u8>, T> {
    let mut slot = Some(value);
    let any = &mut slot as &mut dyn Any;
    if let Some(v) = any.downcast_mut::<Option<Vec<u8>>>() {
        return Ok(v.take().unwrap_or_default());
    }
    if let Some(v) = any.downcast_mut::<Option<(Vec<u8>,)>>() {
        return Ok(v.take().map(|(b,)| b).unwrap_or_default());
    }
    Err(slot.expect("the value is still there"))
}

/// `bytes` as a `T` that is `Vec<u8>` or `(Vec<u8>,)`.
fn give_byte_vec<T: 'static>(bytes: Vec<u8>) -> Option<T> {
    let mut slot: Option<T> = None;
    let any = &mut slot as &mut dyn Any;
    if let Some(s) = any.downcast_mut::<Option<Vec<u8>>>() {
        *s = Some(bytes);
    } else if let Some(s) = any.downcast_mut::<Option<(Vec<u8>,)>>() {
        *s = Some((bytes,));
    }
    slot
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both_ways<T>(value: T)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + Clone + 'static,
    {
        let plain = encode(&value).unwrap();
        let owned = encode_owned(value.clone()).unwrap();
        assert_eq!(owned.to_bytes().as_ref(), plain.as_slice(), "{value:?}");
        let back: T = decode_owned(Bytes::from(plain.clone())).unwrap();
        assert_eq!(back, value);
        // A slice of a larger buffer, as bodies read from a socket are.
        let mut padded = vec![9u8; 3];
        padded.extend_from_slice(&plain);
        let shared = Bytes::from(padded).slice(3..);
        let back: T = decode_owned(shared).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn owned_paths_give_the_same_bytes_and_values() {
        both_ways(Vec::<u8>::new());
        both_ways(vec![1u8, 2, 3]);
        both_ways((vec![7u8; 300],));
        both_ways((0..100_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        both_ways(vec![1u16, 2, 3]);
        both_ways((vec![1u8], 5u64));
        both_ways(String::from("hé"));
        both_ways(());
        both_ways((7u64,));
    }

    #[test]
    fn malformed_byte_vectors_fail_as_before() {
        for body in [
            vec![3u8, 1, 2],
            vec![2u8, 1, 2, 3],
            vec![0x80u8],
            vec![],
            vec![0xffu8; 11],
        ] {
            let general = decode::<(Vec<u8>,)>(&body).unwrap_err();
            let owned = decode_owned::<(Vec<u8>,)>(Bytes::from(body.clone())).unwrap_err();
            assert_eq!(general, owned, "{body:?}");
            let general = decode::<Vec<u8>>(&body).unwrap_err();
            let owned = decode_owned::<Vec<u8>>(Bytes::from(body.clone())).unwrap_err();
            assert_eq!(general, owned, "{body:?}");
        }
    }
}
