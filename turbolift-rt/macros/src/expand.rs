//! The expansion of `#[turbolift::distribute]`.
//!
//! ```text
//! #[turbolift::distribute(timeout = "5s")]
//! pub fn square(u: u64) -> u64 { u * u }
//! ```
//! becomes
//! ```text
//! pub async fn square(u: u64) -> Result<u64, ::turbolift::Error> { /* local or remote call */ }
//! static __TURBOLIFT_square_MUST_BE_DECLARED_AT_MODULE_LEVEL: FnInfo = /* id, signature hash, timeout, coalesce */;
//! fn __turbolift_body_square(u: u64) -> u64 { u * u }   // what a service runs
//! pub fn square_batch(inputs: impl IntoIterator<Item = u64>) -> turbolift::Batch<u64> { /* many calls */ }
//! ::turbolift::__register_handler! { /* the service's entry for `square` */ }
//! // and, when the generated build sets TURBOLIFT_PROGRAM_MAIN (a binary's code compiled
//! // as its service package's library), the way to run `crate::main`:
//! ::turbolift::__register_program_main! { /* runs crate::main, reports its result */ }
//! ```

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, ItemFn, Pat, ReturnType};
use turbolift_syntax::{DistributeArgs, PROGRAM_MAIN_ENV, check_function, signature_hash};

pub fn distribute(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let parsed_args = DistributeArgs::parse_tokens(args);
    let func: ItemFn = syn::parse2(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            "#[turbolift::distribute] goes on a function: `fn name(arg: Type, ..) -> Type { .. }`",
        )
    })?;
    let mut errors: Option<syn::Error> = parsed_args.as_ref().err().cloned();
    for problem in check_function(&func.sig) {
        let e = problem.to_syn_error();
        match &mut errors {
            Some(all) => all.combine(e),
            None => errors = Some(e),
        }
    }
    if let Some(e) = errors {
        return Err(e);
    }
    Ok(expand(parsed_args?, func))
}

