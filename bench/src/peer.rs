//! The bare peer: an axum 0.8 server and a hyper-util pooled client, postcard bodies, no
//! turbolift. The server runs on its own multi-threaded runtime, in a process of its own
//! (this binary started again with `--peer-server`, as a hand-written RPC server would be
//! deployed, and as turbolift's services are) or, for reference, on a thread of the
//! benchmark's process; the client on another runtime in the benchmark's process, as the
//! fixture's `#[tokio::main]` does.

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::serve::ListenerExt;
use http::Uri;
use serde_bytes::ByteBuf;
use tokio::runtime::Runtime;
use turbolift_bench_peer::{HttpClient, call_echo, large_calls, post_body, sequential};

use crate::Sizes;

/// The figures of measurement 3.
pub struct Blob {
    pub mb_per_s: f64,
    pub vec_mb_per_s: f64,
}

/// A running peer server and the client runtime that calls it.
pub struct Peer {
    addr: SocketAddr,
    server: Server,
    client: Runtime,
}

/// Where the peer's server runs.
enum Server {
    Thread(Option<Runtime>),
    Process(std::process::Child),
}

/// What the server process prints once it listens: this, then its address.
const LISTENING: &str = "peer listening on ";

fn router() -> Router {
    Router::new()
        .route("/echo", post(echo))
        .route("/blob", post(blob))
        .route("/blob-vec", post(blob_vec))
        .layer(DefaultBodyLimit::disable())
}

/// A multi-threaded runtime (a worker per core, as turbolift's services and the fixture's
/// `#[tokio::main]` have), its threads named `name`.
pub fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(name)
        .build()
        .expect("a runtime")
}

async fn serve_on(listener: tokio::net::TcpListener) {
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router())
        .await
        .expect("the peer serves");
}

/// The `--peer-server` mode of this binary: serves on 127.0.0.1 until its stdin closes.
pub fn server_main() {
    serve_until_stdin_closes("peer-server", LISTENING, serve_on);
}

/// A server process's life ([`server_process`] starts it): on a runtime of its own,
/// `serve` serves on 127.0.0.1, port 0, whose address is printed after `listening`, until
/// stdin closes.
pub fn serve_until_stdin_closes<F>(
    name: &str,
    listening: &str,
    serve: impl FnOnce(tokio::net::TcpListener) -> F,
) where
    F: Future<Output = ()> + Send + 'static,
{
    let server = runtime(name);
    let listener = server
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1:0");
    println!("{listening}{}", listener.local_addr().expect("address"));
    server.spawn(serve(listener));
    // The benchmark holds our stdin: when it ends, so do we.
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
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
    /// The peer, its server in a process of its own (`in_process`: on a thread here).
    pub fn start(in_process: bool) -> Peer {
        let (addr, server) = if in_process {
            let server = runtime("peer-server");
            let listener = server
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .expect("bind 127.0.0.1:0");
            let addr = listener.local_addr().expect("address");
            server.spawn(serve_on(listener));
            (addr, Server::Thread(Some(server)))
        } else {
            let (addr, child) = server_process("--peer-server", LISTENING);
            (addr, Server::Process(child))
        };
        let client = runtime("peer-client");
        Peer {
            addr,
            server,
            client,
        }
    }

    /// Where the peer's server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sequential p50 in µs over `n` calls of `echo`, after a warm-up: a reference (the
    /// fixture measures 1 and 2 for both sides, in alternating rounds).
    pub fn sequential_p50(&self, n: u64) -> f64 {
        let addr = self.addr;
        self.client.block_on(async move {
            let client = turbolift_bench_peer::client();
            let echo_uri: Uri = format!("http://{addr}/echo").parse().expect("uri");
            let echo = |i| {
                let (client, uri) = (&client, &echo_uri);
                async move { assert_eq!(call_echo(client, uri, i).await, i + 1) }
            };
            sequential(n.min(1000), echo).await;
            sequential(n, echo).await.p50_us
        })
    }

    /// Measurement 3 with the same sizes as the fixture's `suite`.
    pub fn blob(&self, sizes: Sizes) -> Blob {
        let addr = self.addr;
        self.client.block_on(async move {
            let client = turbolift_bench_peer::client();
            let data: Vec<u8> = (0..sizes.blob_bytes).map(|i| (i % 251) as u8).collect();
            Blob {
                mb_per_s: blob_rate(&client, addr, "blob", &data, sizes.blob_calls, true).await,
                vec_mb_per_s: blob_rate(&client, addr, "blob-vec", &data, sizes.blob_calls, false)
                    .await,
            }
        })
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        match &mut self.server {
            Server::Thread(server) => {
                if let Some(server) = server.take() {
                    server.shutdown_background();
                }
            }
            Server::Process(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// This binary started again with `flag`, which makes it a server on 127.0.0.1 that
/// prints `listening` and its address, then serves until its stdin (held by the child
/// handle) closes; the address and the process.
pub fn server_process(flag: &str, listening: &str) -> (SocketAddr, Child) {
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .arg(flag)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start this binary with {flag}: {e}"));
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("the server's address");
    let addr = line
        .trim()
        .strip_prefix(listening)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("the {flag} server said {line:?}"));
    (addr, child)
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
    // The argument is encoded inside the call: the axum peer's call takes it by reference.
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
    let median = large_calls(data.len(), calls, once).await;
    data.len() as f64 / 1e6 / median.as_secs_f64()
}
