//! Where services run: one module per platform behind one shape of what a platform does.
//!
//! A platform checks its flags and tools before anything is built ([`Platform::pick`]),
//! says what it needs built ([`Platform::plan`]), turns the built services into what it
//! deploys ([`Platform::prepare`]: nothing on this machine, images and a compose file for
//! Docker, images and manifests for Kubernetes), and starts their replicas
//! ([`Platform::start`]), which then give their endpoints, run the program against
//! themselves, and stop ([`Running`]).
//!
//! - `local`: processes on 127.0.0.1, restarted by a supervisor.
//! - `docker`: containers on the local Docker Engine.
//! - `kubernetes`: Deployments in a cluster through `kubectl`, the program as a Job.
//!
//! `image` (static `FROM scratch` images, through the `docker` command line) serves the
//! Docker and Kubernetes platforms, and `program` (the program as a child process here)
//! the local and Docker ones, which end with a summary of the calls (`summary`, with the
//! replicas' service time from `scrape`).

pub mod docker;
pub mod image;
pub mod kubernetes;
pub mod local;
mod logs_child;
pub mod output;
pub mod program;
mod run_tls;
mod scrape;
pub mod summary;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use turbolift_syntax::Replicas;

use crate::build::{Binaries, Built, BuiltProgram, Plan, arch, plural};
use crate::cli::{self, BuildArgs};
use crate::generate;
use crate::shell::{Shell, Spinner};
pub use program::Signals;
pub use run_tls::{RunTls, TlsFiles};

/// Replicas of a service when neither `--replicas` nor the attribute says: two, so that a
/// call has somewhere to go while a replica restarts.
pub const DEFAULT_REPLICAS: u32 = 2;

/// What to start: one service binary, `replicas` times.
pub struct ServiceSpec {
    pub name: String,
    pub function_id: String,
    pub executable: PathBuf,
    pub replicas: u32,
}

/// The platform of `--platform`, checked.
pub enum Platform {
    Local,
    Docker(Box<docker::Docker>),
    Kubernetes(Box<kubernetes::Kubernetes>),
}

/// How many runs' logs are kept under `target/turbolift/<package>/logs/`.
const KEPT_LOGS: usize = 10;

/// What a command starts replicas for.
pub struct Start<'a> {
    /// `--replicas`, winning over the attributes.
    pub args: &'a BuildArgs,
    /// A fresh id of the run (12 hex digits), on what it creates.
    pub run_id: String,
    /// The secret the replicas and the program share.
    pub secret: String,
    /// Where the replicas' output goes.
    pub logs: PathBuf,
    /// Platforms that deploy: leave the deployment in place afterwards.
    pub keep: bool,
    /// Platforms that deploy: how long the rollout, and the program there, may take.
    pub timeout: std::time::Duration,
    /// With TLS, the run's authority and the files of its certificates and keys, for
    /// replicas that run on this machine (local and Docker); `None` without TLS, without
    /// services, and for Kubernetes, whose deployment got its authority when its
    /// manifests were written.
    pub tls: Option<RunTls>,
    /// Where the program's processes write their counts for the summary
    /// (`<logs>/stats/`, `0700`): for a summary of a run here with services.
    pub stats: Option<PathBuf>,
    /// The directory of shared memory of the program and the replicas, removed when the
    /// run's `Start` is dropped: on the local platform, with services, without TLS and
    /// unless `TURBOLIFT_SHM=off`; `None` too when it cannot be created.
    pub shm: Option<local::shm::ShmDir>,
}

/// Replicas that are up, ready for the program.
pub trait Running {
    /// Each function's replica URLs, in the order the functions were found.
    fn endpoints(&self) -> Vec<(String, Vec<String>)>;

    /// Runs the program against the replicas, passing on signals; its exit code.
    fn run_program(
        &mut self,
        shell: &Shell,
        program: &BuiltProgram,
        args: &[String],
        signals: &mut Signals,
    ) -> Result<u8>;

    /// Stops every replica and says so.
    fn stop(self: Box<Self>, shell: &Shell);
}

