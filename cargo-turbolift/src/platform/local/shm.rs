//! The run's directory of shared memory ([`protocol::env::SHM_DIR`]): the program and the
//! replicas of a run on this machine pass large arguments and results through files there,
//! on the tmpfs `/dev/shm`, rather than through TCP. Each run has its own, readable by
//! this user only from its creation, named after the user, the `cargo turbolift` process
//! and the run (`turbolift-<uid>-<pid>-<run id>`), and removed with everything in it when
//! the run ends ([`ShmDir`]). A run killed by SIGKILL cannot remove its directory: the
//! next run removes this user's directories whose process is gone ([`sweep`]).
//!
//! Shared memory is only a faster path: a run whose directory cannot be created goes on
//! without one.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::Result;
use turbolift_shared::protocol;

use crate::shell::Shell;

/// The tmpfs the runs' directories are created in.
const ROOT: &str = "/dev/shm";

/// Whether [`protocol::env::SHM`] lets a run use shared memory: yes unless it says `off`;
/// a value that is neither `on` nor `off` is an error naming the variable.
pub fn enabled() -> Result<bool> {
    let value = std::env::var_os(protocol::env::SHM);
    parse(value.as_deref().map(|v| v.to_string_lossy()).as_deref())
}

fn parse(value: Option<&str>) -> Result<bool> {
    protocol::env::switch(protocol::env::SHM, value, true).map_err(anyhow::Error::msg)
}

/// The directory of one run; dropping it removes it and everything in it.
pub struct ShmDir {
    path: PathBuf,
    shell: Shell,
}

impl ShmDir {
    /// The run's directory in `/dev/shm`, created once the directories of killed runs are
    /// removed; `None`, and a verbose line saying why, when it cannot be created.
    pub fn create(shell: &Shell, run_id: &str) -> Option<ShmDir> {
        let root = Path::new(ROOT);
        // SAFETY: getuid has no failure and no memory effects.
        let uid = unsafe { libc::getuid() };
        sweep(root, uid);
        match ShmDir::create_in(shell, root, uid, run_id) {
            Ok(dir) => {
                shell.verbose_status(
                    "Shared",
                    format!("memory of the run in {}", dir.path.display()),
                );
                Some(dir)
            }
            Err(e) => {
                let why = format!("cannot create a directory in {ROOT}: {e}");
                shell.verbose_status(
                    "Shared",
                    format!("memory: none ({why}); every body goes over TCP"),
                );
                None
            }
        }
    }

