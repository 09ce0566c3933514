//! The remote call path: a pooled keep-alive hyper client, replica choice, retries and
//! timeouts. The client's own logging is kept from the program's subscriber ([`quiet`]).

pub(crate) mod batch;
mod coalesce;
mod config;
#[cfg(test)]
pub(crate) use config::tests as config_tests;
mod quiet;
mod remote;
mod retry;
mod stats;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use turbolift_shared::protocol::{self, ErrorKind};

use coalesce::Entry;
pub use config::Config;
use quiet::{Quiet, QuietExecutor, quietly};
use remote::Replica;
pub(crate) use remote::{Remote, RemoteCache};
use retry::{Refusal, Retry};

use crate::__private::Wire;
use crate::wire::Encoded;
use crate::wire::body::{Chunks, READ_BUFFER, read_all};
use crate::{Error, RemoteError, wire};

/// Connections to services: plain TCP, and with the `tls` feature TLS over it for
/// `https://` endpoints (hyper-rustls).
#[cfg(not(feature = "tls"))]
type Connector = HttpConnector;
#[cfg(feature = "tls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

pub(crate) type HttpClient = Client<Connector, Chunks>;

/// Largest error body read from a service: error bodies are one line of text.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The client of the calls under `config`: one pooled client for every plaintext
/// configuration, and one per set of TLS files (which a program rarely changes).
pub(crate) fn http_client(config: &Config) -> Result<Arc<HttpClient>, Error> {
    static PLAIN: OnceLock<Arc<HttpClient>> = OnceLock::new();
    match config.tls_files() {
        None => Ok(PLAIN
            .get_or_init(|| Arc::new(pooled(connector(None))))
            .clone()),
        #[cfg(feature = "tls")]
        Some(files) => {
            static WITH_TLS: std::sync::Mutex<Vec<(crate::TlsFiles, Arc<HttpClient>)>> =
                std::sync::Mutex::new(Vec::new());
            let mut clients = WITH_TLS.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, client)) = clients.iter().find(|(f, _)| f == files) {
                return Ok(client.clone());
            }
            let tls = files.client_config().map_err(Error::Config)?;
            let client = Arc::new(pooled(connector(Some(tls))));
            clients.push((files.clone(), client.clone()));
            Ok(client)
        }
        // Without the feature no `https://` endpoint passes `Config::validate`, so the
        // files are never used.
        #[cfg(not(feature = "tls"))]
        Some(_) => Ok(PLAIN
            .get_or_init(|| Arc::new(pooled(connector(None))))
            .clone()),
    }
}

fn tcp() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    connector
}

#[cfg(not(feature = "tls"))]
fn connector(_tls: Option<()>) -> Connector {
    tcp()
}

/// TLS for `https://` URIs with `tls`'s settings; `None`: plaintext only (an `https://`
/// URI is then refused by the connector, and never reaches it, see [`http_client`]).
#[cfg(feature = "tls")]
fn connector(tls: Option<rustls::ClientConfig>) -> Connector {
    let mut tcp = tcp();
    tcp.enforce_http(false);
    let tls = tls.unwrap_or_else(|| {
        rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    });
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp)
}

fn pooled(connector: Connector) -> HttpClient {
    Client::builder(QuietExecutor)
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .http1_max_buf_size(READ_BUFFER)
        .build(connector)
}

/// Calls the function on one of its replicas within its timeout.
///
/// Only the encoding of the arguments and the decoding of the result depend on the
/// function's types; the exchange itself is compiled once, in this crate, and not again
/// in every crate with a distributed function (see [`exchange`]).
pub(crate) async fn call<A: Wire, R: Wire>(remote: &Arc<Remote>, args: A) -> Result<R, Error> {
    let recording = remote.stats.map(stats::CallStats::start);
    let result = encode_exchange_decode(remote, args).await;
    if let Some(recording) = recording {
        recording.finish(&result);
    }
    result
}

async fn encode_exchange_decode<A: Wire, R: Wire>(
    remote: &Arc<Remote>,
    args: A,
) -> Result<R, Error> {
    let function = remote.info.id();
    let body = wire::encode_owned(args).map_err(|e| Error::Encode {
        function: function.to_owned(),
        detail: e.to_string(),
    })?;
    let answer = exchange(remote, body, wire::is_byte_buffer::<R>()).await?;
    wire::decode_received(answer).map_err(|e| Error::Decode {
        function: function.to_owned(),
        detail: e.to_string(),
    })
}

/// The encoded result of one call, from one of the replicas within the timeout; with
/// `byte_buffer` (the result is a byte buffer alone) a long answer comes in two parts
/// (see `wire::body::read_all`).
///
/// A boxed future made here, so that its code is generated in this crate: an `async fn`
/// awaited only from generic code would be compiled into each caller's crate instead,
/// hyper's client with it.
fn exchange<'a>(
    remote: &'a Arc<Remote>,
    body: Encoded,
    byte_buffer: bool,
) -> Pin<Box<dyn Future<Output = Result<Encoded, Error>> + Send + 'a>> {
    Box::pin(async move {
        let timeout = || Error::Timeout {
            function: remote.info.id().to_owned(),
            after: remote.timeout,
        };
        match coalesce::enter(remote, &body) {
            Entry::Alone(mut slot) => {
                match tokio::time::timeout(remote.timeout, attempts(remote, body, byte_buffer))
                    .await
                {
                    Ok(answer) => {
                        if answer.is_ok() {
                            slot.answered();
                        }
                        answer
                    }
                    Err(_) => Err(timeout()),
                }
            }
            Entry::Gathered(answer) => match tokio::time::timeout(remote.timeout, answer).await {
                Ok(answer) => answer
                    .unwrap_or_else(|_| Err(coalesce::abandoned(remote)))
                    .map(Encoded::whole),
                Err(_) => {
                    // Held up behind a slow call, or the function is slow: either way
                    // its calls go alone from now on.
                    remote
                        .lane
                        .stall(remote.info.id(), "a coalesced call timed out");
                    Err(timeout())
                }
            },
        }
    })
}

