//! Images, for the Docker and Kubernetes platforms: each service built as a static binary
//! on the host, then put alone into a `FROM scratch` image with a Dockerfile from
//! `templates/docker/`. No base image is
//! pulled, so this works with an empty image store and without a network.
//!
//! An image's tag is a hash of what goes into it (the binary and the Dockerfile), so an
//! unchanged service keeps its tag, and an image that already exists with that content is
//! not built again.
//!
//! With `--arch arm64` or `--arch all` the services are cross-compiled and each
//! architecture gets an image of its own (`docker build --platform linux/arm64`: nothing
//! runs during the build of a `FROM scratch` image, so no emulation is needed), tagged
//! `TAG-<arch>`. With several architectures, the image's reference in deployments is
//! `TAG` alone: a multi-arch manifest list, which only a registry can hold, made by the
//! `push.sh` written beside `compose.yaml`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use turbolift_shared::naming::fnv1a64;

pub mod engine;
mod push;

use engine::{docker, label};
pub use push::write_push_script;

use crate::build::arch::{self, Arch};
use crate::build::{Built, BuiltService};
use crate::cli::BuildArgs;
use crate::generate::{self, write_if_changed};

use crate::shell::Shell;
use crate::templates::{self, Value};

/// The port a service listens on inside its container (`EXPOSE`, `TURBOLIFT_BIND`).
pub const CONTAINER_PORT: u16 = 8080;
/// The user the images run as (`USER`, the customary "nonroot"), who alone reads the TLS
/// files in a container.
pub const CONTAINER_USER: u32 = 65532;
/// The repository prefix of images without `--registry`.
pub const DEFAULT_REGISTRY: &str = "turbolift";

/// One service's image.
#[derive(Debug, Clone)]
pub struct Image {
    /// The service, e.g. `quickstart-square`.
    pub service: String,
    pub function_id: String,
    /// What deployments name: `turbolift/quickstart-square:0123456789ab`, the image itself
    /// with one architecture, the multi-arch reference with several.
    pub reference: String,
    /// Each architecture's image in the local image store.
    pub arches: Vec<(Arch, String)>,
    /// The deployment's replicas: `--replicas`, else the attribute's, else the default.
    pub replicas: turbolift_syntax::Replicas,
}

impl Image {
    /// Its images, as `push.sh` pushes them.
    pub fn images(&self) -> Images {
        Images {
            reference: self.reference.clone(),
            arches: self.arches.clone(),
        }
    }

    /// The local image of `arch`, if one was built.
    pub fn local(&self, arch: Arch) -> Option<&str> {
        self.arches
            .iter()
            .find(|(a, _)| *a == arch)
            .map(|(_, r)| r.as_str())
    }
}

/// The images of one binary built for one or more architectures.
#[derive(Debug, Clone)]
pub struct Images {
    /// What deployments name: the one image, or the multi-arch reference.
    pub reference: String,
    /// `(architecture, image)`, in `--arch` order.
    pub arches: Vec<(Arch, String)>,
}

impl Images {
    /// Whether `reference` is a multi-arch reference (a manifest list, once pushed).
    pub fn is_multi_arch(&self) -> bool {
        self.arches.len() > 1
    }
}

/// The Dockerfile of one service.
pub fn dockerfile(package: &str, function_id: &str) -> Result<String> {
    templates::SERVICE_DOCKERFILE.render(&[
        ("package", Value::text(package)),
        ("function_id", Value::text(function_id)),
    ])
}

/// 12 hex digits of a hash of the binary and the Dockerfile.
pub fn content_hash(binary: &[u8], dockerfile: &str) -> String {
    let parts = format!(
        "{:016x}{:016x}{}",
        fnv1a64(binary),
        binary.len(),
        dockerfile
    );
    format!("{:016x}", fnv1a64(parts.as_bytes()))[..12].to_owned()
}

/// 12 hex digits of a hash of the per-architecture hashes: the tag of a multi-arch image.
pub fn multi_arch_hash(hashes: &[(Arch, String)]) -> String {
    let parts: Vec<String> = hashes.iter().map(|(a, h)| format!("{a}={h}")).collect();
    format!("{:016x}", fnv1a64(parts.join(";").as_bytes()))[..12].to_owned()
}

