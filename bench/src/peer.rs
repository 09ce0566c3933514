//! The bare peer: an axum 0.8 server and a hyper-util pooled client, postcard bodies, no
//! turbolift. The server runs on its own multi-threaded runtime and thread; the client on
//! another runtime, as the fixture's `#[tokio::main]` does.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::serve::ListenerExt;
use http::header::CONTENT_TYPE;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_bytes::ByteBuf;
use tokio::runtime::Runtime;

use crate::Sizes;

const CONTENT: &str = "application/vnd.turbolift.postcard";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// One figure of each of measurements 1-3.
pub struct Suite {
    pub seq_p50_us: f64,
    pub seq_p99_us: f64,
    pub seq_calls_per_s: f64,
    pub par_calls_per_s: f64,
    pub blob_mb_per_s: f64,
    pub blob_vec_mb_per_s: f64,
}

/// A running peer server and the client runtime that calls it.
pub struct Peer {
    addr: SocketAddr,
    server: Option<Runtime>,
    client: Runtime,
}

async fn echo(body: Bytes) -> Vec<u8> {
    let (x,): (u64,) = postcard::from_bytes(&body).expect("a u64");
    postcard::to_stdvec(&x.wrapping_add(1)).expect("encode")
}

async fn blob(body: Bytes) -> Vec<u8> {
    let (data,): (ByteBuf,) = postcard::from_bytes(&body).expect("bytes");
    postcard::to_stdvec(&data).expect("encode")
}

async fn blob_vec(body: Bytes) -> Vec<u8> {
    let (data,): (Vec<u8>,) = postcard::from_bytes(&body).expect("bytes");
    postcard::to_stdvec(&data).expect("encode")
}

impl Peer {
    pub fn start() -> Peer {
        let server = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("peer-server")
            .build()
            .expect("server runtime");
        let listener = server
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("address");
        let app = Router::new()
            .route("/echo", post(echo))
            .route("/blob", post(blob))
            .route("/blob-vec", post(blob_vec))
            .layer(DefaultBodyLimit::disable());
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        server.spawn(async move { axum::serve(listener, app).await });
        let client = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("peer-client")
            .build()
            .expect("client runtime");
        Peer {
            addr,
            server: Some(server),
            client,
        }
    }

    /// One round of measurements 1-3 with the same sizes as the fixture's `suite`.
    pub fn suite(&self, sizes: Sizes) -> Suite {
        let addr = self.addr;
        self.client.block_on(async move {
            let client: HttpClient = {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(60))
                    .pool_max_idle_per_host(256)
                    .build(connector)
            };
            let echo_uri: Uri = format!("http://{addr}/echo").parse().expect("uri");
            for i in 0..sizes.seq.min(1000) {
                call_echo(&client, &echo_uri, i).await;
            }
            let mut samples = Vec::with_capacity(sizes.seq as usize);
            let t = Instant::now();
            for i in 0..sizes.seq {
                let c = Instant::now();
                let v = call_echo(&client, &echo_uri, i).await;
                samples.push(c.elapsed());
                assert_eq!(v, i + 1);
            }
            let seq_total = t.elapsed().as_secs_f64();
            samples.sort();
            let pct = |p: f64| {
                samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64()
                    * 1e6
            };

            let per_task = sizes.par / sizes.inflight;
            let run = |n: u64| {
                let client = client.clone();
                let uri = echo_uri.clone();
                async move {
                    let tasks: Vec<_> = (0..sizes.inflight)
                        .map(|_| {
                            let client = client.clone();
                            let uri = uri.clone();
                            tokio::spawn(async move {
                                for i in 0..n {
                                    assert_eq!(call_echo(&client, &uri, i).await, i + 1);
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.expect("a call task does not panic");
                    }
                }
            };
            run(per_task.div_ceil(10)).await;
            let t = Instant::now();
            run(per_task).await;
            let par = (per_task * sizes.inflight) as f64 / t.elapsed().as_secs_f64();

            let data: Vec<u8> = (0..sizes.blob_bytes).map(|i| (i % 251) as u8).collect();
            let blob_mb = blob_rate(&client, addr, "blob", &data, sizes.blob_calls, true).await;
            let blob_vec_mb =
                blob_rate(&client, addr, "blob-vec", &data, sizes.blob_calls, false).await;
            Suite {
                seq_p50_us: pct(0.50),
                seq_p99_us: pct(0.99),
                seq_calls_per_s: sizes.seq as f64 / seq_total,
                par_calls_per_s: par,
                blob_mb_per_s: blob_mb,
                blob_vec_mb_per_s: blob_vec_mb,
            }
        })
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown_background();
        }
    }
}

async fn post_body(client: &HttpClient, uri: &Uri, body: Vec<u8>) -> Bytes {
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

async fn call_echo(client: &HttpClient, uri: &Uri, x: u64) -> u64 {
    let body = postcard::to_stdvec(&(x,)).expect("encode");
    let answer = post_body(client, uri, body).await;
    postcard::from_bytes(&answer).expect("a u64")
}

/// MB/s (10^6 bytes of argument per second of round trip, median call) of a large echo,
/// with `serde_bytes` on both sides or with plain `Vec<u8>` serde.
async fn blob_rate(
    client: &HttpClient,
    addr: SocketAddr,
    path: &str,
    data: &[u8],
    calls: u64,
    serde_bytes: bool,
) -> f64 {
    let uri: Uri = format!("http://{addr}/{path}").parse().expect("uri");
    let once = || async {
        if serde_bytes {
            let body = postcard::to_stdvec(&(serde_bytes::Bytes::new(data),)).expect("encode");
            let answer = post_body(client, &uri, body).await;
            let back: ByteBuf = postcard::from_bytes(&answer).expect("bytes");
            back.len()
        } else {
            let body = postcard::to_stdvec(&(data,)).expect("encode");
            let answer = post_body(client, &uri, body).await;
            let back: Vec<u8> = postcard::from_bytes(&answer).expect("bytes");
            back.len()
        }
    };
    assert_eq!(once().await, data.len());
    let mut times = Vec::new();
    for _ in 0..calls {
        let t = Instant::now();
        assert_eq!(once().await, data.len());
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    data.len() as f64 / 1e6 / times[times.len() / 2]
}
