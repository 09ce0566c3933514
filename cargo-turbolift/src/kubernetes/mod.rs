//! The Kubernetes platform: images and manifests for the services and the program, and
//! `deploy`, `run --platform kubernetes` and `delete` through `kubectl`.

pub mod kubectl;
pub mod manifests;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use turbolift_shared::naming;

use crate::cargo_build::{self, Built, Programs};
use crate::cli::{BuildArgs, DeleteArgs, DeployArgs, Platform, RunArgs};
use crate::docker::image;
use crate::generate;
use crate::project::Project;
use crate::run::random_hex;
use crate::shell::Shell;
use kubectl::Kubectl;
use manifests::{Manifest, Plan, ProgramPlan, ServicePlan};

const PROGRAM_DOCKERFILE: &str = include_str!("../../../templates/docker/program.Dockerfile");

/// A deployment written to disk.
pub struct Prepared {
    pub plan: Plan,
    pub dir: PathBuf,
    pub manifests: Vec<Manifest>,
}

/// Builds the program's image and writes the manifests of a fresh deployment (new id, new
/// secret) into `target/turbolift/<package>/kubernetes/`.
pub fn prepare(
    shell: &Shell,
    built: &Built,
    program: &Path,
    args: &BuildArgs,
    program_args: &[String],
) -> Result<Prepared> {
    let project = &built.project;
    let package = project.package.name.as_str();
    let program_image = program_image(shell, built, program, args)?;
    // Pods of images built for one architecture go only to nodes of it.
    let archs = crate::docker::arch::requested(args);
    let node_arch = match archs.as_slice() {
        [one] => Some(one.name().to_owned()),
        _ => None,
    };
    let services = built
        .images
        .iter()
        .zip(&built.services)
        .map(|(image, (service, _))| {
            let attribute = &service.function.args;
            ServicePlan {
                function_id: image.function_id.clone(),
                image: image.reference.clone(),
                replicas: match args.replicas {
                    Some(n) => turbolift_syntax::Replicas { min: n, max: n },
                    None => attribute
                        .replicas
                        .unwrap_or(turbolift_syntax::Replicas { min: 2, max: 2 }),
                },
                cpu: args
                    .cpu
                    .clone()
                    .or_else(|| attribute.cpu.clone())
                    .unwrap_or_else(|| manifests::DEFAULT_CPU.to_owned()),
                memory: args
                    .memory
                    .clone()
                    .or_else(|| attribute.memory.clone())
                    .unwrap_or_else(|| manifests::DEFAULT_MEMORY.to_owned()),
            }
        })
        .collect();
    let plan = Plan {
        package: package.to_owned(),
        deployment: random_hex(6)?,
        namespace: args.namespace.clone(),
        token: random_hex(32)?,
        services,
        node_arch,
        program: Some(ProgramPlan {
            image: program_image,
            args: program_args.to_vec(),
        }),
    };
    let manifests = manifests::manifests(&plan)?;
    let dir = generate::workspace_dir(project).join("kubernetes");
    manifests::write(&dir, &plan, &manifests)?;
    for m in &manifests {
        shell.verbose_status("Manifest", format!("{} {}", m.kind, m.name));
    }
    shell.status(
        "Manifests",
        format!("{} (`kubectl apply -k {}`)", dir.display(), dir.display()),
    );
    Ok(Prepared {
        plan,
        dir,
        manifests,
    })
}

/// The program's images: its static binary alone in an empty root, for each architecture
/// (with several, deployments name the multi-arch reference). Writes `push.sh` again with
/// the program's images beside the services'.
fn program_image(shell: &Shell, built: &Built, program: &Path, args: &BuildArgs) -> Result<String> {
    let project = &built.project;
    let binaries = if built.program_by_arch.is_empty() {
        // Not a Kubernetes build: the program built for this machine.
        let host = image::host_target()?;
        let arch = crate::docker::arch::Arch::of_triple(&host)
            .with_context(|| format!("no image architecture for the host `{host}`"))?;
        vec![(arch, program.to_owned())]
    } else {
        built.program_by_arch.clone()
    };
    let package = project.package.name.as_str();
    let dockerfile = PROGRAM_DOCKERFILE.replace("@PACKAGE@", package);
    let name = naming::kubernetes_part_name(package, "program");
    let contexts = generate::workspace_dir(project)
        .join("docker")
        .join("program");
    let program = image::build_for_arches(
        shell,
        "the program",
        &contexts,
        "program",
        &name,
        &binaries,
        &dockerfile,
        args,
    )?;
    let mut sets: Vec<image::Images> = built
        .images
        .iter()
        .map(|i| image::Images {
            reference: i.reference.clone(),
            arches: i.arches.clone(),
        })
        .collect();
    sets.push(program.clone());
    image::write_push_script(shell, project, &sets)?;
    Ok(program.reference)
}

