//! The accept loop: HTTP/1.1 connections with time limits, at most so many at once, and a
//! graceful drain; the listening socket, bound here or inherited.

use std::future::Future;
use std::os::fd::{FromRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use turbolift_shared::protocol::env;

use super::State;

/// Longest a drain waits for calls in flight before the service exits anyway.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// Largest request head (request line and headers): a call's is a few hundred bytes. It
/// bounds what a connection that sends its head slowly makes the service hold.
const MAX_HEAD: usize = 8 * 1024;
/// Shortest time between two warnings that the connections are at their limit.
const CAP_WARNING_EVERY: Duration = Duration::from_secs(10);

/// Accepts connections until `shutdown` completes, then drains: new calls get a
/// retryable `draining`, idle connections close, calls in flight finish.
///
/// At most `state.max_connections` connections are open at once: at the limit, the loop
/// accepts no more until one closes, and new connections wait in the listening socket's
/// backlog (the kernel holds them, not this process).
pub(super) async fn serve(
    state: Arc<State>,
    router: Router,
    probes: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let service = TowerToHyperService::new(router);
    let tls = Tls::new(&state, probes)?;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // A client that does not finish its request head in time (slow-loris), or sends
        // none on an idle connection, is dropped.
        .header_read_timeout(state.header_timeout)
        .max_header_size(MAX_HEAD)
        .max_buf_size(crate::wire::body::READ_BUFFER)
        .keep_alive(true);
    let connections = state.connections.clone();
    let trim = Arc::new(Trim::default());
    tune_allocator();
    open_files_for(state.max_connections);
    let mut warned: Option<Instant> = None;
    crate::placement::watch(tokio::runtime::Handle::current());
    state.ready.store(true, Ordering::Release);
    tokio::pin!(shutdown);
    loop {
        let permit = match connections.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if warned.is_none_or(|at| at.elapsed() > CAP_WARNING_EVERY) {
                    warned = Some(Instant::now());
                    tracing::warn!(
                        "{} connections are open, as many as {} allows; new connections wait until one closes",
                        state.max_connections,
                        env::MAX_CONNECTIONS
                    );
                }
                tokio::select! {
                    permit = connections.clone().acquire_owned() => {
                        permit.expect("the semaphore of connections is never closed")
                    }
                    () = &mut shutdown => break,
                }
            }
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, say: wait a little rather than spin.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let trim = trim.clone();
                match &tls {
                    None => {
                        let connection =
                            builder.serve_connection(TokioIo::new(stream), service.clone());
                        let watched = graceful.watch(connection);
                        tokio::spawn(async move {
                            let _ = watched.await;
                            drop(permit);
                            trim.closed();
                        });
                    }
                    Some(tls) => {
                        let (tls, builder, service) = (tls.clone(), builder.clone(), service.clone());
                        let watcher = graceful.watcher();
                        let handshake_limit = state.header_timeout;
                        tokio::spawn(async move {
                            tls.serve(stream, handshake_limit, builder, service, watcher).await;
                            drop(permit);
                            trim.closed();
                        });
                    }
                }
            }
            () = &mut shutdown => break,
        }
    }
    state.draining.store(true, Ordering::Release);
    drop(listener);
    tracing::info!("shutting down: finishing the calls in flight");
    if tokio::time::timeout(DRAIN_LIMIT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("calls still running after {DRAIN_LIMIT:?}; exiting anyway");
    }
    Ok(())
}

/// Without the `tls` feature a service cannot be configured for TLS
/// (`ServiceOptions::from_env` refuses), so there is never a TLS side.
#[cfg(not(feature = "tls"))]
#[derive(Clone)]
enum Tls {}

#[cfg(not(feature = "tls"))]
impl Tls {
    fn new(state: &State, _probes: Router) -> std::io::Result<Option<Tls>> {
        match &state.tls {
            None => Ok(None),
            Some(_) => Err(std::io::Error::other(
                "TLS files are given, but this service was built without turbolift's `tls` feature",
            )),
        }
    }

