//! Finding every `#[turbolift::distribute]` function of a crate target: a walk of its
//! module tree from the crate root, parsed with syn outside any proc-macro.

mod attr;
mod cfg;
mod walk;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use turbolift_syntax::DistributeArgs;

use crate::diagnostic::Diagnostic;

pub use attr::{reexports, turbolift_distribute};
pub use walk::walk_target;

/// The kind of crate target a function lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Lib,
    Bin,
    /// An example chosen with `--example`.
    Example,
}

/// A crate target to walk: its name, kind and root file.
#[derive(Debug, Clone)]
pub struct Target {
    /// The package it belongs to.
    pub package: String,
    pub name: String,
    pub kind: TargetKind,
    pub root: PathBuf,
    /// The package's features enabled in this build, as cargo resolved them; `None` when
    /// not known (then `#[cfg(feature)]` items are walked).
    pub features: Option<BTreeSet<String>>,
    /// The paths that name the attribute in this crate: `turbolift::distribute`, and
    /// `krate::name` for every walked crate whose root re-exports it (`crate::name` for
    /// its own).
    pub attribute: Vec<Vec<String>>,
}

/// One function to distribute.
#[derive(Debug, Clone)]
pub struct DistributedFn {
    /// `geo::summary::area`, as `turbolift::naming` computes it.
    pub id: String,
    /// The target it was found in.
    pub target: Target,
    /// The file it is declared in, and its line.
    pub file: PathBuf,
    pub line: usize,
    pub args: DistributeArgs,
}

/// What a walk found: functions, and the problems that stop generation.
#[derive(Debug, Default)]
pub struct Discovery {
    pub functions: Vec<DistributedFn>,
    pub diagnostics: Vec<Diagnostic>,
    /// Problems without one place in the source.
    pub errors: Vec<String>,
}

impl Discovery {
    /// Walks each target (with the directory its files are shown relative to) and checks
    /// that ids are unique across them.
    pub fn of_targets<'t>(targets: impl IntoIterator<Item = (&'t Path, &'t Target)>) -> Discovery {
        let mut discovery = Discovery::default();
        let mut first_base = None;
        for (base, target) in targets {
            walk_target(base, target, &mut discovery);
            first_base.get_or_insert(base);
        }
        discovery.check_unique_ids(first_base.unwrap_or(Path::new(".")));
        discovery
    }

    fn check_unique_ids(&mut self, package_root: &Path) {
        let mut seen: Vec<&DistributedFn> = Vec::new();
        let mut duplicates = Vec::new();
        for f in &self.functions {
            if let Some(first) = seen.iter().find(|s| s.id == f.id) {
                duplicates.push(format!(
                    "`{}` is distributed twice: in the {} target `{}` ({}:{}) and in the {} target `{}` ({}:{}); calls are routed by module path, so rename one of them",
                    f.id,
                    kind_name(first.target.kind),
                    first.target.name,
                    relative(package_root, &first.file).display(),
                    first.line,
                    kind_name(f.target.kind),
                    f.target.name,
                    relative(package_root, &f.file).display(),
                    f.line,
                ));
            } else {
                seen.push(f);
            }
        }
        self.errors.extend(duplicates);
    }
}

/// How messages name a target of `kind`.
pub fn kind_name(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Lib => "library",
        TargetKind::Bin => "binary",
        TargetKind::Example => "example",
    }
}

/// `path` relative to `base` when it is inside it.
pub fn relative(base: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(base)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| path.to_path_buf())
}
