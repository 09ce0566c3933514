//! The command line, in cargo's conventions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `cargo` invokes `cargo-turbolift turbolift ARGS`.
#[derive(Debug, Parser)]
#[command(name = "cargo", bin_name = "cargo", styles = clap_cargo::style::CLAP_STYLING)]
pub enum Cargo {
    /// Build and run #[turbolift::distribute] functions as services
    #[command(
        version,
        after_help = "Run `cargo help turbolift` or see docs/cli.md for more.\nIn-process runs need nothing of this: plain `cargo run` works too."
    )]
    Turbolift(TurboliftArgs),
}

/// Most replicas of a service that `--replicas` asks for.
pub const MAX_REPLICAS: u32 = 256;

/// The command line of this process. A command line that does not parse is an error that
/// exits with 1, as cargo's own do; `--help` and `--version` print and exit with 0.
pub fn parse() -> Cargo {
    Cargo::try_parse()
        .unwrap_or_else(|error| {
            let _ = error.print();
            std::process::exit(if error.use_stderr() { 1 } else { 0 });
        })
        .settled()
}

impl Cargo {
    /// Hands the run options the platforms need to [`BuildArgs`], which is what they are
    /// given ([`BuildArgs::service_output`]).
    fn settled(mut self) -> Cargo {
        let Cargo::Turbolift(args) = &mut self;
        match &mut args.command {
            Command::Run(run) => {
                run.build.service_output = run.service_output;
                run.build.summary = run.summary.format();
            }
            Command::Test(test) => {
                test.build.service_output = test.service_output;
                test.build.summary = test.summary.format();
            }
            _ => {}
        }
        self
    }
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = false)]
pub struct TurboliftArgs {
    #[command(subcommand)]
    pub command: Command,

    /// Use verbose output (-vv very verbose/build.rs output)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Do not print cargo log messages
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Coloring
    #[arg(long, value_enum, default_value_t = Color::Auto, global = true, value_name = "WHEN")]
    pub color: Color,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a service per distributed function and build the services and the program
    Build(BuildArgs),
    /// Build, start the services on this machine, run the program against them
    Run(RunArgs),
    /// Build the package's tests, start the services, run the tests against them
    Test(TestArgs),
    /// Remove the containers and networks that `--platform docker` runs left behind
    Clean(CleanArgs),
    /// Build for Kubernetes, apply the services and wait until they are ready
    Deploy(DeployArgs),
    /// Delete what `deploy` or `run --platform kubernetes` put into the cluster
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub build: BuildArgs,

    /// How long the rollout may take
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration, help_heading = "Platform Options")]
    pub timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Path to Cargo.toml
    #[arg(long, value_name = "PATH", help_heading = "Manifest Options")]
    pub manifest_path: Option<PathBuf>,

    /// Package whose deployment to delete
    #[arg(short, long, value_name = "SPEC", help_heading = "Package Selection")]
    pub package: Option<String>,

    /// Kubernetes namespace of the deployment
    #[arg(long, value_name = "NAMESPACE", default_value = "default")]
    pub namespace: String,
}

fn replica_count(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if (1..=u64::from(MAX_REPLICAS)).contains(&n) => Ok(n as u32),
        Ok(0) => Err("a service needs at least 1 replica".to_owned()),
        Ok(_) => Err(format!("at most {MAX_REPLICAS} replicas of each service")),
        Err(_) => Err(format!(
            "a whole number of replicas, from 1 to {MAX_REPLICAS}"
        )),
    }
}

fn cpu_quantity(text: &str) -> Result<String, String> {
    turbolift_syntax::check_quantity(text, false).map(|()| text.to_owned())
}

fn memory_quantity(text: &str) -> Result<String, String> {
    turbolift_syntax::check_quantity(text, true).map(|()| text.to_owned())
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    turbolift_shared::duration::parse_duration(text).map_err(|e| e.to_string())
}

/// Where the services run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Platform {
    // Processes on this machine, on 127.0.0.1.
    #[default]
    Local,
    // Containers on the local Docker Engine, from static `FROM scratch` images.
    Docker,
    // Deployments on a Kubernetes cluster, from the same images, through `kubectl`.
    Kubernetes,
}

impl Platform {
    /// Whether calls go over TLS unless `--tls` or `--no-tls` says: where they cross a
    /// network (Docker's, a cluster's), yes; on 127.0.0.1, which only this machine reaches
    /// and where the replicas' ports are reserved, no, so that local builds stay lean.
    pub fn tls_by_default(self) -> bool {
        match self {
            Platform::Local => false,
            Platform::Docker | Platform::Kubernetes => true,
        }
    }
}

