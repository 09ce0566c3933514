//! The fuzz target's logic: arbitrary bytes become one request to a real service router
//! (`tower::ServiceExt::oneshot`), and the answer must be one the protocol allows — never
//! a crash, never a 5xx, and a 200 only with the right value.
//!
//! Input layout: byte 0 chooses the method and path, byte 1 the headers (secret, content
//! type, protocol, signature: present, right, or wrong), the rest is the body.

use std::sync::OnceLock;

use axum::body::{Body, to_bytes};
use axum::http::Request;
use serde::{Deserialize, Serialize};
use tower::ServiceExt;
use turbolift::protocol;
use turbolift::service::{Service, ServiceOptions, registered};

const SECRET: &str = "fuzz-secret";

/// An argument with strings, sequences, options and an enum, so that decoding has many
/// paths to explore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub customer: String,
    pub lines: Vec<(u32, i64)>,
    pub note: Option<String>,
    pub priority: Priority,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Priority {
    Low,
    High(u8),
    Custom { label: String, weight: f64 },
}

#[turbolift::distribute]
pub fn total(order: Order, discount: u8) -> Result<i64, String> {
    reference_total(&order, discount)
}

/// What `total` computes, to check every 200.
pub fn reference_total(order: &Order, discount: u8) -> Result<i64, String> {
    if discount > 100 {
        return Err(format!("discount {discount}% is over 100%"));
    }
    let gross = order.lines.iter().fold(0i64, |sum, (qty, price)| {
        sum.wrapping_add(i64::from(*qty).wrapping_mul(*price))
    });
    Ok(gross.wrapping_sub(gross / 100 * i64::from(discount)))
}

struct Target {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    route: String,
    batch_route: String,
    signature: String,
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let handler = registered()
            .find(|h| h.info().id() == "turbolift_fuzz::total")
            .expect("`total` is registered");
        let mut options = ServiceOptions::new(SECRET);
        options.max_body = 4096;
        Target {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            router: Service::new(&[handler], &options).router(),
            route: turbolift::naming::route(handler.info().id()),
            batch_route: turbolift::naming::batch_route(handler.info().id()),
            signature: format!("{:016x}", handler.info().signature()),
        }
    })
}

/// Sends the request `data` describes and checks the answer; panics on a wrong one.
/// Returns the answer's status.
pub fn exercise(data: &[u8]) -> u16 {
    let target = target();
    let (choice, headers, body) = match data {
        [c, h, rest @ ..] => (*c, *h, rest),
        _ => (0, 0, data),
    };
    let path = match choice % 8 {
        0..=2 => target.route.clone(),
        3..=4 => target.batch_route.clone(),
        5 => "/v1/call/turbolift_fuzz/other".to_owned(),
        6 => protocol::READY_PATH.to_owned(),
        _ => format!(
            "/v1/call/{}",
            String::from_utf8_lossy(&body[..body.len().min(8)])
        ),
    };
    let method = if choice & 0x80 != 0 { "GET" } else { "POST" };
    let Ok(mut builder) = Request::builder()
        .method(method)
        .uri(path.as_str())
        .body(())
    else {
        return 0; // Not a valid URI: no HTTP client could send it.
    };
    let h = builder.headers_mut();
    let pick = |bits: u8| (headers >> bits) & 0b11;
    let secret_ok = pick(0) == 0;
    match pick(0) {
        0 => insert(h, protocol::SECRET_HEADER, SECRET),
        1 => insert(h, protocol::SECRET_HEADER, "wrong"),
        _ => {}
    }
    let type_ok = pick(2) == 0;
    match pick(2) {
        0 => insert(h, "content-type", protocol::CONTENT_TYPE),
        1 => insert(h, "content-type", "application/json"),
        _ => {}
    }
    let protocol_ok = pick(4) == 0;
    if pick(4) != 2 {
        let version = if protocol_ok {
            protocol::PROTOCOL_VERSION
        } else {
            protocol::PROTOCOL_VERSION + 5
        };
        insert(h, protocol::PROTOCOL_HEADER, &version.to_string());
    }
    let signature_ok = pick(6) == 0;
    if pick(6) != 2 {
        let signature = if signature_ok {
            target.signature.as_str()
        } else {
            "00000000deadbeef"
        };
        insert(h, protocol::SIGNATURE_HEADER, signature);
    }
    let request = builder.map(|()| Body::from(body.to_vec()));
    let (status, answer) = target.runtime.block_on(async {
        let response = target
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status().as_u16();
        (
            status,
            to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("a body"),
        )
    });
    assert!(status < 500, "a 5xx for {data:?}: {status} {answer:?}");
    let is_batch = path == target.batch_route && method == "POST";
    if status == 200 && is_batch {
        check_batch(body, &answer);
    }
    let is_call = (path == target.route || is_batch) && method == "POST";
    if status == 200 && path == target.route {
        assert!(
            secret_ok && type_ok && protocol_ok && signature_ok,
            "200 without every check"
        );
        let (order, discount): (Order, u8) =
            turbolift::wire::decode(body).expect("a 200 only for arguments that decode");
        let result: Result<i64, String> =
            turbolift::wire::decode(&answer).expect("a 200 carries the encoded result");
        assert_eq!(result, reference_total(&order, discount), "a wrong value");
    }
    if is_call && status != 401 {
        assert!(
            secret_ok,
            "a call without the secret got past the check: {status}"
        );
    }
    status
}

