//! `#[turbolift::distribute(timeout = "30s", replicas = "1..=8", cpu = "500m", memory = "256Mi", coalesce = false)]`

use std::time::Duration;

use proc_macro2::TokenStream;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Attribute, Ident, Lit, LitStr, Meta, Token};

/// The arguments of `#[turbolift::distribute(...)]`, all optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DistributeArgs {
    /// Per-call timeout (`timeout = "30s"`).
    pub timeout: Option<Duration>,
    /// How many replicas of the service to run (`replicas = "2"` or `"1..=8"`).
    pub replicas: Option<Replicas>,
    /// CPU request of one replica, as a Kubernetes quantity (`cpu = "500m"`).
    pub cpu: Option<String>,
    /// Memory request of one replica, as a Kubernetes quantity (`memory = "256Mi"`).
    pub memory: Option<String>,
    /// Whether concurrent calls may travel together in one batch request
    /// (`coalesce = false` or `coalesce = true`); see [`DistributeArgs::coalesces`].
    pub coalesce: Option<bool>,
}

/// A replica count or an autoscaling range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replicas {
    /// Fewest replicas.
    pub min: u32,
    /// Most replicas (equal to `min` for a fixed count).
    pub max: u32,
}

const KEYS: &str = "`timeout`, `replicas`, `cpu`, `memory` or `coalesce`";

/// Every key the grammar knows.
const KNOWN_KEYS: [&str; 5] = ["timeout", "replicas", "cpu", "memory", "coalesce"];

impl DistributeArgs {
    /// Parses the tokens inside the attribute's parentheses (what a proc-macro receives).
    pub fn parse_tokens(tokens: TokenStream) -> syn::Result<Self> {
        syn::parse2(tokens)
    }

    /// Parses the arguments of an attribute as found in a source file.
    pub fn from_attribute(attr: &Attribute) -> syn::Result<Self> {
        match &attr.meta {
            Meta::Path(_) => Ok(Self::default()),
            Meta::List(list) => Self::parse_tokens(list.tokens.clone()),
            Meta::NameValue(nv) => Err(syn::Error::new_spanned(
                nv,
                format!(
                    "expected `#[turbolift::distribute]` or `#[turbolift::distribute(key = \"value\", ...)]` with key {KEYS}"
                ),
            )),
        }
    }

    /// Whether concurrent calls of the function may travel together in one batch
    /// request: `coalesce` as given, true when it is not.
    pub fn coalesces(&self) -> bool {
        self.coalesce.unwrap_or(true)
    }
}

impl Parse for DistributeArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = DistributeArgs::default();
        let pairs = Punctuated::<KeyValue, Token![,]>::parse_terminated(input)?;
        let mut errors: Option<syn::Error> = None;
        let mut push = |e: syn::Error| match &mut errors {
            Some(all) => all.combine(e),
            None => errors = Some(e),
        };
        // Keys already given, valid or not: a second one is refused either way.
        let mut seen: Vec<String> = Vec::new();
        for KeyValue { key, value } in pairs {
            let name = key.to_string();
            if !KNOWN_KEYS.contains(&name.as_str()) {
                push(syn::Error::new(
                    key.span(),
                    format!("unknown argument `{name}`; expected {KEYS}"),
                ));
                continue;
            }
            if seen.contains(&name) {
                push(syn::Error::new(
                    key.span(),
                    format!("`{name}` is given twice"),
                ));
                continue;
            }
            seen.push(name.clone());
            let result = match name.as_str() {
                "timeout" => string_value(&key, &value)
                    .and_then(parse_timeout)
                    .map(|t| args.timeout = Some(t)),
                "replicas" => string_value(&key, &value)
                    .and_then(parse_replicas)
                    .map(|r| args.replicas = Some(r)),
                "cpu" => string_value(&key, &value)
                    .and_then(|lit| parse_quantity(lit, false))
                    .map(|q| args.cpu = Some(q)),
                "memory" => string_value(&key, &value)
                    .and_then(|lit| parse_quantity(lit, true))
                    .map(|q| args.memory = Some(q)),
                _ => bool_value(&key, &value).map(|b| args.coalesce = Some(b)),
            };
            if let Err(e) = result {
                push(e);
            }
        }
        match errors {
            Some(e) => Err(e),
            None => Ok(args),
        }
    }
}