/// `--service-output`: where the lines the replicas write go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ServiceOutput {
    // To the terminal (stderr), each line prefixed with its replica's name, and to the logs.
    #[default]
    Stream,
    // To the replicas' log files only.
    Log,
}

/// `--message-format`: how the summary at the end of a run or test is printed. Only the
/// summary's: the messages of the cargo that `cargo turbolift` runs are cargo's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum MessageFormat {
    // A table for people.
    #[default]
    Human,
    // One JSON object per function per line, as cargo's `--message-format json`.
    Json,
}

/// The summary's flags of `run` and `test`.
#[derive(Debug, Clone, Copy, Args)]
pub struct SummaryArgs {
    /// Print no summary of the calls when the program ends
    #[arg(long, help_heading = "Run Options")]
    pub no_summary: bool,

    /// How the summary of the calls is printed: a table, or one JSON object per function
    /// per line
    #[arg(long, value_enum, value_name = "FMT", default_value_t = MessageFormat::Human, help_heading = "Run Options")]
    pub message_format: MessageFormat,
}

impl SummaryArgs {
    /// The summary's format; `None` for none.
    pub fn format(self) -> Option<MessageFormat> {
        (!self.no_summary).then_some(self.message_format)
    }
}

/// `--arch`: the architectures of static builds and images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ArchArg {
    // x86-64 (x86_64-unknown-linux-gnu).
    #[default]
    Amd64,
    // 64-bit ARM (aarch64-unknown-linux-gnu), cross-compiled on an x86-64 host.
    Arm64,
    // Both, with one multi-arch reference per image.
    All,
}

/// Which package, features and profile: cargo's own flags; and where the services run.
#[derive(Debug, Clone, Default, Args)]
pub struct BuildArgs {
    /// Path to Cargo.toml
    #[arg(long, value_name = "PATH", help_heading = "Manifest Options")]
    pub manifest_path: Option<PathBuf>,

    /// Package to build (see `cargo help pkgid`)
    #[arg(short, long, value_name = "SPEC", help_heading = "Package Selection")]
    pub package: Option<String>,

    /// Name of the bin target to run or build
    #[arg(long, value_name = "NAME", help_heading = "Target Selection")]
    pub bin: Option<String>,

