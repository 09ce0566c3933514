//! The request headers a call's checks read, found in one pass over the request's
//! headers. A lookup by name in a `HeaderMap` parses and hashes the name each time; a call
//! reads seven of them, and the pass compares each of the request's few names instead.

use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use turbolift_shared::protocol;

/// The first value of each header a call reads, as `HeaderMap::get` would give it.
#[derive(Default)]
pub(super) struct CallHeaders<'a> {
    pub secret: Option<&'a HeaderValue>,
    pub content_type: Option<&'a HeaderValue>,
    pub content_length: Option<&'a HeaderValue>,
    pub protocol: Option<&'a HeaderValue>,
    pub signature: Option<&'a HeaderValue>,
    pub shm_args: Option<&'a HeaderValue>,
    pub shm_reply: Option<&'a HeaderValue>,
}

impl<'a> CallHeaders<'a> {
    pub fn of(headers: &'a HeaderMap) -> Self {
        let mut found = CallHeaders::default();
        for (name, value) in headers {
            let slot = if name == CONTENT_TYPE {
                &mut found.content_type
            } else if name == CONTENT_LENGTH {
                &mut found.content_length
            } else {
                match name.as_str() {
                    protocol::SECRET_HEADER => &mut found.secret,
                    protocol::PROTOCOL_HEADER => &mut found.protocol,
                    protocol::SIGNATURE_HEADER => &mut found.signature,
                    protocol::SHM_ARGS_HEADER => &mut found.shm_args,
                    protocol::SHM_REPLY_HEADER => &mut found.shm_reply,
                    _ => continue,
                }
            };
            // A repeated header: its first value, as `get` gives.
            slot.get_or_insert(value);
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_header_is_found_as_get_finds_it() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(protocol::CONTENT_TYPE),
        );
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("12"));
        headers.insert("x-other", HeaderValue::from_static("o"));
        for (i, name) in [
            protocol::SECRET_HEADER,
            protocol::PROTOCOL_HEADER,
            protocol::SIGNATURE_HEADER,
            protocol::SHM_ARGS_HEADER,
            protocol::SHM_REPLY_HEADER,
        ]
        .into_iter()
        .enumerate()
        {
            headers.append(name, HeaderValue::from(i));
            // A second value is not the one read.
            headers.append(name, HeaderValue::from_static("later"));
        }
        let found = CallHeaders::of(&headers);
        let pairs = [
            (found.content_type, CONTENT_TYPE.as_str()),
            (found.content_length, CONTENT_LENGTH.as_str()),
            (found.secret, protocol::SECRET_HEADER),
            (found.protocol, protocol::PROTOCOL_HEADER),
            (found.signature, protocol::SIGNATURE_HEADER),
            (found.shm_args, protocol::SHM_ARGS_HEADER),
            (found.shm_reply, protocol::SHM_REPLY_HEADER),
        ];
        for (value, name) in pairs {
            assert_eq!(value, headers.get(name), "{name}");
            assert!(value.is_some(), "{name}");
        }
        assert!(CallHeaders::of(&HeaderMap::new()).secret.is_none());
    }
}
