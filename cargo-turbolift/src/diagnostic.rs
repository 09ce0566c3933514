//! Source-located errors, rendered like rustc's.

use annotate_snippets::{AnnotationKind, Level, Renderer, Snippet};
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

    /// Rendered as rustc renders its errors (with rustc's own renderer,
    /// annotate-snippets):
    ///
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
        let start = self.offset(self.start);
        let end = self
            .offset(self.end)
            .max(start + 1)
            .min(self.source.len().max(start + 1));
        let path = self.file.display().to_string();
        let mut group = Level::ERROR.primary_title(&self.message).element(
            Snippet::source(&*self.source)
                .path(&path)
                .annotation(AnnotationKind::Primary.span(start..end)),
        );
        if let Some(help) = &self.help {
            group = group.element(Level::HELP.message(help));
        }
        let renderer = if color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        format!("{}\n\n", renderer.render(&[group]))
    }

    /// The byte offset of a 1-based line and a 0-based column in characters.
    fn offset(&self, (line, column): (usize, usize)) -> usize {
        let mut offset = 0;
        for (index, text) in self.source.split_inclusive('\n').enumerate() {
            if index + 1 == line {
                return offset
                    + text
                        .char_indices()
                        .nth(column)
                        .map_or(text.trim_end_matches('\n').len(), |(i, _)| i);
            }
            offset += text.len();
        }
        self.source.len()
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