    /// Name of the example target to run or build (its distributed functions are served too)
    #[arg(
        long,
        value_name = "NAME",
        help_heading = "Target Selection",
        conflicts_with = "bin"
    )]
    pub example: Option<String>,

    /// Build artifacts in release mode, with optimizations
    #[arg(
        short,
        long,
        help_heading = "Compilation Options",
        conflicts_with = "profile"
    )]
    pub release: bool,

    /// Build artifacts with the specified profile
    #[arg(
        long,
        value_name = "PROFILE-NAME",
        help_heading = "Compilation Options"
    )]
    pub profile: Option<String>,

    /// Number of parallel jobs, defaults to # of CPUs
    #[arg(short, long, value_name = "N", help_heading = "Compilation Options")]
    pub jobs: Option<String>,

    /// Assert that `Cargo.lock` will remain unchanged
    #[arg(long, help_heading = "Manifest Options")]
    pub locked: bool,

    /// Run without accessing the network
    #[arg(long, help_heading = "Manifest Options")]
    pub offline: bool,

    /// Equivalent to specifying both --locked and --offline
    #[arg(long, help_heading = "Manifest Options")]
    pub frozen: bool,

    /// Space or comma separated list of features to activate
    #[arg(
        short = 'F',
        long,
        value_name = "FEATURES",
        help_heading = "Feature Selection"
    )]
    pub features: Vec<String>,

    /// Activate all available features
    #[arg(long, help_heading = "Feature Selection")]
    pub all_features: bool,

    /// Do not activate the `default` feature
    #[arg(long, help_heading = "Feature Selection")]
    pub no_default_features: bool,

    /// Directory for all generated artifacts
    #[arg(long, value_name = "DIRECTORY", help_heading = "Compilation Options")]
    pub target_dir: Option<PathBuf>,

    /// Where the services run: processes here, or containers of static images
    #[arg(
        long,
        value_enum,
        default_value_t = Platform::Local,
        value_name = "PLATFORM",
        help_heading = "Platform Options"
    )]
    pub platform: Platform,

    /// Image repository prefix: images are PREFIX/<service>:TAG [default: turbolift]
    #[arg(long, value_name = "PREFIX", help_heading = "Platform Options")]
    pub registry: Option<String>,

    /// Tag of every image [default: a hash of the image's contents]
    #[arg(long, value_name = "TAG", help_heading = "Platform Options")]
    pub tag: Option<String>,

    /// Architecture of the services and images: amd64, arm64, or all (both, and a
    /// multi-arch reference per image) [default: amd64]
    #[arg(
        long,
        value_enum,
        value_name = "ARCH",
        help_heading = "Platform Options",
        hide_possible_values = true
    )]
    pub arch: Option<ArchArg>,

    /// Kubernetes namespace of the deployment
    #[arg(
        long,
        value_name = "NAMESPACE",
        default_value = "default",
        help_heading = "Platform Options"
    )]
    pub namespace: String,

    /// Replicas of each service, 1 to 256, winning over the function's `replicas = ".."`
    /// [default: the attribute's (its minimum for a range), else 2 on a machine with 2 or
    /// more cores]
    #[arg(long, value_name = "N", value_parser = replica_count, help_heading = "Platform Options")]
    pub replicas: Option<u32>,

    /// Kubernetes: CPU request of every replica, winning over the attribute's `cpu` [default: 100m]
    #[arg(long, value_name = "QUANTITY", value_parser = cpu_quantity, help_heading = "Platform Options")]
    pub cpu: Option<String>,

    /// Kubernetes: memory request and limit of every replica, winning over the attribute's `memory` [default: 128Mi]
    #[arg(long, value_name = "QUANTITY", value_parser = memory_quantity, help_heading = "Platform Options")]
    pub memory: Option<String>,

    /// Calls over TLS, the program and the services authenticating each other with
    /// certificates of an authority made for the run or deployment [default: on for
    /// docker and kubernetes, off for local]
    #[arg(long, help_heading = "Platform Options")]
    pub tls: bool,

    /// Calls in plain HTTP, with the shared secret alone, on any platform
    #[arg(long, conflicts_with = "tls", help_heading = "Platform Options")]
    pub no_tls: bool,

    /// `run` and `test`: their `--service-output`, set once the command line is parsed
    /// (`cli::parse`); the platforms read it here, with the rest of what they start.
    #[arg(skip)]
    pub service_output: ServiceOutput,

    /// `run` and `test`: the summary's format (`None`: `--no-summary`, and every other
    /// command), set once the command line is parsed as `service_output` is.
    #[arg(skip)]
    pub summary: Option<MessageFormat>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub build: BuildArgs,

    /// Kubernetes: leave the deployment and the program's Job in the cluster afterwards
    #[arg(long, help_heading = "Run Options")]
    pub keep: bool,

    /// Kubernetes: how long the rollout and the program's Job may take
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration, help_heading = "Run Options")]
    pub timeout: std::time::Duration,

    /// Where the replicas' output goes: each line to stderr prefixed with its replica's
    /// name, and to the logs; or to the logs only
    #[arg(long, value_enum, value_name = "WHERE", default_value_t = ServiceOutput::Stream, help_heading = "Run Options")]
    pub service_output: ServiceOutput,

    #[command(flatten)]
    pub summary: SummaryArgs,

    /// Arguments for the program
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub build: BuildArgs,

    /// If specified, only run tests containing this string in their names
    #[arg(value_name = "TESTNAME")]
    pub testname: Option<String>,

    /// Run all tests regardless of failure
    #[arg(long, help_heading = "Test Options")]
    pub no_fail_fast: bool,

    /// Test only this package's library
    #[arg(long, help_heading = "Target Selection")]
    pub lib: bool,

    /// Test all binaries
    #[arg(long, help_heading = "Target Selection")]
    pub bins: bool,

    /// Test only the specified test target
    #[arg(long = "test", value_name = "NAME", help_heading = "Target Selection")]
    pub test: Vec<String>,

    /// Test all targets that have `test = true` set
    #[arg(long, help_heading = "Target Selection")]
    pub tests: bool,

    /// Where the replicas' output goes: each line to stderr prefixed with its replica's
    /// name, and to the logs; or to the logs only
    #[arg(long, value_enum, value_name = "WHERE", default_value_t = ServiceOutput::Stream, help_heading = "Run Options")]
    pub service_output: ServiceOutput,

    #[command(flatten)]
    pub summary: SummaryArgs,

    /// Arguments for the test binary
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Also remove those of runs that are still going, or of other machines
    #[arg(long)]
    pub all: bool,
}

