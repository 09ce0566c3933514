//! One remote function: its replicas, and the choice among them.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use turbolift_shared::protocol;

use super::config;
use crate::__private::FnInfo;
use crate::Error;
use crate::shm::ShmDir;

/// How long a replica that refused a connection is passed over while others are healthy.
const COOL_DOWN: Duration = Duration::from_millis(250);

/// A function's remote route as resolved from one configuration generation, and whether
/// the process was told that the function has no service. Every call reads the route
/// (a read lock, which only a new configuration's first call waits for as it writes).
pub(crate) struct RemoteCache {
    resolved: RwLock<Option<Resolved>>,
    warned: AtomicBool,
}

struct Resolved {
    generation: u64,
    remote: Option<Arc<Remote>>,
}

impl RemoteCache {
    pub(crate) const fn new() -> Self {
        RemoteCache {
            resolved: RwLock::new(None),
            warned: AtomicBool::new(false),
        }
    }

    /// Says, once per process, that function `id` runs in-process although
    /// `TURBOLIFT_ENDPOINTS` (naming `named` functions) is meant to name every function
    /// with a service: on stderr, which needs no subscriber, and as a `turbolift` event.
    fn warn_no_service(&self, id: &str, named: usize) {
        if self.warned.swap(true, Ordering::Relaxed) {
            return;
        }
        eprintln!("warning: turbolift: {}", no_service_message(id, named));
        tracing::warn!(
            target: "turbolift",
            function = id,
            named,
            "the function has no service in this run, so it runs in this process"
        );
    }
}

/// Why function `id`, which `TURBOLIFT_ENDPOINTS` (naming `named` functions) leaves out,
/// runs in-process, and the ways a function escapes `cargo turbolift`'s discovery.
pub(crate) fn no_service_message(id: &str, named: usize) -> String {
    let others = match named {
        0 => "names no function".to_owned(),
        1 => "names 1 other function".to_owned(),
        n => format!("names {n} other functions"),
    };
    format!(
        "`{id}` has no service in this run ({} {others}), so it runs in this process. \
         cargo turbolift finds functions by reading the source: a function made by a macro, \
         behind a #[cfg] it judged off (as `test`), marked through an attribute path it does \
         not follow, or in a registry or git dependency gets no service \
         (see docs/limitations.md).",
        protocol::env::ENDPOINTS
    )
}

impl FnInfo {
    /// Where calls of this function go: `None` runs it in-process.
    pub(crate) fn remote(&'static self) -> Result<Option<Arc<Remote>>, Error> {
        let generation = config::generation();
        if let Some(resolved) = &*self
            .remote
            .resolved
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            && resolved.generation == generation
        {
            return Ok(resolved.remote.clone());
        }
        let (generation, config) = config::current();
        let config = config?;
        let remote = match config.urls(self.id()) {
            Some(urls) => Some(Arc::new(Remote::new(self, &config, urls)?)),
            None => {
                if let Some(named) = config.functions_named_by_var() {
                    self.remote.warn_no_service(self.id(), named);
                }
                None
            }
        };
        *self
            .remote
            .resolved
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Resolved {
            generation,
            remote: remote.clone(),
        });
        Ok(remote)
    }
}

/// The replicas of one function and what every call to them sends.
pub(crate) struct Remote {
    pub(crate) info: &'static FnInfo,
    pub(crate) replicas: Box<[Replica]>,
    pub(crate) timeout: Duration,
    pub(crate) max_attempts: u32,
    /// What every request carries: content type, protocol version, signature, secret.
    pub(crate) headers: HeaderMap,
    /// The pooled client of the configuration (TLS or not).
    pub(crate) client: Arc<super::HttpClient>,
    /// Calls waiting to be coalesced, and the requests in flight.
    pub(crate) lane: super::coalesce::Lane,
    /// The function's counts for the summary; `None` with `TURBOLIFT_METRICS=off`.
    pub(crate) stats: Option<&'static super::stats::CallStats>,
    /// The run's directory for large bodies through shared memory, if there is one.
    pub(crate) shm: Option<Arc<ShmDir>>,
    /// Whether a result came back at least [`crate::shm::MIN_LEN`] long: from then on every call
    /// offers a region for its result.
    pub(crate) large_results: AtomicBool,
    next: AtomicUsize,
}

pub(crate) struct Replica {
    pub(crate) base: String,
    pub(crate) uri: Uri,
    pub(crate) batch_uri: Uri,
    inflight: AtomicUsize,
    /// Until when, as [`now_millis`] counts, the replica is cooling down.
    cool_until: AtomicU64,
}