impl<'a> Start<'a> {
    /// A fresh run of the services of `built`: a new id and secret, a directory for
    /// the replicas' logs (the logs of all but the last runs go), with TLS
    /// ([`BuildArgs::tls`]) a new authority and the program's certificate, and on the
    /// local platform without TLS a directory of shared memory.
    pub fn new(
        shell: &Shell,
        args: &'a BuildArgs,
        built: &Built,
        keep: bool,
        timeout: std::time::Duration,
    ) -> Result<Start<'a>> {
        let run_id = random_hex(6)?;
        let workspace = generate::workspace_dir(&built.project);
        let logs = logs_dir(&workspace, &run_id)?;
        let runs_here = args.platform != cli::Platform::Kubernetes;
        let tls = if args.tls() && runs_here && !built.services.is_empty() {
            Some(RunTls::new(&workspace.join("tls"), &run_id)?)
        } else {
            None
        };
        let stats = match args.summary {
            Some(_) if runs_here && !built.services.is_empty() => {
                let dir = logs.join("stats");
                crate::private::private_dir(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                Some(dir)
            }
            _ => None,
        };
        // Not beside TLS: every byte then goes through TLS, as asked.
        let shared_memory =
            args.platform == cli::Platform::Local && !args.tls() && !built.services.is_empty();
        let shm = if shared_memory && local::shm::enabled()? {
            local::shm::ShmDir::create(shell, &run_id)
        } else {
            None
        };
        Ok(Start {
            args,
            secret: random_hex(32)?,
            run_id,
            logs,
            keep,
            timeout,
            tls,
            stats,
            shm,
        })
    }
}

/// A fresh directory for a run's service logs, readable by this user only, as the folder
/// of every run's; old runs beyond [`KEPT_LOGS`] go.
fn logs_dir(workspace: &std::path::Path, run_id: &str) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let root = workspace.join("logs");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&root)
        .with_context(|| format!("cannot create {}", root.display()))?;
    // A folder an earlier version made readable by all becomes private too.
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .with_context(|| format!("cannot make {} private", root.display()))?;
    let mut old: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&root)?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    old.sort();
    let excess = old.len().saturating_sub(KEPT_LOGS - 1);
    for (_, path) in old.into_iter().take(excess) {
        let _ = std::fs::remove_dir_all(path);
    }
    let dir = root.join(run_id);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

impl Platform {
    /// The platform `args` picks, once its flags and tools are checked: nothing is built
    /// for a run that cannot start.
    pub fn pick(args: &BuildArgs) -> Result<Platform> {
        match args.platform {
            cli::Platform::Local => {
                if args.tag.is_some() || args.registry.is_some() {
                    bail!("`--tag` and `--registry` name images; they need `--platform docker`");
                }
                if args.arch.is_some() {
                    bail!(
                        "`--arch` picks the architecture of images; it needs `--platform docker` or `--platform kubernetes` (with `--platform local` the services are built for this machine)"
                    );
                }
                Ok(Platform::Local)
            }
            cli::Platform::Docker => Ok(Platform::Docker(Box::new(docker::Docker::check(args)?))),
            cli::Platform::Kubernetes => Ok(Platform::Kubernetes(Box::new(
                kubernetes::Kubernetes::check(args)?,
            ))),
        }
    }

    /// Whether the platform runs programs on this machine, as tests must.
    pub fn check_tests_run_here(&self) -> Result<()> {
        match self {
            Platform::Local | Platform::Docker(_) => Ok(()),
            Platform::Kubernetes(_) => bail!(
                "`cargo turbolift test` runs the tests on this machine against replicas it can reach from here; use `--platform local` or `--platform docker`"
            ),
        }
    }

    /// Whether the platform can start replicas from here, before anything is built: the
    /// Docker platform runs this machine's images, so its architecture must be built; the
    /// local platform needs a `TURBOLIFT_SHM` it understands.
    pub fn check_start(&self, args: &BuildArgs) -> Result<()> {
        match self {
            Platform::Docker(docker) => arch::check_runs_here(args, &docker.host),
            Platform::Local => local::shm::enabled().map(drop),
            Platform::Kubernetes(_) => Ok(()),
        }
    }

    /// What the platform needs built: everything for this machine; static services for
    /// Docker (the program runs here); everything static for Kubernetes (the program runs
    /// there as a Job).
    pub fn plan(&self, args: &BuildArgs) -> Plan {
        let archs = |host: &str| Binaries::Static {
            archs: arch::requested(args),
            host: host.to_owned(),
        };
        match self {
            Platform::Local => Plan {
                services: Binaries::ThisMachine,
                program: Binaries::ThisMachine,
            },
            Platform::Docker(docker) => Plan {
                services: archs(&docker.host),
                program: Binaries::ThisMachine,
            },
            Platform::Kubernetes(kubernetes) => Plan {
                services: archs(&kubernetes.host),
                program: archs(&kubernetes.host),
            },
        }
    }