fn expand(args: DistributeArgs, func: ItemFn) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
        ..
    } = func;
    let name = &sig.ident;
    let name_str = name.to_string();
    // The name shows in rustc's message when the function is nested in another one.
    let info = format_ident!("__TURBOLIFT_{}_MUST_BE_DECLARED_AT_MODULE_LEVEL", name);
    let body_fn = format_ident!("__turbolift_body_{}", name);
    let (docs, others): (Vec<&Attribute>, Vec<&Attribute>) =
        attrs.iter().partition(|a| a.path().is_ident("doc"));
    let cfgs: Vec<&&Attribute> = others
        .iter()
        .filter(|a| a.path().is_ident("cfg") || a.path().is_ident("cfg_attr"))
        .collect();

    let mut names = Vec::new();
    let mut types = Vec::new();
    for input in &sig.inputs {
        if let FnArg::Typed(arg) = input
            && let Pat::Ident(ident) = &*arg.pat
        {
            names.push(ident.ident.clone());
            types.push((*arg.ty).clone());
        }
    }
    let output = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => quote!(#ty),
    };
    let output_span = match &sig.output {
        ReturnType::Default => sig.ident.span(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    let assertions = types.iter().map(|ty| {
        quote_spanned! {ty.span()=> ::turbolift::__private::assert_argument::<#ty>(); }
    });
    let output_assertion = quote_spanned! {output_span=>
        ::turbolift::__private::assert_result::<#output>();
    };

    let signature = signature_hash(&sig);
    let timeout = match args.timeout {
        Some(t) => {
            let ms = u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
            quote!(::core::option::Option::Some(::core::time::Duration::from_millis(#ms)))
        }
        None => quote!(::core::option::Option::None),
    };
    let coalesce = args.coalesces();
    let (call, invoke, batch, invoke_batch, info_arg) = if sig.asyncness.is_some() {
        (
            quote!(call_async),
            quote!(invoke_async),
            quote!(batch_async),
            quote!(invoke_async_batch),
            quote!(),
        )
    } else {
        (
            quote!(call_blocking),
            quote!(invoke_blocking),
            quote!(batch_blocking),
            quote!(invoke_blocking_batch),
            quote!(&#info,),
        )
    };
    let batch_fn = format_ident!("{}_batch", name);
    // One input of the batch form: the argument itself, or a tuple of the arguments.
    let (item_type, item_pattern) = match (names.as_slice(), types.as_slice()) {
        ([n], [t]) => (quote!(#t), quote!(#n)),
        _ => (quote!((#(#types,)*)), quote!((#(#names,)*))),
    };
    let batch_doc = format!(
        "Calls [`{name_str}`] once for each input (the argument{}), as few requests spread \
         over its replicas; the results come in input order. See [`turbolift::Batch`].",
        if names.len() == 1 { "" } else { "s as a tuple" }
    );
    let asyncness = &sig.asyncness;
    let inputs = &sig.inputs;
    let wrapper_inputs = names.iter().zip(&types).map(|(n, t)| quote!(#n: #t));
    // Resolving the info through `self::` fails inside a function body, where the static
    // is a local item: distributed functions must live at module level.
    let module_level = quote_spanned! {name.span()=> &self::#info };
    // The parameters the generated code names are declared with the span of its uses, so
    // that both sides have the same hygiene when the function's name comes from a
    // `macro_rules!` invocation.
    let [batch_inputs, body_arg, sink_arg] =
        ["inputs", "body", "sink"].map(|n| syn::Ident::new(n, name.span()));
    // Bound errors of the call itself (already reported at the types by the assertions)
    // point at the function's name rather than into the macro.
    let call = quote_spanned! {name.span()=>
        ::turbolift::__private::#call(
            #module_level,
            (#(#names,)*),
            |(#(#names,)*)| #body_fn(#(#names),*),
        )
        .await
    };
    let invoke = quote_spanned! {name.span()=>
        ::turbolift::__private::#invoke(#info_arg #body_arg, |(#(#names,)*)| #body_fn(#(#names),*))
    };
    let invoke_batch = quote_spanned! {name.span()=>
        ::turbolift::__private::#invoke_batch(#body_arg, #sink_arg, |(#(#names,)*)| #body_fn(#(#names),*))
    };
    let batch_call = quote_spanned! {name.span()=>
        ::turbolift::__private::#batch(
            &self::#info,
            ::core::iter::IntoIterator::into_iter(#batch_inputs).map(|#item_pattern| (#(#names,)*)),
            |(#(#names,)*)| #body_fn(#(#names),*),
        )
    };

    let program_main = program_main(&cfgs);
    quote! {
        #(#docs)*
        #(#others)*
        #vis async fn #name(#(#wrapper_inputs),*) -> ::core::result::Result<#output, ::turbolift::Error> {
            #(#assertions)*
            #output_assertion
            #call
        }

        #[doc = #batch_doc]
        #[allow(dead_code)]
        #(#others)*
        #vis fn #batch_fn(
            #batch_inputs: impl ::core::iter::IntoIterator<Item = #item_type>,
        ) -> ::turbolift::Batch<#output> {
            #batch_call
        }

        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        #(#cfgs)*
        static #info: ::turbolift::__private::FnInfo = ::turbolift::__private::FnInfo::new(
            ::core::module_path!(),
            #name_str,
            #signature,
            #timeout,
        )
        .coalescing(#coalesce);

        #[doc(hidden)]
        #[allow(clippy::too_many_arguments)]
        #(#others)*
        #asyncness fn #body_fn(#inputs) -> #output #block

        #(#cfgs)*
        ::turbolift::__register_handler! {
            {
                fn __invoke(
                    #body_arg: ::turbolift::__private::Encoded,
                ) -> ::turbolift::__private::Invocation {
                    #invoke
                }
                fn __batch(
                    #body_arg: ::turbolift::__private::Bytes,
                    #sink_arg: ::turbolift::__private::BatchSink,
                ) -> ::core::result::Result<usize, ::turbolift::service::InvokeError> {
                    #invoke_batch
                }
                ::turbolift::__private::Handler::new(&#info, __invoke, __batch)
                    .arguments(::turbolift::__private::is_byte_buffer::<(#(#types,)*)>)
            }
        }

        #program_main
    }
}

/// The registration of the crate's `main` (see `turbolift_syntax::PROGRAM_MAIN_ENV`), when
/// the build asks for it; `cfgs` are the function's own.
fn program_main(cfgs: &[&&Attribute]) -> TokenStream {
    if std::env::var_os(PROGRAM_MAIN_ENV).is_none() {
        return TokenStream::new();
    }
    quote! {
        #(#cfgs)*
        ::turbolift::__register_program_main! {
            {
                fn __main() -> ::std::process::ExitCode {
                    ::std::process::Termination::report(crate::main())
                }
                __main
            }
        }
    }
}
