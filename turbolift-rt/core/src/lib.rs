//! turbolift's runtime below the service's HTTP server. An internal part of
//! [turbolift](https://docs.rs/turbolift), which re-exports what a user may need and adds
//! the service side on axum; what is public here beyond that is for `turbolift` alone and
//! may change in any release.
//!
//! The two are separate crates so that this one, the larger part of the runtime, compiles
//! beside axum rather than after it: `turbolift` with its service side is on the longest
//! chain of a cold `cargo turbolift build`.

mod batch;
mod error;
#[doc(hidden)]
pub mod local;
pub mod wire;

#[cfg(feature = "distributed")]
#[doc(hidden)]
pub mod client;
#[cfg(feature = "service")]
#[doc(hidden)]
pub mod placement;
#[cfg(feature = "service")]
#[doc(hidden)]
pub mod secret;
#[cfg(feature = "distributed")]
#[doc(hidden)]
pub mod shm;
#[cfg(feature = "distributed")]
#[doc(hidden)]
pub mod tls;
#[cfg(feature = "otel")]
#[doc(hidden)]
pub mod trace;

#[doc(hidden)]
pub mod __private;

pub use batch::Batch;
pub use error::{Error, RemoteError};
#[doc(hidden)]
pub use turbolift_macros::distribute;

#[cfg(feature = "distributed")]
pub use client::Config;
#[cfg(feature = "distributed")]
pub use tls::TlsFiles;

/// The OpenTelemetry API whose span contexts calls carry (`otel` feature).
#[cfg(feature = "otel")]
pub use opentelemetry;
/// The `tracing` layer whose span contexts calls carry (`otel` feature).
#[cfg(feature = "otel")]
pub use tracing_opentelemetry;
