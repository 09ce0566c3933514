//! A bare HTTP/1.1 connection, for requests that a turbolift client would not send (a
//! wrong secret, a batch of any size in one request).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use turbolift::protocol;

/// One kept-alive connection to a service.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

/// What came back: the status, the headers and the whole body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The `x-turbolift-error` kind, if any.
    pub fn kind(&self) -> Option<&str> {
        self.headers
            .get(protocol::ERROR_HEADER)
            .and_then(|v| v.to_str().ok())
    }
}

impl Connection {
    /// Connects to `url` (`http://host:port`).
    pub async fn open(url: &str) -> Connection {
        let host = url.trim_start_matches("http://").to_owned();
        let stream = TcpStream::connect(&host).await.unwrap();
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        Connection { sender, host }
    }

    /// POSTs `body` to `path` with the headers of a good call of the function whose
    /// signature hash is `signature`, and `secret`; `edit` changes the request first.
    pub async fn post(
        &mut self,
        path: &str,
        signature: u64,
        secret: &str,
        body: Vec<u8>,
        edit: impl FnOnce(&mut Request<Full<Bytes>>),
    ) -> Answer {
        let mut request = Request::post(path)
            .header("host", &self.host)
            .header("content-type", protocol::CONTENT_TYPE)
            .header(
                protocol::PROTOCOL_HEADER,
                protocol::PROTOCOL_VERSION.to_string(),
            )
            .header(protocol::SIGNATURE_HEADER, format!("{signature:016x}"))
            .header(protocol::SECRET_HEADER, secret)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        edit(&mut request);
        self.sender.ready().await.unwrap();
        let response = self.sender.send_request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }
}
