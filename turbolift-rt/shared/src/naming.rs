//! The names of a distributed function, computed in one place.
//!
//! A function is identified by its *id*: its full path, crate name first
//! (`my_app::geo::summary::area`), exactly as `module_path!()` and the function's name
//! give it. The macro derives it with [`id_from_module_path`]; the CLI computes it from the
//! file layout with [`id_from_modules`]; a service crate compiles the original crate root
//! under the original crate name, so all three agree.

/// The id of function `name` declared in the module `module_path` (as `module_path!()`
/// prints it).
pub fn id_from_module_path(module_path: &str, name: &str) -> String {
    format!("{module_path}::{name}")
}

/// The id of function `name` in crate `crate_name`, in the module whose path inside the
/// crate is `modules`.
pub fn id_from_modules<S: AsRef<str>>(crate_name: &str, modules: &[S], name: &str) -> String {
    let mut id = format!("{crate_name}::");
    for m in modules {
        id.push_str(m.as_ref());
        id.push_str("::");
    }
    id.push_str(name);
    id
}

/// The HTTP path of the function's call endpoint: `/v1/call/geo/summary/area`.
pub fn route(id: &str) -> String {
    format!("{}{}", crate::protocol::CALL_PREFIX, id.replace("::", "/"))
}

/// The HTTP path of the function's batch endpoint: `/v1/batch/geo/summary/area`.
pub fn batch_route(id: &str) -> String {
    format!("{}{}", crate::protocol::BATCH_PREFIX, id.replace("::", "/"))
}

/// The function id a call or batch path names, if it is one (inverse of [`route`] and
/// [`batch_route`]).
pub fn id_from_route(path: &str) -> Option<String> {
    let rest = path
        .strip_prefix(crate::protocol::CALL_PREFIX)
        .or_else(|| path.strip_prefix(crate::protocol::BATCH_PREFIX))?;
    if rest.is_empty() || rest.split('/').any(|seg| !is_identifier(seg)) {
        return None;
    }
    Some(rest.replace('/', "::"))
}

/// The name of the service of function `id` in package `package`: lowercase letters,
/// digits and `-`, e.g. `quickstart-geo-summary-area` (the package name stands for the
/// crate name). Used for the service crate, its binary, container images and Kubernetes
/// objects (see [`kubernetes_name`]).
pub fn service_name(package: &str, id: &str) -> String {
    // The crate name is left out when it is the package's own (the usual case), kept when
    // it is another target's (a binary `tool` of package `app`), so names stay distinct.
    let path = match id.split_once("::") {
        Some((krate, path)) if krate == crate_name(package) => path,
        _ => id,
    };
    let mut out = String::new();
    for ch in package.chars().chain("-".chars()).chain(path.chars()) {
        let ch = ch.to_ascii_lowercase();
        if ch.is_ascii_alphanumeric() {
            out.push(ch);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// A valid DNS-1035 label (at most 63 characters, starts with a letter, ends with a letter
/// or digit) for the service of function `id` in `package`. Long names are shortened and
/// keep a hash of the full name so that they stay distinct.
pub fn kubernetes_name(package: &str, id: &str) -> String {
    let full = service_name(package, id);
    let mut name = String::from(if full.starts_with(|c: char| c.is_ascii_lowercase()) {
        ""
    } else {
        "tl-"
    });
    name.push_str(&full);
    if name.len() <= 63 {
        return name;
    }
    let hash = format!("{:08x}", fnv1a64(full.as_bytes()) as u32);
    let mut short = name[..63 - hash.len() - 1].trim_end_matches('-').to_owned();
    short.push('-');
    short.push_str(&hash);
    short
}

/// A valid DNS-1035 label for a part of package `package`'s deployment that is not a
/// function: its `secret`, its `program` (the Job), its `app` label.
pub fn kubernetes_part_name(package: &str, part: &str) -> String {
    kubernetes_name(package, &format!("{}::{part}", crate_name(package)))
}

/// Whether `name` is a valid DNS-1035 label.
pub fn is_dns1035_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// Rust crate name of a package name (`my-app` -> `my_app`).
pub fn crate_name(package: &str) -> String {
    package.replace('-', "_")
}

/// 64-bit FNV-1a: the hash of signatures and names. Stable across builds and platforms.
pub const fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

fn is_identifier(segment: &str) -> bool {
    let mut chars = segment.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_agree_between_module_path_and_modules() {
        assert_eq!(
            id_from_module_path("quickstart", "square"),
            "quickstart::square"
        );
        assert_eq!(
            id_from_modules::<&str>("quickstart", &[], "square"),
            "quickstart::square"
        );
        assert_eq!(
            id_from_module_path("my_app::geo::summary", "area"),
            id_from_modules("my_app", &["geo", "summary"], "area")
        );
    }

    #[test]
    fn routes_round_trip() {
        let id = "app::geo::summary::area";
        assert_eq!(route(id), "/v1/call/app/geo/summary/area");
        assert_eq!(id_from_route(&route(id)).as_deref(), Some(id));
        assert_eq!(batch_route(id), "/v1/batch/app/geo/summary/area");
        assert_eq!(id_from_route(&batch_route(id)).as_deref(), Some(id));
        assert_eq!(id_from_route("/v1/batch/"), None);
        assert_eq!(id_from_route("/v1/call/"), None);
        assert_eq!(id_from_route("/v1/call/a//b"), None);
        assert_eq!(id_from_route("/v1/call/a/../b"), None);
        assert_eq!(id_from_route("/v1/health"), None);
    }

    #[test]
    fn service_and_kubernetes_names_are_valid_labels() {
        assert_eq!(
            service_name("my-app", "my_app::geo::summary::area"),
            "my-app-geo-summary-area"
        );
        assert_eq!(
            service_name("quickstart", "quickstart::square"),
            "quickstart-square"
        );
        assert_eq!(kubernetes_name("9lives", "9lives::f"), "tl-9lives-f");
        let long = kubernetes_name("pkg", &format!("pkg::{}f", "very_long_module::".repeat(8)));
        assert!(is_dns1035_label(&long), "{long}");
        assert_ne!(
            long,
            kubernetes_name("pkg", &format!("pkg::{}f", "very_long_module::".repeat(9)))
        );
        assert_eq!(kubernetes_part_name("my_app", "secret"), "my-app-secret");
        assert_eq!(kubernetes_part_name("my-app", "program"), "my-app-program");
        for name in ["a", "abc-1", "x9"] {
            assert!(is_dns1035_label(name));
        }
        for name in ["", "1a", "a-", "A", "a_b", &"a".repeat(64)] {
            assert!(!is_dns1035_label(name), "{name}");
        }
    }
}