/// `REGISTRY/SERVICE:TAG`.
pub fn reference(service: &str, hash: &str, args: &BuildArgs) -> String {
    format!(
        "{}/{service}:{}",
        args.registry
            .as_deref()
            .unwrap_or(DEFAULT_REGISTRY)
            .trim_end_matches('/'),
        args.tag.as_deref().unwrap_or(hash)
    )
}

/// A tag docker accepts.
pub fn check_tag(tag: &str) -> Result<()> {
    let ok = tag.len() <= 128
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        bail!("`--tag {tag}` is not a docker tag (letters, digits, `_`, `.`, `-`; at most 128)");
    }
    Ok(())
}

/// A repository prefix docker accepts: `host[:port]/path` or `path`, lower case.
pub fn check_registry(registry: &str) -> Result<()> {
    let trimmed = registry.trim_end_matches('/');
    let ok = !trimmed.is_empty()
        && !trimmed.starts_with('/')
        && !trimmed.contains("//")
        && trimmed
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/:".contains(c));
    if !ok {
        bail!(
            "`--registry {registry}` is not an image repository prefix like `registry.example.com:5000/team` (lower case)"
        );
    }
    Ok(())
}

/// Says how many images are about to be built (or found unchanged), and for which
/// platforms: `Building 3 images for linux/amd64`. The services' images, and the
/// program's when it was built statically (Kubernetes runs it as a Job).
fn announce(shell: &Shell, built: &Built, args: &BuildArgs) {
    let program = built
        .programs
        .first()
        .is_some_and(|p| !p.by_arch.is_empty());
    let count = built.services.len() + usize::from(program);
    if count > 0 {
        shell.status("Building", images_for(count, &arch::requested(args)));
    }
}

/// `3 images for linux/amd64`, `2 images for linux/amd64 and linux/arm64 each`.
fn images_for(count: usize, arches: &[Arch]) -> String {
    let platforms: Vec<String> = arches.iter().map(|a| a.docker_platform()).collect();
    let each = if arches.len() > 1 { " each" } else { "" };
    format!(
        "{count} image{} for {}{each}",
        crate::build::plural(count),
        platforms.join(" and ")
    )
}

/// Builds (or reuses) the image of every built service from its static executable for
/// each architecture: one [`Image`] per service, in the order of `built.services`.
pub fn build_images(shell: &Shell, built: &Built, args: &BuildArgs) -> Result<Vec<Image>> {
    let project = &built.project;
    let contexts = generate::workspace_dir(project)
        .join("docker")
        .join("images");
    std::fs::create_dir_all(&contexts)
        .with_context(|| format!("cannot create {}", contexts.display()))?;
    remove_stale(&contexts, &built.services)?;
    announce(shell, built, args);
    let mut images = Vec::new();
    for service in &built.services {
        let id = &service.service.function.id;
        let dockerfile = dockerfile(project.package.name.as_str(), id)?;
        let name = &service.service.name;
        let built = build_for_arches(
            shell,
            &format!("`{id}`"),
            &contexts.join(name),
            "service",
            name,
            &service.by_arch,
            &dockerfile,
            args,
        )
        .with_context(|| format!("cannot build the image of `{id}`"))?;
        images.push(Image {
            service: name.clone(),
            function_id: id.clone(),
            reference: built.reference,
            arches: built.arches,
            replicas: super::replicas(args, service.service.function.args.replicas, false),
        });
    }
    Ok(images)
}

