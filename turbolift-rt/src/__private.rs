//! What `#[turbolift::distribute]` expands to. Not a public API: it may change in any
//! release.

pub use turbolift_core::__private::*;

#[cfg(feature = "service")]
pub use crate::service::BatchSink;
#[cfg(feature = "service")]
pub use crate::service::handler::{
    Handler, Invocation, invoke_async, invoke_async_batch, invoke_blocking, invoke_blocking_batch,
};