impl BuildArgs {
    /// `--locked`, `--offline` and `--frozen`, for every cargo command.
    pub fn resolve_flags(&self) -> Vec<&'static str> {
        let mut flags = Vec::new();
        if self.locked {
            flags.push("--locked");
        }
        if self.offline {
            flags.push("--offline");
        }
        if self.frozen {
            flags.push("--frozen");
        }
        flags
    }

    /// Whether calls go over TLS: `--tls` or `--no-tls`, else the platform's default.
    /// The one place that decides; the build, the runs and the manifests all ask it.
    pub fn tls(&self) -> bool {
        if self.tls {
            true
        } else if self.no_tls {
            false
        } else {
            self.platform.tls_by_default()
        }
    }

    /// The features the user asked for, split as cargo splits them.
    pub fn feature_list(&self) -> Vec<String> {
        self.features
            .iter()
            .flat_map(|f| f.split([' ', ',']))
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cargo::command().debug_assert();
    }

    #[test]
    fn cargo_style_flags_parse() {
        let Cargo::Turbolift(args) = Cargo::try_parse_from([
            "cargo",
            "turbolift",
            "run",
            "--manifest-path",
            "x/Cargo.toml",
            "-p",
            "app",
            "--release",
            "--features",
            "a,b c",
            "-F",
            "d",
            "--replicas",
            "3",
            "-v",
            "--",
            "--flag",
            "value",
        ])
        .unwrap();
        assert_eq!(args.verbose, 1);
        let Command::Run(run) = args.command else {
            panic!("run")
        };
        assert_eq!(run.build.feature_list(), ["a", "b", "c", "d"]);
        assert_eq!(run.build.replicas, Some(3));
        assert_eq!(run.args, ["--flag", "value"]);
        assert!(run.build.release);
        assert_eq!(run.build.platform, Platform::Local);
    }

    #[test]
    fn replicas_are_from_1_to_256() {
        let parse = |n: &str| {
            Cargo::try_parse_from(["cargo", "turbolift", "run", "--replicas", n]).map(|c| {
                let Cargo::Turbolift(args) = c;
                let Command::Run(run) = args.command else {
                    panic!("run")
                };
                run.build.replicas
            })
        };
        assert_eq!(parse("1").unwrap(), Some(1));
        assert_eq!(parse("256").unwrap(), Some(256));
        for (bad, says) in [
            ("0", "at least 1 replica"),
            ("257", "at most 256 replicas"),
            ("100000", "at most 256 replicas"),
            ("99999999999999999999", "a whole number"),
            ("-1", "unexpected argument"),
            ("two", "a whole number"),
        ] {
            let error = parse(bad).unwrap_err().to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn tls_is_on_where_calls_cross_a_network_unless_said_otherwise() {
        let tls = |args: &[&str]| {
            let mut full = vec!["cargo", "turbolift"];
            full.extend_from_slice(args);
            Cargo::try_parse_from(full).map(|c| {
                let Cargo::Turbolift(args) = c;
                match args.command {
                    Command::Build(build) => build.tls(),
                    Command::Run(run) => run.build.tls(),
                    Command::Test(test) => test.build.tls(),
                    Command::Deploy(deploy) => deploy.build.tls(),
                    _ => panic!("a command that builds"),
                }
            })
        };
        for command in ["build", "run", "test"] {
            assert!(!tls(&[command]).unwrap(), "{command}");
            assert!(tls(&[command, "--tls"]).unwrap(), "{command}");
            assert!(!tls(&[command, "--no-tls"]).unwrap(), "{command}");
            for platform in ["docker", "kubernetes"] {
                assert!(tls(&[command, "--platform", platform]).unwrap());
                assert!(!tls(&[command, "--platform", platform, "--no-tls"]).unwrap());
                assert!(tls(&[command, "--platform", platform, "--tls"]).unwrap());
            }
            assert!(!tls(&[command, "--platform", "local", "--no-tls"]).unwrap());
            let both = tls(&[command, "--tls", "--no-tls"])
                .unwrap_err()
                .to_string();
            assert!(
                both.contains("'--tls' cannot be used with '--no-tls'"),
                "{both}"
            );
        }
        // `deploy` is for Kubernetes whatever `--platform` says; its build asks with the
        // platform set (commands::deploy).
        let mut deploy = BuildArgs {
            platform: Platform::Kubernetes,
            ..BuildArgs::default()
        };
        assert!(deploy.tls());
        deploy.no_tls = true;
        assert!(!deploy.tls());
        assert!(Cargo::try_parse_from(["cargo", "turbolift", "clean", "--tls"]).is_err());
    }

    #[test]
    fn service_output_is_for_run_and_test_and_reaches_the_platforms() {
        let output = |args: &[&str]| {
            let mut full = vec!["cargo", "turbolift"];
            full.extend_from_slice(args);
            Cargo::try_parse_from(full).map(|c| {
                let Cargo::Turbolift(args) = c.settled();
                match args.command {
                    Command::Run(run) => run.build.service_output,
                    Command::Test(test) => test.build.service_output,
                    _ => panic!("run or test"),
                }
            })
        };
        for command in ["run", "test"] {
            assert_eq!(output(&[command]).unwrap(), ServiceOutput::Stream);
            let log = output(&[command, "--service-output", "log"]).unwrap();
            assert_eq!(log, ServiceOutput::Log, "{command}");
            let bad = output(&[command, "--service-output", "tty"]).unwrap_err();
            assert!(
                bad.to_string().contains("[possible values: stream, log]"),
                "{bad}"
            );
        }
        for command in ["build", "deploy"] {
            let refused = output(&[command, "--service-output", "log"]).unwrap_err();
            assert!(
                refused.to_string().contains("unexpected argument"),
                "{refused}"
            );
        }
    }

    #[test]
    fn the_summarys_flags_are_for_run_and_test_and_reach_the_platforms() {
        let summary = |args: &[&str]| {
            let mut full = vec!["cargo", "turbolift"];
            full.extend_from_slice(args);
            Cargo::try_parse_from(full).map(|c| {
                let Cargo::Turbolift(args) = c.settled();
                match args.command {
                    Command::Run(run) => run.build.summary,
                    Command::Test(test) => test.build.summary,
                    _ => panic!("run or test"),
                }
            })
        };
        for command in ["run", "test"] {
            assert_eq!(summary(&[command]).unwrap(), Some(MessageFormat::Human));
            let json = summary(&[command, "--message-format", "json"]).unwrap();
            assert_eq!(json, Some(MessageFormat::Json), "{command}");
            assert_eq!(summary(&[command, "--no-summary"]).unwrap(), None);
            let both = [command, "--no-summary", "--message-format", "json"];
            assert_eq!(summary(&both).unwrap(), None, "no summary wins");
            let bad = summary(&[command, "--message-format", "short"]).unwrap_err();
            assert!(
                bad.to_string().contains("[possible values: human, json]"),
                "{bad}"
            );
        }
        for command in ["build", "deploy"] {
            for flag in [&["--no-summary"][..], &["--message-format", "json"]] {
                let mut args = vec![command];
                args.extend_from_slice(flag);
                let refused = summary(&args).unwrap_err();
                assert!(
                    refused.to_string().contains("unexpected argument"),
                    "{refused}"
                );
            }
        }
    }

    #[test]
    fn platform_and_image_flags_parse() {
        let Cargo::Turbolift(args) = Cargo::try_parse_from([
            "cargo",
            "turbolift",
            "build",
            "--platform",
            "docker",
            "--registry",
            "registry.example.com/team",
            "--tag",
            "v1",
        ])
        .unwrap();
        let Command::Build(build) = args.command else {
            panic!("build")
        };
        assert_eq!(build.platform, Platform::Docker);
        assert_eq!(build.registry.as_deref(), Some("registry.example.com/team"));
        assert_eq!(build.tag.as_deref(), Some("v1"));
        assert_eq!(build.arch, None);
        let Cargo::Turbolift(args) = Cargo::try_parse_from([
            "cargo",
            "turbolift",
            "build",
            "--platform",
            "kubernetes",
            "--arch",
            "all",
        ])
        .unwrap();
        let Command::Build(build) = args.command else {
            panic!("build")
        };
        assert_eq!(build.arch, Some(ArchArg::All));
        let Cargo::Turbolift(args) =
            Cargo::try_parse_from(["cargo", "turbolift", "clean", "--all"]).unwrap();
        assert!(matches!(
            args.command,
            Command::Clean(CleanArgs { all: true })
        ));
    }
}