/// `cargo turbolift deploy`: build for Kubernetes, apply the services, wait for them.
pub fn deploy_command(shell: &Shell, args: &DeployArgs) -> Result<ExitCode> {
    let mut build = args.build.clone();
    build.platform = Platform::Kubernetes;
    crate::docker::preflight(&build)?;
    let built = cargo_build::build(shell, &build, Programs::One(build.bin.as_deref()))?;
    let program = built
        .programs
        .values()
        .next()
        .context("cargo built no program")?
        .clone();
    let prepared = prepare(shell, &built, &program, &build, &[])?;
    deploy(shell, &prepared, args.timeout)?;
    shell.status(
        "Deployed",
        format!(
            "`{}` to namespace `{}` (deployment {}); `cargo turbolift delete` removes it",
            prepared.plan.package, prepared.plan.namespace, prepared.plan.deployment
        ),
    );
    Ok(ExitCode::SUCCESS)
}

fn deploy(shell: &Shell, prepared: &Prepared, timeout: std::time::Duration) -> Result<()> {
    let kubectl = Kubectl::new(&prepared.plan.namespace);
    shell.status(
        "Applying",
        format!("{} objects", prepared.manifests.len() - 1),
    );
    kubectl.apply(&kubectl::service_files(&prepared.dir, &prepared.manifests))?;
    kubectl.wait_rollouts(shell, &prepared.plan, timeout)
}

/// `cargo turbolift run --platform kubernetes`: deploy, run the program as a Job, follow
/// its logs, pass its exit code on, and delete what was created unless `--keep`.
pub fn run(shell: &Shell, args: &RunArgs, built: &Built, program: &Path) -> Result<ExitCode> {
    // A Ctrl-C or SIGTERM ends the wait for the Job; what was deployed is still deleted.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        signal_hook::flag::register(signal, stop.clone())
            .context("cannot install signal handlers")?;
    }
    let interrupted = || stop.load(std::sync::atomic::Ordering::Relaxed);
    let prepared = prepare(shell, built, program, &args.build, &args.args)?;
    let kubectl = Kubectl::new(&prepared.plan.namespace);
    let outcome = deploy(shell, &prepared, args.timeout).and_then(|()| {
        let job = prepared
            .manifests
            .iter()
            .find(|m| m.kind == "Job")
            .map(|m| prepared.dir.join(&m.file))
            .context("no Job manifest")?;
        kubectl.run_job(shell, &prepared.plan, &job, args.timeout, &interrupted)
    });
    if args.keep {
        shell.status(
            "Kept",
            format!(
                "deployment {} in namespace `{}`",
                prepared.plan.deployment, prepared.plan.namespace
            ),
        );
    } else {
        let part_of = naming::kubernetes_part_name(&prepared.plan.package, "app");
        kubectl.delete(&part_of, Some(&prepared.plan.deployment))?;
        shell.status(
            "Deleted",
            format!("deployment {}", prepared.plan.deployment),
        );
    }
    outcome.map(ExitCode::from)
}

/// `cargo turbolift delete`: every object of the package in the namespace.
pub fn delete_command(shell: &Shell, args: &DeleteArgs) -> Result<ExitCode> {
    let build = BuildArgs {
        manifest_path: args.manifest_path.clone(),
        package: args.package.clone(),
        ..BuildArgs::default()
    };
    let project = Project::load(&build)?;
    let part_of = naming::kubernetes_part_name(project.package.name.as_str(), "app");
    let deleted = Kubectl::new(&args.namespace).delete(&part_of, None)?;
    for line in deleted.lines().filter(|l| !l.trim().is_empty()) {
        shell.status("Deleted", line.trim());
    }
    Ok(ExitCode::SUCCESS)
}