/// One `key = value`, the value any literal; whether it is the right kind for the key
/// is checked afterwards, so that a wrong one is reported along with the other problems.
struct KeyValue {
    key: Ident,
    value: Lit,
}

impl Parse for KeyValue {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let key: Ident = input
            .parse()
            .map_err(|e| syn::Error::new(e.span(), format!("expected an argument name: {KEYS}")))?;
        input
            .parse::<Token![=]>()
            .map_err(|e| syn::Error::new(e.span(), format!("expected {}", form(&key))))?;
        let value: Lit = input
            .parse()
            .map_err(|e| syn::Error::new(e.span(), wrong_value(&key)))?;
        Ok(KeyValue { key, value })
    }
}

/// How an argument is written, for messages.
fn form(key: &Ident) -> String {
    if key == "coalesce" {
        "`coalesce = true` or `coalesce = false`".to_owned()
    } else {
        format!("`{key} = \"...\"`")
    }
}

/// The message for a value of the wrong kind.
fn wrong_value(key: &Ident) -> String {
    if key == "coalesce" {
        "the value of `coalesce` must be `true` or `false`, without quotes: `coalesce = false`"
            .to_owned()
    } else {
        format!("the value of `{key}` must be a string literal, e.g. `{key} = \"...\"`")
    }
}

/// The value of a key that takes a string literal.
fn string_value<'v>(key: &Ident, value: &'v Lit) -> syn::Result<&'v LitStr> {
    match value {
        Lit::Str(lit) => Ok(lit),
        other => Err(syn::Error::new(other.span(), wrong_value(key))),
    }
}

/// The value of a key that takes `true` or `false`.
fn bool_value(key: &Ident, value: &Lit) -> syn::Result<bool> {
    match value {
        Lit::Bool(lit) => Ok(lit.value),
        other => Err(syn::Error::new(other.span(), wrong_value(key))),
    }
}

fn parse_timeout(lit: &LitStr) -> syn::Result<Duration> {
    turbolift_shared::duration::parse_duration(&lit.value())
        .map_err(|e| syn::Error::new(lit.span(), e.to_string()))
}

fn parse_replicas(lit: &LitStr) -> syn::Result<Replicas> {
    let text = lit.value();
    let err = |why: &str| {
        syn::Error::new(
            lit.span(),
            format!(
                "invalid replicas `{text}`: {why}; write a count like \"2\" or a range like \"1..=8\""
            ),
        )
    };
    let number = |s: &str| -> syn::Result<u32> {
        s.trim()
            .parse::<u32>()
            .map_err(|_| err("expected a whole number"))
    };
    let (min, max) = match text.split_once("..=") {
        Some((lo, hi)) => (number(lo)?, number(hi)?),
        None if text.contains("..") => return Err(err("use an inclusive range `..=`")),
        None => {
            let n = number(&text)?;
            (n, n)
        }
    };
    if min == 0 {
        return Err(err("at least one replica is needed"));
    }
    if min > max {
        return Err(err("the range is empty"));
    }
    Ok(Replicas { min, max })
}

/// Checks a Kubernetes resource quantity: a decimal number and an optional suffix.
fn parse_quantity(lit: &LitStr, memory: bool) -> syn::Result<String> {
    let text = lit.value();
    check_quantity(&text, memory).map_err(|message| syn::Error::new(lit.span(), message))?;
    Ok(text)
}

/// Checks a Kubernetes resource quantity for CPU (`"500m"`, `"2"`) or, with `memory`,
/// for memory (`"256Mi"`, `"1Gi"`): the grammar of `cpu = ".."` and `memory = ".."`, for
/// the CLI's overrides too.
pub fn check_quantity(text: &str, memory: bool) -> Result<(), String> {
    let suffixes: &[&str] = if memory {
        &["Ki", "Mi", "Gi", "Ti", "k", "M", "G", "T", ""]
    } else {
        &["m", ""]
    };
    let ok = suffixes.iter().any(|suffix| {
        text.strip_suffix(suffix).is_some_and(|num| {
            !num.is_empty()
                && num.chars().all(|c| c.is_ascii_digit() || c == '.')
                && num.chars().filter(|&c| c == '.').count() <= 1
                && num.chars().any(|c| c.is_ascii_digit())
        })
    });
    if ok {
        return Ok(());
    }
    let example = if memory {
        "\"256Mi\" or \"1Gi\""
    } else {
        "\"500m\" or \"2\""
    };
    Err(format!(
        "invalid quantity `{text}`; write a Kubernetes quantity like {example}"
    ))
}

