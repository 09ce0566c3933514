//! `#[cfg(...)]` on an item, as far as cargo turbolift can judge it: features are known
//! (those cargo resolved for the package with the features asked for), `test` is off in a
//! service, and anything else (`unix`, `target_os = ...`) is taken to hold, so that only
//! an item certainly left out is skipped.

use std::collections::BTreeSet;

use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, Lit, Meta, Token};

/// Whether some `#[cfg]` among `attrs` certainly leaves the item out of a build with
/// `features` enabled (`None`: the features are not known, and only `test` counts).
pub fn left_out(attrs: &[Attribute], features: Option<&BTreeSet<String>>) -> bool {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg"))
        .filter_map(|a| a.parse_args::<Meta>().ok())
        .any(|meta| holds(&meta, features) == Some(false))
}

/// `Some(true)` or `Some(false)` when the predicate is known to hold or not; `None` when
/// it depends on what cargo turbolift does not know.
fn holds(meta: &Meta, features: Option<&BTreeSet<String>>) -> Option<bool> {
    match meta {
        Meta::Path(p) if p.is_ident("test") => Some(false),
        Meta::NameValue(nv) if nv.path.is_ident("feature") => {
            let Expr::Lit(lit) = &nv.value else {
                return None;
            };
            let Lit::Str(name) = &lit.lit else {
                return None;
            };
            features.map(|f| f.contains(&name.value()))
        }
        Meta::List(list) => {
            let inner: Vec<Meta> = list
                .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
                .ok()?
                .into_iter()
                .collect();
            let values = inner.iter().map(|m| holds(m, features));
            if list.path.is_ident("not") {
                let [one] = inner.as_slice() else {
                    return None;
                };
                holds(one, features).map(|v| !v)
            } else if list.path.is_ident("all") {
                let values: Vec<Option<bool>> = values.collect();
                if values.contains(&Some(false)) {
                    Some(false)
                } else if values.iter().all(|v| *v == Some(true)) {
                    Some(true)
                } else {
                    None
                }
            } else if list.path.is_ident("any") {
                let values: Vec<Option<bool>> = values.collect();
                if values.contains(&Some(true)) {
                    Some(true)
                } else if values.iter().all(|v| *v == Some(false)) {
                    Some(false)
                } else {
                    None
                }
            } else {
                None
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(attr: &str, features: &[&str]) -> bool {
        let item: syn::ItemFn = syn::parse_str(&format!("{attr} fn f() {{}}")).unwrap();
        let features: BTreeSet<String> = features.iter().map(|f| f.to_string()).collect();
        left_out(&item.attrs, Some(&features))
    }

    #[test]
    fn features_decide_and_the_unknown_is_kept() {
        assert!(out(r#"#[cfg(feature = "fancy")]"#, &[]));
        assert!(!out(r#"#[cfg(feature = "fancy")]"#, &["fancy"]));
        assert!(out(r#"#[cfg(not(feature = "fancy"))]"#, &["fancy"]));
        assert!(out(r#"#[cfg(all(unix, feature = "a"))]"#, &[]));
        assert!(!out(r#"#[cfg(all(unix, feature = "a"))]"#, &["a"]));
        assert!(!out(r#"#[cfg(any(unix, feature = "a"))]"#, &[]));
        assert!(out(r#"#[cfg(any(feature = "b", feature = "a"))]"#, &[]));
        assert!(out("#[cfg(test)]", &[]));
        assert!(!out("#[cfg(unix)]", &[]));
        assert!(!out("#[cfg(not(unix))]", &[]));
        assert!(!out("#[inline]", &[]));
        let item: syn::ItemFn = syn::parse_str(r#"#[cfg(feature = "x")] fn f() {}"#).unwrap();
        assert!(!left_out(&item.attrs, None), "features unknown: kept");
    }
}
