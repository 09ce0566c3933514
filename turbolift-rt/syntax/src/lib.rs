//! The grammar of `#[turbolift::distribute(...)]` and the rules a distributed function
//! must follow, written once and used by both the proc-macro and `cargo turbolift`, so
//! that the two can never disagree.

mod args;
mod shape;
mod signature;

pub use args::{DistributeArgs, Replicas, check_quantity};
pub use shape::{Problem, check_function};
pub use signature::signature_hash;

/// Set (to `1`) in the compiler's environment by the build script `cargo turbolift`
/// generates for a binary's service package: the attribute then also registers the way to
/// run the crate's `main`, so that the program's executable can link the same compiled
/// library as the services instead of compiling the binary's code a second time.
pub const PROGRAM_MAIN_ENV: &str = "TURBOLIFT_PROGRAM_MAIN";
