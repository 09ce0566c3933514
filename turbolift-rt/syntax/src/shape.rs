//! The shapes of function that can be distributed, and what to do about the others.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::visit::{self, Visit};
use syn::{FnArg, Pat, ReturnType, Signature, Type};

/// One reason a function cannot be distributed: where, what, and what to do instead.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The code to underline.
    pub tokens: TokenStream,
    /// What is wrong, as one sentence without a final period.
    pub message: String,
    /// What to do instead.
    pub help: String,
}

impl Problem {
    fn new(code: &impl ToTokens, message: impl Into<String>, help: impl Into<String>) -> Self {
        Problem {
            tokens: code.to_token_stream(),
            message: message.into(),
            help: help.into(),
        }
    }

    /// Where the underlined code starts and ends.
    pub fn span_range(&self) -> (Span, Span) {
        let mut tokens = self.tokens.clone().into_iter();
        let first = tokens.next().map_or_else(Span::call_site, |t| t.span());
        let last = tokens.last().map_or(first, |t| t.span());
        (first, last)
    }

    /// The problem as a compiler error, the help on a line of its own.
    pub fn to_syn_error(&self) -> syn::Error {
        syn::Error::new_spanned(
            &self.tokens,
            format!("{}\nhelp: {}", self.message, self.help),
        )
    }
}

/// Every reason the function with this signature cannot be distributed, in source order.
/// An empty list means it can be.
pub fn check_function(sig: &Signature) -> Vec<Problem> {
    let mut problems = Vec::new();
    let name = &sig.ident;
    if let Some(c) = &sig.constness {
        problems.push(Problem::new(
            c,
            format!("`const fn {name}` cannot be distributed"),
            "remove `const`: a distributed function becomes an `async fn` that may call a service",
        ));
    }
    if let syn::Safety::Unsafe(u) = &sig.safety {
        problems.push(Problem::new(
            u,
            format!("`unsafe fn {name}` cannot be distributed"),
            "distribute a safe function that wraps the unsafe code and states its invariants",
        ));
    }
    if let Some(abi) = &sig.abi {
        problems.push(Problem::new(
            abi,
            format!("`extern` function `{name}` cannot be distributed"),
            "remove the ABI; distribute a plain Rust function",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        let generics = if sig.generics.params.is_empty() {
            sig.generics.where_clause.to_token_stream()
        } else {
            sig.generics.to_token_stream()
        };
        problems.push(Problem::new(
            &generics,
            format!("generic function `{name}` cannot be distributed"),
            "a service runs one concrete function: write a non-generic function for each type you call it with (it may call the generic one)",
        ));
    }
    if let Some(v) = &sig.variadic {
        problems.push(Problem::new(
            v,
            format!("variadic function `{name}` cannot be distributed"),
            "take the values as a `Vec<T>` argument",
        ));
    }
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => problems.push(Problem::new(
                receiver,
                format!("method `{name}` cannot be distributed: it takes `self`"),
                "distribute a free function that takes the value as an owned argument, e.g. `fn f(this: MyType, ..)`, and call it from the method",
            )),
            FnArg::Typed(arg) => {
                check_pattern(&arg.pat, &mut problems);
                check_type(&arg.ty, Position::Argument, &mut problems);
            }
        }
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        check_type(ty, Position::Return, &mut problems);
    }
    problems
}

