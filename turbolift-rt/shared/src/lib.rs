//! What turbolift's macro, runtime and CLI must agree on, declared once.
//!
//! - [`naming`]: the id, route, service name and Kubernetes name of a distributed function;
//! - [`duration`]: the duration grammar used by `timeout = "30s"` and `TURBOLIFT_TIMEOUT`;
//! - [`protocol`]: the wire protocol's version, paths, headers and media type;
//! - [`probe`]: the blocking readiness probe of a service, for health checks and launchers;
//! - [`stats`]: a program's counts of its remote calls, for the summary at the end of a run.
//!
//! This crate has no dependencies so that every part of turbolift can use it.

pub mod duration;
pub mod naming;
pub mod probe;
pub mod protocol;
pub mod stats;
