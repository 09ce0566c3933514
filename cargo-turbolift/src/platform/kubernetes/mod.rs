//! The Kubernetes platform: images and manifests for the services and the program, and
//! `deploy`, `run --platform kubernetes` and `delete` through `kubectl`. The program runs
//! in the cluster, as a Job.

mod follow;
pub mod kubectl;
pub mod manifests;
mod tls;

use std::time::Duration;

use anyhow::{Context, Result};
use turbolift_shared::naming;

use super::image::{self, Image, Images};
use super::{Running, Signals, Start, random_hex, replicas};
use crate::build::{Built, BuiltProgram, arch};
use crate::cli::ServiceOutput;
use crate::cli::{BuildArgs, DeleteArgs};
use crate::generate;
use crate::project::{Pick, Project, Walk};
use crate::shell::Shell;
use crate::templates::{self, Value};
use follow::PodOutput;
use kubectl::Kubectl;
use manifests::{Manifest, Plan, ProgramPlan, ServicePlan};
use tls::DeploymentTls;

/// The Kubernetes platform, once checked; its deployment once prepared.
pub struct Kubernetes {
    args: BuildArgs,
    /// The host's target triple, where the images are built.
    pub host: String,
    prepared: Option<Prepared>,
}

/// A deployment written to disk.
#[derive(Clone)]
pub struct Prepared {
    pub plan: Plan,
    pub dir: std::path::PathBuf,
    pub manifests: Vec<Manifest>,
}

impl Kubernetes {
    /// The image flags, the static builds and the daemon that builds the images.
    pub fn check(args: &BuildArgs) -> Result<Kubernetes> {
        let host = image::check(args)?;
        Ok(Kubernetes {
            args: args.clone(),
            host,
            prepared: None,
        })
    }

