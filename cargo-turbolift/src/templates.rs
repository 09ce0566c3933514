//! The templates of every generated file, embedded from `cargo-turbolift/templates/` (so
//! the packaged crate carries them), and the one renderer that fills them in.
//!
//! A placeholder is `{{name}}` (lower-case letters, digits and `_`). Each value is typed
//! for the file it goes into, and the renderer refuses a placeholder without a value, a
//! value without a placeholder, and a value of the wrong type, so that no template can
//! leave a marker behind or silently miss a value:
//!
//! - [`Value::Text`]: a word (letters, digits and `_.:/@+=-`), anywhere, also inside a
//!   string of the file (`"{{service}}-{{.Task.Slot}}"`); `{{.Task.Slot}}` is Docker's own
//!   syntax and is left alone.
//! - [`Value::Lines`]: lines of a text file, for a placeholder alone on its line.
//! - [`Value::Toml`] and [`Value::Yaml`]: a whole value, written `"{{name}}"` so that the
//!   template is a valid file of its format; the quotes go with the placeholder. A TOML
//!   table whose placeholder is alone on its line becomes its `key = value` lines (the
//!   body of a section).
//! - [`Value::Absent`]: the line `key = "{{name}}"` or `key: "{{name}}"` is left out.
//! - [`Value::Rust`]: tokens, in a Rust file.
//!
//! The result is checked by its format's parser and printed the way a person would write
//! it: Rust with prettyplease, TOML and YAML by their printers under the template's
//! leading comment.

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use proc_macro2::TokenStream;

/// A file's format: what its values may be and how the result is checked and printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Rust,
    Toml,
    Yaml,
    /// Dockerfiles and shell scripts: filled in, not parsed.
    Text,
}

/// One embedded template.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    /// Its path under `cargo-turbolift/templates/`.
    pub path: &'static str,
    pub format: Format,
    pub text: &'static str,
}

macro_rules! template {
    ($name:ident, $path:literal, $format:ident) => {
        pub const $name: Template = Template {
            path: $path,
            format: Format::$format,
            text: include_str!(concat!("../templates/", $path)),
        };
    };
}

template!(WORKSPACE_MANIFEST, "workspace/Cargo.toml.in", Toml);
template!(SERVICE_MANIFEST, "service/Cargo.toml.in", Toml);
template!(SERVICE_MAIN, "service/main.rs", Rust);
template!(BUILD_SCRIPT, "service/build.rs", Rust);
template!(PROGRAM_MANIFEST, "program/Cargo.toml.in", Toml);
template!(PROGRAM_MAIN, "program/main.rs", Rust);
template!(LIBRARY_MANIFEST, "library/Cargo.toml.in", Toml);
template!(RUNTIME_MANIFEST, "runtime/Cargo.toml.in", Toml);
template!(RUNTIME_LIB, "runtime/lib.rs", Rust);
template!(SERVICE_DOCKERFILE, "docker/Dockerfile", Text);
template!(PROGRAM_DOCKERFILE, "docker/program.Dockerfile", Text);
template!(COMPOSE, "docker/compose.yaml", Yaml);
template!(COMPOSE_SERVICE, "docker/compose-service.yaml", Yaml);
template!(PUSH_SCRIPT, "docker/push.sh", Text);
template!(SECRET, "kubernetes/secret.yaml", Yaml);
template!(TLS_SECRET, "kubernetes/tls-secret.yaml", Yaml);
template!(DEPLOYMENT, "kubernetes/deployment.yaml", Yaml);
template!(SERVICE, "kubernetes/service.yaml", Yaml);
template!(HPA, "kubernetes/hpa.yaml", Yaml);
template!(JOB, "kubernetes/job.yaml", Yaml);
template!(KUSTOMIZATION, "kubernetes/kustomization.yaml", Yaml);

/// Every template, for the tests that render each one.
#[cfg(test)]
pub const ALL: &[Template] = &[
    WORKSPACE_MANIFEST,
    SERVICE_MANIFEST,
    SERVICE_MAIN,
    BUILD_SCRIPT,
    PROGRAM_MANIFEST,
    PROGRAM_MAIN,
    LIBRARY_MANIFEST,
    RUNTIME_MANIFEST,
    RUNTIME_LIB,
    SERVICE_DOCKERFILE,
    PROGRAM_DOCKERFILE,
    COMPOSE,
    COMPOSE_SERVICE,
    PUSH_SCRIPT,
    SECRET,
    TLS_SECRET,
    DEPLOYMENT,
    SERVICE,
    HPA,
    JOB,
    KUSTOMIZATION,
];

