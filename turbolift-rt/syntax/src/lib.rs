//! The grammar of `#[turbolift::distribute(...)]` and the rules a distributed function
//! must follow, written once and used by both the proc-macro and `cargo turbolift`, so
//! that the two can never disagree.

mod args;
mod shape;
mod signature;

pub use args::{DistributeArgs, Replicas, check_quantity};
pub use shape::{Problem, check_function};
pub use signature::signature_hash;