fn check_pattern(pat: &Pat, problems: &mut Vec<Problem>) {
    match pat {
        Pat::Ident(ident) if ident.by_ref.is_none() && ident.subpat.is_none() => {}
        other => problems.push(Problem::new(
            other,
            "arguments of a distributed function must be plain names",
            "bind the argument to a name (`point: (f64, f64)`) and destructure it inside the body",
        )),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Position {
    Argument,
    Return,
}

fn check_type(ty: &Type, position: Position, problems: &mut Vec<Problem>) {
    struct Finder<'p> {
        position: Position,
        problems: &'p mut Vec<Problem>,
    }
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_type_reference(&mut self, r: &'ast syn::TypeReference) {
            let (message, help) = match self.position {
                Position::Argument => (
                    "borrowed arguments cannot be sent to a service",
                    "take an owned value instead: `String` for `&str`, `Vec<T>` for `&[T]`, `T` for `&T`",
                ),
                Position::Return => (
                    "a distributed function cannot return a reference",
                    "return an owned value instead: `String` for `&str`, `Vec<T>` for `&[T]`, `T` for `&T`",
                ),
            };
            self.problems.push(Problem::new(r, message, help));
        }
        fn visit_type_impl_trait(&mut self, t: &'ast syn::TypeImplTrait) {
            self.problems.push(Problem::new(
                t,
                "`impl Trait` cannot cross a service boundary",
                "name a concrete type that implements `Serialize` and `Deserialize` (for example `Vec<T>` instead of `impl Iterator<Item = T>`)",
            ));
        }
        fn visit_type_trait_object(&mut self, t: &'ast syn::TypeTraitObject) {
            self.problems.push(Problem::new(
                t,
                "trait objects cannot cross a service boundary",
                "use a concrete type or an enum of the possible values",
            ));
            visit::visit_type_trait_object(self, t);
        }
        fn visit_type_ptr(&mut self, t: &'ast syn::TypePtr) {
            self.problems.push(Problem::new(
                t,
                "raw pointers cannot cross a service boundary",
                "send the value the pointer points at",
            ));
        }
        fn visit_type_fn_ptr(&mut self, t: &'ast syn::TypeFnPtr) {
            self.problems.push(Problem::new(
                t,
                "function pointers cannot cross a service boundary",
                "send data that says which function to run (an enum, say)",
            ));
        }
    }
    let mut finder = Finder { position, problems };
    finder.visit_type(ty);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(src: &str) -> Vec<String> {
        let item: syn::ItemFn = syn::parse_str(src).expect("test source parses");
        check_function(&item.sig)
            .into_iter()
            .map(|p| p.message)
            .collect()
    }

    #[test]
    fn plain_functions_pass() {
        assert!(problems("fn f(a: u64, mut b: Vec<String>) -> Result<u8, String> { }").is_empty());
        assert!(problems("pub async fn f() {}").is_empty());
        assert!(problems("fn f(x: Option<Box<[u8]>>) -> () {}").is_empty());
    }

    #[test]
    fn each_unsupported_shape_is_named() {
        let cases = [
            ("fn f(&self) {}", "takes `self`"),
            ("fn f<T>(t: T) {}", "generic function"),
            ("fn f(t: u8) where u8: Copy {}", "generic function"),
            ("fn f(s: &str) {}", "borrowed arguments"),
            ("fn f(s: Vec<&'static str>) {}", "borrowed arguments"),
            ("fn f() -> &'static str {}", "cannot return a reference"),
            ("fn f(i: impl Iterator<Item = u8>) {}", "`impl Trait`"),
            ("fn f() -> impl Fn() {}", "`impl Trait`"),
            ("fn f((a, b): (u8, u8)) {}", "plain names"),
            ("fn f(ref a: u8) {}", "plain names"),
            ("const fn f() {}", "`const fn f`"),
            ("unsafe fn f() {}", "`unsafe fn f`"),
            ("extern \"C\" fn f() {}", "`extern`"),
            ("fn f(b: Box<dyn Send>) {}", "trait objects"),
            ("fn f(p: *const u8) {}", "raw pointers"),
            ("fn f(g: fn(u8)) {}", "function pointers"),
        ];
        for (src, expected) in cases {
            let found = problems(src);
            assert_eq!(found.len(), 1, "{src}: {found:?}");
            assert!(found[0].contains(expected), "{src}: {found:?}");
        }
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        assert_eq!(
            problems("fn f<T>(&self, s: &str, t: impl Copy) {}").len(),
            4
        );
    }
}
