//! The service's HTTP answers, driven in-process with `tower::ServiceExt::oneshot`.

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use axum::response::Response;
use tower::ServiceExt;
use turbolift::protocol::{self, ErrorKind};
use turbolift::service::{Handler, Service, ServiceOptions, registered};
use turbolift::wire;

const SECRET: &str = "router-test-secret";

#[turbolift::distribute]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[turbolift::distribute]
fn explode(n: u32) -> u32 {
    panic!("exploded on {n}")
}

#[turbolift::distribute]
async fn shout(text: String) -> Result<String, String> {
    if text.is_empty() {
        Err("nothing to shout".to_owned())
    } else {
        Ok(text.to_uppercase())
    }
}

/// The handler of this test crate's function `name`.
fn handler(name: &str) -> &'static Handler {
    let id = format!("router::{name}");
    registered()
        .find(|h| h.info().id() == id)
        .unwrap_or_else(|| panic!("`{id}` is registered"))
}

fn service(max_body: usize) -> axum::Router {
    let mut options = ServiceOptions::new(SECRET);
    options.max_body = max_body;
    options.replica = "router-test".to_owned();
    Service::new(
        &[handler("add"), handler("explode"), handler("shout")],
        &options,
    )
    .router()
}

/// A well-formed call of function `name` with `body`; `edit` changes it before it is sent.
fn call(name: &str, body: Vec<u8>, edit: impl FnOnce(&mut Request<Body>)) -> Request<Body> {
    let mut request = batch(name, body, edit);
    *request.uri_mut() = turbolift::naming::route(handler(name).info().id())
        .parse()
        .unwrap();
    request
}

/// A well-formed batch of function `name` with `body`; `edit` changes it before it is sent.
fn batch(name: &str, body: Vec<u8>, edit: impl FnOnce(&mut Request<Body>)) -> Request<Body> {
    let info = handler(name).info();
    let signature = format!("{:016x}", info.signature());
    let mut request = Request::post(turbolift::naming::batch_route(info.id()))
        .header("content-type", protocol::CONTENT_TYPE)
        .header(
            protocol::PROTOCOL_HEADER,
            protocol::PROTOCOL_VERSION.to_string(),
        )
        .header(protocol::SIGNATURE_HEADER, signature)
        .header(protocol::SECRET_HEADER, SECRET)
        .body(Body::from(body))
        .unwrap();
    edit(&mut request);
    request
}

async fn send(request: Request<Body>) -> (StatusCode, Option<String>, Vec<u8>) {
    send_to(service(1024), request).await
}

async fn send_to(
    router: axum::Router,
    request: Request<Body>,
) -> (StatusCode, Option<String>, Vec<u8>) {
    let response: Response = router.oneshot(request).await.unwrap();
    assert_eq!(
        response.headers()[protocol::REPLICA_HEADER],
        "router-test",
        "every answer names its replica"
    );
    let kind = response
        .headers()
        .get(protocol::ERROR_HEADER)
        .map(|v| v.to_str().unwrap().to_owned());
    let status = response.status();
    let body = to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    (status, kind, body)
}

fn text(body: &[u8]) -> String {
    String::from_utf8(body.to_vec()).unwrap()
}

fn assert_refused(answer: &(StatusCode, Option<String>, Vec<u8>), kind: ErrorKind, needle: &str) {
    let (status, got_kind, body) = answer;
    assert_eq!(status.as_u16(), kind.status(), "{}", text(body));
    assert_eq!(got_kind.as_deref(), Some(kind.as_str()));
    let body = text(body);
    assert!(body.contains(needle), "`{body}` should mention `{needle}`");
    assert_eq!(
        body.trim_end().lines().count(),
        1,
        "one-line reason: {body:?}"
    );
}

#[tokio::test]
async fn a_good_call_gets_200_and_the_encoded_result() {
    let (status, kind, body) =
        send(call("add", wire::encode(&(40u64, 2u64)).unwrap(), |_| {})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind, None);
    assert_eq!(wire::decode::<u64>(&body).unwrap(), 42);
}