/// A value for a placeholder, typed for the file it goes into.
#[derive(Debug, Clone)]
pub enum Value {
    Text(String),
    Lines(Vec<String>),
    Toml(toml::Value),
    Yaml(serde_json::Value),
    Rust(TokenStream),
    Absent,
}

impl Value {
    pub fn text(text: impl Into<String>) -> Value {
        Value::Text(text.into())
    }

    pub fn toml(value: impl Into<toml::Value>) -> Value {
        Value::Toml(value.into())
    }

    pub fn yaml(value: impl serde::Serialize) -> Value {
        Value::Yaml(serde_json::to_value(value).expect("a value of plain data serializes"))
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::Text(_) => "text",
            Value::Lines(_) => "lines",
            Value::Toml(_) => "a TOML value",
            Value::Yaml(_) => "a YAML value",
            Value::Rust(_) => "Rust tokens",
            Value::Absent => "absent",
        }
    }
}

impl Template {
    /// The template filled in with `values`, checked by its format's parser and printed.
    pub fn render(&self, values: &[(&str, Value)]) -> Result<String> {
        let filled = self
            .fill(values)
            .with_context(|| format!("cannot render the template {}", self.path))?;
        self.print(&filled)
            .with_context(|| format!("the template {} gave an invalid file:\n{filled}", self.path))
    }

