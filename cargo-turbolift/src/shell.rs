//! Status output on stderr, in cargo's style.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use anstyle::{AnsiColor, Style};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::Color;

const STATUS: Style = AnsiColor::Green.on_default().bold();
const ERROR: Style = AnsiColor::Red.on_default().bold();
const WARN: Style = AnsiColor::Yellow.on_default().bold();

/// The spinner drawn on the terminal, if one is: lines written to stderr meanwhile take it
/// off first ([`above_spinner`]).
static SPINNER: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Runs `write`, which writes whole lines to stderr, with the spinner (if one is drawn)
/// taken off the terminal meanwhile and drawn again below the lines: a line written while
/// a spinner turns is never mixed with it.
pub fn above_spinner<R>(write: impl FnOnce() -> R) -> R {
    let spinner = SPINNER.lock().ok().and_then(|s| s.clone());
    match spinner {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// Where messages go and how loud.
#[derive(Clone)]
pub struct Shell {
    verbose: u8,
    quiet: bool,
    color: anstream::ColorChoice,
}

impl Shell {
    pub fn new(verbose: u8, quiet: bool, color: Color) -> Self {
        let color = match color {
            Color::Always => anstream::ColorChoice::Always,
            Color::Never => anstream::ColorChoice::Never,
            Color::Auto => anstream::ColorChoice::Auto,
        };
        Shell {
            verbose,
            quiet,
            color,
        }
    }

    pub fn verbosity(&self) -> u8 {
        self.verbose
    }

    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// The `--color` value to hand to cargo.
    pub fn cargo_color(&self) -> &'static str {
        match self.color {
            anstream::ColorChoice::Always | anstream::ColorChoice::AlwaysAnsi => "always",
            anstream::ColorChoice::Never => "never",
            anstream::ColorChoice::Auto => "auto",
        }
    }

    fn stderr(&self) -> anstream::AutoStream<std::io::Stderr> {
        anstream::AutoStream::new(std::io::stderr(), self.color)
    }

    /// `   Generating 3 services for ...`
    pub fn status(&self, verb: &str, message: impl std::fmt::Display) {
        if self.quiet {
            return;
        }
        above_spinner(|| writeln!(self.stderr(), "{STATUS}{verb:>12}{STATUS:#} {message}")).ok();
    }

    /// A status line shown only with `-v`.
    pub fn verbose_status(&self, verb: &str, message: impl std::fmt::Display) {
        if self.verbose > 0 {
            self.status(verb, message);
        }
    }

    pub fn warn(&self, message: impl std::fmt::Display) {
        above_spinner(|| writeln!(self.stderr(), "{WARN}warning{WARN:#}: {message}")).ok();
    }

    /// Prints an error and its causes, like cargo.
    pub fn error(&self, error: &anyhow::Error) {
        let mut out = self.stderr();
        let _ = writeln!(out, "{ERROR}error{ERROR:#}: {error}");
        for cause in error.chain().skip(1) {
            let _ = writeln!(out, "\nCaused by:\n  {cause}");
        }
    }

    /// Writes already rendered text (diagnostics) to stderr, keeping or dropping its color.
    pub fn print_rendered(&self, text: &str) {
        let _ = write!(self.stderr(), "{text}");
    }

    /// Whether what is written to stderr is coloured, as cargo decides: `--color`, and
    /// for `auto`, `NO_COLOR`, `CLICOLOR`, `CLICOLOR_FORCE` and whether stderr is a
    /// terminal that shows colour (anstream's rules, which the status lines follow too).
    pub fn stderr_has_color(&self) -> bool {
        let choice = match self.color {
            anstream::ColorChoice::Auto => anstream::AutoStream::choice(&std::io::stderr()),
            chosen => chosen,
        };
        choice != anstream::ColorChoice::Never
    }

    pub fn use_color(&self) -> bool {
        match self.color {
            anstream::ColorChoice::Always | anstream::ColorChoice::AlwaysAnsi => true,
            anstream::ColorChoice::Never => false,
            anstream::ColorChoice::Auto => std::io::stderr().is_terminal(),
        }
    }

    /// A spinner for a long step, when stderr is a terminal; plain lines otherwise.
    pub fn spinner(&self, verb: &str, message: impl std::fmt::Display) -> Spinner {
        if self.quiet || !std::io::stderr().is_terminal() {
            self.status(verb, message);
            return Spinner(None);
        }
        self.new_spinner(verb, message)
    }

    /// A spinner for one of several steps whose end a status line announces anyway, when
    /// stderr is a terminal; nothing otherwise.
    pub fn terminal_spinner(&self, verb: &str, message: impl std::fmt::Display) -> Spinner {
        if self.quiet || !std::io::stderr().is_terminal() {
            return Spinner(None);
        }
        self.new_spinner(verb, message)
    }

    fn new_spinner(&self, verb: &str, message: impl std::fmt::Display) -> Spinner {
        // Prefix and message set before the first draw, which shows them.
        let bar = ProgressBar::new_spinner()
            .with_style(
                ProgressStyle::with_template("{prefix:>12.green.bold} {msg} {spinner}")
                    .expect("a valid template"),
            )
            .with_prefix(verb.to_owned())
            .with_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        if let Ok(mut drawn) = SPINNER.lock() {
            *drawn = Some(bar.clone());
        }
        Spinner(Some(bar))
    }
}

/// Clears itself when dropped.
pub struct Spinner(Option<ProgressBar>);

impl Spinner {
    /// No spinner, nothing printed.
    pub fn none() -> Spinner {
        Spinner(None)
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            if let Ok(mut drawn) = SPINNER.lock() {
                *drawn = None;
            }
            bar.finish_and_clear();
        }
    }
}
