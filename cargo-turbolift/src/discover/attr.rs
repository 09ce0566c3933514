//! Recognising `#[turbolift::distribute]`, also under a `use`d name and through a crate
//! that re-exports it (`pub use turbolift::distribute;` in a walked crate's root).

use std::collections::HashSet;

use syn::{Attribute, Item, UseTree};

/// The path of the attribute itself.
pub fn turbolift_distribute() -> Vec<String> {
    vec!["turbolift".to_owned(), "distribute".to_owned()]
}

/// The names under which the attribute is in scope in one module.
#[derive(Debug, Default, Clone)]
pub struct Imports<'k> {
    /// The paths that name the attribute: `turbolift::distribute`, and those of crates
    /// that re-export it.
    known: &'k [Vec<String>],
    aliases: HashSet<String>,
    glob: bool,
}

impl<'k> Imports<'k> {
    /// Reads the `use` items of a module.
    pub fn of(items: &[Item], known: &'k [Vec<String>]) -> Self {
        let mut imports = Imports {
            known,
            ..Imports::default()
        };
        for item in items {
            if let Item::Use(u) = item {
                imports.scan(&u.tree, &[]);
            }
        }
        imports
    }

    fn scan(&mut self, tree: &UseTree, prefix: &[String]) {
        match tree {
            UseTree::Path(p) => {
                let mut next = prefix.to_vec();
                next.push(p.ident.to_string());
                self.scan(&p.tree, &next);
            }
            UseTree::Name(n) if self.is_known(prefix, &n.ident.to_string()) => {
                self.aliases.insert(n.ident.to_string());
            }
            UseTree::Rename(r) if self.is_known(prefix, &r.ident.to_string()) => {
                self.aliases.insert(r.rename.to_string());
            }
            UseTree::Glob(_) if self.is_known(prefix, "distribute") => self.glob = true,
            UseTree::Group(g) => {
                for t in &g.items {
                    self.scan(t, prefix);
                }
            }
            _ => {}
        }
    }

    /// The attribute, if `attrs` has `#[turbolift::distribute]` or an imported alias.
    pub fn find<'a>(&self, attrs: &'a [Attribute]) -> Option<&'a Attribute> {
        attrs.iter().find(|a| self.is_distribute(a))
    }

    fn is_distribute(&self, attr: &Attribute) -> bool {
        let segments: Vec<String> = attr
            .path()
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect();
        match segments.as_slice() {
            [name] => self.aliases.contains(name) || (self.glob && name == "distribute"),
            path => self.known.iter().any(|k| k.as_slice() == path),
        }
    }

    /// Whether `prefix::name` is one of the known paths.
    fn is_known(&self, prefix: &[String], name: &str) -> bool {
        self.known.iter().any(|k| {
            k.len() == prefix.len() + 1 && k[..prefix.len()] == *prefix && k[prefix.len()] == name
        })
    }
}

/// The names under which a crate root re-exports the attribute:
/// `pub use turbolift::distribute;` (`distribute`) or `pub use turbolift::distribute as d;`.
pub fn reexports(items: &[Item]) -> Vec<String> {
    let known = [turbolift_distribute()];
    let mut names = Vec::new();
    for item in items {
        if let Item::Use(u) = item
            && matches!(u.vis, syn::Visibility::Public(_))
        {
            let mut imports = Imports::of(std::slice::from_ref(item), &known);
            imports.glob = false;
            names.extend(imports.aliases.drain());
        }
    }
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finds(src: &str) -> bool {
        let file = syn::parse_file(src).unwrap();
        let known = [
            turbolift_distribute(),
            vec!["engine".to_owned(), "remote".to_owned()],
        ];
        let imports = Imports::of(&file.items, &known);
        file.items.iter().any(|item| match item {
            Item::Fn(f) => imports.find(&f.attrs).is_some(),
            _ => false,
        })
    }

    #[test]
    fn full_path_and_imports() {
        assert!(finds("#[turbolift::distribute] fn f() {}"));
        assert!(finds(
            "#[::turbolift::distribute(timeout = \"1s\")] fn f() {}"
        ));
        assert!(finds("use turbolift::distribute; #[distribute] fn f() {}"));
        assert!(finds(
            "use ::turbolift::{Error, distribute}; #[distribute] fn f() {}"
        ));
        assert!(finds(
            "use turbolift::distribute as remote; #[remote] fn f() {}"
        ));
        assert!(finds("use turbolift::*; #[distribute] fn f() {}"));
    }

    #[test]
    fn through_a_crate_that_re_exports_it() {
        assert!(finds("#[engine::remote] fn f() {}"));
        assert!(finds("use engine::remote; #[remote] fn f() {}"));
        assert!(finds("use engine::remote as r; #[r] fn f() {}"));
        assert!(!finds("#[engine::distribute] fn f() {}"));
        let root = syn::parse_file(
            "pub use turbolift::distribute as remote; use turbolift::distribute; pub use turbolift::{distribute as d, Error};",
        )
        .unwrap();
        assert_eq!(reexports(&root.items), ["d", "remote"]);
    }

    #[test]
    fn other_attributes_are_not_it() {
        assert!(!finds("#[distribute] fn f() {}"));
        assert!(!finds("use other::distribute; #[distribute] fn f() {}"));
        assert!(!finds("#[other::distribute] fn f() {}"));
        assert!(!finds("#[inline] fn f() {}"));
    }
}
