//! Service images: each service built as a static binary on the host, then put alone into
//! a `FROM scratch` image with a Dockerfile from `templates/docker/`. No base image is
//! pulled, so this works with an empty image store and without a network.
//!
//! An image's tag is a hash of what goes into it (the binary and the Dockerfile), so an
//! unchanged service keeps its tag, and an image that already exists with that content is
//! not built again.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use turbolift_shared::naming::fnv1a64;

use super::{compose, docker, label};
use crate::cli::BuildArgs;
use crate::generate::{self, ServiceCrate, write_if_changed};
use crate::project::Project;
use crate::shell::Shell;

const DOCKERFILE: &str = include_str!("../../../templates/docker/Dockerfile");

/// The port a service listens on inside its container (`EXPOSE`, `TURBOLIFT_BIND`).
pub const CONTAINER_PORT: u16 = 8080;
/// The repository prefix of images without `--registry`.
pub const DEFAULT_REGISTRY: &str = "turbolift";

/// One service's image.
#[derive(Debug, Clone)]
pub struct Image {
    /// The service, e.g. `quickstart-square`.
    pub service: String,
    pub function_id: String,
    /// `turbolift/quickstart-square:0123456789ab`.
    pub reference: String,
    /// The deployment's replicas: the attribute's (its minimum for a range), else 2.
    pub replicas: u32,
}

/// Where the static builds go: beside the normal ones, never mixed with them, so that
/// neither build invalidates the other.
pub fn static_target_dir(target_dir: &Path) -> PathBuf {
    target_dir.join("turbolift-static")
}

/// The host's target triple (`rustc -vV`); it must be Linux, since images run Linux
/// binaries.
pub fn host_target() -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(&rustc)
        .arg("-vV")
        .output()
        .context("cannot run `rustc -vV`")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let host = text
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .context("`rustc -vV` names no host")?
        .trim()
        .to_owned();
    if !host.contains("-linux-") {
        bail!("the host is `{host}`, not Linux; build the images on a Linux machine");
    }
    Ok(host)
}

/// Turns the services' cargo command into a static build for the host's triple:
/// `--target HOST` and `-C target-feature=+crt-static` (static-pie with glibc), with debug
/// information stripped. The flags are added to `RUSTFLAGS`/`CARGO_ENCODED_RUSTFLAGS` if
/// set; like any such variable, they replace `rustflags` from cargo's configuration.
pub fn build_statically(cargo: &mut Command) -> Result<()> {
    let mut flags: Vec<String> = match std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        Ok(encoded) => encoded
            .split('\x1f')
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect(),
        Err(_) => std::env::var("RUSTFLAGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    };
    flags.push("-Ctarget-feature=+crt-static".to_owned());
    flags.push("-Cstrip=debuginfo".to_owned());
    cargo
        .arg("--target")
        .arg(host_target()?)
        .env_remove("RUSTFLAGS")
        .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));
    Ok(())
}

/// The Dockerfile of one service.
pub fn dockerfile(package: &str, function_id: &str) -> String {
    DOCKERFILE
        .replace("@PACKAGE@", package)
        .replace("@FUNCTION_ID@", function_id)
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

/// Builds (or reuses) the image of every service and writes the package's `compose.yaml`.
pub fn build_images(
    shell: &Shell,
    project: &Project,
    services: &[(ServiceCrate, PathBuf)],
    args: &BuildArgs,
) -> Result<Vec<Image>> {
    let dir = generate::workspace_dir(project).join("docker");
    let contexts = dir.join("images");
    std::fs::create_dir_all(&contexts)
        .with_context(|| format!("cannot create {}", contexts.display()))?;
    remove_stale(&contexts, services)?;
    let mut images = Vec::new();
    for (service, binary) in services {
        let image = build_image(shell, project, service, binary, &contexts, args)
            .with_context(|| format!("cannot build the image of `{}`", service.function.id))?;
        images.push(image);
    }
    if !images.is_empty() {
        let file = compose::write(&dir, project.package.name.as_str(), &images)?;
        shell.status("Compose", file.display());
    }
    Ok(images)
}

fn build_image(
    shell: &Shell,
    project: &Project,
    service: &ServiceCrate,
    binary: &Path,
    contexts: &Path,
    args: &BuildArgs,
) -> Result<Image> {
    let id = &service.function.id;
    let bytes =
        std::fs::read(binary).with_context(|| format!("cannot read {}", binary.display()))?;
    let dockerfile = dockerfile(project.package.name.as_str(), id);
    let hash = content_hash(&bytes, &dockerfile);
    let reference = reference(&service.name, &hash, args);
    let replicas = args
        .replicas
        .unwrap_or_else(|| service.function.args.replicas.map_or(2, |r| r.min))
        .max(1);

    let context = contexts.join(&service.name);
    let (size, how) = build_or_reuse(
        shell,
        &context,
        "service",
        &bytes,
        &dockerfile,
        &reference,
        &hash,
    )?;
    shell.status(
        "Image",
        format!("`{id}`: {reference}, {} ({how})", super::human_size(size)),
    );
    Ok(Image {
        service: service.name.clone(),
        function_id: id.clone(),
        reference,
        replicas,
    })
}

/// Builds the image `reference` from a context holding `binary` (as `file_name`) and
/// `dockerfile`, unless an image with that reference and content hash exists; returns its
/// size and whether it was `built` or `unchanged`.
pub fn build_or_reuse(
    shell: &Shell,
    context: &Path,
    file_name: &str,
    binary: &[u8],
    dockerfile: &str,
    reference: &str,
    hash: &str,
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
    shell.verbose_status("Building", format!("image {reference}"));
    let mut build = docker(["build"]);
    build
        .arg("--label")
        .arg(format!("{}={hash}", label::CONTENT_HASH))
        .arg("--tag")
        .arg(reference)
        .arg(context);
    super::run(build, &format!("`docker build` of {reference}"))?;
    let (_, size) =
        inspect(reference)?.with_context(|| format!("docker built no image {reference}"))?;
    Ok((size, "built"))
}

/// The content hash label and size of an image, if it exists.
fn inspect(reference: &str) -> Result<Option<(String, u64)>> {
    let format = format!(
        "{{{{index .Config.Labels \"{}\"}}}} {{{{.Size}}}}",
        label::CONTENT_HASH
    );
    let output = super::capture(&mut docker([
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
fn remove_stale(contexts: &Path, services: &[(ServiceCrate, PathBuf)]) -> Result<()> {
    for entry in std::fs::read_dir(contexts)? {
        let entry = entry?;
        if !services
            .iter()
            .any(|(s, _)| entry.file_name() == s.name.as_str())
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
        let file = dockerfile("quickstart", "quickstart::square");
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
}
