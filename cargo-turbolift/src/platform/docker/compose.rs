//! `compose.yaml`: the package's services for `docker stack deploy`, from
//! `templates/docker/compose.yaml` and one `compose-service.yaml` per service, and the
//! `turbolift.env` beside it that holds the deployment's secret.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Map;
use turbolift_shared::protocol::env;

use crate::generate::write_if_changed;
use crate::platform::image::{CONTAINER_PORT, Image};
use crate::templates::{self, Value};

/// The file with the deployment's secret, beside `compose.yaml`.
pub const SECRET_FILE: &str = "turbolift.env";

/// Writes `dir/compose.yaml` (when it changes) and, once, `dir/turbolift.env`.
pub fn write(dir: &Path, package: &str, images: &[Image]) -> Result<PathBuf> {
    let file = dir.join("compose.yaml");
    write_if_changed(&file, &render(package, images)?)
        .with_context(|| format!("cannot write {}", file.display()))?;
    let secret = dir.join(SECRET_FILE);
    if !secret.exists() {
        write_secret(&secret).with_context(|| format!("cannot write {}", secret.display()))?;
    }
    Ok(file)
}

/// The compose file of `images`.
pub fn render(package: &str, images: &[Image]) -> Result<String> {
    let mut services = Map::new();
    for image in images {
        let block = templates::COMPOSE_SERVICE.render(&[
            ("service", Value::text(&image.service)),
            ("image", Value::yaml(&image.reference)),
            ("replicas", Value::yaml(image.replicas.min)),
            ("function_id", Value::yaml(&image.function_id)),
        ])?;
        let block: serde_json::Value =
            serde_saphyr::from_str(&block).context("a rendered compose-service.yaml is YAML")?;
        services.insert(image.service.clone(), block);
    }
    let endpoints: Vec<String> = images
        .iter()
        .map(|i| {
            format!(
                "{}=http://tasks.{}:{CONTAINER_PORT}",
                i.function_id, i.service
            )
        })
        .collect();
    templates::COMPOSE.render(&[
        ("package", Value::text(package)),
        ("endpoints", Value::text(endpoints.join(";"))),
        ("services", Value::Yaml(serde_json::Value::Object(services))),
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

    #[test]
    fn every_service_gets_its_block() {
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
        let text = render(
            "wordstats",
            &[
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
            ],
        )
        .unwrap();
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
    fn the_secret_file_is_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "p", &[]).unwrap();
        let secret = dir.path().join(SECRET_FILE);
        let first = std::fs::read_to_string(&secret).unwrap();
        assert!(first.contains("\nTURBOLIFT_SECRET="));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        write(dir.path(), "p", &[]).unwrap();
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), first);
    }
}
