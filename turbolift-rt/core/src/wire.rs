//! The wire encoding of arguments and results: [postcard], a compact binary serde format.
//!
//! Arguments travel as one tuple `(a, b, ..)`; the result as the function's return type.
//! A body must be exactly one value: trailing bytes are an error, so a truncated or
//! padded body is never mistaken for a valid call.

#[cfg(feature = "distributed")]
#[doc(hidden)]
pub mod body;
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
/// A byte buffer alone (`Vec<u8>`, `serde_bytes::ByteBuf`, `bytes::Bytes`: a result, or
/// the only argument) is encoded as its length prefix in `head` and its own buffer, moved
/// and not copied, in `tail`: the same bytes as [`encode`], one copy fewer. Every other
/// value is all in `head`.
#[derive(Debug, Clone, Default)]
pub struct Encoded {
    /// The encoding, or its first part.
    pub head: Bytes,
    /// The rest of the encoding (often empty).
    pub tail: Bytes,
}

impl Encoded {
    /// An encoding in one part.
    pub fn whole(head: Bytes) -> Self {
        Encoded {
            head,
            tail: Bytes::new(),
        }
    }

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

/// Encodes `value`. A byte buffer alone (`Vec<u8>`, `serde_bytes::ByteBuf`,
/// `bytes::Bytes`, or a one-tuple of one: a result, or the only argument) is moved into
/// the encoding, not copied; anything else is encoded into one buffer of its exact size.
pub fn encode_owned<T: Serialize + 'static>(value: T) -> Result<Encoded, WireError> {
    match take_bytes(value) {
        Ok(bytes) => Ok(Encoded {
            // postcard writes a byte sequence's length as a varint `usize`, then the bytes
            // as they are (a `Vec<u8>`'s `u8`s each as itself): the prefix, then the bytes.
            head: Bytes::from(encode(&bytes.len())?),
            tail: bytes,
        }),
        Err(value) => Ok(Encoded {
            head: Bytes::from(encode_sized(&value)?),
            tail: Bytes::new(),
        }),
    }
}

/// Encodes `value` into a buffer allocated once at its exact size: a large value (a
/// struct with a big byte field) is copied into the body once, not again at each doubling
/// of a growing buffer.
fn encode_sized<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, WireError> {
    let size =
        postcard::experimental::serialized_size(value).map_err(|e| WireError(e.to_string()))?;
    let mut out = Vec::with_capacity(size);
    postcard::to_io(value, &mut out).map_err(|e| WireError(e.to_string()))?;
    Ok(out)
}

/// Decodes exactly one `T` from `body`, like [`decode`]; a byte buffer alone (see
/// [`encode_owned`]) takes the body's buffer instead of being rebuilt byte by byte: a
/// `bytes::Bytes` shares it, a `Vec<u8>` or `ByteBuf` takes it over when the body is the
/// only owner (else it is copied once).
pub fn decode_owned<T: DeserializeOwned + 'static>(body: Bytes) -> Result<T, WireError> {
    if is_byte_buffer::<T>()
        && let Some(at) = byte_buffer_start(&body)
    {
        // Exactly a length prefix and that many bytes: what postcard would decode, too.
        return Ok(give_bytes(body.slice(at..)));
    }
    // Anything else, including a malformed byte buffer, takes the general path, with its
    // errors.
    decode(&body)
}

/// Decodes exactly one `T` from a body read in up to two parts (see
/// `body::read_all`): a byte buffer alone whose prefix and bytes came apart is its
/// `tail` as it is; anything else is decoded from the whole body (copied into one buffer
/// when it came in two parts).
pub fn decode_received<T: DeserializeOwned + 'static>(body: Encoded) -> Result<T, WireError> {
    if body.tail.is_empty() {
        return decode_owned(body.head);
    }
    if is_byte_buffer::<T>()
        && byte_buffer_prefix(&body.head) == Some((body.head.len(), body.tail.len()))
    {
        // Moved, not cloned: a `Vec<u8>` takes the buffer over only from its one owner.
        return Ok(give_bytes(body.tail));
    }
    decode_owned(body.to_bytes())
}

/// The length prefix of a byte buffer at the start of `bytes`, if it begins with one: its
/// own length, and the length of the bytes it announces.
pub(crate) fn byte_buffer_prefix(bytes: &[u8]) -> Option<(usize, usize)> {
    let (len, rest) = postcard::take_from_bytes::<usize>(bytes).ok()?;
    Some((bytes.len() - rest.len(), len))
}

