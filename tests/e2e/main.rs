//! End-to-end tests of `cargo turbolift`: the real binary, on the fixture crates, with real
//! cargo, real processes and real sockets on 127.0.0.1.
//!
//! Every fixture builds into one shared target directory (`target/e2e`), so dependencies
//! compile once for the whole suite.

mod arm64;
mod diagnostics;
mod docker;
mod generated;
mod kubernetes;
mod lifecycle;
mod linking;
mod output;
mod programs;
mod security;
mod support;
mod tls;
mod tls_memory;
mod traces;
mod workspaces;
