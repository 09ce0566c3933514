//! The signature hash that travels with every call.

use quote::ToTokens;
use syn::{FnArg, ReturnType, Signature};

/// A hash of everything about the function that the wire depends on: its name, its
/// argument types in order and its return type (whether it is `async` does not change
/// the wire, so it is left out). Caller and service compute
/// it from the same source when they were built from the same source; a service refuses
/// a call whose hash differs from its own.
pub fn signature_hash(sig: &Signature) -> u64 {
    let mut text = String::new();
    text.push_str(&sig.ident.to_string());
    text.push('(');
    for input in &sig.inputs {
        if let FnArg::Typed(arg) = input {
            text.push_str(&normalize(arg.ty.to_token_stream()));
            text.push(',');
        }
    }
    text.push(')');
    if let ReturnType::Type(_, ty) = &sig.output {
        text.push_str("->");
        text.push_str(&normalize(ty.to_token_stream()));
    }
    turbolift_shared::naming::fnv1a64(text.as_bytes())
}

/// Token text without whitespace, so formatting does not change the hash.
fn normalize(tokens: proc_macro2::TokenStream) -> String {
    tokens
        .to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(src: &str) -> u64 {
        signature_hash(&syn::parse_str::<syn::ItemFn>(src).unwrap().sig)
    }

    #[test]
    fn formatting_and_names_of_arguments_do_not_matter() {
        assert_eq!(
            hash("fn f(a: Vec<u8>) -> u8 { 1 }"),
            hash("pub fn f( renamed : Vec < u8 > )->u8 { 2 }")
        );
    }

    #[test]
    fn types_and_names_do() {
        let base = hash("fn f(a: u64) -> u64 {}");
        assert_ne!(base, hash("fn f(a: u32) -> u64 {}"));
        assert_ne!(base, hash("fn f(a: u64) -> u32 {}"));
        assert_ne!(base, hash("fn g(a: u64) -> u64 {}"));
        assert_ne!(base, hash("fn f(a: u64, b: u64) -> u64 {}"));
        assert_ne!(hash("fn f() {}"), hash("fn f() -> () {}"));
    }
}
