//! The tarpc peer's shared half: its service, its transport and its client call.
//!
//! tarpc 0.38 is the RPC framework written for this shape of work (a trait of async
//! functions, one TCP connection that multiplexes every call of a client), so it is the
//! peer to beat on calls in flight. Its server is `bench/src/tarpc_peer.rs`, a process of
//! its own; its client is used by the fixture program (sequential calls and calls in
//! flight, in rounds with turbolift and the axum peer) and by the benchmark (the 10 MiB
//! echo). The transport is tarpc's `serde_transport`: length-delimited frames (tokio-util's
//! `LengthDelimitedCodec`, frames up to 64 MiB instead of its default 8 MiB, so that the
//! 10 MiB echo fits) over TCP with `TCP_NODELAY`, and the frames are postcard, as
//! turbolift's and the axum peer's bodies are: tarpc's own codecs are bincode (unmaintained,
//! not allowed in this project) and JSON (slower than postcard, which would make tarpc
//! look worse than it is). `echo_bytes` takes and returns `serde_bytes::ByteBuf`, which
//! postcard writes as a length and the bytes in one copy, as the axum peer's `serde_bytes`
//! variant does (a plain `Vec<u8>` goes through serde byte by byte).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;
use tarpc::serde_transport::{self, Transport};
use tarpc::tokio_serde::{Deserializer, Serializer};
use tarpc::tokio_util::codec::LengthDelimitedCodec;
use tokio::net::TcpStream;

/// The echo service: the same two calls as turbolift's `echo` and `blob`.
#[tarpc::service]
pub trait Echo {
    /// `x + 1`.
    async fn echo(x: u64) -> u64;
    /// The argument back.
    async fn echo_bytes(data: ByteBuf) -> ByteBuf;
}

/// postcard as a tokio-serde codec: a frame is one postcard value.
#[derive(Clone, Copy, Debug, Default)]
pub struct Postcard;

impl<T: Serialize> Serializer<T> for Postcard {
    type Error = io::Error;

    fn serialize(self: Pin<&mut Self>, item: &T) -> io::Result<Bytes> {
        postcard::to_stdvec(item)
            .map(Bytes::from)
            .map_err(io::Error::other)
    }
}

impl<T: DeserializeOwned> Deserializer<T> for Postcard {
    type Error = io::Error;

    fn deserialize(self: Pin<&mut Self>, src: &BytesMut) -> io::Result<T> {
        postcard::from_bytes(src).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// The largest frame either side accepts.
pub const MAX_FRAME: usize = 64 << 20;

/// A connection as a tarpc transport: `TCP_NODELAY`, length-delimited postcard frames.
pub fn transport<Item, SinkItem>(
    stream: TcpStream,
) -> Transport<TcpStream, Item, SinkItem, Postcard>
where
    Item: DeserializeOwned,
    SinkItem: Serialize,
{
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let framed = LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_framed(stream);
    serde_transport::new(framed, Postcard)
}

/// A client of the server at `addr`: one connection, every call multiplexed on it (tarpc's
/// default configuration; its dispatch task is spawned on the current tokio runtime).
pub async fn connect(addr: SocketAddr) -> EchoClient {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to the tarpc server");
    EchoClient::new(tarpc::client::Config::default(), transport(stream)).spawn()
}

/// The tarpc peer's `echo`: `x + 1`, with tarpc's default context (a 10 s deadline).
pub async fn call_tarpc_echo(client: &EchoClient, x: u64) -> u64 {
    client
        .echo(tarpc::context::current(), x)
        .await
        .expect("the tarpc server answers")
}