/// The images of one binary, `name` in the repository, for each architecture it was built
/// for: `REF` alone for amd64 alone (as before `--arch` existed), `REF-arm64` for arm64
/// alone, and with both, `REF-amd64`, `REF-arm64` and the multi-arch reference `REF`, `REF`'s
/// hash covering both. Each image is built in `contexts/<arch>/`; `what` names it in the
/// `Image` lines.
#[allow(clippy::too_many_arguments)]
pub fn build_for_arches(
    shell: &Shell,
    what: &str,
    contexts: &Path,
    file_name: &str,
    name: &str,
    binaries: &[(Arch, PathBuf)],
    dockerfile: &str,
    args: &BuildArgs,
) -> Result<Images> {
    let mut contents = Vec::new();
    for (arch, binary) in binaries {
        let bytes =
            std::fs::read(binary).with_context(|| format!("cannot read {}", binary.display()))?;
        let hash = content_hash(&bytes, dockerfile);
        contents.push((*arch, bytes, hash));
    }
    let (base, suffixed) = match contents.as_slice() {
        [(Arch::Amd64, _, hash)] => (reference(name, hash, args), false),
        [(_, _, hash)] => (reference(name, hash, args), true),
        _ => {
            let hashes: Vec<(Arch, String)> =
                contents.iter().map(|(a, _, h)| (*a, h.clone())).collect();
            (reference(name, &multi_arch_hash(&hashes), args), true)
        }
    };
    let mut arches = Vec::new();
    for (arch, bytes, hash) in &contents {
        let local = if suffixed {
            format!("{base}-{arch}")
        } else {
            base.clone()
        };
        let (size, how) = build_or_reuse(
            shell,
            &contexts.join(arch.name()),
            file_name,
            bytes,
            dockerfile,
            &local,
            hash,
            *arch,
        )?;
        shell.status(
            "Image",
            format!("{what}: {local}, {} ({how})", engine::human_size(size)),
        );
        arches.push((*arch, local));
    }
    let images = Images {
        reference: if contents.len() > 1 {
            base
        } else {
            arches[0].1.clone()
        },
        arches,
    };
    if images.is_multi_arch() {
        let names: Vec<&str> = images.arches.iter().map(|(a, _)| a.name()).collect();
        shell.status(
            "Multi-arch",
            format!(
                "{what}: {} ({}; a manifest list once `push.sh` has pushed it)",
                images.reference,
                names.join(" + ")
            ),
        );
    }
    Ok(images)
}

/// Builds the image `reference` from a context holding `binary` (as `file_name`) and
/// `dockerfile`, unless an image with that reference and content hash exists; returns its
/// size and whether it was `built` or `unchanged`.
#[allow(clippy::too_many_arguments)]
pub fn build_or_reuse(
    shell: &Shell,
    context: &Path,
    file_name: &str,
    binary: &[u8],
    dockerfile: &str,
    reference: &str,
    hash: &str,
    arch: Arch,
) -> Result<(u64, &'static str)> {
    if let Some((existing_hash, size)) = inspect(reference)?
        && existing_hash == hash
    {
        return Ok((size, "unchanged"));
    }
    // The build context: the binary and the Dockerfile, nothing else.
    std::fs::create_dir_all(context)?;
    write_if_changed(&context.join("Dockerfile"), dockerfile)?;
    let copy = context.join(file_name);
    if std::fs::read(&copy).ok().as_deref() != Some(binary) {
        let tmp = context.join(format!(".{file_name}.tmp"));
        std::fs::write(&tmp, binary)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp, &copy)?;
    }
    let _building = shell.terminal_spinner("Building", format!("image {reference}"));
    let mut build = docker(["build"]);
    build
        .arg("--platform")
        .arg(arch.docker_platform())
        .arg("--label")
        .arg(format!("{}={hash}", label::CONTENT_HASH))
        .arg("--tag")
        .arg(reference)
        .arg(context);
    engine::run(build, &format!("`docker build` of {reference}"))?;
    let (_, size) =
        inspect(reference)?.with_context(|| format!("docker built no image {reference}"))?;
    Ok((size, "built"))
}

/// The checks of the image platforms before anything is built: the image flags, static
/// Linux builds for every architecture of `--arch`, and a Docker daemon that answers.
/// Returns the host's target triple.
pub fn check(args: &BuildArgs) -> Result<String> {
    if let Some(tag) = &args.tag {
        check_tag(tag)?;
        // Images of several architectures get `-<arch>` after the tag.
        check_tag(&format!("{tag}-{}", Arch::Arm64))?;
    }
    if let Some(registry) = &args.registry {
        check_registry(registry)?;
    }
    let host = arch::host_target().context("images hold static Linux binaries")?;
    arch::check(args, &host)?;
    engine::ensure_daemon()?;
    Ok(host)
}

