//! The peers' clients and the loops that time every side's calls.
//!
//! The bare peer's client: a pooled keep-alive hyper-util client with TCP_NODELAY (as
//! turbolift's own), postcard bodies, no turbolift. The tarpc peer ([`tarpc_echo`]): its
//! service, postcard transport and client. The benchmark (`turbolift-bench`) uses them for
//! large calls; the fixture program for sequential calls and calls in flight, in rounds
//! that rotate with turbolift's so that all sides meet the same machine. The loops
//! ([`sequential`], [`in_flight`], [`large_calls`]) are the same for every side.

pub mod tarpc_echo;

use std::future::Future;
use std::time::{Duration, Instant};

pub use tarpc_echo::{EchoClient as TarpcClient, call_tarpc_echo};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The content type of both sides' bodies.
pub const CONTENT: &str = "application/vnd.turbolift.postcard";

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A pooled keep-alive client, configured as turbolift's.
pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// POSTs `body` to `uri`; the answer's body.
pub async fn post_body(client: &HttpClient, uri: &Uri, body: Vec<u8>) -> Bytes {
    let request = Request::post(uri.clone())
        .header(CONTENT_TYPE, CONTENT)
        .body(Full::new(Bytes::from(body)))
        .expect("a request");
    let response = client.request(request).await.expect("the peer answers");
    assert!(response.status().is_success(), "{}", response.status());
    response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes()
}

/// The peer's `echo`: `x + 1`.
pub async fn call_echo(client: &HttpClient, uri: &Uri, x: u64) -> u64 {
    let body = postcard::to_stdvec(&(x,)).expect("encode");
    let answer = post_body(client, uri, body).await;
    postcard::from_bytes(&answer).expect("a u64")
}

/// What `n` sequential calls took.
pub struct Sequential {
    pub p50_us: f64,
    pub p99_us: f64,
    pub calls_per_s: f64,
}

/// `n` calls of `call(i)`, one after another. Both sides' sequential calls are measured
/// with this.
pub async fn sequential<C, F>(n: u64, mut call: C) -> Sequential
where
    C: FnMut(u64) -> F,
    F: Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(n as usize);
    let started = Instant::now();
    for i in 0..n {
        let one = Instant::now();
        call(i).await;
        samples.push(one.elapsed());
    }
    let total = started.elapsed().as_secs_f64();
    samples.sort();
    let percentile = |p: f64| {
        let i = ((samples.len() as f64 * p) as usize).min(samples.len() - 1);
        samples[i].as_secs_f64() * 1e6
    };
    Sequential {
        p50_us: percentile(0.50),
        p99_us: percentile(0.99),
        calls_per_s: n as f64 / total,
    }
}

/// `inflight` tasks, each making `calls_per_task` calls of `call(i)` one after another;
/// calls per second. Both sides' calls in flight are measured with this.
pub async fn in_flight<F>(inflight: u64, calls_per_task: u64, call: fn(u64) -> F) -> f64
where
    F: Future<Output = ()> + Send + 'static,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..inflight)
        .map(|_| {
            tokio::spawn(async move {
                for i in 0..calls_per_task {
                    call(i).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a call task does not panic");
    }
    (inflight * calls_per_task) as f64 / started.elapsed().as_secs_f64()
}

/// The median time of `calls` calls of `call()` after one untimed call; each call must
/// give back `len` bytes. Making the future (`call()`, where a side copies its argument
/// when the call takes it by value) is not timed, awaiting it is. The 10 MiB echo of
/// every side is measured with this.
pub async fn large_calls<C, F>(len: usize, calls: u64, mut call: C) -> Duration
where
    C: FnMut() -> F,
    F: Future<Output = usize>,
{
    assert_eq!(call().await, len);
    let mut times = Vec::with_capacity(calls as usize);
    for _ in 0..calls {
        let one = call();
        let started = Instant::now();
        assert_eq!(one.await, len);
        times.push(started.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}