/// Where the bytes of a byte buffer start in `bytes`, when `bytes` is exactly a length
/// prefix and that many bytes.
pub(crate) fn byte_buffer_start(bytes: &[u8]) -> Option<usize> {
    let (at, len) = byte_buffer_prefix(bytes)?;
    (bytes.len() - at == len).then_some(at)
}

/// Whether `T` is a byte buffer alone (`Vec<u8>`, `serde_bytes::ByteBuf`, `bytes::Bytes`,
/// or a one-tuple of one), which travels as its length prefix and its own buffer (see
/// [`encode_owned`]) and whose body a reader can split (see [`decode_received`]).
pub fn is_byte_buffer<T: 'static>() -> bool {
    let t = TypeId::of::<T>();
    [
        TypeId::of::<Vec<u8>>(),
        TypeId::of::<(Vec<u8>,)>(),
        TypeId::of::<serde_bytes::ByteBuf>(),
        TypeId::of::<(serde_bytes::ByteBuf,)>(),
        TypeId::of::<Bytes>(),
        TypeId::of::<(Bytes,)>(),
    ]
    .contains(&t)
}

/// The buffer of a byte buffer alone (see [`encode_owned`]), else the value back.
fn take_bytes<T: 'static>(value: T) -> Result<Bytes, T> {
    let mut slot = Some(value);
    let any = &mut slot as &mut dyn Any;
    if let Some(v) = any.downcast_mut::<Option<Vec<u8>>>() {
        return Ok(Bytes::from(v.take().unwrap_or_default()));
    }
    if let Some(v) = any.downcast_mut::<Option<(Vec<u8>,)>>() {
        return Ok(Bytes::from(v.take().map(|(b,)| b).unwrap_or_default()));
    }
    if let Some(v) = any.downcast_mut::<Option<serde_bytes::ByteBuf>>() {
        return Ok(Bytes::from(v.take().unwrap_or_default().into_vec()));
    }
    if let Some(v) = any.downcast_mut::<Option<(serde_bytes::ByteBuf,)>>() {
        return Ok(Bytes::from(
            v.take().map(|(b,)| b.into_vec()).unwrap_or_default(),
        ));
    }
    if let Some(v) = any.downcast_mut::<Option<Bytes>>() {
        return Ok(v.take().unwrap_or_default());
    }
    if let Some(v) = any.downcast_mut::<Option<(Bytes,)>>() {
        return Ok(v.take().map(|(b,)| b).unwrap_or_default());
    }
    Err(slot.expect("the value is still there"))
}

/// `bytes` as a `T` that is a byte buffer alone (see [`is_byte_buffer`], which callers ask
/// first).
fn give_bytes<T: 'static>(bytes: Bytes) -> T {
    let mut slot: Option<T> = None;
    let any = &mut slot as &mut dyn Any;
    if let Some(s) = any.downcast_mut::<Option<Bytes>>() {
        *s = Some(bytes);
    } else if let Some(s) = any.downcast_mut::<Option<(Bytes,)>>() {
        *s = Some((bytes,));
    } else if let Some(s) = any.downcast_mut::<Option<Vec<u8>>>() {
        *s = Some(Vec::from(bytes));
    } else if let Some(s) = any.downcast_mut::<Option<(Vec<u8>,)>>() {
        *s = Some((Vec::from(bytes),));
    } else if let Some(s) = any.downcast_mut::<Option<serde_bytes::ByteBuf>>() {
        *s = Some(serde_bytes::ByteBuf::from(Vec::from(bytes)));
    } else if let Some(s) = any.downcast_mut::<Option<(serde_bytes::ByteBuf,)>>() {
        *s = Some((serde_bytes::ByteBuf::from(Vec::from(bytes)),));
    }
    slot.expect("give_bytes is called only for a byte buffer alone")
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
        both_ways(serde_bytes::ByteBuf::from(vec![4u8; 1000]));
        both_ways((serde_bytes::ByteBuf::from(Vec::new()),));
        both_ways(Bytes::from(vec![5u8; 70_000]));
        both_ways((Bytes::from_static(b"abc"),));
        both_ways((Bytes::from_static(b"abc"), 1u8));
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
            let general = decode::<Bytes>(&body).unwrap_err();
            let owned = decode_owned::<Bytes>(Bytes::from(body.clone())).unwrap_err();
            assert_eq!(general, owned, "{body:?}");
            let general = decode::<serde_bytes::ByteBuf>(&body).unwrap_err();
            let owned =
                decode_owned::<serde_bytes::ByteBuf>(Bytes::from(body.clone())).unwrap_err();
            assert_eq!(general, owned, "{body:?}");
        }
    }
}
