//! Recognising `#[turbolift::distribute]`, also under a `use`d name.

use std::collections::HashSet;

use syn::{Attribute, Item, UseTree};

/// The names under which `turbolift::distribute` is in scope in one module.
#[derive(Debug, Default, Clone)]
pub struct Imports {
    aliases: HashSet<String>,
    glob: bool,
}

impl Imports {
    /// Reads the `use` items of a module.
    pub fn of(items: &[Item]) -> Self {
        let mut imports = Imports::default();
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
            UseTree::Name(n) if is_turbolift(prefix) && n.ident == "distribute" => {
                self.aliases.insert("distribute".to_owned());
            }
            UseTree::Rename(r) if is_turbolift(prefix) && r.ident == "distribute" => {
                self.aliases.insert(r.rename.to_string());
            }
            UseTree::Glob(_) if is_turbolift(prefix) => self.glob = true,
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
            [krate, name] => krate == "turbolift" && name == "distribute",
            [name] => self.aliases.contains(name) || (self.glob && name == "distribute"),
            _ => false,
        }
    }
}

fn is_turbolift(prefix: &[String]) -> bool {
    prefix == ["turbolift"]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finds(src: &str) -> bool {
        let file = syn::parse_file(src).unwrap();
        let imports = Imports::of(&file.items);
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
    fn other_attributes_are_not_it() {
        assert!(!finds("#[distribute] fn f() {}"));
        assert!(!finds("use other::distribute; #[distribute] fn f() {}"));
        assert!(!finds("#[other::distribute] fn f() {}"));
        assert!(!finds("#[inline] fn f() {}"));
    }
}