    /// Turns the built services into what the platform deploys; `program_args` are the
    /// program's, for a platform that runs it itself.
    pub fn prepare(&mut self, shell: &Shell, built: &Built, program_args: &[String]) -> Result<()> {
        match self {
            Platform::Local => Ok(()),
            Platform::Docker(docker) => docker.prepare(shell, built),
            Platform::Kubernetes(kubernetes) => kubernetes.prepare(shell, built, program_args),
        }
    }

    /// Starts the replicas of every built service and waits until each is ready.
    pub fn start(
        &self,
        shell: &Shell,
        built: &Built,
        start: &Start<'_>,
    ) -> Result<Box<dyn Running>> {
        match self {
            Platform::Local => local::start(shell, built, start),
            Platform::Docker(docker) => docker.start(shell, built, start),
            Platform::Kubernetes(kubernetes) => kubernetes.start(shell, start),
        }
    }
}

impl Platform {
    /// Deploys the services to stay (`cargo turbolift deploy`): only a cluster keeps them.
    pub fn deploy(&self, shell: &Shell, timeout: std::time::Duration) -> Result<()> {
        match self {
            Platform::Kubernetes(kubernetes) => {
                let prepared = kubernetes.deploy(shell, timeout)?;
                shell.status(
                    "Deployed",
                    format!(
                        "`{}` to namespace `{}` (deployment {}); `cargo turbolift delete` removes it",
                        prepared.plan.package, prepared.plan.namespace, prepared.plan.deployment
                    ),
                );
                Ok(())
            }
            Platform::Local | Platform::Docker(_) => {
                bail!(
                    "`deploy` leaves services running in a cluster; it needs `--platform kubernetes`"
                )
            }
        }
    }
}

/// What to start on this machine: each built service's executable, `replicas` times; and
/// a status line (a spinner on a terminal) while they start.
pub fn specs(shell: &Shell, built: &Built, args: &BuildArgs) -> (Vec<ServiceSpec>, Spinner) {
    let specs: Vec<ServiceSpec> = built
        .services
        .iter()
        .map(|built| ServiceSpec {
            name: built.service.name.clone(),
            function_id: built.service.function.id.clone(),
            executable: built.executable.clone(),
            replicas: replicas(args, built.service.function.args.replicas, true).min,
        })
        .collect();
    let count: u32 = specs.iter().map(|s| s.replicas).sum();
    let spinner = if specs.is_empty() {
        Spinner::none()
    } else {
        shell.spinner(
            "Starting",
            format!(
                "{count} replica{} of {} service{}",
                plural(count as usize),
                specs.len(),
                plural(specs.len())
            ),
        )
    };
    (specs, spinner)
}

/// Replicas of a service: `--replicas`, else the attribute's, else [`DEFAULT_REPLICAS`]
/// (on this machine, one where it has a single core).
pub fn replicas(args: &BuildArgs, attribute: Option<Replicas>, on_this_machine: bool) -> Replicas {
    if let Some(n) = args.replicas {
        return Replicas { min: n, max: n };
    }
    attribute.unwrap_or_else(|| {
        let single_core = std::thread::available_parallelism().is_ok_and(|n| n.get() < 2);
        let n = if on_this_machine && single_core {
            1
        } else {
            DEFAULT_REPLICAS
        };
        Replicas { min: n, max: n }
    })
}

/// `n` random bytes from the OS, as hex: run ids, deployment ids, secrets.
pub fn random_hex(n: usize) -> Result<String> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Replica addresses grouped by function, in the order the functions first appear.
pub fn by_function<A: Clone>(addresses: &[(String, A)]) -> Vec<(String, Vec<A>)> {
    let mut grouped: Vec<(String, Vec<A>)> = Vec::new();
    for (id, addr) in addresses {
        match grouped.iter_mut().find(|(f, _)| f == id) {
            Some((_, addrs)) => addrs.push(addr.clone()),
            None => grouped.push((id.clone(), vec![addr.clone()])),
        }
    }
    grouped
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_runs_logs_folder_is_private() {
        let workspace = tempfile::tempdir().unwrap();
        let dir = super::logs_dir(workspace.path(), "0123456789ab").unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir, workspace.path().join("logs/0123456789ab"));
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&workspace.path().join("logs")), 0o700);
    }
}