    async fn serve(
        &self,
        _stream: tokio::net::TcpStream,
        _handshake_limit: Duration,
        _builder: http1::Builder,
        _service: TowerToHyperService<Router>,
        _watcher: hyper_util::server::graceful::Watcher,
    ) {
        match *self {}
    }
}

/// The TLS side of a service: every connection's handshake (within the time a request
/// head has), then HTTP over it, with the calls' router for a client that showed a
/// certificate of the authority, and only health and readiness for one that showed none.
#[cfg(feature = "tls")]
#[derive(Clone)]
struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    probes: TowerToHyperService<Router>,
}

#[cfg(feature = "tls")]
impl Tls {
    fn new(state: &State, probes: Router) -> std::io::Result<Option<Tls>> {
        let Some(files) = &state.tls else {
            return Ok(None);
        };
        let config = files.server_config().map_err(std::io::Error::other)?;
        Ok(Some(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            probes: TowerToHyperService::new(probes),
        }))
    }

    async fn serve(
        &self,
        stream: tokio::net::TcpStream,
        handshake_limit: Duration,
        builder: http1::Builder,
        service: TowerToHyperService<Router>,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        // A plaintext request, a client certificate of another authority, or nothing sent
        // in time: the connection closes without an HTTP answer.
        let stream = match tokio::time::timeout(handshake_limit, self.acceptor.accept(stream)).await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!("TLS handshake refused: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake not finished within {handshake_limit:?}");
                return;
            }
        };
        let service = if crate::tls::client_verified(stream.get_ref().1) {
            service
        } else {
            self.probes.clone()
        };
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let _ = watcher.watch(connection).await;
    }
}