impl Default for Replicas {
    fn default() -> Self {
        Replicas { min: 1, max: 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn parse(tokens: TokenStream) -> syn::Result<DistributeArgs> {
        DistributeArgs::parse_tokens(tokens)
    }

    #[test]
    fn empty_and_full_argument_lists() {
        assert_eq!(parse(quote!()).unwrap(), DistributeArgs::default());
        let args = parse(quote!(
            timeout = "1m30s",
            replicas = "1..=8",
            cpu = "500m",
            memory = "256Mi"
        ))
        .unwrap();
        assert_eq!(args.timeout, Some(Duration::from_secs(90)));
        assert_eq!(args.replicas, Some(Replicas { min: 1, max: 8 }));
        assert_eq!(args.cpu.as_deref(), Some("500m"));
        assert_eq!(args.memory.as_deref(), Some("256Mi"));
        assert_eq!(args.coalesce, None);
        assert!(args.coalesces());
        assert_eq!(
            parse(quote!(replicas = "3")).unwrap().replicas,
            Some(Replicas { min: 3, max: 3 })
        );
    }

    #[test]
    fn every_bad_argument_is_reported() {
        let err = parse(quote!(
            timeout = "soon",
            replicas = "0",
            color = "red",
            cpu = "lots"
        ))
        .unwrap_err();
        let messages: Vec<String> = err.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), 4, "{messages:?}");
        assert!(messages[0].contains("invalid duration `soon`"));
        assert!(messages[1].contains("at least one replica"));
        assert!(messages[2].contains("unknown argument `color`"));
        assert!(messages[3].contains("invalid quantity `lots`"));
    }

    #[test]
    fn coalesce_takes_a_bool() {
        let off = parse(quote!(coalesce = false)).unwrap();
        assert_eq!(off.coalesce, Some(false));
        assert!(!off.coalesces());
        let on = parse(quote!(timeout = "1s", coalesce = true,)).unwrap();
        assert_eq!(on.coalesce, Some(true));
        assert!(on.coalesces());
        assert_eq!(on.timeout, Some(Duration::from_secs(1)));
    }

    #[test]
    fn coalesce_refuses_anything_but_a_bool() {
        let message = |tokens| parse(tokens).unwrap_err().to_string();
        let expected =
            "the value of `coalesce` must be `true` or `false`, without quotes: `coalesce = false`";
        assert_eq!(message(quote!(coalesce = "no")), expected);
        assert_eq!(message(quote!(coalesce = "false")), expected);
        assert_eq!(message(quote!(coalesce = 0)), expected);
        assert_eq!(message(quote!(coalesce = no)), expected);
        assert_eq!(
            message(quote!(coalesce)),
            "expected `coalesce = true` or `coalesce = false`"
        );
        assert_eq!(
            message(quote!(coalesce = false, coalesce = true)),
            "`coalesce` is given twice"
        );
        assert_eq!(
            message(quote!(timeout = true)),
            "the value of `timeout` must be a string literal, e.g. `timeout = \"...\"`"
        );
    }

    #[test]
    fn values_of_the_wrong_kind_are_reported_with_the_rest() {
        let err = parse(quote!(
            coalesce = "no",
            timeout = 30,
            cpu = "lots",
            coalesce = true
        ))
        .unwrap_err();
        let messages: Vec<String> = err.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), 4, "{messages:?}");
        assert!(messages[0].contains("`coalesce` must be `true` or `false`"));
        assert!(messages[1].contains("`timeout` must be a string literal"));
        assert!(messages[2].contains("invalid quantity `lots`"));
        assert_eq!(messages[3], "`coalesce` is given twice");
    }

    #[test]
    fn shapes_that_are_not_key_value_strings() {
        assert!(
            parse(quote!(timeout = 30))
                .unwrap_err()
                .to_string()
                .contains("string literal")
        );
        assert!(
            parse(quote!(timeout))
                .unwrap_err()
                .to_string()
                .contains("expected `timeout = \"...\"`")
        );
        assert!(
            parse(quote!(timeout = "1s", timeout = "2s"))
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        assert!(
            parse(quote!(replicas = "4..=2"))
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        assert!(
            parse(quote!(replicas = "1..4"))
                .unwrap_err()
                .to_string()
                .contains("inclusive")
        );
    }
}