    /// `<root>/turbolift-<uid>-<pid>-<run_id>`, new, `0700` from its creation.
    fn create_in(shell: &Shell, root: &Path, uid: u32, run_id: &str) -> io::Result<ShmDir> {
        let path = root.join(format!("{}{}-{run_id}", prefix(uid), std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(ShmDir {
            path,
            shell: shell.clone(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ShmDir {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => self.shell.warn(format!(
                "cannot remove the run's shared memory {}: {e}",
                self.path.display()
            )),
            _ => {}
        }
    }
}

/// The start of the name of every directory of the user `uid`.
fn prefix(uid: u32) -> String {
    format!("turbolift-{uid}-")
}

/// Removes the directories in `root` of the user `uid`'s runs whose `cargo turbolift`
/// process is gone; nothing else is touched: not a name of another shape, not another
/// user's, not what is not a directory (a link to one included).
fn sweep(root: &Path, uid: u32) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| pid_in(n, uid)) else {
            continue;
        };
        // The entry's own metadata: a symbolic link is not followed.
        let ours = entry.metadata().is_ok_and(|m| m.is_dir() && m.uid() == uid);
        if ours && !alive(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The pid in `name` when it is exactly `turbolift-<uid>-<pid>-<run id>` (a run id of hex
/// digits).
fn pid_in(name: &str, uid: u32) -> Option<libc::pid_t> {
    let (pid, run_id) = name.strip_prefix(&prefix(uid))?.split_once('-')?;
    let made_of = |s: &str, digit: fn(&u8) -> bool| !s.is_empty() && s.bytes().all(|b| digit(&b));
    if !made_of(pid, u8::is_ascii_digit) || !made_of(run_id, u8::is_ascii_hexdigit) {
        return None;
    }
    pid.parse().ok().filter(|pid| *pid > 0)
}

/// Whether the process `pid` exists, whoever runs it: only "no such process" says not.
fn alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 is not sent; kill only checks that the process exists.
    let found = unsafe { libc::kill(pid, 0) } == 0;
    found || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::{ShmDir, parse, sweep};
    use crate::shell::Shell;

    fn shell() -> Shell {
        Shell::new(0, true, crate::cli::Color::Never)
    }

    fn uid() -> u32 {
        // SAFETY: getuid has no failure and no memory effects.
        unsafe { libc::getuid() }
    }

    /// The pid of a process that has exited and been reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        child.id()
    }

    #[test]
    fn a_runs_directory_is_private_and_goes_with_its_files() {
        let root = tempfile::tempdir().unwrap();
        let dir = ShmDir::create_in(&shell(), root.path(), uid(), "0123456789ab").unwrap();
        let path = dir.path().to_owned();
        let name = format!("turbolift-{}-{}-0123456789ab", uid(), std::process::id());
        assert_eq!(path, root.path().join(name));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::write(path.join("region-1"), b"arguments").unwrap();
        std::fs::create_dir(path.join("inner")).unwrap();
        std::fs::write(path.join("inner/region-2"), b"result").unwrap();
        drop(dir);
        assert!(!path.exists());
        assert!(root.path().exists());
    }

    #[test]
    fn the_sweep_removes_the_directories_of_this_users_dead_runs_only() {
        let root = tempfile::tempdir().unwrap();
        let (uid, dead, live) = (uid(), dead_pid(), std::process::id());
        let dir = |name: String| {
            let path = root.path().join(name);
            std::fs::create_dir(&path).unwrap();
            std::fs::write(path.join("region-1"), b"arguments").unwrap();
            path
        };
        let gone = dir(format!("turbolift-{uid}-{dead}-0123456789ab"));
        let kept = [
            dir(format!("turbolift-{uid}-{live}-0123456789ab")),
            dir(format!("turbolift-{}-{dead}-0123456789ab", uid + 1)),
            dir(format!("turbolift-{uid}-{dead}")),
            dir(format!("turbolift-{uid}-{dead}-")),
            dir(format!("turbolift-{uid}-{dead}-not-hex")),
            dir(format!("turbolift-{uid}-+{dead}-0123456789ab")),
            dir(format!("turbolift-{uid}-0-0123456789ab")),
            dir(format!("other-{uid}-{dead}-0123456789ab")),
        ];
        let file = root.path().join(format!("turbolift-{uid}-{dead}-abcdef"));
        std::fs::write(&file, b"not a directory").unwrap();
        let target = dir("target".to_owned());
        let link = root.path().join(format!("turbolift-{uid}-{dead}-fedcba"));
        std::os::unix::fs::symlink(&target, &link).unwrap();

        sweep(root.path(), uid);

        assert!(!gone.exists());
        for path in kept.iter().chain([&file, &link]) {
            assert!(path.exists(), "{} was removed", path.display());
        }
        assert!(target.join("region-1").exists());
    }

    #[test]
    fn turbolift_shm_is_on_unless_off() {
        assert!(parse(None).unwrap());
        assert!(parse(Some("")).unwrap());
        assert!(parse(Some("on")).unwrap());
        assert!(!parse(Some("off")).unwrap());
        let error = parse(Some("fast")).unwrap_err().to_string();
        assert_eq!(error, "TURBOLIFT_SHM must be `on` or `off`, not `fast`");
    }
}