/// Raises the soft limit of open files, up to the hard limit, so that the limit of
/// connections is reached before the limit of files (often 1,024), at which accepting
/// fails.
fn open_files_for(connections: usize) {
    // Files besides connections: the listener, logs, the runtime's own.
    let wanted = connections as u64 + 64;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is valid for writes.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 || limit.rlim_cur >= wanted
    {
        return;
    }
    limit.rlim_cur = wanted.min(limit.rlim_max);
    // SAFETY: `limit` is a valid rlimit, within the hard limit.
    unsafe {
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    if limit.rlim_cur < wanted {
        tracing::warn!(
            "the hard limit of open files ({}) allows fewer connections than {} ({connections})",
            limit.rlim_max,
            env::MAX_CONNECTIONS
        );
    }
}

/// The listening socket numbered `fd` that this process inherited
/// (`TURBOLIFT_LISTEN_FD`), checked to be a listening TCP socket, made non-blocking and
/// kept from any process the service starts.
pub(super) fn inherited_listener(fd: RawFd) -> Result<std::net::TcpListener, String> {
    let what = format!("{}={fd}", env::LISTEN_FD);
    // SAFETY: F_GETFD reads the flags of a descriptor number; any number is safe to ask.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(format!(
            "{what} is not an open file descriptor ({})",
            std::io::Error::last_os_error()
        ));
    }
    let option = |name: libc::c_int| -> std::io::Result<libc::c_int> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` and `len` are valid for writes of the sizes given.
        let done = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                name,
                (&raw mut value).cast(),
                &mut len,
            )
        };
        if done == 0 {
            Ok(value)
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    let not_listening = |why: String| {
        format!(
            "{what} is not a listening TCP socket ({why}); `cargo turbolift run` passes one, unset the variable to bind {} instead",
            env::BIND
        )
    };
    let kind = option(libc::SO_TYPE).map_err(|e| not_listening(e.to_string()))?;
    let accepting = option(libc::SO_ACCEPTCONN).map_err(|e| not_listening(e.to_string()))?;
    if kind != libc::SOCK_STREAM {
        return Err(not_listening("not a stream socket".to_owned()));
    }
    if accepting == 0 {
        return Err(not_listening("it does not listen".to_owned()));
    }
    // SAFETY: `fd` is open and a listening stream socket, handed to this process to serve
    // on; nothing else in it uses the number.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    // A Unix socket listens too, but has no IP address.
    listener
        .local_addr()
        .map_err(|e| not_listening(format!("no IP address: {e}")))?;
    // SAFETY: F_SETFD sets the flags of a descriptor this process owns.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == -1 {
        return Err(format!(
            "{what}: cannot mark it close-on-exec: {}",
            std::io::Error::last_os_error()
        ));
    }
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("{what}: cannot make it non-blocking: {e}"))?;
    Ok(listener)
}

/// Gives the memory of closed connections back to the operating system.
///
/// glibc's allocator keeps what a storm of connections freed: in the middle of its heaps
/// until `malloc_trim` is called, and at the end of the heap of each worker thread, which
/// `malloc_trim` does not reach, when the memory got there by merging "fast" chunks, which
/// skips the check that gives it back. So the service turns fast chunks off
/// ([`tune_allocator`]; small blocks still go through glibc's per-thread cache), and
/// after [`TRIM_AFTER_CLOSED`] connections closed, once none closed for a second, calls
/// `malloc_trim`.
#[derive(Default)]
struct Trim {
    closed: AtomicUsize,
    scheduled: AtomicBool,
}

/// Connections that must close before freed memory is returned: a handful of ordinary
/// connections closing is not worth it.
const TRIM_AFTER_CLOSED: usize = 256;

impl Trim {
    fn closed(self: &Arc<Self>) {
        if self.closed.fetch_add(1, Ordering::Relaxed) + 1 < TRIM_AFTER_CLOSED
            || self.scheduled.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let trim = self.clone();
        tokio::spawn(async move {
            // Let the rest of the storm close first, then trim once.
            let mut seen = trim.closed.load(Ordering::Relaxed);
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = trim.closed.load(Ordering::Relaxed);
                if now == seen {
                    break;
                }
                seen = now;
            }
            trim.closed.store(0, Ordering::Relaxed);
            trim.scheduled.store(false, Ordering::Release);
            let _ = tokio::task::spawn_blocking(release_free_memory).await;
        });
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt changes a setting of the allocator, which takes its own lock.
    unsafe {
        libc::mallopt(libc::M_MXFAST, 0);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists, under its locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators (musl's) give freed memory back by themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

#[cfg(test)]
mod tests {
    use super::inherited_listener;

    #[test]
    fn an_inherited_descriptor_must_be_a_listening_tcp_socket() {
        use std::os::fd::{AsRawFd, IntoRawFd};

        // Far above any descriptor a test process opens.
        let error = inherited_listener(999_999).unwrap_err();
        assert!(error.contains("not an open file descriptor"), "{error}");

        let file = std::fs::File::open("/dev/null").unwrap();
        let error = inherited_listener(file.as_raw_fd()).unwrap_err();
        assert!(error.contains("is not a listening TCP socket"), "{error}");

        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let connected = std::net::TcpStream::connect(tcp.local_addr().unwrap()).unwrap();
        let error = inherited_listener(connected.as_raw_fd()).unwrap_err();
        assert!(error.contains("it does not listen"), "{error}");

        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let error = inherited_listener(udp.as_raw_fd()).unwrap_err();
        assert!(error.contains("not a stream socket"), "{error}");

        let dir = std::env::temp_dir().join(format!("turbolift-unix-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let unix = std::os::unix::net::UnixListener::bind(&dir).unwrap();
        let error = inherited_listener(unix.into_raw_fd()).unwrap_err();
        let _ = std::fs::remove_file(&dir);
        assert!(error.contains("no IP address"), "{error}");

        let addr = tcp.local_addr().unwrap();
        let adopted = inherited_listener(tcp.into_raw_fd()).unwrap();
        assert_eq!(adopted.local_addr().unwrap(), addr);
    }
}
