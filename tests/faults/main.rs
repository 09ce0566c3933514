//! The fault-injection suite: real services started by `cargo turbolift run` on 127.0.0.1,
//! broken on purpose — workers killed, every replica down, a hung function, panics,
//! garbage and slow requests, overload, a graceful shutdown under load. Each scenario
//! stops by itself and appends a summary line to `target/faults-summary.txt`.

#[path = "../e2e/support.rs"]
#[allow(dead_code)]
mod support;

mod bad_input;
mod harness;
mod scenarios;