/// The call's attempts across the replicas, as [`Retry`] has them; the caller's timeout
/// bounds them all, pauses included.
async fn attempts(remote: &Remote, body: Encoded, byte_buffer: bool) -> Result<Encoded, Error> {
    let mut retry = Retry::new(remote);
    while let Some(index) = retry.next(None, 1).await {
        let replica = &remote.replicas[index];
        let outcome = {
            let _in_flight = replica.begin();
            send(remote, replica, body.clone(), byte_buffer).await
        };
        match outcome {
            Ok(answer) => return Ok(answer),
            Err(refusal) => {
                if let Refusal::Retry(reason) = &refusal {
                    tracing::debug!(function = remote.info.id(), replica = %replica.base, %reason, "retrying on another replica");
                }
                retry.refused(index, refusal, None).await?;
            }
        }
    }
    Err(retry.unavailable())
}

async fn send(
    remote: &Remote,
    replica: &Replica,
    body: Encoded,
    byte_buffer: bool,
) -> Result<Encoded, Refusal> {
    let body = post(remote, replica, &replica.uri, body).await?;
    read_all(body, usize::MAX, byte_buffer)
        .await
        .map_err(|e| Refusal::Retry(format!("connection lost in the answer: {e}")))
}

/// POSTs `body` to `uri` on `replica`: the answer's body on a `200`, else why not.
pub(crate) async fn post(
    remote: &Remote,
    replica: &Replica,
    uri: &http::Uri,
    body: Encoded,
) -> Result<hyper::body::Incoming, Refusal> {
    // The headers are built once per function (`Remote::headers`), the URI once per
    // replica: a request is clones of them.
    let mut request = Request::new(Chunks::new(body));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri.clone();
    *request.headers_mut() = remote.headers.clone();
    #[cfg(feature = "otel")]
    crate::trace::inject(request.headers_mut());
    // hyper-util's client logs its pool's every move: not for the program's subscriber.
    let response = match Quiet::new(quietly(|| remote.client.request(request))).await {
        Ok(response) => response,
        Err(e) if e.is_connect() => {
            replica.cool_down();
            return Err(Refusal::Retry(format!(
                "cannot connect: {}",
                source_chain(&e)
            )));
        }
        // The connection broke before an answer: the replica died or closed it. The
        // function is pure, so running it again elsewhere is safe.
        Err(e) => {
            return Err(Refusal::Retry(format!(
                "connection lost: {}",
                source_chain(&e)
            )));
        }
    };
    let (parts, body) = response.into_parts();
    if parts.status == StatusCode::OK {
        return Ok(body);
    }
    Err(refusal(remote.info.id(), parts, body).await)
}

/// What a non-`200` answer means for the call.
async fn refusal(
    function: &str,
    parts: http::response::Parts,
    body: hyper::body::Incoming,
) -> Refusal {
    let kind = parts
        .headers
        .get(protocol::ERROR_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(ErrorKind::parse);
    let text = match Limited::new(body, MAX_ERROR_BODY).collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes())
            .trim()
            .to_owned(),
        Err(_) => String::new(),
    };
    let function = function.to_owned();
    let remote_error = |e: RemoteError| {
        Refusal::Fatal(Error::Remote {
            function: function.clone(),
            error: e,
        })
    };
    match kind {
        Some(ErrorKind::Busy) => Refusal::Busy(format!("busy ({text})")),
        Some(kind @ (ErrorKind::Draining | ErrorKind::SlowBody)) => {
            Refusal::Retry(format!("{} ({text})", kind.as_str()))
        }
        Some(ErrorKind::Panic) => Refusal::Fatal(Error::Panic {
            function,
            message: text,
        }),
        Some(ErrorKind::SignatureMismatch | ErrorKind::ProtocolMismatch) => {
            Refusal::Fatal(Error::VersionMismatch {
                function,
                detail: text,
            })
        }
        Some(ErrorKind::BadRequest) => remote_error(RemoteError::BadRequest(text)),
        Some(ErrorKind::Unauthorized) => remote_error(RemoteError::Unauthorized(text)),
        Some(ErrorKind::UnknownFunction) => remote_error(RemoteError::UnknownFunction(text)),
        Some(ErrorKind::TooLarge) => remote_error(RemoteError::TooLarge(text)),
        Some(ErrorKind::UnsupportedMediaType) => {
            remote_error(RemoteError::UnsupportedMediaType(text))
        }
        Some(_) => remote_error(RemoteError::Internal(text)),
        // No turbolift answer: a proxy or a dying server in between.
        None if matches!(parts.status.as_u16(), 502..=504) => Refusal::Retry(format!(
            "HTTP {} from something that is not a turbolift service",
            parts.status
        )),
        None => remote_error(RemoteError::Http {
            status: parts.status.as_u16(),
            reason: text.lines().next().unwrap_or_default().to_owned(),
        }),
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