/// A 200 to a batch: one frame per call, each naming its call once, each the right value.
fn check_batch(body: &[u8], answer: &[u8]) {
    use turbolift::wire::frames::{FrameReader, OK};
    let calls: Vec<(Order, u8)> =
        turbolift::wire::decode(body).expect("a 200 only for a batch that decodes");
    let mut reader = FrameReader::new();
    reader.push(answer);
    let mut frames = Vec::new();
    while let Some(frame) = reader.next_frame().expect("frames") {
        frames.push(frame);
    }
    frames.sort_by_key(|f| f.index);
    assert_eq!(frames.len(), calls.len(), "one frame per call");
    for ((position, (order, discount)), frame) in calls.iter().enumerate().zip(frames) {
        assert_eq!(frame.index, position as u64, "each call answered once");
        let (tag, payload) = (frame.tag, frame.payload);
        assert_eq!(tag, OK, "`total` does not panic");
        let result: Result<i64, String> =
            turbolift::wire::decode(&payload).expect("a frame carries the encoded result");
        assert_eq!(
            result,
            reference_total(order, discount.to_owned()),
            "a wrong value"
        );
    }
    assert_eq!(reader.next_frame().expect("frames"), None, "no extra frame");
    assert!(!reader.has_partial(), "no partial frame");
}

fn insert(headers: &mut axum::http::HeaderMap, name: &'static str, value: &str) {
    headers.insert(name, value.parse().expect("a valid header value"));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The target on a seeded stream of inputs: random bytes, and encodings of real orders
    /// with the header bits and bodies mutated. Runs in the test suite on stable Rust; the
    /// coverage-guided run is `fuzz/run.sh`.
    #[test]
    fn twenty_thousand_seeded_inputs() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
        let mut batches_answered = 0;
        for i in 0..20_000u64 {
            // Half the requests get every header right, so that bodies reach the decoder.
            let headers = if next() % 2 == 0 { 0 } else { next() as u8 };
            let mut input = vec![next() as u8 & 0x07, headers];
            if i % 2 == 0 {
                let order = Order {
                    customer: "c".repeat((next() % 5) as usize),
                    lines: (0..next() % 4)
                        .map(|_| (next() as u32 % 10, next() as i64 % 1000))
                        .collect(),
                    note: (next() % 2 == 0).then(|| "n".to_owned()),
                    priority: match next() % 3 {
                        0 => Priority::Low,
                        1 => Priority::High(next() as u8),
                        _ => Priority::Custom {
                            label: "x".into(),
                            weight: 0.5,
                        },
                    },
                };
                let call = (order, (next() % 120) as u8);
                // A batch body for the batch route: one to three calls.
                let mut body = if matches!(input[0] % 8, 3..=4) {
                    let calls = vec![call; 1 + (next() % 3) as usize];
                    turbolift::wire::encode(&calls).unwrap()
                } else {
                    turbolift::wire::encode(&call).unwrap()
                };
                if next() % 3 == 0 && !body.is_empty() {
                    let at = (next() as usize) % body.len();
                    body[at] ^= 1 << (next() % 8);
                }
                input.extend(body);
            } else {
                input.extend((0..next() % 64).map(|_| next() as u8));
            }
            let status = exercise(&input);
            if status == 200 && matches!(input[0] % 8, 3..=4) {
                batches_answered += 1;
            }
            *statuses.entry(status).or_default() += 1;
        }
        assert!(
            batches_answered > 50,
            "{batches_answered} batches answered 200"
        );
        for status in [200, 400, 401, 404, 409, 415] {
            assert!(
                statuses.get(&status).copied().unwrap_or(0) > 50,
                "{statuses:?}"
            );
        }
    }

    #[test]
    fn the_corpus_seeds_pass() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus/request");
        for entry in std::fs::read_dir(dir).unwrap() {
            exercise(&std::fs::read(entry.unwrap().path()).unwrap());
        }
    }
}
