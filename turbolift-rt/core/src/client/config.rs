//! Where the remote functions are, read from the environment (or installed by code).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use turbolift_shared::duration::parse_duration;
use turbolift_shared::protocol::env;

use crate::Error;
use crate::tls::TlsFiles;

/// Timeout of a call when neither the attribute nor the environment gives one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts per call (first try included) unless `TURBOLIFT_MAX_ATTEMPTS` says otherwise;
/// a function with more replicas gets one attempt per replica plus one.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;

/// The remote-call configuration: which functions run as services, where, and how.
///
/// [`Config::from_env`] reads what `cargo turbolift run` sets; [`Config::install`] puts a
/// configuration built in code in place of it (for tests, or a launcher of your own).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Config {
    endpoints: HashMap<String, Vec<String>>,
    secret: Option<String>,
    default_timeout: Option<Duration>,
    timeouts: HashMap<String, Duration>,
    max_attempts: Option<u32>,
    /// The program's certificate and the authority it trusts, for `https://` endpoints.
    tls: Option<TlsFiles>,
    /// `false`: no call is coalesced with others (`TURBOLIFT_COALESCE=off`).
    no_coalescing: bool,
    /// `true`: calls are not counted for the summary (`TURBOLIFT_METRICS=off`).
    no_stats: bool,
    /// The run's directory for large bodies through shared memory (`TURBOLIFT_SHM_DIR`).
    shm_dir: Option<PathBuf>,
    /// The endpoints were read from `TURBOLIFT_ENDPOINTS`, which names every function that
    /// has a service in the run: a function it does not name is warned about.
    endpoints_from_var: bool,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("endpoints", &self.endpoints)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("default_timeout", &self.default_timeout)
            .field("timeouts", &self.timeouts)
            .field("max_attempts", &self.max_attempts)
            .field("tls", &self.tls)
            .field("coalesce", &!self.no_coalescing)
            .field("stats", &!self.no_stats)
            .field("shm_dir", &self.shm_dir)
            .field("endpoints_from_var", &self.endpoints_from_var)
            .finish()
    }
}