    /// The placeholders replaced, line by line.
    fn fill(&self, values: &[(&str, Value)]) -> Result<String> {
        let mut used = vec![false; values.len()];
        let mut out = String::with_capacity(self.text.len() * 2);
        for (number, line) in self.text.lines().enumerate() {
            let at = || format!("line {}: `{}`", number + 1, line.trim());
            let mut lookup = |name: &str| -> Result<&Value> {
                let index = values
                    .iter()
                    .position(|(key, _)| *key == name)
                    .with_context(|| {
                        format!("no value for the placeholder `{{{{{name}}}}}` ({})", at())
                    })?;
                used[index] = true;
                Ok(&values[index].1)
            };
            let placeholders = placeholders(line);
            if placeholders.is_empty() {
                out.push_str(line);
                out.push('\n');
                continue;
            }
            // A placeholder alone on its line: a section's body, lines, or tokens.
            if let [(start, end, name)] = placeholders.as_slice() {
                let (before, after) = (&line[..*start], &line[*end..]);
                let alone = before.trim().trim_end_matches('"').is_empty()
                    && after.trim().trim_start_matches('"').is_empty();
                match lookup(name)? {
                    Value::Lines(lines) if alone => {
                        for l in lines {
                            check_line(l, name)?;
                            let _ = writeln!(out, "{}{l}", before.trim_end_matches('"'));
                        }
                        continue;
                    }
                    Value::Toml(toml::Value::Table(table))
                        if alone && self.format == Format::Toml =>
                    {
                        for (key, value) in table {
                            let key = toml::Value::String(key.clone());
                            let _ = writeln!(out, "{key} = {value}");
                        }
                        continue;
                    }
                    Value::Absent => {
                        let is_entry = (before.trim_end().ends_with(" =\"")
                            || before.trim_end().ends_with(":\"")
                            || before.trim_end().ends_with("= \"")
                            || before.trim_end().ends_with(": \""))
                            && after.trim() == "\"";
                        if !is_entry || !matches!(self.format, Format::Toml | Format::Yaml) {
                            bail!(
                                "an absent value leaves out a `key = \"{{{{{name}}}}}\"` line of TOML or YAML ({})",
                                at()
                            );
                        }
                        continue;
                    }
                    _ => {}
                }
            }
            let mut rest = 0;
            for (start, end, name) in placeholders {
                let value = lookup(name)?;
                let quoted = line[..start].ends_with('"') && line[end..].starts_with('"');
                let text = match (value, self.format) {
                    (Value::Text(text), _) => {
                        check_word(text, name)?;
                        out.push_str(&line[rest..start]);
                        rest = end;
                        out.push_str(text);
                        continue;
                    }
                    (Value::Toml(v), Format::Toml) if quoted => v.to_string(),
                    (Value::Yaml(v), Format::Yaml) if quoted => v.to_string(),
                    (Value::Rust(tokens), Format::Rust) => {
                        out.push_str(&line[rest..start]);
                        rest = end;
                        out.push_str(&tokens.to_string());
                        continue;
                    }
                    (value, format) => bail!(
                        "`{{{{{name}}}}}` got {} where a {format:?} file takes {} ({})",
                        value.kind(),
                        match format {
                            Format::Rust => "text or Rust tokens",
                            Format::Toml => "text, or a TOML value written `\"{{name}}\"`",
                            Format::Yaml => "text, or a YAML value written `\"{{name}}\"`",
                            Format::Text => "text, or lines alone on a line",
                        },
                        at()
                    ),
                };
                out.push_str(&line[rest..start - 1]);
                out.push_str(&text);
                rest = end + 1;
            }
            out.push_str(&line[rest..]);
            out.push('\n');
        }
        let unused: Vec<&str> = values
            .iter()
            .zip(&used)
            .filter(|(_, used)| !**used)
            .map(|((key, _), _)| *key)
            .collect();
        if !unused.is_empty() {
            bail!(
                "the template has no placeholder for {}",
                unused
                    .iter()
                    .map(|k| format!("`{{{{{k}}}}}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(out)
    }

    /// The filled-in text, checked by its format's parser and printed as a person would.
    fn print(&self, filled: &str) -> Result<String> {
        let header = || -> String {
            filled
                .lines()
                .take_while(|l| l.starts_with('#'))
                .map(|l| format!("{l}\n"))
                .collect()
        };
        Ok(match self.format {
            Format::Rust => {
                let file = syn::parse_file(filled).context("not Rust")?;
                format!(
                    "// Generated by `cargo turbolift`; every build writes it again.\n\n{}",
                    pretty_rust(&file)
                )
            }
            Format::Toml => {
                let table: toml::Table = toml::from_str(filled).context("not TOML")?;
                format!("{}\n{}", header(), toml::to_string(&in_cargo_order(table))?)
            }
            Format::Yaml => {
                let value: serde_json::Value =
                    serde_saphyr::from_str(filled).context("not YAML")?;
                format!("{}{}", header(), serde_saphyr::to_string(&value)?)
            }
            Format::Text => filled.to_owned(),
        })
    }
}

/// A manifest's tables in the order cargo's own manifests have them; others after them,
/// in their order.
fn in_cargo_order(mut table: toml::Table) -> toml::Table {
    const ORDER: &[&str] = &[
        "workspace",
        "package",
        "lib",
        "bin",
        "example",
        "lints",
        "dependencies",
        "build-dependencies",
        "features",
        "target",
        "profile",
        "patch",
        "replace",
    ];
    let mut ordered = toml::Table::new();
    for key in ORDER {
        if let Some(value) = table.remove(*key) {
            ordered.insert((*key).to_owned(), value);
        }
    }
    ordered.extend(table);
    ordered
}

/// Each `{{name}}` of a line: its byte range and name.
fn placeholders(line: &str) -> Vec<(usize, usize, &str)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(open) = line[from..].find("{{").map(|i| from + i) {
        let inner = &line[open + 2..];
        let len = inner
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(inner.len());
        let name = &inner[..len];
        if !name.is_empty()
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && inner[len..].starts_with("}}")
        {
            found.push((open, open + 2 + len + 2, name));
            from = open + 2 + len + 2;
        } else {
            from = open + 2;
        }
    }
    found
}

/// Text that cannot break out of its place in any format: no quotes, spaces or newlines.
fn check_word(text: &str, name: &str) -> Result<()> {
    let ok = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.:/@+=-,;".contains(c));
    if !ok {
        bail!(
            "`{{{{{name}}}}}` got `{text}`, which is not a plain word (letters, digits, `_.:/@+=-,;`)"
        );
    }
    Ok(())
}

/// A line of a text file: printable, one line.
fn check_line(text: &str, name: &str) -> Result<()> {
    if text.chars().any(|c| c.is_control()) {
        bail!("`{{{{{name}}}}}` got a line with a control character: {text:?}");
    }
    Ok(())
}

/// prettyplease's output with a blank line after the inner docs and between top-level
/// items, as a person would write it.
fn pretty_rust(file: &syn::File) -> String {
    let text = prettyplease::unparse(file);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::with_capacity(text.len() + 64);
    for (i, line) in lines.iter().enumerate() {
        out.push_str(line);
        out.push('\n');
        let Some(next) = lines.get(i + 1) else { break };
        let ends_item = !line.starts_with(' ') && (*line == "}" || line.ends_with(';'));
        let ends_docs = line.starts_with("//!") && !next.starts_with("//!");
        if (ends_item || ends_docs) && !next.is_empty() {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn toy(format: Format, text: &'static str) -> Template {
        Template {
            path: "toy",
            format,
            text,
        }
    }

    #[test]
    fn an_unfilled_placeholder_is_an_error() {
        let err = toy(Format::Text, "FROM scratch\nLABEL a={{package}}\n")
            .render(&[])
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("no value for the placeholder `{{package}}`"),
            "{text}"
        );
        assert!(text.contains("line 2"), "{text}");
    }

    #[test]
    fn a_value_without_a_placeholder_is_an_error() {
        let err = toy(Format::Text, "FROM scratch\n")
            .render(&[("package", Value::text("p"))])
            .unwrap_err();
        assert!(format!("{err:#}").contains("no placeholder for `{{package}}`"));
    }

    #[test]
    fn a_value_of_the_wrong_type_is_an_error() {
        let yaml = toy(Format::Yaml, "a: \"{{x}}\"\n");
        assert!(yaml.render(&[("x", Value::toml(1))]).is_err());
        assert!(yaml.render(&[("x", Value::text("two words"))]).is_err());
        assert!(yaml.render(&[("x", Value::text("a\"b"))]).is_err());
        let rust = toy(Format::Rust, "const A: u8 = {{x}};\n");
        assert!(rust.render(&[("x", Value::yaml(1))]).is_err());
        assert!(
            rust.render(&[("x", Value::Rust(quote!(1)))])
                .unwrap()
                .contains("const A: u8 = 1;")
        );
    }

    #[test]
    fn typed_values_fill_whole_values_and_section_bodies() {
        let mut deps = toml::Table::new();
        deps.insert("tokio".into(), toml::Value::String("1".into()));
        let text = toy(
            Format::Toml,
            "# head\n[package]\nname = \"{{name}}\"\nrust-version = \"{{rv}}\"\nlist = \"{{list}}\"\n[dependencies]\n\"{{deps}}\"\n",
        )
        .render(&[
            ("name", Value::toml("x")),
            ("rv", Value::Absent),
            ("list", Value::toml(vec![toml::Value::from(1), 2.into()])),
            ("deps", Value::toml(deps)),
        ])
        .unwrap();
        assert_eq!(
            text,
            "# head\n\n[package]\nname = \"x\"\nlist = [1, 2]\n\n[dependencies]\ntokio = \"1\"\n"
        );
        let yaml = toy(
            Format::Yaml,
            "a: \"{{a}}\"\nb: \"{{b}}-{{.Task.Slot}}\"\nc: \"{{c}}\"\n",
        )
        .render(&[
            ("a", Value::yaml(serde_json::json!({"k": [1, "v"]}))),
            ("b", Value::text("svc")),
            ("c", Value::Absent),
        ])
        .unwrap();
        assert_eq!(yaml, "a:\n  k:\n  - 1\n  - v\nb: svc-{{.Task.Slot}}\n");
    }

    #[test]
    fn an_invalid_result_is_an_error() {
        let err = toy(Format::Toml, "a = {{x}}\n")
            .render(&[("x", Value::text("b"))])
            .unwrap_err();
        assert!(format!("{err:#}").contains("invalid file"), "{err:#}");
    }

    #[test]
    fn every_template_has_only_well_formed_placeholders() {
        for template in ALL {
            for (number, line) in template.text.lines().enumerate() {
                let marked = line.matches("{{").count() - line.matches("{{.").count();
                assert_eq!(
                    marked,
                    placeholders(line).len(),
                    "{} line {}: `{line}`",
                    template.path,
                    number + 1
                );
                assert!(
                    !line.contains('@'),
                    "{}: an old `@KEY@` marker",
                    template.path
                );
            }
        }
    }
}
