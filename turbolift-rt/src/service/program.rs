//! The program's `main`, reached through the library its services are built from.
//!
//! `cargo turbolift` compiles a binary's code once: as the library of its service package,
//! which its services' executable links, and which the program's generated executable
//! links too. A library cannot export the binary's private `main`, so when the generated
//! build asks for it (`TURBOLIFT_PROGRAM_MAIN` in the compiler's environment), each
//! `#[turbolift::distribute]` of the crate registers a function that runs `crate::main`
//! and turns what it returns into an exit code, as the standard library does for a
//! binary; [`program_main`] runs it.

use std::process::ExitCode;

use crate::__private::inventory;

/// A registered way to run the crate's `main`: every distributed function of the crate
/// registers one, all alike.
pub struct ProgramMain(fn() -> ExitCode);

impl ProgramMain {
    /// `main` runs the crate's `main` and reports what it returns.
    pub const fn new(main: fn() -> ExitCode) -> Self {
        ProgramMain(main)
    }
}

inventory::collect!(ProgramMain);

/// Runs the `main` of the binary whose library this executable links: the body of the
/// program executable that `cargo turbolift` generates for a binary with distributed
/// functions.
pub fn program_main() -> ExitCode {
    match inventory::iter::<ProgramMain>.into_iter().next() {
        Some(ProgramMain(main)) => main(),
        None => {
            eprintln!(
                "error: this program was built without its `main`: no distributed function of its crate registered it; build it again with `cargo turbolift build`, and if that does not help, report it as a bug of turbolift"
            );
            ExitCode::from(101)
        }
    }
}