impl Config {
    /// An empty configuration: every function runs in-process.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `TURBOLIFT_ENDPOINTS`, `TURBOLIFT_SECRET`, `TURBOLIFT_TIMEOUT`,
    /// `TURBOLIFT_TIMEOUTS`, `TURBOLIFT_MAX_ATTEMPTS`, `TURBOLIFT_COALESCE`,
    /// `TURBOLIFT_METRICS`, `TURBOLIFT_SHM_DIR` and `TURBOLIFT_TLS_CA`/`_CERT`/`_KEY` (see
    /// `docs/configuration.md`).
    pub fn from_env() -> Result<Self, Error> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Like [`Config::from_env`], from any source of variables.
    ///
    /// When `TURBOLIFT_ENDPOINTS` is among them, it is taken to name every function that
    /// has a service: the first call of a function it does not name prints a warning
    /// before running in-process (see `docs/configuration.md`).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let mut config = Config::new();
        if let Some(text) = var(env::ENDPOINTS) {
            config.endpoints_from_var = true;
            for (id, urls) in parse_map(env::ENDPOINTS, &text)? {
                let urls: Vec<String> = urls
                    .split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned)
                    .collect();
                config = config.endpoint(id, urls);
            }
        }
        config.secret = var(env::SECRET).filter(|s| !s.is_empty());
        config.tls = TlsFiles::from_vars(&var).map_err(Error::Config)?;
        config.no_coalescing = !env::switch(env::COALESCE, var(env::COALESCE).as_deref(), true)
            .map_err(Error::Config)?;
        config.no_stats = !env::switch(env::METRICS, var(env::METRICS).as_deref(), true)
            .map_err(Error::Config)?;
        config.shm_dir = var(env::SHM_DIR)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        if let Some(text) = var(env::TIMEOUT) {
            config.default_timeout = Some(
                parse_duration(&text)
                    .map_err(|e| Error::Config(format!("{}: {e}", env::TIMEOUT)))?,
            );
        }
        if let Some(text) = var(env::TIMEOUTS) {
            for (id, value) in parse_map(env::TIMEOUTS, &text)? {
                let d = parse_duration(value)
                    .map_err(|e| Error::Config(format!("{} for `{id}`: {e}", env::TIMEOUTS)))?;
                config.timeouts.insert(id.to_owned(), d);
            }
        }
        if let Some(text) = var(env::MAX_ATTEMPTS) {
            let n: u32 = text
                .trim()
                .parse()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "{} must be a whole number of at least 1, not `{text}`",
                        env::MAX_ATTEMPTS
                    ))
                })?;
            config.max_attempts = Some(n);
        }
        config.validate()?;
        Ok(config)
    }

    /// Sends calls of function `id` (`geo::area`) to these base URLs (`http://host:port`).
    pub fn endpoint<I, S>(mut self, id: impl Into<String>, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.endpoints
            .insert(id.into(), urls.into_iter().map(Into::into).collect());
        self
    }

    /// The shared secret sent with every call.
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.secret = Some(secret.into());
        self
    }

    /// The program's certificate and key, and the authority whose signature a service's
    /// certificate must carry: needed for `https://` endpoints (turbolift's `tls` feature).
    pub fn tls(mut self, files: TlsFiles) -> Self {
        self.tls = Some(files);
        self
    }

    /// Whether concurrent calls of a function may travel together in one batch request
    /// (the default; see `docs/performance.md`). `false` sends every call on its own.
    pub fn coalesce(mut self, on: bool) -> Self {
        self.no_coalescing = !on;
        self
    }

    /// Timeout for functions without `timeout = ".."` in their attribute.
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = Some(timeout);
        self
    }

    /// Timeout for function `id`, winning over its attribute.
    pub fn timeout(mut self, id: impl Into<String>, timeout: Duration) -> Self {
        self.timeouts.insert(id.into(), timeout);
        self
    }

    /// Attempts per call across replicas, the first one included.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// Makes this the configuration of every call from now on, in place of the environment.
    pub fn install(self) -> Result<(), Error> {
        self.validate()?;
        *INSTALLED.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(self));
        GENERATION.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    fn validate(&self) -> Result<(), Error> {
        for (id, urls) in &self.endpoints {
            if urls.is_empty() {
                return Err(Error::Config(format!("`{id}` has no URL")));
            }
            for url in urls {
                let scheme = url
                    .parse::<http::Uri>()
                    .ok()
                    .filter(|u| u.authority().is_some())
                    .and_then(|u| u.scheme_str().map(str::to_owned));
                match scheme.as_deref() {
                    Some("http") => {}
                    Some("https") => self.check_tls(id, url)?,
                    _ => {
                        return Err(Error::Config(format!(
                            "`{url}` (for `{id}`) is not an `http://host:port` or `https://host:port` URL"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether an `https://` endpoint can be reached: with the `tls` feature and files.
    fn check_tls(&self, id: &str, url: &str) -> Result<(), Error> {
        if !cfg!(feature = "tls") {
            return Err(Error::Config(format!(
                "`{url}` (for `{id}`) needs TLS, and this program was built without turbolift's `tls` feature; `cargo turbolift run --tls` builds it in"
            )));
        }
        if self.tls.is_none() {
            return Err(Error::Config(format!(
                "`{url}` (for `{id}`) needs TLS: set {}, {} and {} to the authority's certificate and the program's certificate and key (`cargo turbolift run` does)",
                env::TLS_CA,
                env::TLS_CERT,
                env::TLS_KEY
            )));
        }
        Ok(())
    }

    /// Passes arguments and results of at least 256 KiB through shared memory in `dir`
    /// (a directory of this user, mode `0700`, on a tmpfs) when the service has the same
    /// directory, as `cargo turbolift run` arranges on one machine
    /// (`TURBOLIFT_SHM_DIR`). Not used for `https://` endpoints.
    pub fn shared_memory(mut self, dir: impl Into<PathBuf>) -> Self {
        self.shm_dir = Some(dir.into());
        self
    }

    /// The directory for shared memory, unless the calls go over TLS (every byte then
    /// goes through it, as asked).
    pub(crate) fn shm_dir(&self) -> Option<&Path> {
        self.shm_dir.as_deref().filter(|_| self.tls.is_none())
    }

    pub(crate) fn coalesces(&self) -> bool {
        !self.no_coalescing
    }

    /// Whether calls are counted for the summary at the end of a run.
    pub(crate) fn keeps_stats(&self) -> bool {
        !self.no_stats
    }

    pub(crate) fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    pub(crate) fn urls(&self, id: &str) -> Option<&[String]> {
        self.endpoints.get(id).map(Vec::as_slice)
    }

    /// How many functions `TURBOLIFT_ENDPOINTS` names, when the endpoints were read from it:
    /// then a function it leaves out was missed by whoever set it, not left out on purpose.
    pub(crate) fn functions_named_by_var(&self) -> Option<usize> {
        self.endpoints_from_var.then_some(self.endpoints.len())
    }

    pub(crate) fn secret_value(&self) -> Option<&str> {
        self.secret.as_deref()
    }

    pub(crate) fn timeout_for(&self, id: &str, attribute: Option<Duration>) -> Duration {
        self.timeouts
            .get(id)
            .copied()
            .or(attribute)
            .or(self.default_timeout)
            .unwrap_or(DEFAULT_TIMEOUT)
    }

    pub(crate) fn attempts_for(&self, replicas: usize) -> u32 {
        self.max_attempts.unwrap_or_else(|| {
            DEFAULT_MAX_ATTEMPTS.max(
                u32::try_from(replicas)
                    .unwrap_or(u32::MAX)
                    .saturating_add(1),
            )
        })
    }
}

/// `key=value;key=value`, keys not empty.
fn parse_map<'t>(var: &str, text: &'t str) -> Result<Vec<(&'t str, &'t str)>, Error> {
    text.split(';')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| match entry.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim(), v.trim())),
            _ => Err(Error::Config(format!(
                "{var}: expected `function=value` entries separated by `;`, found `{entry}`"
            ))),
        })
        .collect()
}

/// The configuration installed by `Config::install`, read when a generation is new.
static INSTALLED: RwLock<Option<Arc<Config>>> = RwLock::new(None);
static GENERATION: AtomicU64 = AtomicU64::new(0);
static FROM_ENV: OnceLock<Result<Arc<Config>, Error>> = OnceLock::new();

/// The configuration in force and its generation (which changes on every install).
pub(crate) fn current() -> (u64, Result<Arc<Config>, Error>) {
    let generation = GENERATION.load(Ordering::Acquire);
    let installed = INSTALLED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if let Some(config) = installed {
        return (generation, Ok(config));
    }
    let from_env = FROM_ENV.get_or_init(|| Config::from_env().map(Arc::new));
    (generation, from_env.clone())
}

pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Variables from `pairs`, as `Config::from_vars` and `TlsFiles::from_vars` read them.
    pub(crate) fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn reads_every_variable() {
        let config = Config::from_vars(vars(&[
            (
                env::ENDPOINTS,
                "square=http://127.0.0.1:1,http://127.0.0.1:2; geo::area=http://h:3",
            ),
            (env::SECRET, "s3cret"),
            (env::TIMEOUT, "5s"),
            (env::TIMEOUTS, "geo::area=1m"),
            (env::MAX_ATTEMPTS, "7"),
        ]))
        .unwrap();
        assert_eq!(config.urls("square").unwrap().len(), 2);
        assert_eq!(config.urls("geo::area").unwrap(), ["http://h:3"]);
        assert_eq!(config.urls("other"), None);
        assert_eq!(config.secret_value(), Some("s3cret"));
        assert_eq!(config.timeout_for("square", None), Duration::from_secs(5));
        assert_eq!(
            config.timeout_for("square", Some(Duration::from_secs(9))),
            Duration::from_secs(9)
        );
        assert_eq!(
            config.timeout_for("geo::area", Some(Duration::from_secs(9))),
            Duration::from_secs(60)
        );
        assert_eq!(config.attempts_for(2), 7);
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn only_endpoints_read_from_the_variable_are_taken_as_every_function() {
        let from_var = |value: &str| {
            Config::from_vars(vars(&[(env::ENDPOINTS, value)]))
                .unwrap()
                .functions_named_by_var()
        };
        assert_eq!(from_var("a=http://h:1;b=http://h:2"), Some(2));
        assert_eq!(from_var(""), Some(0));
        assert_eq!(
            Config::from_vars(vars(&[]))
                .unwrap()
                .functions_named_by_var(),
            None
        );
        let in_code = Config::new().endpoint("a", ["http://h:1"]);
        assert_eq!(in_code.functions_named_by_var(), None);
    }

    #[test]
    fn defaults_without_variables() {
        let config = Config::from_vars(vars(&[])).unwrap();
        assert_eq!(config.timeout_for("f", None), DEFAULT_TIMEOUT);
        assert_eq!(config.attempts_for(1), DEFAULT_MAX_ATTEMPTS);
        assert_eq!(config.attempts_for(9), 10);
    }

    #[test]
    fn bad_values_say_which_variable() {
        for (var, value, expected) in [
            (env::ENDPOINTS, "square", "function=value"),
            (env::ENDPOINTS, "square=", "has no URL"),
            (
                env::ENDPOINTS,
                "square=ftp://x",
                "not an `http://host:port` or `https://host:port` URL",
            ),
            (env::TIMEOUT, "soon", "TURBOLIFT_TIMEOUT"),
            (env::TIMEOUTS, "f=3", "TURBOLIFT_TIMEOUTS for `f`"),
            (env::MAX_ATTEMPTS, "0", "TURBOLIFT_MAX_ATTEMPTS"),
            (
                env::COALESCE,
                "sometimes",
                "TURBOLIFT_COALESCE must be `on` or `off`",
            ),
            (
                env::METRICS,
                "maybe",
                "TURBOLIFT_METRICS must be `on` or `off`",
            ),
        ] {
            let err = Config::from_vars(vars(&[(var, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{var}={value}: {err}");
        }
    }
}
