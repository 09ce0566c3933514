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

use std::sync::atomic::Ordering;

use http::{HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use turbolift_shared::protocol::{self, ErrorKind};

use coalesce::{Entry, Went};
pub use config::Config;
use quiet::{Quiet, QuietExecutor, quietly};
use remote::Replica;
pub(crate) use remote::{Remote, RemoteCache};
use retry::{Refusal, Retry};

use crate::__private::Wire;
use crate::shm::{self, Region};
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
            Entry::Gathered(gathered) => match tokio::time::timeout(remote.timeout, async {
                match gathered.went(remote).await {
                    Went::Together(answer) => answer.map(Encoded::whole),
                    Went::Alone => attempts(remote, body, byte_buffer).await,
                }
            })
            .await
            {
                Ok(answer) => answer,
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
    // Large arguments go through shared memory when the run has it: written once, read
    // by every attempt. Their buffer is freed at once, before the result's is allocated,
    // so that the allocator gives the same memory to the next large buffer rather than
    // trimming both and faulting fresh pages in again at every call.
    let (args, body) = match large_arguments(remote, &body) {
        Some(region) => {
            let len = body.len();
            drop(body);
            (Some((region, len)), Encoded::default())
        }
        None => (None, body),
    };
    let mut retry = Retry::new(remote);
    let mut first = true;
    while let Some(index) = retry.next(None, 1).await {
        let replica = &remote.replicas[index];
        let outcome = {
            let _in_flight = replica.begin();
            let args = args.as_ref().map(|(region, len)| (region, *len));
            send(remote, replica, &body, args, byte_buffer).await
        };
        match outcome {
            Ok(answer) => {
                // Kept for a later call only when no other attempt may still be reading it.
                if let (Some(dir), Some((region, _)), true) = (&remote.shm, args, first) {
                    dir.give_back(region);
                }
                return Ok(answer);
            }
            Err(refusal) => {
                if let Refusal::Retry(reason) = &refusal {
                    tracing::debug!(target: "turbolift::client", function = remote.info.id(), replica = %replica.base, %reason, "retrying on another replica");
                }
                retry.refused(index, refusal, None).await?;
            }
        }
        first = false;
    }
    Err(retry.unavailable())
}

/// A region of shared memory holding `body`, when it is long enough and the run has
/// shared memory; else `None`, and the body goes over TCP.
fn large_arguments(remote: &Remote, body: &Encoded) -> Option<Region> {
    let dir = remote.shm.as_ref().filter(|_| body.len() >= shm::MIN_LEN)?;
    match dir.holding(body) {
        Ok(region) => Some(region),
        Err(e) => {
            tracing::debug!(target: "turbolift::client", function = remote.info.id(), error = %e, "arguments over TCP: no region of shared memory");
            None
        }
    }
}

/// One attempt: `body`, or with `args` the arguments' region and their length (the
/// body is then empty).
async fn send(
    remote: &Remote,
    replica: &Replica,
    body: &Encoded,
    args: Option<(&Region, usize)>,
    byte_buffer: bool,
) -> Result<Encoded, Refusal> {
    let dir = remote.shm.as_deref();
    // A region for the result, when it may be long: offered, used only if it is.
    let mut reply = dir
        .filter(|_| args.is_some() || remote.large_results.load(Ordering::Relaxed))
        .and_then(|dir| dir.take().ok());
    let shm = ShmRequest {
        args: args.map(|(region, len)| (region.name(), len)),
        reply: reply.as_ref().map(Region::name),
    };
    let (headers, body) = post_request(remote, replica, &replica.uri, body.clone(), &shm).await?;
    if let Some(len) = headers.get(protocol::SHM_RESULT_HEADER) {
        // Decoded from the region itself, which goes back to the free ones afterwards.
        let lent = reply
            .take()
            .zip(remote.shm.clone())
            .ok_or_else(|| "no region was offered".to_owned())
            .and_then(|(region, dir)| {
                let len = len
                    .to_str()
                    .ok()
                    .and_then(|l| l.parse().ok())
                    .ok_or_else(|| format!("its length {len:?} is not a number"))?;
                region.lend(dir, len).map_err(|e| e.to_string())
            })
            .map_err(|e| {
                Refusal::Fatal(Error::Remote {
                    function: remote.info.id().to_owned(),
                    error: RemoteError::Internal(format!(
                        "the service answered with a result in shared memory that cannot be read: {e}"
                    )),
                })
            })?;
        return Ok(Encoded::whole(lent));
    }
    let answer = read_all(body, usize::MAX, byte_buffer)
        .await
        .map_err(|e| Refusal::Retry(format!("connection lost in the answer: {e}")))?;
    if let Some(dir) = dir {
        if let Some(region) = reply {
            dir.give_back(region);
        }
        if answer.len() >= shm::MIN_LEN {
            remote.large_results.store(true, Ordering::Relaxed);
        }
    }
    Ok(answer)
}

/// What a call's request says of shared memory: where its arguments are (a region's name
/// and their length), and the region offered for its result.
#[derive(Default)]
struct ShmRequest<'a> {
    args: Option<(&'a str, usize)>,
    reply: Option<&'a str>,
}

/// POSTs `body` to `uri` on `replica`: the answer's body on a `200`, else why not.
pub(crate) async fn post(
    remote: &Remote,
    replica: &Replica,
    uri: &http::Uri,
    body: Encoded,
) -> Result<hyper::body::Incoming, Refusal> {
    let (_, body) = post_request(remote, replica, uri, body, &ShmRequest::default()).await?;
    Ok(body)
}

/// POSTs `body` to `uri` on `replica`, with `shm`'s headers: the answer's headers and
/// body on a `200`, else why not.
async fn post_request(
    remote: &Remote,
    replica: &Replica,
    uri: &http::Uri,
    body: Encoded,
    shm: &ShmRequest<'_>,
) -> Result<(http::HeaderMap, hyper::body::Incoming), Refusal> {
    // The headers are built once per function (`Remote::headers`), the URI once per
    // replica: a request is clones of them.
    let mut request = Request::new(Chunks::new(body));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri.clone();
    *request.headers_mut() = remote.headers.clone();
    if let Some((name, len)) = shm.args
        && let Ok(value) = HeaderValue::from_str(&format!("{name} {len}"))
    {
        request
            .headers_mut()
            .insert(HeaderName::from_static(protocol::SHM_ARGS_HEADER), value);
    }
    if let Some(value) = shm.reply.and_then(|name| HeaderValue::from_str(name).ok()) {
        request
            .headers_mut()
            .insert(HeaderName::from_static(protocol::SHM_REPLY_HEADER), value);
    }
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
        return Ok((parts.headers, body));
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
