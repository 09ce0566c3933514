//! The module-tree walk, following rustc's rules for where a module's file is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use proc_macro2::Span;

use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Attribute, Expr, ImplItem, Item, ItemFn, Lit, Meta, TraitItem};
use turbolift_shared::naming;
use turbolift_syntax::{DistributeArgs, check_function};

use super::attr::Imports;
use super::{Discovery, DistributedFn, Target, cfg, relative};
use crate::diagnostic::Diagnostic;

/// Walks `target` from its crate root, adding what it finds to `out`.
pub fn walk_target(package_root: &Path, target: &Target, out: &mut Discovery) {
    let mut walker = Walker {
        package_root,
        target,
        out,
    };
    walker.file(&target.root, Vec::new(), true);
}

struct Walker<'a> {
    package_root: &'a Path,
    target: &'a Target,
    out: &'a mut Discovery,
}

/// A source file being walked.
struct File {
    path: PathBuf,
    shown: PathBuf,
    source: Arc<str>,
    /// Where the file's own `mod x;` declarations look: the file's directory for crate
    /// roots, `mod.rs` files and `#[path]` files, else the directory named after the file.
    module_dir: PathBuf,
}

impl Walker<'_> {
    fn file(&mut self, path: &Path, modules: Vec<String>, mod_rs: bool) {
        let shown = relative(self.package_root, path);
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                self.out
                    .errors
                    .push(format!("cannot read `{}`: {e}", shown.display()));
                return;
            }
        };
        let source: Arc<str> = Arc::from(text);
        let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let module_dir = if mod_rs {
            parent
        } else {
            parent.join(path.file_stem().unwrap_or_default())
        };
        let file = File {
            path: path.to_owned(),
            shown,
            source,
            module_dir,
        };
        let parsed = match syn::parse_file(&file.source) {
            Ok(parsed) => parsed,
            Err(error) => {
                for e in error {
                    self.out.diagnostics.push(Diagnostic::new(
                        format!("syntax error: {e}"),
                        &file.shown,
                        &file.source,
                        (e.span(), e.span()),
                        Some("fix the syntax error (`cargo check` shows it too); no service was generated".to_owned()),
                    ));
                }
                return;
            }
        };
        self.items(&file, &parsed.items, &modules, &[]);
    }

    /// The items of one module; `inline` are the inline modules between the file and here.
    fn items(&mut self, file: &File, items: &[Item], modules: &[String], inline: &[String]) {
        let imports = Imports::of(items, &self.target.attribute);
        let features = self.target.features.as_ref();
        for item in items {
            match item {
                Item::Fn(f) => {
                    if cfg::left_out(&f.attrs, features) {
                        continue;
                    }
                    if let Some(attr) = imports.find(&f.attrs) {
                        self.function(file, f, attr, modules);
                    }
                    self.nested(file, &imports, f);
                }
                Item::Mod(m) => {
                    if cfg::left_out(&m.attrs, features) {
                        continue;
                    }
                    let mut inner = modules.to_vec();
                    inner.push(m.ident.to_string());
                    let path_attr = path_attribute(&m.attrs);
                    match &m.content {
                        Some((_, content)) => {
                            let mut dirs = inline.to_vec();
                            dirs.push(path_attr.unwrap_or_else(|| m.ident.to_string()));
                            self.items(file, content, &inner, &dirs);
                        }
                        None => {
                            let base = inline
                                .iter()
                                .fold(file.module_dir.clone(), |d, c| d.join(c));
                            let found = match path_attr {
                                Some(p) if inline.is_empty() => Some((
                                    file.path.parent().unwrap_or(Path::new("")).join(p),
                                    true,
                                )),
                                Some(p) => Some((base.join(p), true)),
                                None => {
                                    let name = m.ident.to_string();
                                    let flat = base.join(format!("{name}.rs"));
                                    let nested = base.join(&name).join("mod.rs");
                                    if flat.is_file() {
                                        Some((flat, false))
                                    } else if nested.is_file() {
                                        Some((nested, true))
                                    } else {
                                        // rustc reports a missing module file, unless a
                                        // `#[cfg]` leaves it out.
                                        None
                                    }
                                }
                            };
                            if let Some((path, mod_rs)) = found {
                                self.file(&path, inner, mod_rs);
                            }
                        }
                    }
                }
                Item::Impl(i) => {
                    for item in &i.items {
                        if let ImplItem::Fn(f) = item {
                            self.misplaced(file, &imports, &f.attrs, &f.sig, "an `impl` block");
                        }
                    }
                }
                Item::Trait(t) => {
                    for item in &t.items {
                        if let TraitItem::Fn(f) = item {
                            self.misplaced(file, &imports, &f.attrs, &f.sig, "a trait");
                        }
                    }
                }
                other => {
                    if let Some(attr) = item_attrs(other).and_then(|attrs| imports.find(attrs)) {
                        self.report(
                            file,
                            (attr.span(), attr.span()),
                            "#[turbolift::distribute] goes on a function".to_owned(),
                            "put it on a free function: `fn name(arg: Type) -> Type { .. }`"
                                .to_owned(),
                        );
                    }
                }
            }
        }
    }

    fn function(&mut self, file: &File, f: &ItemFn, attr: &Attribute, modules: &[String]) {
        let mut ok = true;
        match DistributeArgs::from_attribute(attr) {
            Ok(args) => {
                for problem in check_function(&f.sig) {
                    ok = false;
                    self.report(file, problem.span_range(), problem.message, problem.help);
                }
                if ok {
                    let name = f.sig.ident.to_string();
                    self.out.functions.push(DistributedFn {
                        id: naming::id_from_modules(
                            &naming::crate_name(&self.target.name),
                            modules,
                            &name,
                        ),
                        target: self.target.clone(),
                        file: file.path.clone(),
                        line: f.sig.ident.span().start().line,
                        args,
                    });
                }
            }
            Err(errors) => {
                for e in errors {
                    self.report(
                        file,
                        (e.span(), e.span()),
                        e.to_string(),
                        "see docs/attribute.md for the arguments of #[turbolift::distribute]"
                            .to_owned(),
                    );
                }
                for problem in check_function(&f.sig) {
                    self.report(file, problem.span_range(), problem.message, problem.help);
                }
            }
        }
    }

    /// Distributed functions declared inside the body of `outer`.
    fn nested(&mut self, file: &File, imports: &Imports<'_>, outer: &ItemFn) {
        struct Nested<'i> {
            imports: &'i Imports<'i>,
            found: Vec<(Span, String)>,
        }
        impl<'ast> Visit<'ast> for Nested<'_> {
            fn visit_item_fn(&mut self, f: &'ast ItemFn) {
                if self.imports.find(&f.attrs).is_some() {
                    self.found
                        .push((f.sig.ident.span(), f.sig.ident.to_string()));
                }
                syn::visit::visit_item_fn(self, f);
            }
        }
        let mut visitor = Nested {
            imports,
            found: Vec::new(),
        };
        visitor.visit_block(&outer.block);
        for (span, name) in visitor.found {
            self.report(
                file,
                (span, span),
                format!(
                    "`{name}` is declared inside the function `{}`; distributed functions must be declared at module level",
                    outer.sig.ident
                ),
                format!("move `{name}` out of `{}` to the enclosing module", outer.sig.ident),
            );
        }
    }

    fn misplaced(
        &mut self,
        file: &File,
        imports: &Imports,
        attrs: &[Attribute],
        sig: &syn::Signature,
        place: &str,
    ) {
        if imports.find(attrs).is_none() {
            return;
        }
        let problems = check_function(sig);
        if problems.is_empty() {
            self.report(
                file,
                (sig.ident.span(), sig.ident.span()),
                format!(
                    "`{}` is declared in {place}; distributed functions must be free functions",
                    sig.ident
                ),
                format!("move `{}` out of {place} to module level", sig.ident),
            );
        }
        for problem in problems {
            self.report(file, problem.span_range(), problem.message, problem.help);
        }
    }

    fn report(&mut self, file: &File, span: (Span, Span), message: String, help: String) {
        self.out.diagnostics.push(Diagnostic::new(
            message,
            &file.shown,
            &file.source,
            span,
            Some(help),
        ));
    }
}

fn path_attribute(attrs: &[Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| match &a.meta {
        Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            Expr::Lit(lit) => match &lit.lit {
                Lit::Str(s) => Some(s.value()),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    })
}

fn item_attrs(item: &Item) -> Option<&[Attribute]> {
    Some(match item {
        Item::Struct(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Const(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        _ => return None,
    })
}
