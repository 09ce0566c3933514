#![doc = include_str!("docs/crate.md")]
#![warn(missing_docs)]

// The runtime below the service's HTTP server is `turbolift-core`, a crate of its own so
// that it compiles beside axum rather than after it; the service side, here, names its
// parts as this crate's own.
#[cfg(all(feature = "service", feature = "tls"))]
pub(crate) use turbolift_core::tls;
#[cfg(all(feature = "service", feature = "otel"))]
pub(crate) use turbolift_core::trace;
pub use turbolift_core::wire;
#[cfg(feature = "service")]
pub(crate) use turbolift_core::{local, placement, shm};

#[cfg(feature = "service")]
pub mod service;

#[doc(hidden)]
pub mod __private;

pub use turbolift_core::distribute;
pub use turbolift_core::{Batch, Error, RemoteError};
pub use turbolift_shared::{duration, naming, protocol};

#[cfg(feature = "distributed")]
pub use turbolift_core::{Config, TlsFiles};

/// The OpenTelemetry API whose span contexts calls carry (`otel` feature): a program's
/// tracer provider must be of this version for its spans' contexts to travel.
#[cfg(feature = "otel")]
pub use turbolift_core::opentelemetry;
/// The `tracing` layer whose span contexts calls carry (`otel` feature): a program's
/// subscriber needs this version's `layer()` for its spans' contexts to travel.
#[cfg(feature = "otel")]
pub use turbolift_core::tracing_opentelemetry;

/// serde, re-exported so that user crates can derive without naming it as a dependency:
/// `#[derive(turbolift::serde::Serialize)] #[serde(crate = "turbolift::serde")]`.
pub use serde;

/// Registers a distributed function with the service runtime. Expanded by
/// `#[turbolift::distribute]`; it expands to nothing unless the `service` feature is on.
#[cfg(feature = "service")]
#[doc(hidden)]
#[macro_export]
macro_rules! __register_handler {
    ($handler:expr) => {
        $crate::__private::inventory::submit! { $handler }
    };
}

/// Registers a distributed function with the service runtime. Expanded by
/// `#[turbolift::distribute]`; it expands to nothing unless the `service` feature is on.
#[cfg(not(feature = "service"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __register_handler {
    ($handler:expr) => {};
}

/// Registers the way to run the crate's `main` (see `service::program_main`). Expanded by
/// `#[turbolift::distribute]` when the generated build asks for it; it expands to nothing
/// unless the `service` feature is on.
#[cfg(feature = "service")]
#[doc(hidden)]
#[macro_export]
macro_rules! __register_program_main {
    ($main:expr) => {
        $crate::__private::inventory::submit! { $crate::service::ProgramMain::new($main) }
    };
}

/// Registers the way to run the crate's `main` (see `service::program_main`). Expanded by
/// `#[turbolift::distribute]` when the generated build asks for it; it expands to nothing
/// unless the `service` feature is on.
#[cfg(not(feature = "service"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __register_program_main {
    ($main:expr) => {};
}
