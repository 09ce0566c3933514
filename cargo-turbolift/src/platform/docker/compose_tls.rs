//! TLS for `compose.yaml`: a fresh authority per build, its files in `tls/` beside the
//! compose file, and the Docker secrets that carry each service's into its containers.
//!
//! `tls/` (`0700`, every file `0600`) holds the authority's certificate `ca.crt`, each
//! service's `<service>.crt` and `<service>.key`, and the program's `program.crt` and
//! `program.key`. A service's certificate names it as the swarm's DNS does: `<service>`
//! (its virtual IP), `tasks.<service>` (every replica), plus 127.0.0.1 and `localhost`
//! (its own health check). `docker stack deploy` turns the files into Docker secrets,
//! mounted in the containers at `/etc/turbolift/tls/` owned by user 65532 with mode
//! `0400`. Swarm secrets cannot change once created, so their names carry the
//! authority's id: a stack deployed again after a new build gets new secrets instead of
//! failing on the old ones.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};
use turbolift_shared::protocol::{env, tls_in_container};

use crate::platform::image::{CONTAINER_USER, Image};
use crate::platform::random_hex;
use crate::private::{private_dir, write_private};
use crate::tls::{Authority, Issued};

/// The folder beside `compose.yaml`.
pub const DIR: &str = "tls";

/// Mode of the mounted files: read by their owner only.
const FILE_MODE: u32 = 0o400;

/// A build's TLS for the compose file: the authority's id, which the secrets' names carry.
pub struct ComposeTls {
    id: String,
}

/// One file a Docker secret is made of: its name in the compose file, its file under
/// `tls/`, and where it is mounted.
struct SecretFile {
    key: String,
    file: String,
    target: &'static str,
}

impl ComposeTls {
    /// A new authority, and `dir/tls/` written from it for `images`' services and the
    /// program (files of services no longer built go).
    pub fn write(dir: &Path, images: &[Image]) -> Result<ComposeTls> {
        let id = random_hex(6)?;
        let authority = Authority::new(&format!("compose {id}"))?;
        let tls = dir.join(DIR);
        private_dir(&tls).with_context(|| format!("cannot create {}", tls.display()))?;
        let mut files = vec![("ca.crt".to_owned(), authority.ca_pem())];
        let mut add = |stem: &str, issued: Issued| {
            files.push((format!("{stem}.crt"), issued.cert_pem));
            files.push((format!("{stem}.key"), issued.key_pem));
        };
        for image in images {
            add(
                &image.service,
                authority.service(&image.service, &names(&image.service))?,
            );
        }
        add("program", authority.program()?);
        for (name, contents) in &files {
            let path = tls.join(name);
            write_private(&path, contents)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        for entry in std::fs::read_dir(&tls)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !files.iter().any(|(f, _)| *f == name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(ComposeTls { id })
    }

    /// The three secrets of `service`'s containers.
    fn files_of(&self, service: &str) -> [SecretFile; 3] {
        let id = &self.id;
        [
            SecretFile {
                key: format!("ca.crt.{id}"),
                file: "ca.crt".to_owned(),
                target: tls_in_container::CA,
            },
            SecretFile {
                key: format!("{service}.crt.{id}"),
                file: format!("{service}.crt"),
                target: tls_in_container::CERT,
            },
            SecretFile {
                key: format!("{service}.key.{id}"),
                file: format!("{service}.key"),
                target: tls_in_container::KEY,
            },
        ]
    }

    /// The compose file's top-level `secrets`: every file of every service.
    pub fn secrets(&self, services: &[&str]) -> Value {
        let mut secrets = Map::new();
        for service in services {
            for f in self.files_of(service) {
                secrets.insert(f.key, json!({ "file": format!("{DIR}/{}", f.file) }));
            }
        }
        Value::Object(secrets)
    }

    /// A service's `secrets`, in the long syntax: mounted where the service reads them,
    /// owned by the containers' user, readable by it alone.
    pub fn service_secrets(&self, service: &str) -> Value {
        self.files_of(service)
            .into_iter()
            .map(|f| {
                json!({
                    "source": f.key,
                    "target": f.target,
                    "uid": CONTAINER_USER.to_string(),
                    "gid": CONTAINER_USER.to_string(),
                    "mode": FILE_MODE,
                })
            })
            .collect()
    }
}

/// `TURBOLIFT_TLS_CA`, `TURBOLIFT_TLS_CERT` and `TURBOLIFT_TLS_KEY` of a service's
/// containers: where its secrets are mounted.
pub fn environment() -> [(&'static str, &'static str, &'static str); 3] {
    [
        ("tls_ca", env::TLS_CA, tls_in_container::CA),
        ("tls_cert", env::TLS_CERT, tls_in_container::CERT),
        ("tls_key", env::TLS_KEY, tls_in_container::KEY),
    ]
}

/// The names a service is reached by on the stack's network.
fn names(service: &str) -> Vec<String> {
    vec![service.to_owned(), format!("tasks.{service}")]
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_folder_is_private_and_holds_what_each_side_needs() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(DIR).join("gone-service.key");
        private_dir(stale.parent().unwrap()).unwrap();
        std::fs::write(&stale, "old").unwrap();
        let image = Image {
            service: "quickstart-square".into(),
            function_id: "quickstart::square".into(),
            reference: "turbolift/quickstart-square:0123456789ab".into(),
            arches: Vec::new(),
            replicas: turbolift_syntax::Replicas { min: 2, max: 2 },
        };
        let tls = ComposeTls::write(dir.path(), &[image]).unwrap();
        let folder = dir.path().join(DIR);
        assert!(!stale.exists(), "files of services no longer built go");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&folder), 0o700);
        let mut names: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "ca.crt",
                "program.crt",
                "program.key",
                "quickstart-square.crt",
                "quickstart-square.key"
            ]
        );
        for name in &names {
            assert_eq!(mode(&folder.join(name)), 0o600, "{name}");
        }
        let secrets = tls.service_secrets("quickstart-square");
        assert_eq!(secrets[2]["target"], "/etc/turbolift/tls/tls.key");
        assert_eq!(secrets[2]["uid"], "65532");
        assert_eq!(secrets[2]["mode"], 0o400);
        let source = secrets[2]["source"].as_str().unwrap();
        assert_eq!(source, format!("quickstart-square.key.{}", tls.id));
        let all = tls.secrets(&["quickstart-square"]);
        assert_eq!(all[source]["file"], "tls/quickstart-square.key");

        // Another build: another authority, other secret names.
        let again = ComposeTls::write(dir.path(), &[]).unwrap();
        assert_ne!(again.id, tls.id);
        assert!(!folder.join("quickstart-square.key").exists());
    }
}
