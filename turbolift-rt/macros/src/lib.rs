//! `#[turbolift::distribute]`. Use it through the `turbolift` crate, which re-exports it;
//! the grammar and the checks live in `turbolift-syntax`, shared with `cargo turbolift`.

use proc_macro::TokenStream;

mod expand;

/// Marks a function to run as a service. See the `turbolift` crate's documentation.
#[proc_macro_attribute]
pub fn distribute(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::distribute(args.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
