//! `compose.yaml`: the package's services for `docker stack deploy`, from
//! `templates/docker/compose.yaml` and one `compose-service.yaml` per service, the
//! `turbolift.env` beside it that holds the deployment's secret, and with TLS the `tls/`
//! folder (`compose_tls`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Map;
use turbolift_shared::protocol::env;

use super::compose_tls::{self, ComposeTls};
use crate::generate::write_if_changed;
use crate::platform::image::{CONTAINER_PORT, Image};
use crate::templates::{self, Value};

/// The file with the deployment's secret, beside `compose.yaml`.
pub const SECRET_FILE: &str = "turbolift.env";

/// Writes `dir/compose.yaml` (when it changes), once `dir/turbolift.env`, and with `tls`
/// a new authority's files into `dir/tls/`.
pub fn write(dir: &Path, package: &str, images: &[Image], tls: bool) -> Result<PathBuf> {
    let tls = if tls {
        Some(ComposeTls::write(dir, images)?)
    } else {
        None
    };
    let file = dir.join("compose.yaml");
    write_if_changed(&file, &render(package, images, tls.as_ref())?)
        .with_context(|| format!("cannot write {}", file.display()))?;
    let secret = dir.join(SECRET_FILE);
    if !secret.exists() {
        write_secret(&secret).with_context(|| format!("cannot write {}", secret.display()))?;
    }
    Ok(file)
}

/// The compose file of `images`, with TLS when `tls` is there.
pub fn render(package: &str, images: &[Image], tls: Option<&ComposeTls>) -> Result<String> {
    let or_absent = |value: Option<Value>| value.unwrap_or(Value::Absent);
    let mut services = Map::new();
    for image in images {
        let mut values = vec![
            ("service", Value::text(&image.service)),
            ("image", Value::yaml(&image.reference)),
            ("replicas", Value::yaml(image.replicas.min)),
            ("function_id", Value::yaml(&image.function_id)),
            (
                "secrets",
                or_absent(tls.map(|t| Value::Yaml(t.service_secrets(&image.service)))),
            ),
        ];
        for (placeholder, _, path) in compose_tls::environment() {
            values.push((placeholder, or_absent(tls.map(|_| Value::yaml(path)))));
        }
        let block = templates::COMPOSE_SERVICE.render(&values)?;
        let block: serde_json::Value =
            serde_saphyr::from_str(&block).context("a rendered compose-service.yaml is YAML")?;
        services.insert(image.service.clone(), block);
    }
    let endpoints: Vec<String> = images
        .iter()
        .map(|i| {
            let scheme = if tls.is_some() { "https" } else { "http" };
            format!(
                "{}={scheme}://tasks.{}:{CONTAINER_PORT}",
                i.function_id, i.service
            )
        })
        .collect();
    let names: Vec<&str> = images.iter().map(|i| i.service.as_str()).collect();
    templates::COMPOSE.render(&[
        ("package", Value::text(package)),
        ("endpoints", Value::text(endpoints.join(";"))),
        ("services", Value::Yaml(serde_json::Value::Object(services))),
        (
            "secrets",
            or_absent(tls.map(|t| Value::Yaml(t.secrets(&names)))),
        ),
    ])
}

/// A fresh random secret, readable by its owner only.
fn write_secret(path: &Path) -> Result<()> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(
        file,
        "# The secret shared by the services and the program; keep it private.\n{}={hex}",
        env::SECRET
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images() -> Vec<Image> {
        let image = |service: &str, id: &str, replicas| Image {
            service: service.into(),
            function_id: id.into(),
            reference: format!("turbolift/{service}:0123456789ab"),
            arches: Vec::new(),
            replicas: turbolift_syntax::Replicas {
                min: replicas,
                max: replicas,
            },
        };
        vec![
            image(
                "wordstats-analysis-analyse",
                "wordstats::analysis::analyse",
                2,
            ),
            image(
                "wordstats-report-top-words",
                "wordstats::report::top_words",
                3,
            ),
        ]
    }

    #[test]
    fn every_service_gets_its_block() {
        let text = render("wordstats", &images(), None).unwrap();
        let yaml: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let top = &yaml["services"]["wordstats-report-top-words"];
        assert_eq!(top["deploy"]["replicas"], 3);
        assert_eq!(
            top["environment"]["TURBOLIFT_REPLICA"],
            "wordstats-report-top-words-{{.Task.Slot}}"
        );
        assert_eq!(
            yaml["services"]["wordstats-analysis-analyse"]["image"],
            "turbolift/wordstats-analysis-analyse:0123456789ab"
        );
        assert!(text.contains(
            "TURBOLIFT_ENDPOINTS=wordstats::analysis::analyse=http://tasks.wordstats-analysis-analyse:8080;wordstats::report::top_words=http://tasks.wordstats-report-top-words:8080\n"
        ));
        insta::assert_snapshot!(text);
    }

    #[test]
    fn with_tls_each_service_gets_its_files_as_secrets_of_a_new_authority() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "wordstats", &images(), true).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let yaml: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let top = &yaml["services"]["wordstats-report-top-words"];
        let env = &top["environment"];
        assert_eq!(env["TURBOLIFT_TLS_CA"], "/etc/turbolift/tls/ca.crt");
        assert_eq!(env["TURBOLIFT_TLS_CERT"], "/etc/turbolift/tls/tls.crt");
        assert_eq!(env["TURBOLIFT_TLS_KEY"], "/etc/turbolift/tls/tls.key");
        let key = &top["secrets"][2];
        assert_eq!(key["target"], "/etc/turbolift/tls/tls.key");
        assert_eq!(
            (&key["uid"], &key["gid"], &key["mode"]),
            (&"65532".into(), &"65532".into(), &0o400.into())
        );
        let source = key["source"].as_str().unwrap();
        assert!(
            source.starts_with("wordstats-report-top-words.key."),
            "{source}"
        );
        assert_eq!(
            yaml["secrets"][source]["file"],
            "tls/wordstats-report-top-words.key"
        );
        assert!(text.contains(
            "TURBOLIFT_ENDPOINTS=wordstats::analysis::analyse=https://tasks.wordstats-analysis-analyse:8080;"
        ));
        assert!(dir.path().join("tls/program.key").exists());

        // The next build: a new authority, secrets of new names.
        write(dir.path(), "wordstats", &images(), true).unwrap();
        let again = std::fs::read_to_string(&file).unwrap();
        assert!(!again.contains(source), "{again}");

        // The id in the names is what changes from build to build.
        let id = source.rsplit('.').next().unwrap();
        insta::assert_snapshot!(text.replace(id, "<authority>"));

        write(dir.path(), "wordstats", &images(), false).unwrap();
        let plain = std::fs::read_to_string(&file).unwrap();
        assert_eq!(plain, render("wordstats", &images(), None).unwrap());
        assert!(!plain.contains("\nsecrets:"), "{plain}");
    }

    #[test]
    fn the_secret_file_is_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "p", &[], false).unwrap();
        let secret = dir.path().join(SECRET_FILE);
        let first = std::fs::read_to_string(&secret).unwrap();
        assert!(first.contains("\nTURBOLIFT_SECRET="));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        write(dir.path(), "p", &[], false).unwrap();
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), first);
    }
}
