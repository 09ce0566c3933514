//! Writing generated files without touching what did not change, and mirroring the
//! user's package with symlinks so that every relative path in it still resolves.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Writes `contents` to `path` unless it already holds exactly that, so that cargo sees
/// no change; the write goes through a temporary file and a rename, so a concurrent
/// reader never sees half a file.
pub fn write_if_changed(path: &Path, contents: &str) -> io::Result<bool> {
    if fs::read(path).is_ok_and(|old| old == contents.as_bytes()) {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, contents)?;
    fs::rename(&tmp, path)?;
    Ok(true)
}

/// Makes `link` a symlink to `target`, replacing whatever else is there.
fn symlink(target: &Path, link: &Path) -> io::Result<()> {
    if fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(());
    }
    match fs::symlink_metadata(link) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(link)?,
        Ok(_) => fs::remove_file(link)?,
        Err(_) => {}
    }
    match std::os::unix::fs::symlink(target, link) {
        // Another `cargo turbolift` run made the same link meanwhile.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// Mirrors `package` into `into`: each entry becomes a symlink to the original, except
/// the `generated` files (paths relative to the package), which the caller writes, and
/// the directories on the way to them, which are real directories mirrored one level
/// further. `skip` names top-level entries to leave out (the manifest, the target
/// directory). Links that no longer match an original entry are removed.
pub fn mirror(package: &Path, into: &Path, generated: &[PathBuf], skip: &[&str]) -> io::Result<()> {
    let mut real_dirs: BTreeSet<PathBuf> = BTreeSet::new();
    real_dirs.insert(PathBuf::new());
    for file in generated {
        let mut dir = file.parent();
        while let Some(d) = dir {
            real_dirs.insert(d.to_path_buf());
            dir = d.parent();
        }
    }
    for dir in &real_dirs {
        let out_dir = into.join(dir);
        fs::create_dir_all(&out_dir)?;
        let mut wanted = BTreeSet::new();
        for entry in fs::read_dir(package.join(dir))? {
            let entry = entry?;
            let name = entry.file_name();
            let relative = dir.join(&name);
            if dir.as_os_str().is_empty() && skip.iter().any(|s| name == *s) {
                continue;
            }
            if real_dirs.contains(&relative) || generated.contains(&relative) {
                wanted.insert(name);
                continue;
            }
            symlink(&entry.path(), &out_dir.join(&name))?;
            wanted.insert(name);
        }
        for entry in fs::read_dir(&out_dir)? {
            let entry = entry?;
            let is_link = entry.file_type()?.is_symlink();
            if is_link && !wanted.contains(&entry.file_name()) {
                fs::remove_file(entry.path())?;
            }
        }
    }
    Ok(())
}

/// Removes the files of `dir` whose names are not in `keep` (the binaries of functions no
/// longer distributed).
pub fn remove_other_files(dir: &Path, keep: impl Iterator<Item = String>) -> io::Result<()> {
    let keep: BTreeSet<String> = keep.collect();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if entry.file_type()?.is_file() && !keep.iter().any(|k| name == k.as_str()) {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_with_links_and_leaves_room_for_generated_files() {
        let tmp = tempfile::tempdir().unwrap();
        let package = tmp.path().join("pkg");
        fs::create_dir_all(package.join("src/geo")).unwrap();
        fs::create_dir_all(package.join("data")).unwrap();
        fs::create_dir_all(package.join("target/debug")).unwrap();
        for file in [
            "Cargo.toml",
            "src/main.rs",
            "src/geo.rs",
            "src/geo/summary.rs",
            "data/x.txt",
        ] {
            fs::write(package.join(file), file).unwrap();
        }
        let out = tmp.path().join("out");
        let generated = [PathBuf::from("src/main.rs"), PathBuf::from("build.rs")];
        mirror(&package, &out, &generated, &["Cargo.toml", "target"]).unwrap();
        assert!(fs::symlink_metadata(out.join("src")).unwrap().is_dir());
        assert_eq!(
            fs::read_link(out.join("src/geo.rs")).unwrap(),
            package.join("src/geo.rs")
        );
        assert_eq!(
            fs::read_to_string(out.join("src/geo/summary.rs")).unwrap(),
            "src/geo/summary.rs"
        );
        assert_eq!(
            fs::read_to_string(out.join("src/../data/x.txt")).unwrap(),
            "data/x.txt"
        );
        assert!(
            !out.join("src/main.rs").exists(),
            "generated files are left to the caller"
        );
        assert!(!out.join("Cargo.toml").exists() && !out.join("target").exists());

        // A file deleted in the package disappears from the mirror.
        fs::remove_file(package.join("data/x.txt")).unwrap();
        fs::remove_dir(package.join("data")).unwrap();
        mirror(&package, &out, &generated, &["Cargo.toml", "target"]).unwrap();
        assert!(fs::symlink_metadata(out.join("data")).is_err());
    }

    #[test]
    fn unchanged_contents_are_not_rewritten() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/b.txt");
        assert!(write_if_changed(&path, "one").unwrap());
        assert!(!write_if_changed(&path, "one").unwrap());
        assert!(write_if_changed(&path, "two").unwrap());
        assert_eq!(fs::read_to_string(path).unwrap(), "two");
    }
}