/// The content hash label and size of an image, if it exists.
fn inspect(reference: &str) -> Result<Option<(String, u64)>> {
    let format = format!(
        "{{{{index .Config.Labels \"{}\"}}}} {{{{.Size}}}}",
        label::CONTENT_HASH
    );
    let output = engine::capture(&mut docker([
        "image", "inspect", "--format", &format, reference,
    ]))?;
    if !output.status.success() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut words = text.split_whitespace();
    let hash = words.next().unwrap_or_default().to_owned();
    let size = words.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok(Some((hash, size)))
}

/// Removes the build contexts of services that are gone.
fn remove_stale(contexts: &Path, services: &[BuiltService]) -> Result<()> {
    for entry in std::fs::read_dir(contexts)? {
        let entry = entry?;
        if !services
            .iter()
            .any(|s| entry.file_name() == s.service.name.as_str())
        {
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numeric user a service runs as: not root, and no `/etc/passwd` needed.
    const USER: u32 = 65532;
    /// Where the service binary sits in the image.
    const BINARY: &str = "/service";

    #[test]
    fn the_dockerfile_is_from_scratch_non_root_and_checks_itself() {
        let file = dockerfile("quickstart", "quickstart::square").unwrap();
        let lines: Vec<&str> = file
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect();
        assert_eq!(lines[0], "FROM scratch");
        assert!(lines.contains(&format!("COPY service {BINARY}").as_str()));
        assert!(lines.contains(&format!("USER {USER}").as_str()));
        assert!(lines.contains(&format!("EXPOSE {CONTAINER_PORT}").as_str()));
        assert!(lines.contains(&format!("ENV TURBOLIFT_BIND=0.0.0.0:{CONTAINER_PORT}").as_str()));
        assert!(file.contains(&format!(
            "CMD [\"{BINARY}\", \"{}\"]",
            turbolift_shared::protocol::HEALTH_CHECK_FLAG
        )));
        assert!(
            lines
                .last()
                .unwrap()
                .starts_with("ENTRYPOINT [\"/service\"]")
        );
        assert!(file.contains("turbolift.function=\"quickstart::square\""));
        assert!(!file.contains('@'));
    }

    #[test]
    fn the_dockerfiles_as_written() {
        insta::assert_snapshot!(
            "service_dockerfile",
            dockerfile("quickstart", "quickstart::square").unwrap()
        );
        let program = templates::PROGRAM_DOCKERFILE
            .render(&[("package", Value::text("quickstart"))])
            .unwrap();
        insta::assert_snapshot!("program_dockerfile", program);
    }

    #[test]
    fn the_tag_follows_the_contents() {
        let a = content_hash(b"binary", "FROM scratch");
        assert_eq!(a.len(), 12);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a, content_hash(b"binary", "FROM scratch"));
        assert_ne!(a, content_hash(b"binary2", "FROM scratch"));
        assert_ne!(a, content_hash(b"binary", "FROM scratch\n"));
    }

    #[test]
    fn image_names_and_overrides() {
        let mut args = BuildArgs::default();
        assert_eq!(
            reference("quickstart-square", "0123456789ab", &args),
            "turbolift/quickstart-square:0123456789ab"
        );
        args.registry = Some("registry.example.com:5000/team/".into());
        args.tag = Some("v1.2".into());
        assert_eq!(
            reference("quickstart-square", "0123456789ab", &args),
            "registry.example.com:5000/team/quickstart-square:v1.2"
        );
        assert!(check_tag("v1.2_rc-1").is_ok());
        assert!(check_tag("-bad").is_err() && check_tag("a/b").is_err());
        assert!(check_registry("localhost:5000").is_ok());
        assert!(check_registry("Upper/case").is_err() && check_registry("").is_err());
    }

    #[test]
    fn the_images_line_names_their_count_and_platforms() {
        assert_eq!(images_for(1, &[Arch::Amd64]), "1 image for linux/amd64");
        assert_eq!(
            images_for(3, &[Arch::Amd64, Arch::Arm64]),
            "3 images for linux/amd64 and linux/arm64 each"
        );
    }

    #[test]
    fn a_multi_arch_tag_covers_every_architecture() {
        let a = multi_arch_hash(&[(Arch::Amd64, "1".into()), (Arch::Arm64, "2".into())]);
        assert_eq!(a.len(), 12);
        assert_ne!(
            a,
            multi_arch_hash(&[(Arch::Amd64, "1".into()), (Arch::Arm64, "3".into())])
        );
    }
}