impl Remote {
    fn new(info: &'static FnInfo, config: &config::Config, urls: &[String]) -> Result<Self, Error> {
        let route = turbolift_shared::naming::route(info.id());
        let batch_route = turbolift_shared::naming::batch_route(info.id());
        let replicas = urls
            .iter()
            .map(|base| {
                let base = base.trim_end_matches('/').to_owned();
                let parse = |route: &str| {
                    format!("{base}{route}")
                        .parse::<Uri>()
                        .map_err(|e| Error::Config(format!("`{base}` for `{}`: {e}", info.id())))
                };
                Ok(Replica {
                    uri: parse(&route)?,
                    batch_uri: parse(&batch_route)?,
                    base,
                    inflight: AtomicUsize::new(0),
                    cool_until: AtomicU64::new(0),
                })
            })
            .collect::<Result<Box<[Replica]>, Error>>()?;
        let secret = match config.secret_value() {
            Some(s) => {
                let mut value = HeaderValue::from_str(s)
                    .map_err(|_| Error::Config("the secret must be visible ASCII".to_owned()))?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(protocol::CONTENT_TYPE),
        );
        headers.insert(
            HeaderName::from_static(protocol::PROTOCOL_HEADER),
            HeaderValue::from(protocol::PROTOCOL_VERSION),
        );
        headers.insert(
            HeaderName::from_static(protocol::SIGNATURE_HEADER),
            HeaderValue::from_str(&format!("{:016x}", info.signature()))
                .expect("hex digits are a valid header value"),
        );
        if let Some(secret) = secret {
            headers.insert(HeaderName::from_static(protocol::SECRET_HEADER), secret);
        }
        let lane =
            super::coalesce::Lane::new(replicas.len(), config.coalesces() && info.coalesces());
        Ok(Remote {
            info,
            timeout: config.timeout_for(info.id(), info.timeout()),
            max_attempts: config.attempts_for(replicas.len()),
            replicas,
            headers,
            client: super::http_client(config)?,
            lane,
            stats: config
                .keeps_stats()
                .then(|| super::stats::CallStats::of(info.id())),
            shm: config.shm_dir().and_then(shm_dir),
            large_results: AtomicBool::new(false),
            next: AtomicUsize::new(0),
        })
    }

    /// `calls` calls are sent again after an attempt that got no answer.
    pub(crate) fn count_retries(&self, calls: usize) {
        if let Some(stats) = self.stats {
            stats.retried(calls);
        }
    }

    /// The replica for the next attempt: the least loaded among those not yet tried by
    /// this call and not cooling down, ties broken round-robin. When every replica was
    /// tried, any may be tried again.
    pub(crate) fn pick(&self, tried: &[bool]) -> usize {
        let n = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let now = now_millis();
        let all_tried = tried.iter().all(|t| *t);
        let mut best: Option<(usize, (bool, usize))> = None;
        for offset in 0..n {
            let i = (start + offset) % n;
            if tried[i] && !all_tried {
                continue;
            }
            let r = &self.replicas[i];
            let cooling = r.cool_until.load(Ordering::Relaxed) > now;
            let key = (cooling, r.inflight.load(Ordering::Relaxed));
            if best.is_none_or(|(_, k)| key < k) {
                best = Some((i, key));
            }
        }
        best.map_or(start, |(i, _)| i)
    }
}

/// The directory at `path`, or `None` with a warning (once) saying why not.
fn shm_dir(path: &std::path::Path) -> Option<Arc<ShmDir>> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    match ShmDir::shared(path) {
        Ok(dir) => Some(dir),
        Err(e) => {
            if !WARNED.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "warning: turbolift: large bodies go over TCP, not through shared memory: {e} ({})",
                    protocol::env::SHM_DIR
                );
            }
            None
        }
    }
}

impl Replica {
    pub(crate) fn begin(&self) -> InFlight<'_> {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    pub(crate) fn cool_down(&self) {
        let until = now_millis() + COOL_DOWN.as_millis() as u64;
        self.cool_until.store(until, Ordering::Relaxed);
    }
}

/// Counts a call in flight on a replica until dropped.
pub(crate) struct InFlight<'r>(&'r Replica);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn now_millis() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::no_service_message;

    #[test]
    fn the_warning_names_the_function_and_how_many_the_variable_names() {
        let text = no_service_message("engine::made::plus_one", 4);
        assert!(
            text.starts_with(
                "`engine::made::plus_one` has no service in this run \
                 (TURBOLIFT_ENDPOINTS names 4 other functions), so it runs in this process."
            ),
            "{text}"
        );
        assert!(text.contains("made by a macro"), "{text}");
        assert!(
            no_service_message("f", 1).contains("(TURBOLIFT_ENDPOINTS names 1 other function)")
        );
        assert!(no_service_message("f", 0).contains("(TURBOLIFT_ENDPOINTS names no function)"));
    }
}
