//! The tarpc peer's server and its 10 MiB echo: tarpc 0.38 over TCP with its
//! `serde_transport`, length-delimited postcard frames (the service, codec and client are
//! in `bench/peer`'s `tarpc_echo`, which the fixture program uses for sequential calls
//! and calls in flight).
//!
//! The server runs in a process of its own, as the axum peer's and turbolift's services
//! do: this binary started again with `--tarpc-server`, on a multi-threaded runtime,
//! serving 127.0.0.1 on a port from the OS. Each connection is a tarpc `BaseChannel` whose
//! requests each run on a task of their own (`tokio::spawn`, as tarpc's examples do), so
//! the calls of one connection run concurrently. The client here runs on a runtime of its
//! own in the benchmark's process, as the axum peer's does.

use std::net::SocketAddr;

use futures_util::StreamExt;
use serde_bytes::ByteBuf;
use tarpc::context::Context;
use tarpc::server::{BaseChannel, Channel};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use turbolift_bench_peer::large_calls;
use turbolift_bench_peer::tarpc_echo::{self, Echo};

use crate::Sizes;
use crate::peer::{runtime, serve_until_stdin_closes, server_process};

/// What the server process prints once it listens: this, then its address.
const LISTENING: &str = "tarpc listening on ";

/// The service: the same work as turbolift's `echo` and `blob`.
#[derive(Clone, Copy)]
struct EchoServer;

impl Echo for EchoServer {
    async fn echo(self, _: Context, x: u64) -> u64 {
        x.wrapping_add(1)
    }

    async fn echo_bytes(self, _: Context, data: ByteBuf) -> ByteBuf {
        data
    }
}

/// The `--tarpc-server` mode of this binary: serves on 127.0.0.1 until its stdin closes.
pub fn server_main() {
    serve_until_stdin_closes("tarpc-server", LISTENING, serve);
}

async fn serve(listener: TcpListener) {
    loop {
        let (stream, _) = listener.accept().await.expect("accept");
        let channel = BaseChannel::with_defaults(tarpc_echo::transport(stream));
        tokio::spawn(channel.execute(EchoServer.serve()).for_each(|call| async {
            tokio::spawn(call);
        }));
    }
}

/// The running tarpc server and the client runtime that calls it.
pub struct TarpcPeer {
    addr: SocketAddr,
    server: std::process::Child,
    client: Runtime,
}

impl TarpcPeer {
    pub fn start() -> TarpcPeer {
        let (addr, server) = server_process("--tarpc-server", LISTENING);
        TarpcPeer {
            addr,
            server,
            client: runtime("tarpc-client"),
        }
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Measurement 3 with the same sizes as the fixture's `suite`: MB/s (10^6 bytes of
    /// argument per second of round trip, median call).
    pub fn blob(&self, sizes: Sizes) -> f64 {
        let addr = self.addr;
        self.client.block_on(async move {
            let client = tarpc_echo::connect(addr).await;
            let data: Vec<u8> = (0..sizes.blob_bytes).map(|i| (i % 251) as u8).collect();
            let back = client
                .echo_bytes(tarpc::context::current(), ByteBuf::from(data.clone()))
                .await
                .expect("echo_bytes answers");
            assert!(back.as_slice() == data.as_slice());
            // `echo_bytes` takes its argument by value, as turbolift's `blob` does: the
            // copy is made before the clock starts.
            let median = large_calls(data.len(), sizes.blob_calls, || {
                let arg = ByteBuf::from(data.clone());
                let client = &client;
                async move {
                    let back = client.echo_bytes(tarpc::context::current(), arg).await;
                    back.expect("echo_bytes answers").len()
                }
            })
            .await;
            data.len() as f64 / 1e6 / median.as_secs_f64()
        })
    }
}

impl Drop for TarpcPeer {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