    /// Builds the images of the services and the program, and writes the manifests of a
    /// fresh deployment (new id, new secret, and unless `--no-tls` a new authority and
    /// certificates) into `target/turbolift/<package>/kubernetes/`.
    pub fn prepare(&mut self, shell: &Shell, built: &Built, program_args: &[String]) -> Result<()> {
        let args = &self.args;
        let project = &built.project;
        let package = project.package.name.as_str();
        let images = image::build_images(shell, built, args)?;
        let program = built.program()?;
        let program_image = program_image(shell, built, program, &images, args)?;
        // Pods of images built for one architecture go only to nodes of it.
        let node_arch = match arch::requested(args).as_slice() {
            [one] => Some(one.name().to_owned()),
            _ => None,
        };
        let services = images
            .iter()
            .zip(&built.services)
            .map(|(image, built)| {
                let attribute = &built.service.function.args;
                ServicePlan {
                    function_id: image.function_id.clone(),
                    image: image.reference.clone(),
                    replicas: replicas(args, attribute.replicas, false),
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
        let mut plan = Plan {
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
            tls: None,
        };
        if args.tls() {
            let names: Vec<String> = plan.services.iter().map(|s| plan.service_name(s)).collect();
            plan.tls = Some(DeploymentTls::issue(
                &plan.deployment,
                &plan.namespace,
                &names,
            )?);
        }
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
        self.prepared = Some(Prepared {
            plan,
            dir,
            manifests,
        });
        Ok(())
    }

    fn prepared(&self) -> Result<&Prepared> {
        self.prepared
            .as_ref()
            .context("the deployment is prepared before it is applied")
    }

    /// Applies the services and waits until every rollout is done.
    pub fn deploy(&self, shell: &Shell, timeout: Duration) -> Result<&Prepared> {
        let prepared = self.prepared()?;
        let kubectl = Kubectl::new(&prepared.plan.namespace);
        shell.status(
            "Applying",
            format!("{} objects", prepared.manifests.len() - 1),
        );
        kubectl.apply(&kubectl::service_files(&prepared.dir, &prepared.manifests))?;
        kubectl.wait_rollouts(shell, &prepared.plan, timeout)?;
        Ok(prepared)
    }

    /// Deploys the services; what was deployed is deleted again if the rollout fails
    /// (unless `--keep`). With `--service-output stream`, the service pods' lines are
    /// shown from then on, until the run stops.
    pub fn start(&self, shell: &Shell, start: &Start<'_>) -> Result<Box<dyn Running>> {
        let mut deployed = Deployed {
            prepared: self.prepared()?.clone(),
            keep: start.keep,
            timeout: start.timeout,
            output: None,
        };
        if let Err(e) = self.deploy(shell, start.timeout) {
            Box::new(deployed).stop(shell);
            return Err(e);
        }
        if start.args.service_output == ServiceOutput::Stream {
            let plan = &deployed.prepared.plan;
            let kubectl = Kubectl::new(&plan.namespace);
            deployed.output = Some(PodOutput::start(shell, kubectl, plan));
        }
        Ok(Box::new(deployed))
    }
}

/// The services of a deployment, up in the cluster.
struct Deployed {
    prepared: Prepared,
    keep: bool,
    timeout: Duration,
    /// The service pods' lines on the terminal, with `--service-output stream`.
    output: Option<PodOutput>,
}

impl Running for Deployed {
    fn endpoints(&self) -> Vec<(String, Vec<String>)> {
        self.prepared.plan.endpoints()
    }

    /// Runs the program's Job and follows its logs.
    fn run_program(
        &mut self,
        shell: &Shell,
        _program: &BuiltProgram,
        _args: &[String],
        signals: &mut Signals,
    ) -> Result<u8> {
        let prepared = &self.prepared;
        let job = prepared
            .manifests
            .iter()
            .find(|m| m.kind == "Job")
            .map(|m| prepared.dir.join(&m.file))
            .context("no Job manifest")?;
        let mut interrupted = || signals.pending().next().is_some();
        Kubectl::new(&prepared.plan.namespace).run_job(
            shell,
            &prepared.plan,
            &job,
            self.timeout,
            &mut interrupted,
        )
    }

    /// Stops showing the service pods' lines, and deletes what was deployed, unless
    /// `--keep`.
    fn stop(mut self: Box<Self>, shell: &Shell) {
        if let Some(output) = self.output.take() {
            output.stop();
            // Their last lines before the lines that say what became of the deployment.
            super::output::drain();
        }
        let plan = &self.prepared.plan;
        if self.keep {
            shell.status(
                "Kept",
                format!(
                    "deployment {} in namespace `{}`",
                    plan.deployment, plan.namespace
                ),
            );
            return;
        }
        let part_of = naming::kubernetes_part_name(&plan.package, "app");
        match Kubectl::new(&plan.namespace).delete(&part_of, Some(&plan.deployment)) {
            Ok(_) => shell.status("Deleted", format!("deployment {}", plan.deployment)),
            Err(e) => shell.error(&e.context(format!(
                "could not delete deployment {}; `cargo turbolift delete` removes it",
                plan.deployment
            ))),
        }
    }
}

/// The program's images: its static binary alone in an empty root, for each architecture
/// (with several, deployments name the multi-arch reference). Writes `push.sh` with the
/// program's images beside the services'.
fn program_image(
    shell: &Shell,
    built: &Built,
    program: &BuiltProgram,
    images: &[Image],
    args: &BuildArgs,
) -> Result<String> {
    let project = &built.project;
    let package = project.package.name.as_str();
    let dockerfile = templates::PROGRAM_DOCKERFILE.render(&[("package", Value::text(package))])?;
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
        &program.by_arch,
        &dockerfile,
        args,
    )?;
    let mut sets: Vec<Images> = images.iter().map(Image::images).collect();
    sets.push(program.clone());
    image::write_push_script(shell, project, &sets)?;
    Ok(program.reference)
}

/// Deletes every object of the package in the namespace.
pub fn delete(shell: &Shell, args: &DeleteArgs) -> Result<()> {
    let build = BuildArgs {
        manifest_path: args.manifest_path.clone(),
        package: args.package.clone(),
        ..BuildArgs::default()
    };
    let project = Project::load(&build, Pick::Package, Walk::Normal)?;
    let part_of = naming::kubernetes_part_name(project.package.name.as_str(), "app");
    let deleted = Kubectl::new(&args.namespace).delete(&part_of, None)?;
    for line in deleted.lines().filter(|l| !l.trim().is_empty()) {
        shell.status("Deleted", line.trim());
    }
    Ok(())
}
