//! Source-located errors, rendered like rustc's.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use proc_macro2::Span;

/// One problem in a user's source file.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub message: String,
    /// The file, as shown to the user (relative to the package when possible).
    pub file: PathBuf,
    pub source: std::sync::Arc<str>,
    /// 1-based line and 0-based column (in characters) of the span's start and end.
    pub start: (usize, usize),
    pub end: (usize, usize),
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(
        message: impl Into<String>,
        file: &Path,
        source: &std::sync::Arc<str>,
        (first, last): (Span, Span),
        help: Option<String>,
    ) -> Self {
        let start = first.start();
        let end = last.end();
        Diagnostic {
            message: message.into(),
            file: file.to_owned(),
            source: source.clone(),
            start: (start.line, start.column),
            end: (end.line, end.column),
            help,
        }
    }

    /// ```text
    /// error: method `area` cannot be distributed: it takes `self`
    ///   --> src/jobs/stats.rs:14:13
    ///    |
    /// 14 |     fn area(&self) -> f64 {
    ///    |             ^^^^^
    ///    |
    ///    = help: distribute a free function ...
    /// ```
    pub fn render(&self, color: bool) -> String {
        let (red, blue, bold, reset) = if color {
            ("\x1b[1m\x1b[91m", "\x1b[1m\x1b[94m", "\x1b[1m", "\x1b[0m")
        } else {
            ("", "", "", "")
        };
        let (line, column) = self.start;
        let text = self
            .source
            .lines()
            .nth(line.saturating_sub(1))
            .unwrap_or("");
        let width = line.to_string().len();
        let pad = " ".repeat(width);
        let prefix: String = text
            .chars()
            .take(column)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let line_chars = text.chars().count();
        let underline = if self.end.0 == line {
            self.end.1.saturating_sub(column).max(1)
        } else {
            line_chars.saturating_sub(column).max(1)
        };
        let mut out = String::new();
        let _ = writeln!(out, "{red}error{reset}{bold}: {}{reset}", self.message);
        let _ = writeln!(
            out,
            "{pad}{blue}-->{reset} {}:{}:{}",
            self.file.display(),
            line,
            column + 1
        );
        let _ = writeln!(out, "{pad} {blue}|{reset}");
        let _ = writeln!(out, "{blue}{line}{reset} {blue}|{reset} {text}");
        let _ = writeln!(
            out,
            "{pad} {blue}|{reset} {prefix}{red}{}{reset}",
            "^".repeat(underline)
        );
        if let Some(help) = &self.help {
            let _ = writeln!(out, "{pad} {blue}|{reset}");
            let _ = writeln!(out, "{pad} {blue}={reset} {bold}help{reset}: {help}");
        }
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn renders_like_rustc() {
        let source: Arc<str> = Arc::from("fn ok() {}\n    fn area(&self) -> f64 {\n");
        let d = Diagnostic {
            message: "method `area` cannot be distributed".into(),
            file: "src/shapes.rs".into(),
            source,
            start: (2, 12),
            end: (2, 17),
            help: Some("do this instead".into()),
        };
        assert_eq!(
            d.render(false),
            "error: method `area` cannot be distributed\n --> src/shapes.rs:2:13\n  |\n2 |     fn area(&self) -> f64 {\n  |             ^^^^^\n  |\n  = help: do this instead\n\n"
        );
    }
}
