//! One module per subcommand. Each only orchestrates: it picks the platform, builds,
//! prepares, starts and stops through `crate::platform` and `crate::build`.

pub mod build;
pub mod clean;
pub mod delete;
pub mod deploy;
pub mod run;
pub mod test;
