//! The Docker platform: each replica a container of the service's static `FROM scratch`
//! image on the local Docker Engine, on a private network of the run's own
//! (`containers`); a `compose.yaml` for Docker Swarm beside the images (`compose`); and
//! the removal of what crashed runs left behind (`clean`). The program runs here.

pub mod clean;
mod compose;
mod compose_tls;
mod containers;
mod follow;
mod tls_archive;

use std::time::Instant;

use anyhow::Result;

use super::image::{self, Image, Images};
use super::program::OnThisMachine;
use super::{Running, Start, specs};
use crate::build::Built;
use crate::cli::BuildArgs;
use crate::generate;
use crate::shell::Shell;
use containers::Containers;

/// The Docker platform, once checked; its images once prepared.
pub struct Docker {
    images: Vec<Image>,
    args: BuildArgs,
    /// The host's target triple: the containers run here.
    pub host: String,
}

impl Docker {
    /// The image flags, the static builds and the daemon; and since the containers run
    /// here, the host's architecture among those built.
    pub fn check(args: &BuildArgs) -> Result<Docker> {
        let host = image::check(args)?;
        Ok(Docker {
            images: Vec::new(),
            args: args.clone(),
            host,
        })
    }

    /// The images of every service, `compose.yaml` and `push.sh`.
    pub fn prepare(&mut self, shell: &Shell, built: &Built) -> Result<()> {
        self.images = image::build_images(shell, built, &self.args)?;
        if !self.images.is_empty() {
            let dir = generate::workspace_dir(&built.project).join("docker");
            let package = built.project.package.name.as_str();
            let file = compose::write(&dir, package, &self.images, self.args.tls())?;
            shell.status("Compose", file.display());
            let sets: Vec<Images> = self.images.iter().map(Image::images).collect();
            image::write_push_script(shell, &built.project, &sets)?;
        }
        Ok(())
    }

    /// Starts the containers of every service and waits until each is ready.
    pub fn start(
        &self,
        shell: &Shell,
        built: &Built,
        start: &Start<'_>,
    ) -> Result<Box<dyn Running>> {
        let started = Instant::now();
        let (specs, spinner) = specs(shell, built, start.args);
        let containers = Containers::start(
            shell,
            built.project.package.name.as_str(),
            &self.images,
            &specs,
            &self.host,
            start,
        )?;
        drop(spinner);
        Ok(Box::new(OnThisMachine::new(
            shell,
            Box::new(containers),
            start,
            started,
        )))
    }
}