#[tokio::test]
async fn an_async_function_and_its_own_err_travel_as_the_value() {
    let (status, _, body) = send(call(
        "shout",
        wire::encode(&("hi".to_owned(),)).unwrap(),
        |_| {},
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        wire::decode::<Result<String, String>>(&body).unwrap(),
        Ok("HI".to_owned())
    );
    let (status, _, body) = send(call(
        "shout",
        wire::encode(&(String::new(),)).unwrap(),
        |_| {},
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        wire::decode::<Result<String, String>>(&body).unwrap(),
        Err("nothing to shout".to_owned())
    );
}

#[tokio::test]
async fn garbage_and_truncated_bodies_get_400() {
    let answer = send(call("add", vec![0xff; 30], |_| {})).await;
    assert_refused(
        &answer,
        ErrorKind::BadRequest,
        "not an encoded argument tuple of",
    );
    let mut body = wire::encode(&(300u64, 7u64)).unwrap();
    body.pop();
    assert_refused(
        &send(call("add", body, |_| {})).await,
        ErrorKind::BadRequest,
        "add",
    );
    let mut body = wire::encode(&(1u64, 2u64)).unwrap();
    body.push(0);
    assert_refused(
        &send(call("add", body, |_| {})).await,
        ErrorKind::BadRequest,
        "unexpected byte",
    );
    assert_refused(
        &send(call("add", Vec::new(), |_| {})).await,
        ErrorKind::BadRequest,
        "add",
    );
}

#[tokio::test]
async fn a_missing_or_wrong_secret_gets_401() {
    let body = wire::encode(&(1u64, 2u64)).unwrap();
    let answer = send(call("add", body.clone(), |r| {
        r.headers_mut().remove(protocol::SECRET_HEADER);
    }))
    .await;
    assert_refused(&answer, ErrorKind::Unauthorized, protocol::SECRET_HEADER);
    for wrong in ["router-test-secreT", "router-test-secret2", "", "x"] {
        let answer = send(call("add", body.clone(), |r| {
            r.headers_mut()
                .insert(protocol::SECRET_HEADER, wrong.parse().unwrap());
        }))
        .await;
        assert_refused(&answer, ErrorKind::Unauthorized, "wrong");
    }
}

#[tokio::test]
async fn an_unknown_function_gets_404_naming_what_is_served() {
    let mut request = call("add", Vec::new(), |_| {});
    *request.uri_mut() = "/v1/call/nope/missing".parse().unwrap();
    let answer = send(request).await;
    assert_refused(&answer, ErrorKind::UnknownFunction, "`nope::missing`");
    assert!(text(&answer.2).contains("`router::add`"));
    // Without the secret, the service does not say what it serves.
    let mut request = call("add", Vec::new(), |r| {
        r.headers_mut().remove(protocol::SECRET_HEADER);
    });
    *request.uri_mut() = "/v1/call/nope".parse().unwrap();
    assert_refused(&send(request).await, ErrorKind::Unauthorized, "secret");
}

#[tokio::test]
async fn protocol_and_signature_mismatches_get_409() {
    let body = wire::encode(&(1u64, 2u64)).unwrap();
    let answer = send(call("add", body.clone(), |r| {
        r.headers_mut()
            .insert(protocol::PROTOCOL_HEADER, "999".parse().unwrap());
    }))
    .await;
    assert_refused(&answer, ErrorKind::ProtocolMismatch, "protocol `999`");
    let answer = send(call("add", body, |r| {
        r.headers_mut().insert(
            protocol::SIGNATURE_HEADER,
            "00000000deadbeef".parse().unwrap(),
        );
    }))
    .await;
    assert_refused(&answer, ErrorKind::SignatureMismatch, "different sources");
}

#[tokio::test]
async fn an_oversize_body_gets_413_whether_declared_or_not() {
    let big = wire::encode(&(vec![7u8; 4096],)).unwrap();
    let answer = send(call("add", big.clone(), |_| {})).await;
    assert_refused(&answer, ErrorKind::TooLarge, "TURBOLIFT_MAX_BODY");
    // A streamed body without content-length is cut at the limit too.
    let stream = futures_stream(big);
    let answer = send(call("add", Vec::new(), |r| {
        *r.body_mut() = stream;
        r.headers_mut().remove("content-length");
    }))
    .await;
    assert_refused(&answer, ErrorKind::TooLarge, "limit of 1024 bytes");
}

fn futures_stream(bytes: Vec<u8>) -> Body {
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = bytes
        .chunks(100)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    Body::from_stream(iter_stream(chunks))
}

fn iter_stream<T: Send + Unpin + 'static>(
    items: Vec<T>,
) -> impl futures_core::Stream<Item = T> + Send {
    struct Iter<T>(std::vec::IntoIter<T>);
    impl<T> futures_core::Stream for Iter<T>
    where
        T: Unpin,
    {
        type Item = T;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Iter(items.into_iter())
}

#[tokio::test]
async fn a_wrong_content_type_gets_415() {
    let body = wire::encode(&(1u64, 2u64)).unwrap();
    let answer = send(call("add", body.clone(), |r| {
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
    }))
    .await;
    assert_refused(&answer, ErrorKind::UnsupportedMediaType, "application/json");
    let answer = send(call("add", body, |r| {
        r.headers_mut().remove("content-type");
    }))
    .await;
    assert_refused(&answer, ErrorKind::UnsupportedMediaType, "got `none`");
}

#[tokio::test]
async fn a_panic_gets_500_with_its_message_and_the_service_keeps_serving() {
    let router = service(1024);
    let answer = send_to(
        router.clone(),
        call("explode", wire::encode(&(9u32,)).unwrap(), |_| {}),
    )
    .await;
    assert_refused(&answer, ErrorKind::Panic, "exploded on 9");
    let (status, _, body) = send_to(
        router,
        call("add", wire::encode(&(1u64, 1u64)).unwrap(), |_| {}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(wire::decode::<u64>(&body).unwrap(), 2);
}

#[tokio::test]
async fn health_readiness_and_other_paths() {
    for path in [protocol::HEALTH_PATH, protocol::READY_PATH] {
        let (status, kind, _) = send(Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!((status, kind), (StatusCode::OK, None), "{path}");
    }
    let (status, _, body) = send(Request::get("/nope").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(text(&body).contains(protocol::READY_PATH));
    let (status, _, _) = send(
        Request::get(turbolift::naming::route("router::add"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

/// The frames of a batch's answer as `(tag, payload)`, in the order of the calls.
fn frames(body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut reader = wire::frames::FrameReader::new();
    reader.push(body);
    let mut frames = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        frames.push((frame.index, frame.tag, frame.payload.to_vec()));
    }
    assert!(!reader.has_partial(), "no partial frame");
    // Frames come as the calls finish; each names its call, once.
    frames.sort_by_key(|(index, _, _)| *index);
    for (position, (index, _, _)) in frames.iter().enumerate() {
        assert_eq!(*index, position as u64, "one frame per call");
    }
    let frames: Vec<(u8, Vec<u8>)> = frames
        .into_iter()
        .map(|(_, tag, payload)| (tag, payload))
        .collect();
    frames
}

#[tokio::test]
async fn a_batch_answers_one_frame_per_call() {
    let calls = vec![(1u64, 2u64), (40, 2), (u64::MAX - 1, 1)];
    let (status, kind, body) = send(batch("add", wire::encode(&calls).unwrap(), |_| {})).await;
    assert_eq!((status, kind), (StatusCode::OK, None));
    let sums: Vec<u64> = frames(&body)
        .into_iter()
        .map(|(tag, payload)| {
            assert_eq!(tag, wire::frames::OK);
            wire::decode(&payload).unwrap()
        })
        .collect();
    assert_eq!(sums, [3, 42, u64::MAX]);

    // Each call panics on its own; the answer is still 200, one panic frame per call.
    let (status, _, body) = send(batch(
        "explode",
        wire::encode(&vec![(7u32,), (8,)]).unwrap(),
        |_| {},
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    let panics: Vec<(u8, String)> = frames(&body)
        .into_iter()
        .map(|(tag, payload)| (tag, text(&payload)))
        .collect();
    assert_eq!(
        panics,
        [
            (wire::frames::PANIC, "exploded on 7".to_owned()),
            (wire::frames::PANIC, "exploded on 8".to_owned())
        ]
    );

    // An async function, and an empty batch.
    let texts = vec![("hi".to_owned(),), (String::new(),)];
    let (_, _, body) = send(batch("shout", wire::encode(&texts).unwrap(), |_| {})).await;
    let shouted: Vec<Result<String, String>> = frames(&body)
        .into_iter()
        .map(|(_, payload)| wire::decode(&payload).unwrap())
        .collect();
    assert_eq!(
        shouted,
        [Ok("HI".to_owned()), Err("nothing to shout".to_owned())]
    );
    let (status, _, body) = send(batch("add", vec![0], |_| {})).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 0));
}

#[tokio::test]
async fn a_bad_batch_is_refused_before_any_call_runs() {
    // Claims five calls, carries none.
    let answer = send(batch("explode", vec![5], |_| {})).await;
    assert_refused(
        &answer,
        ErrorKind::BadRequest,
        "not a batch of argument tuples of `router::explode`",
    );
    // One call, then a stray byte.
    let mut padded = wire::encode(&vec![(1u64, 2u64)]).unwrap();
    padded.push(0);
    let answer = send(batch("add", padded, |_| {})).await;
    assert_refused(&answer, ErrorKind::BadRequest, "unexpected byte");
    let answer = send(batch("add", vec![0], |r| {
        r.headers_mut().remove(protocol::SECRET_HEADER);
    }))
    .await;
    assert_refused(&answer, ErrorKind::Unauthorized, protocol::SECRET_HEADER);
    let answer = send(batch("add", vec![0], |r| {
        r.headers_mut().insert(
            protocol::SIGNATURE_HEADER,
            "0000000000000000".parse().unwrap(),
        );
    }))
    .await;
    assert_refused(&answer, ErrorKind::SignatureMismatch, "different sources");
    let mut unknown = batch("add", vec![0], |_| {});
    *unknown.uri_mut() = "/v1/batch/router/nope".parse().unwrap();
    assert_refused(
        &send(unknown).await,
        ErrorKind::UnknownFunction,
        "`router::add`",
    );
}

/// `GET /v1/metrics` with `secret` (none: no header) and `accept`; the status, the
/// content type and the text.
async fn scrape(
    router: axum::Router,
    secret: Option<&str>,
    accept: Option<&str>,
) -> (StatusCode, String, String) {
    let mut request = Request::get(protocol::METRICS_PATH);
    if let Some(secret) = secret {
        request = request.header(protocol::SECRET_HEADER, secret);
    }
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = router
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let status = response.status();
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, content_type, text(&body))
}

fn metrics_service(public: bool) -> axum::Router {
    let mut options = ServiceOptions::new(SECRET);
    options.replica = "router-test".to_owned();
    Service::new(&[handler("add"), handler("explode")], &options)
        .public_metrics(public)
        .router()
}

#[tokio::test]
async fn metrics_need_the_secret_unless_public() {
    let router = metrics_service(false);
    for wrong in [None, Some("router-test-secreT")] {
        let (status, _, body) = scrape(router.clone(), wrong, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(body.contains(protocol::SECRET_HEADER), "{body}");
        assert!(!body.contains("turbolift_calls"), "{body}");
    }
    let (status, content_type, body) = scrape(router.clone(), Some(SECRET), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(
        body.contains("turbolift_calls_total{function=\"router::add\"} 0\n"),
        "{body}"
    );
    assert!(
        body.contains("turbolift_errors_total{kind=\"unauthorized\"} 2\n"),
        "the two refused scrapes are counted: {body}"
    );

    let public = metrics_service(true);
    let (status, _, body) = scrape(public, None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("# TYPE turbolift_calls_total counter"),
        "{body}"
    );
}

#[tokio::test]
async fn metrics_are_openmetrics_when_asked_for() {
    // What Prometheus sends.
    let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (status, content_type, body) = scrape(metrics_service(true), None, Some(accept)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(body.contains("# TYPE turbolift_calls counter\n"), "{body}");
    assert!(
        body.contains("# TYPE turbolift_service_time_seconds histogram\n"),
        "{body}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
}

#[tokio::test]
async fn metrics_count_calls_panics_and_batches() {
    let router = metrics_service(false);
    for n in 0..3u64 {
        let answer = send_to(
            router.clone(),
            call("add", wire::encode(&(n, 1u64)).unwrap(), |_| {}),
        )
        .await;
        assert_eq!(answer.0, StatusCode::OK);
    }
    let answer = send_to(
        router.clone(),
        call("explode", wire::encode(&(7u32,)).unwrap(), |_| {}),
    )
    .await;
    assert_eq!(answer.1.as_deref(), Some("panic"));
    let calls = vec![(1u64, 2u64), (3, 4)];
    let answer = send_to(
        router.clone(),
        batch("add", wire::encode(&calls).unwrap(), |_| {}),
    )
    .await;
    assert_eq!(answer.0, StatusCode::OK);
    let (_, _, body) = scrape(router, Some(SECRET), None).await;
    for line in [
        "turbolift_calls_total{function=\"router::add\"} 5",
        "turbolift_calls_total{function=\"router::explode\"} 1",
        "turbolift_errors_total{function=\"router::explode\",kind=\"panic\"} 1",
        "turbolift_errors_total{function=\"router::add\",kind=\"panic\"} 0",
        "turbolift_batches_total{function=\"router::add\"} 1",
        "turbolift_batch_calls_total{function=\"router::add\"} 2",
        "turbolift_calls_in_flight{function=\"router::add\"} 0",
        "turbolift_service_time_seconds_count{function=\"router::add\"} 5",
        "turbolift_calls_waiting 0",
    ] {
        assert!(body.contains(&format!("{line}\n")), "`{line}` in:\n{body}");
    }
}
