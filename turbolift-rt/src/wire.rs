//! The wire encoding of arguments and results: [postcard], a compact binary serde format.
//!
//! Arguments travel as one tuple `(a, b, ..)`; the result as the function's return type.
//! A body must be exactly one value: trailing bytes are an error, so a truncated or
//! padded body is never mistaken for a valid call.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a value did not encode or decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(String);

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
