//! `push.sh`, written beside the images: `docker push` of every image, and for each
//! multi-arch reference a manifest list of its images, made and pushed with
//! `docker manifest` (which works only with images already in a registry).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::Images;
use crate::generate::{self, write_if_changed};
use crate::project::Project;
use crate::shell::Shell;
use crate::templates::{self, Value};

/// Writes `target/turbolift/<package>/docker/push.sh`: `docker push` of every image, and
/// for each multi-arch reference a manifest list of its images, made and pushed with
/// `docker manifest` (which works only with images already in a registry).
pub fn write_push_script(shell: &Shell, project: &Project, images: &[Images]) -> Result<PathBuf> {
    let file = generate::workspace_dir(project)
        .join("docker")
        .join("push.sh");
    write_if_changed(&file, &push_script(project.package.name.as_str(), images)?)
        .with_context(|| format!("cannot write {}", file.display()))?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))?;
    if images.iter().any(Images::is_multi_arch) {
        shell.status(
            "Push",
            format!(
                "`sh {}` pushes the images and makes the multi-arch references",
                file.display()
            ),
        );
    } else {
        shell.verbose_status("Push", format!("`sh {}` pushes the images", file.display()));
    }
    Ok(file)
}

/// The text of `push.sh`.
pub fn push_script(package: &str, images: &[Images]) -> Result<String> {
    let mut commands = Vec::new();
    for set in images {
        for (_, local) in &set.arches {
            commands.push(format!("docker push {local}"));
        }
    }
    for set in images.iter().filter(|s| s.is_multi_arch()) {
        let r = &set.reference;
        let locals: Vec<&str> = set.arches.iter().map(|(_, l)| l.as_str()).collect();
        commands.push(format!("docker manifest rm {r} >/dev/null 2>&1 || true"));
        commands.push(format!(
            "docker manifest create ${{MANIFEST_FLAGS:-}} {r} {}",
            locals.join(" ")
        ));
        for (arch, local) in &set.arches {
            commands.push(format!(
                "docker manifest annotate --os linux --arch {arch} {r} {local}"
            ));
        }
        commands.push(format!(
            "docker manifest push --purge ${{MANIFEST_FLAGS:-}} {r}"
        ));
    }
    templates::PUSH_SCRIPT.render(&[
        ("package", Value::text(package)),
        ("commands", Value::Lines(commands)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::arch::Arch;

    #[test]
    fn the_push_script_pushes_every_image_and_makes_the_manifest_lists() {
        let multi = Images {
            reference: "r.example/team/p-square:0123456789ab".into(),
            arches: vec![
                (
                    Arch::Amd64,
                    "r.example/team/p-square:0123456789ab-amd64".into(),
                ),
                (
                    Arch::Arm64,
                    "r.example/team/p-square:0123456789ab-arm64".into(),
                ),
            ],
        };
        let single = Images {
            reference: "r.example/team/p-program:fedcba987654-arm64".into(),
            arches: vec![(
                Arch::Arm64,
                "r.example/team/p-program:fedcba987654-arm64".into(),
            )],
        };
        let script = push_script("p", &[multi, single]).unwrap();
        insta::assert_snapshot!(script);
        let commands: Vec<&str> = script
            .lines()
            .filter(|l| !l.starts_with('#') && *l != "set -eu")
            .collect();
        assert_eq!(
            commands,
            [
                "docker push r.example/team/p-square:0123456789ab-amd64",
                "docker push r.example/team/p-square:0123456789ab-arm64",
                "docker push r.example/team/p-program:fedcba987654-arm64",
                "docker manifest rm r.example/team/p-square:0123456789ab >/dev/null 2>&1 || true",
                "docker manifest create ${MANIFEST_FLAGS:-} r.example/team/p-square:0123456789ab r.example/team/p-square:0123456789ab-amd64 r.example/team/p-square:0123456789ab-arm64",
                "docker manifest annotate --os linux --arch amd64 r.example/team/p-square:0123456789ab r.example/team/p-square:0123456789ab-amd64",
                "docker manifest annotate --os linux --arch arm64 r.example/team/p-square:0123456789ab r.example/team/p-square:0123456789ab-arm64",
                "docker manifest push --purge ${MANIFEST_FLAGS:-} r.example/team/p-square:0123456789ab",
            ]
        );
    }
}
