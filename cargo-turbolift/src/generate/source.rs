//! The Rust sources of a generated package: the service package's executable and the
//! build script, from the templates, filled in with `quote`.

use std::path::Path;

use anyhow::{Context, Result};
use quote::quote;
use syn::{File, Item, parse_quote};

use super::runtime;
use crate::templates::{self, Value};

/// The executable of a service package: links the original crate (the package's library)
/// and serves the function of each of `services` (service name, function id) when started
/// under that service's name; with `shared_runtime`, it links turbolift's runtime as the
/// shared library of the runtime package.
pub fn service_main(
    crate_name: &str,
    services: &[(&str, &str)],
    shared_runtime: bool,
) -> Result<String> {
    let crate_ident = syn::Ident::new(crate_name, proc_macro2::Span::call_site());
    let pairs = services.iter().map(|(name, id)| quote!((#name, #id)));
    templates::SERVICE_MAIN.render(&[
        ("package_crate", Value::Rust(quote!(#crate_ident))),
        (
            "runtime",
            Value::Rust(runtime::extern_crate(shared_runtime)),
        ),
        ("services", Value::Rust(quote!(&[#(#pairs),*]))),
    ])
}

/// The program's executable for a binary whose code is the library `binary_crate` (the
/// name of the program package's dependency on the binary's service package); with
/// `shared_runtime`, it links turbolift's runtime as the runtime package's shared library.
pub fn program_main(binary_crate: &str, shared_runtime: bool) -> Result<String> {
    let crate_ident = syn::Ident::new(binary_crate, proc_macro2::Span::call_site());
    templates::PROGRAM_MAIN.render(&[
        ("binary_crate", Value::Rust(quote!(#crate_ident))),
        (
            "runtime",
            Value::Rust(runtime::extern_crate(shared_runtime)),
        ),
    ])
}

/// The generated package's build script: the original package's variables, then its own
/// build script (`original`, if any) with its `main` renamed; with `shared_runtime`, it gives the
/// linker the search path of the executables' shared libraries.
pub fn build_script(
    env: &[(String, String)],
    original: Option<(&str, &Path)>,
    shared_runtime: bool,
) -> Result<String> {
    let pairs = env.iter().map(|(k, v)| quote!((#k, #v)));
    let (inner_attributes, original_build_script) = match original {
        Some((source, path)) => {
            let mut user: File = syn::parse_file(source)
                .with_context(|| format!("cannot parse the build script {}", path.display()))?;
            for item in &mut user.items {
                if let Item::Fn(f) = item
                    && f.sig.ident == "main"
                {
                    f.sig.ident = parse_quote!(original_build_script);
                }
            }
            let attrs = &user.attrs;
            let items = &user.items;
            (quote!(#(#attrs)*), quote!(#(#items)*))
        }
        None => (
            quote!(),
            quote! {
                /// The original package has no build script. Without a `rerun-if-changed`
                /// line cargo would run this script again, and so compile the package's code
                /// again and link every service again, after a change to any file in the
                /// package (a README, a data file); its output depends on this file alone.
                fn original_build_script() {
                    println!("cargo:rerun-if-changed=build.rs");
                }
            },
        ),
    };
    templates::BUILD_SCRIPT.render(&[
        ("inner_attributes", Value::Rust(inner_attributes)),
        ("package_env", Value::Rust(quote!(&[#(#pairs),*]))),
        ("shared_runtime", Value::Rust(quote!(#shared_runtime))),
        ("original_build_script", Value::Rust(original_build_script)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executable_links_the_package_and_serves_each_function_under_its_name() {
        let services = [
            ("layout-fixture-geo-area", "geo::area"),
            ("layout-fixture-top", "top"),
        ];
        let main = service_main("layout_fixture", &services, false).unwrap();
        assert!(!main.contains("turbolift_runtime"), "{main}");
        insta::assert_snapshot!(main);
    }

    #[test]
    fn with_a_shared_runtime_the_executables_link_it() {
        let services = [("layout-fixture-top", "top")];
        let main = service_main("layout_fixture", &services, true).unwrap();
        assert!(main.contains("extern crate layout_fixture as _;"), "{main}");
        assert!(
            main.contains("extern crate turbolift_runtime as _;"),
            "{main}"
        );
        let program = program_main("turbolift_binary_layout_fixture", true).unwrap();
        assert!(
            program.contains("extern crate turbolift_runtime as _;\n"),
            "{program}"
        );
        insta::assert_snapshot!("program_main_with_a_shared_runtime", program);
    }

    #[test]
    fn the_program_executable_links_the_binary_code_and_runs_its_main() {
        let main = program_main("turbolift_binary_layout_fixture", false).unwrap();
        assert!(!main.contains("turbolift_runtime"), "{main}");
        insta::assert_snapshot!(main);
    }

    #[test]
    fn the_build_script_sets_variables_then_runs_the_original() {
        let env = vec![("CARGO_PKG_NAME".to_owned(), "my-app".to_owned())];
        let plain = build_script(&env, None, false).unwrap();
        assert!(
            plain.contains("const TURBOLIFT_SHARED_RUNTIME: bool = false;"),
            "{plain}"
        );
        insta::assert_snapshot!("build_script_alone", plain);
        let shared = build_script(&env, None, true).unwrap();
        assert_eq!(
            shared.replace(
                "TURBOLIFT_SHARED_RUNTIME: bool = true",
                "TURBOLIFT_SHARED_RUNTIME: bool = false"
            ),
            plain
        );
        let user = "#![allow(unused)]\nuse std::env;\n/// Writes the table.\nfn main() { println!(\"cargo:rerun-if-changed=build.rs\"); }\n";
        let wrapped = build_script(&env, Some((user, Path::new("build.rs"))), false).unwrap();
        assert_eq!(wrapped.matches("fn original_build_script()").count(), 1);
        assert_eq!(wrapped.matches("fn main()").count(), 1);
        insta::assert_snapshot!("build_script_wrapping_the_original", wrapped);
    }
}
