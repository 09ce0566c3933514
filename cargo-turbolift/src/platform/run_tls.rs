//! A run's TLS material on this machine: its certificate authority, and the files the
//! replicas and the program read their certificates and keys from, in a folder of the
//! run's own that only this user can read and that goes when the run ends.
//!
//! The folder is `target/turbolift/<package>/tls/<run-id>/` (`0700`): beside the run's
//! logs, not among them, because logs are kept after the run and keys must not be. In it,
//! one folder per side with the three files named as inside a container (the names of a
//! `kubernetes.io/tls` Secret): `program/` and `services/<service>/`, each holding
//! `ca.crt`, `tls.crt` and `tls.key` (`0600`, written atomically). A run that
//! `cargo turbolift` could not end itself (killed with SIGKILL) leaves its folder behind;
//! the next run of the package removes it once its process is gone.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use turbolift_shared::protocol::{env, tls_in_container};

use crate::private::{private_dir, write_private};
use crate::tls::{Authority, Issued, Prober};

/// The TLS material of one run whose replicas run on this machine (local processes or
/// Docker containers). Dropping it removes its folder, keys included.
pub struct RunTls {
    authority: Authority,
    dir: PathBuf,
    program: TlsFiles,
}

/// Where one side's certificate, key and the run's authority are: the values of
/// `TURBOLIFT_TLS_CERT`, `TURBOLIFT_TLS_KEY` and `TURBOLIFT_TLS_CA`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The folder that holds the three, named as in a container
    /// (`turbolift_shared::protocol::tls_in_container`): it can be mounted there whole.
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files of the folder `dir`.
    fn in_dir(dir: PathBuf) -> TlsFiles {
        let named = |path: &str| dir.join(Path::new(path).file_name().expect("a file name"));
        TlsFiles {
            ca: named(tls_in_container::CA),
            cert: named(tls_in_container::CERT),
            key: named(tls_in_container::KEY),
            dir,
        }
    }

    /// The variables that name the three files.
    pub const VARIABLES: [&'static str; 3] = [env::TLS_CA, env::TLS_CERT, env::TLS_KEY];

    /// [`TlsFiles::VARIABLES`] with these paths, for the environment of a process that
    /// reads them.
    pub fn env(&self) -> [(&'static str, &Path); 3] {
        let [ca, cert, key] = Self::VARIABLES;
        [(ca, &self.ca), (cert, &self.cert), (key, &self.key)]
    }

    /// Writes the authority's certificate and `issued` into the folder.
    fn write(&self, ca_pem: &str, issued: &Issued) -> Result<()> {
        private_dir(&self.dir).with_context(|| format!("cannot create {}", self.dir.display()))?;
        for (path, contents) in [
            (&self.ca, ca_pem),
            (&self.cert, issued.cert_pem.as_str()),
            (&self.key, issued.key_pem.as_str()),
        ] {
            write_private(path, contents)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }
}

/// The file in a run's folder that names the process of the run.
const OWNER: &str = "owner";

impl RunTls {
    /// A fresh authority for the run `run_id`, its folder under `root`
    /// (`target/turbolift/<package>/tls`) and the program's files in it. Folders that
    /// ended runs left under `root` go first.
    pub fn new(root: &Path, run_id: &str) -> Result<RunTls> {
        private_dir(root).with_context(|| format!("cannot create {}", root.display()))?;
        remove_abandoned(root);
        let dir = root.join(run_id);
        private_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // From here on, dropping `run` removes the folder, whatever fails next.
        let run = RunTls {
            authority: Authority::new(run_id)?,
            program: TlsFiles::in_dir(dir.join("program")),
            dir,
        };
        write_private(&run.dir.join(OWNER), &format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write into {}", run.dir.display()))?;
        let program = run.authority.program()?;
        run.program.write(&run.authority.ca_pem(), &program)?;
        Ok(run)
    }

    /// The run's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The program's client certificate, its key and the authority.
    pub fn program_files(&self) -> &TlsFiles {
        &self.program
    }

    /// Issues a certificate for `service`, reached by `names` besides 127.0.0.1 and
    /// `localhost`, and writes it, its key and the authority into the service's folder
    /// (again on every call, replacing what was there).
    pub fn service_files(&self, service: &str, names: &[String]) -> Result<TlsFiles> {
        let files = TlsFiles::in_dir(self.dir.join("services").join(service));
        let issued = self.authority.service(service, names)?;
        files.write(&self.authority.ca_pem(), &issued)?;
        Ok(files)
    }

    /// Readiness probes that believe only this run's authority.
    pub fn prober(&self) -> Result<Prober> {
        Prober::new(&self.authority.ca_pem())
    }
}

impl Drop for RunTls {
    /// The keys do not outlive the run.
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes the folders of runs whose process is gone (killed before it could remove them).
fn remove_abandoned(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let owner = std::fs::read_to_string(dir.join(OWNER))
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok());
        let abandoned = match owner {
            Some(pid) => !process_exists(pid),
            // A folder being made by another run has its owner within moments.
            None => entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|at| at.elapsed().is_ok_and(|age| age.as_secs() > 60)),
        };
        if abandoned {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Whether a process `pid` exists (of any user).
fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 checks only whether the process exists; nothing is sent.
    let sent = unsafe { libc::kill(pid, 0) };
    sent == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn keys_are_private_and_go_with_the_run() {
        let workspace = tempfile::tempdir().unwrap();
        let root = workspace.path().join("tls");
        let run = RunTls::new(&root, "0123456789ab").unwrap();
        let dir = run.dir().to_owned();
        assert_eq!(dir, root.join("0123456789ab"));
        let program = run.program_files().clone();
        let service = run
            .service_files("quickstart-square", &["square".to_owned()])
            .unwrap();
        assert_eq!(
            service.dir,
            dir.join("services/quickstart-square"),
            "{service:?}"
        );
        for files in [&program, &service] {
            assert_eq!(mode(&files.dir), 0o700);
            for file in [&files.ca, &files.cert, &files.key] {
                assert_eq!(mode(file), 0o600, "{}", file.display());
            }
            assert_eq!(files.key.file_name().unwrap(), "tls.key");
            let key = std::fs::read_to_string(&files.key).unwrap();
            assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
            assert_eq!(
                std::fs::read_to_string(&files.ca).unwrap(),
                run.authority.ca_pem()
            );
        }
        for folder in [&root, &dir] {
            assert_eq!(mode(folder), 0o700, "{}", folder.display());
        }
        assert_eq!(
            program.env(),
            [
                (env::TLS_CA, program.ca.as_path()),
                (env::TLS_CERT, program.cert.as_path()),
                (env::TLS_KEY, program.key.as_path()),
            ]
        );
        drop(run);
        assert!(!dir.exists(), "the run's keys are gone with it");
        assert!(root.exists());
    }

    #[test]
    fn a_folder_an_ended_run_left_goes_with_the_next_run() {
        let workspace = tempfile::tempdir().unwrap();
        let root = workspace.path().join("tls");
        let left = root.join("deadbeef0000");
        private_dir(&left).unwrap();
        // A process that has ended: a child waited for.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        std::fs::write(left.join(OWNER), format!("{pid}\n")).unwrap();
        let going = root.join("0000deadbeef");
        private_dir(&going).unwrap();
        std::fs::write(going.join(OWNER), format!("{}\n", std::process::id())).unwrap();
        let run = RunTls::new(&root, "0123456789ab").unwrap();
        assert!(!left.exists(), "an ended run's folder was removed");
        assert!(going.exists(), "a running run's folder stays");
        drop(run);
    }
}
