//! What `#[turbolift::distribute]` expands to. Not a public API: it may change in any
//! release.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use bytes::Bytes;

pub use crate::wire::{Encoded, is_byte_buffer};
#[cfg(feature = "service")]
pub use inventory;

use crate::local;
use crate::{Batch, Error, batch};

/// Everything known about one distributed function at compile time, plus its cached
/// call route.
pub struct FnInfo {
    module_path: &'static str,
    name: &'static str,
    signature: u64,
    timeout: Option<Duration>,
    coalesce: bool,
    names: OnceLock<Names>,
    #[cfg(feature = "distributed")]
    pub(crate) remote: crate::client::RemoteCache,
    /// Where a service runs the function's calls, as learnt from their running times.
    #[cfg(feature = "service")]
    pub(crate) placement: crate::placement::Placement,
}

struct Names {
    id: String,
    signature_hex: String,
}

impl FnInfo {
    /// `module_path` as `module_path!()` gives it; `signature` from
    /// `turbolift_syntax::signature_hash`; `timeout` from the attribute. Its calls
    /// coalesce unless [`FnInfo::coalescing`] says otherwise.
    pub const fn new(
        module_path: &'static str,
        name: &'static str,
        signature: u64,
        timeout: Option<Duration>,
    ) -> Self {
        FnInfo {
            module_path,
            name,
            signature,
            timeout,
            coalesce: true,
            names: OnceLock::new(),
            #[cfg(feature = "distributed")]
            remote: crate::client::RemoteCache::new(),
            #[cfg(feature = "service")]
            placement: crate::placement::Placement::new(),
        }
    }

    /// The same, with `coalesce` from the attribute (`coalesce = false` gives `false`).
    pub const fn coalescing(self, on: bool) -> Self {
        let mut info = self;
        info.coalesce = on;
        info
    }

    fn names(&self) -> &Names {
        self.names.get_or_init(|| Names {
            id: turbolift_shared::naming::id_from_module_path(self.module_path, self.name),
            signature_hex: format!("{:016x}", self.signature),
        })
    }

    /// The function's id, `crate::module::name`, which routes calls and names it in
    /// messages; see [`turbolift_shared::naming`].
    pub fn id(&self) -> &str {
        &self.names().id
    }

    /// The signature hash checked on each call.
    pub fn signature(&self) -> u64 {
        self.signature
    }

    /// The signature hash as it travels: 16 lower-case hex digits, computed once.
    #[cfg_attr(not(feature = "service"), allow(dead_code))]
    pub fn signature_hex(&self) -> &str {
        &self.names().signature_hex
    }

    /// The timeout given in the attribute, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Whether concurrent calls may travel together in one batch request: the attribute's
    /// `coalesce`, true unless it says `coalesce = false` (see docs/attribute.md).
    pub fn coalesces(&self) -> bool {
        self.coalesce
    }

    /// Where a service runs the function's calls (see `placement`).
    #[cfg(feature = "service")]
    pub fn placement(&self) -> &crate::placement::Placement {
        &self.placement
    }

    pub(crate) fn panic_error(&self, message: String) -> Error {
        Error::Panic {
            function: self.id().to_owned(),
            message,
        }
    }
}

/// What can be an argument or a result of a distributed function.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be sent to or from a turbolift service",
    label = "arguments and results of a distributed function must implement `Serialize + DeserializeOwned + Send + 'static`",
    note = "derive `Serialize` and `Deserialize` for it (serde is re-exported as `turbolift::serde`), and use owned data"
)]
pub trait Wire: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> Wire for T {}

/// Fails to compile, at the argument's type, when it cannot travel.
pub const fn assert_argument<T: Wire>() {}

/// Fails to compile, at the return type, when it cannot travel.
pub const fn assert_result<T: Wire>() {}

/// A call of a synchronous distributed function.
pub async fn call_blocking<A, R, F>(info: &'static FnInfo, args: A, body: F) -> Result<R, Error>
where
    A: Wire,
    R: Wire,
    F: FnOnce(A) -> R + Send + 'static,
{
    #[cfg(feature = "distributed")]
    if let Some(remote) = info.remote()? {
        return crate::client::call(&remote, args).await;
    }
    local::run_blocking(info, move || body(args)).await
}

/// A call of an `async` distributed function.
pub async fn call_async<A, R, F, Fut>(info: &'static FnInfo, args: A, body: F) -> Result<R, Error>
where
    A: Wire,
    R: Wire,
    F: FnOnce(A) -> Fut,
    Fut: Future<Output = R> + Send + 'static,
{
    #[cfg(feature = "distributed")]
    if let Some(remote) = info.remote()? {
        return crate::client::call(&remote, args).await;
    }
    local::run_async(info, body(args)).await
}

/// The batch form of a synchronous distributed function: one call per input.
pub fn batch_blocking<A, R, F>(
    info: &'static FnInfo,
    inputs: impl IntoIterator<Item = A>,
    body: F,
) -> Batch<R>
where
    A: Wire,
    R: Wire,
    F: Fn(A) -> R + Copy + Send + 'static,
{
    match remote_batch(info, inputs) {
        Ok(remote) => remote,
        Err(inputs) => Batch::new(inputs.len(), batch::local_blocking(info, inputs, body)),
    }
}

/// The batch form of an `async` distributed function: one call per input.
pub fn batch_async<A, R, F, Fut>(
    info: &'static FnInfo,
    inputs: impl IntoIterator<Item = A>,
    body: F,
) -> Batch<R>
where
    A: Wire,
    R: Wire,
    F: Fn(A) -> Fut + Send + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    match remote_batch(info, inputs) {
        Ok(remote) => remote,
        Err(inputs) => Batch::new(inputs.len(), batch::local_async(info, inputs, body)),
    }
}

/// The batch over the network when the function is remote (or every call's error when
/// the configuration is invalid); else the inputs back, to run in-process.
fn remote_batch<A: Wire, R: Wire>(
    info: &'static FnInfo,
    inputs: impl IntoIterator<Item = A>,
) -> Result<Batch<R>, Vec<A>> {
    let inputs: Vec<A> = inputs.into_iter().collect();
    #[cfg(feature = "distributed")]
    match info.remote() {
        Err(error) => return Ok(Batch::failed(inputs.len(), error)),
        Ok(Some(remote)) => {
            let len = inputs.len();
            let results = crate::client::batch::run(remote, inputs);
            // The batch's requests carry the context of the span current here.
            #[cfg(feature = "otel")]
            let results = crate::trace::carry(results);
            return Ok(Batch::new(len, results));
        }
        Ok(None) => {}
    }
    #[cfg(not(feature = "distributed"))]
    let _ = info;
    Err(inputs)
}
