//! `--platform docker` end to end, on the local Docker Engine: static `FROM scratch` images
//! built from an empty image store, runs whose output equals `cargo run`'s (over TLS by
//! default, and in plain HTTP with `--no-tls`), what a container holds of TLS and who can
//! read it, a container killed mid-run, Ctrl-C and SIGKILL of `cargo turbolift`,
//! `cargo turbolift clean`, and the compose file on a one-node swarm, deployed twice.
//!
//! Each test is `#[ignore = "needs Docker ..."]`: `./test.sh` runs them when a Docker
//! daemon answers `docker info`, and always under `CI=true`; run without one, they fail
//! and say why.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use crate::support::*;

/// The docker tests share the daemon (and the swarm test changes its mode): one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fails the test, saying what to do, unless a Docker daemon answers `docker info`.
pub fn require_docker() {
    let why = match Command::new("docker").arg("info").output() {
        Ok(out) if out.status.success() => return,
        Ok(out) => format!(
            "it needs Docker, and no Docker daemon answers (`docker info` failed: {}); start the daemon (`systemctl start docker`) or point DOCKER_HOST at one",
            text(&out.stderr).trim()
        ),
        Err(e) => format!(
            "it needs Docker, and `docker` cannot run ({e}); install Docker Engine (`apt-get install docker.io` on Debian and Ubuntu, or https://docs.docker.com/engine/install/) and start it"
        ),
    };
    cannot_run(&why)
}

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("docker runs")
}

/// `docker ARGS`, which must succeed; its stdout, trimmed.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert_success(&format!("docker {}", args.join(" ")), &out);
    text(&out.stdout).trim().to_owned()
}

/// Removes every image of the package's services, so that the build starts without them.
fn remove_images(package: &str) {
    let filter = format!("reference=turbolift/{package}-*");
    let images = docker_ok(&["images", "--quiet", "--filter", &filter]);
    let mut ids: Vec<&str> = images.lines().collect();
    ids.sort();
    ids.dedup();
    if !ids.is_empty() {
        let mut args = vec!["rmi", "--force"];
        args.extend(ids);
        docker_ok(&args);
    }
    assert_eq!(
        docker_ok(&["images", "--quiet", "--filter", &filter]),
        "",
        "the images of `{package}` are gone"
    );
}

/// The run id, from the logs directory on the `Stopped` line.
fn run_id(stderr: &str) -> String {
    logs_dir(stderr)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Containers and networks with the run's label.
fn leftovers(run_id: &str) -> (String, String) {
    let filter = format!("label=turbolift.run={run_id}");
    (
        docker_ok(&["ps", "--all", "--quiet", "--filter", &filter]),
        docker_ok(&["network", "ls", "--quiet", "--filter", &filter]),
    )
}

fn assert_nothing_left(run_id: &str) {
    assert_eq!(
        leftovers(run_id),
        (String::new(), String::new()),
        "containers or a network of run {run_id} remain"
    );
}

/// `(function, image reference, built?)` from the build's `Image` lines.
fn images_of(stderr: &str) -> Vec<(String, String, bool)> {
    stderr
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("Image `"))
        .map(|rest| {
            let (function, rest) = rest.split_once("`: ").unwrap();
            let (reference, rest) = rest.split_once(", ").unwrap();
            (
                function.to_owned(),
                reference.to_owned(),
                rest.ends_with("(built)"),
            )
        })
        .collect()
}

/// Builds the example's images from nothing, checks what is in them, builds again (which
/// must reuse them), and runs it on the docker platform: the same output as `cargo run`,
/// every service used, nothing left afterwards.
fn example_in_containers(example: &str, package: &str, services: usize) {
    let dir = fixture(example);
    remove_images(package);

    let first = output(&mut turbolift(&dir, &["build", "--platform", "docker"]));
    assert_success("cargo turbolift build --platform docker", &first);
    let stderr = text(&first.stderr);
    let images = images_of(&stderr);
    assert_eq!(images.len(), services, "{stderr}");
    let building = format!(
        "Building {services} image{} for linux/amd64\n",
        if services == 1 { "" } else { "s" }
    );
    assert!(stderr.contains(&building), "{building:?} in {stderr}");
    for line in stderr.lines().filter(|l| l.contains("Image `")) {
        eprintln!("{package}: {}", line.trim());
    }
    let mut identity = Vec::new();
    for (function, reference, built) in &images {
        assert!(
            built,
            "`{function}` was built from an empty store: {stderr}"
        );
        assert!(reference.starts_with(&format!("turbolift/{package}-")));
        let tag = reference.rsplit(':').next().unwrap();
        assert!(
            tag.len() == 12 && tag.chars().all(|c| c.is_ascii_hexdigit()),
            "{reference}"
        );
        let facts = docker_ok(&[
            "image",
            "inspect",
            "--format",
            "{{.Config.User}}|{{len .RootFS.Layers}}|{{json .Config.Entrypoint}}|{{json .Config.Healthcheck.Test}}|{{.Os}}",
            reference,
        ]);
        assert_eq!(
            facts, r#"65532|1|["/service"]|["CMD","/service","--health-check"]|linux"#,
            "{reference}: non-root, one layer (FROM scratch + the binary), checks itself"
        );
        // The one layer is the binary: every other step of its history only sets metadata.
        let history = docker_ok(&[
            "history",
            "--no-trunc",
            "--format",
            "{{.Size}} {{.CreatedBy}}",
            reference,
        ]);
        let with_content: Vec<&str> = history.lines().filter(|l| !l.starts_with("0B ")).collect();
        assert_eq!(with_content.len(), 1, "{history}");
        assert!(with_content[0].contains("COPY"), "{history}");
        identity.push(docker_ok(&[
            "image",
            "inspect",
            "--format",
            "{{.Id}} {{.Created}}",
            reference,
        ]));
    }

    let second = output(&mut turbolift(&dir, &["build", "--platform", "docker"]));
    assert_success("the second build", &second);
    let again = images_of(&text(&second.stderr));
    assert_eq!(
        again.iter().map(|(f, r, _)| (f, r)).collect::<Vec<_>>(),
        images.iter().map(|(f, r, _)| (f, r)).collect::<Vec<_>>(),
        "same tags"
    );
    assert!(
        again.iter().all(|(_, _, built)| !built),
        "nothing rebuilt: {}",
        text(&second.stderr)
    );
    for ((_, reference, _), before) in images.iter().zip(&identity) {
        let now = docker_ok(&[
            "image",
            "inspect",
            "--format",
            "{{.Id}} {{.Created}}",
            reference,
        ]);
        assert_eq!(&now, before, "{reference} is the same image");
    }

    let plain = output(&mut cargo(&dir, &["run", "-q"]));
    assert_success("cargo run", &plain);
    let lifted = output(&mut turbolift(&dir, &["run", "--platform", "docker"]));
    assert_success("cargo turbolift run --platform docker", &lifted);
    let stderr = text(&lifted.stderr);
    assert_eq!(text(&lifted.stdout), text(&plain.stdout), "{stderr}");
    assert!(!text(&plain.stdout).is_empty());
    assert_ready_over_tls(&stderr, true);
    let logs = logs_dir(&stderr);
    let served = served_calls(&logs);
    assert_eq!(served.len(), services * 2, "two replicas each: {served:?}");
    for (log, _) in &served {
        let text = std::fs::read_to_string(logs.join(log)).unwrap();
        assert!(text.contains("tls=true"), "{log} served over TLS: {text}");
    }
    let mut per_service = std::collections::BTreeMap::<String, u64>::new();
    for (file, calls) in served {
        *per_service
            .entry(file.rsplit_once('-').unwrap().0.to_owned())
            .or_default() += calls;
    }
    assert!(
        per_service.values().all(|n| *n > 0),
        "every service served calls: {per_service:?}"
    );
    assert_nothing_left(&run_id(&stderr));
}

/// Whether every `Ready` line says the replicas serve TLS (`(TLS)` at its end), or none.
fn assert_ready_over_tls(stderr: &str, tls: bool) {
    let ready: Vec<&str> = stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("Ready"))
        .collect();
    assert!(!ready.is_empty(), "{stderr}");
    for line in ready {
        assert_eq!(line.ends_with(" (TLS)"), tls, "{line}");
    }
}

#[test]
#[ignore = "needs Docker (a daemon that answers `docker info`)"]
fn quickstart_images_from_scratch_and_a_run_in_containers() {
    require_docker();
    let _serial = serial();
    example_in_containers("examples/quickstart", "quickstart", 1);
}

#[test]
#[ignore = "needs Docker (a daemon that answers `docker info`)"]
fn wordstats_images_from_scratch_and_a_run_in_containers() {
    require_docker();
    let _serial = serial();
    example_in_containers("examples/wordstats", "wordstats", 4);
}

/// The lifecycle fixture's code as package `lifecycle-docker`: the lifecycle tests count
/// the processes of `target/e2e/debug/lifecycle` and must not see this program.
fn lifecycle_docker() -> PathBuf {
    let dir = target_dir().join("docker-fixtures/lifecycle-docker");
    static SETUP: Once = Once::new();
    SETUP.call_once(|| {
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = format!(
            "# The lifecycle fixture (tests/fixtures/lifecycle) under another name; written by tests/e2e/docker.rs.\n\
             [package]\nname = \"lifecycle-docker\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
             [workspace]\n\n[dependencies]\nturbolift = {{ path = {:?} }}\ntokio = {{ version = \"1\", features = [\"full\"] }}\n",
            repo().join("turbolift-rt").display().to_string()
        );
        std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
        let src = dir.join("src");
        if std::fs::symlink_metadata(&src).is_err() {
            std::os::unix::fs::symlink(fixture("lifecycle").join("src"), &src).unwrap();
        }
        std::fs::copy(repo().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
        let out = output(&mut turbolift(&dir, &["build", "--platform", "docker"]));
        assert_success("cargo turbolift build --platform docker (lifecycle)", &out);
    });
    dir
}

fn spawn_lifecycle(args: &[&str]) -> Running {
    let mut full = vec!["run", "--platform", "docker", "--replicas", "2", "--"];
    full.extend_from_slice(args);
    Running(
        turbolift(&lifecycle_docker(), &full)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// The running containers of `lifecycle-docker` runs, sorted by name, with their run id.
fn lifecycle_containers() -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = docker_ok(&[
        "ps",
        "--filter",
        "label=turbolift.run",
        "--filter",
        "label=turbolift.service=lifecycle-docker-double",
        "--format",
        "{{.Names}} {{.Label \"turbolift.run\"}}",
    ])
    .lines()
    .map(|l| {
        let (name, run) = l.split_once(' ').unwrap();
        (name.to_owned(), run.to_owned())
    })
    .collect();
    found.sort();
    found
}

/// Live processes running `exe`.
fn processes_of(exe: &Path) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == exe))
        .filter(|pid| alive(*pid))
        .collect()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs Docker (a daemon that answers `docker info`)"]
fn a_killed_container_is_restarted_and_every_call_still_succeeds() {
    require_docker();
    let _serial = serial();
    let mut run = spawn_lifecycle(&["steady", "400"]);
    let child = &mut run.0;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = read_until(&mut lines, "100 ");
    // The program is held now and then, so that the test is not outrun by it.
    let program = target_dir().join("debug/lifecycle-docker");
    let programs = processes_of(&program);
    assert_eq!(programs.len(), 1, "{programs:?}");
    kill(programs[0], "STOP");
    let containers = lifecycle_containers();
    assert_eq!(containers.len(), 2, "two replicas: {containers:?}");
    let (victim, run_id) = containers[0].clone();
    let port = docker_ok(&["port", &victim, "8080/tcp"]);

    // A crash, not `docker kill` (after which Docker's restart policy does not apply).
    let pid = docker_ok(&["inspect", "--format", "{{.State.Pid}}", &victim]);
    kill(pid.parse().unwrap(), "KILL");
    // Calls go on meanwhile; those that meet the dead replica are retried on the other.
    kill(programs[0], "CONT");
    seen.extend(read_until(&mut lines, "200 "));

    // Docker brings the replica back on the same port, and the rest of the calls can
    // reach it again.
    kill(programs[0], "STOP");
    wait_for(
        "the killed container to be restarted",
        Duration::from_secs(30),
        || {
            docker_ok(&[
                "inspect",
                "--format",
                "{{.RestartCount}} {{.State.Running}}",
                &victim,
            ]) == "1 true"
        },
    );
    assert_eq!(
        docker_ok(&["port", &victim, "8080/tcp"]),
        port,
        "same port after the restart"
    );
    kill(programs[0], "CONT");

    let stderr = finish_steady(child, seen, lines, 400);
    assert!(stderr.contains("(1 restart during the run)"), "{stderr}");
    // The restarted replica served calls after it came back.
    let log =
        std::fs::read_to_string(logs_dir(&stderr).join("lifecycle-docker-double-0.log")).unwrap();
    assert_eq!(log.matches("serving").count(), 2, "{log}");
    assert!(log.contains("Docker restarted container"), "{log}");
    let served = served_calls(&logs_dir(&stderr));
    assert!(
        served
            .iter()
            .all(|(file, calls)| file.ends_with(".log") && *calls > 0),
        "both replicas served calls, the restarted one after its restart: {served:?}"
    );
    // The summary: the first call and the 400 all served, Docker's restart of `double`.
    let row: Vec<&str> = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("lifecycle_docker::double "))
        .unwrap_or_else(|| panic!("no summary of double:\n{stderr}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[1..4], ["401", "401", "0"], "{stderr}");
    assert_eq!(row[row.len() - 3..], ["2", "1", "0"], "{stderr}");
    assert_nothing_left(&run_id);
}

#[test]
#[ignore = "needs Docker (a daemon that answers `docker info`)"]
fn ctrl_c_sigkill_and_clean() {
    require_docker();
    let _serial = serial();
    let program = target_dir().join("debug/lifecycle-docker");

    // SIGINT to `cargo turbolift`: the program is stopped and every container goes.
    let mut run = spawn_lifecycle(&["wait"]);
    let mut lines = BufReader::new(run.0.stdout.take().unwrap()).lines();
    read_until(&mut lines, "waiting");
    let containers = lifecycle_containers();
    assert_eq!(containers.len(), 2, "{containers:?}");
    let run_id = containers[0].1.clone();
    kill(run.0.id(), "INT");
    let status = run.0.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "the program's death by SIGINT is passed on"
    );
    assert_nothing_left(&run_id);

    // SIGKILL: nothing can clean up at once; `clean` leaves a live run alone, and removes
    // the run once its owner is gone.
    let mut live = spawn_lifecycle(&["wait"]);
    let mut lines = BufReader::new(live.0.stdout.take().unwrap()).lines();
    read_until(&mut lines, "waiting");
    let live_run = lifecycle_containers()[0].1.clone();
    let clean = output(&mut clean_command());
    assert_success("cargo turbolift clean", &clean);
    assert!(
        text(&clean.stderr).contains("Kept"),
        "{}",
        text(&clean.stderr)
    );
    assert_ne!(leftovers(&live_run).0, "", "a live run is left alone");

    kill(live.0.id(), "KILL");
    live.0.wait().unwrap();
    assert!(
        wait_gone(&processes_of(&program), Duration::from_secs(10)).is_empty(),
        "the program died with its parent"
    );
    let (containers, network) = leftovers(&live_run);
    assert!(
        !containers.is_empty() && !network.is_empty(),
        "left behind by SIGKILL"
    );
    let clean = output(&mut clean_command());
    assert_success("cargo turbolift clean", &clean);
    let said = text(&clean.stderr);
    assert!(
        said.contains(&format!(
            "what run {live_run} left behind: 2 containers, 1 network"
        )),
        "{said}"
    );
    assert_nothing_left(&live_run);
}

#[test]
#[ignore = "needs Docker (a daemon that answers `docker info`)"]
fn with_no_tls_a_docker_run_is_plain_http_and_prints_the_same() {
    require_docker();
    let _serial = serial();
    let dir = fixture("examples/quickstart");
    let plain = output(&mut cargo(&dir, &["run", "-q"]));
    assert_success("cargo run", &plain);
    let args = ["run", "--platform", "docker", "--no-tls"];
    let lifted = output(&mut turbolift(&dir, &args));
    assert_success("cargo turbolift run --platform docker --no-tls", &lifted);
    let stderr = text(&lifted.stderr);
    assert_eq!(text(&lifted.stdout), text(&plain.stdout), "{stderr}");
    assert_ready_over_tls(&stderr, false);
    let logs = logs_dir(&stderr);
    let served = served_calls(&logs);
    assert!(
        served.len() == 2 && served.iter().all(|(_, n)| *n > 0),
        "{served:?}"
    );
    for (log, _) in &served {
        let text = std::fs::read_to_string(logs.join(log)).unwrap();
        assert!(text.contains("listening on http://"), "{log}: {text}");
        assert!(!text.contains("tls=true"), "{log}: {text}");
    }
    assert_nothing_left(&run_id(&stderr));
}

#[test]
#[ignore = "needs Docker (a daemon that answers `docker info`)"]
fn a_docker_run_serves_tls_only_from_files_only_the_services_user_reads() {
    require_docker();
    let _serial = serial();
    let mut run = spawn_lifecycle(&["wait"]);
    let mut lines = BufReader::new(run.0.stdout.take().unwrap()).lines();
    // The program's first call went over TLS.
    read_until(&mut lines, "waiting 42");
    let containers = lifecycle_containers();
    assert_eq!(containers.len(), 2, "{containers:?}");
    let (name, run_id) = containers[0].clone();

    // A plain HTTP request to the published port gets no HTTP answer.
    let published = docker_ok(&["port", &name, "8080/tcp"]);
    let answer = plain_http(&published);
    assert!(
        !answer.starts_with("HTTP/"),
        "{name} answered plain HTTP: {answer:?}"
    );

    // The files, as `docker cp` reads them out of the container: the service's user's,
    // readable by it alone.
    let entries = entries_in(&name, "/etc/turbolift/tls");
    assert_eq!(
        entries,
        [
            ("tls/".to_owned(), 0o500, 65532, 65532),
            ("tls/ca.crt".to_owned(), 0o400, 65532, 65532),
            ("tls/tls.crt".to_owned(), 0o400, 65532, 65532),
            ("tls/tls.key".to_owned(), 0o400, 65532, 65532),
        ],
        "{name}"
    );
    // Named by paths in the environment, the keys themselves never; no bind mount.
    let env = docker_ok(&["inspect", "--format", "{{json .Config.Env}}", &name]);
    for var in [
        "TURBOLIFT_TLS_CA=/etc/turbolift/tls/ca.crt",
        "TURBOLIFT_TLS_CERT=/etc/turbolift/tls/tls.crt",
        "TURBOLIFT_TLS_KEY=/etc/turbolift/tls/tls.key",
    ] {
        assert!(env.contains(var), "{env}");
    }
    assert!(!env.contains("BEGIN"), "a PEM in the environment: {env}");
    let mounts = docker_ok(&["inspect", "--format", "{{json .Mounts}}", &name]);
    assert_eq!(mounts, "[]", "{name}");

    // The image's HEALTHCHECK (`/service --health-check`) asks over TLS.
    wait_for(
        "Docker's health check to pass",
        Duration::from_secs(60),
        || docker_ok(&["inspect", "--format", "{{.State.Health.Status}}", &name]) == "healthy",
    );

    kill(run.0.id(), "INT");
    let status = run.0.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let mut stderr = String::new();
    run.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_ready_over_tls(&stderr, true);
    assert_nothing_left(&run_id);
    let here = target_dir()
        .join("turbolift/lifecycle-docker/tls")
        .join(&run_id);
    assert!(!here.exists(), "{} went with the run", here.display());
    eprintln!(
        "docker run over TLS: plain HTTP got {} bytes and no HTTP answer; /etc/turbolift/tls 0500 and its files 0400, all 65532:65532; healthy",
        answer.len()
    );
}

/// Sends a plain HTTP readiness request to `addr` and returns whatever comes back within
/// five seconds (nothing, or a TLS alert, from a TLS server).
fn plain_http(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.write_all(b"GET /v1/ready HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// The entries of the tar stream `docker cp CONTAINER:PATH -` writes: name, permission
/// bits, owner and group, from the ustar headers.
fn entries_in(container: &str, path: &str) -> Vec<(String, u32, u32, u32)> {
    let out = docker(&["cp", &format!("{container}:{path}"), "-"]);
    assert_success("docker cp out of the container", &out);
    let tar = out.stdout;
    let octal = |field: &[u8]| -> u64 {
        let digits = String::from_utf8_lossy(field);
        let digits = digits.trim_matches(|c: char| c == '\0' || c == ' ');
        u64::from_str_radix(digits, 8).unwrap_or(0)
    };
    let mut entries = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() && tar[at..at + 512].iter().any(|b| *b != 0) {
        let h = &tar[at..at + 512];
        let size = octal(&h[124..136]) as usize;
        // PAX extended headers ('x', 'g') describe the next entry.
        if !matches!(h[156], b'x' | b'g') {
            let name = String::from_utf8_lossy(&h[..100])
                .trim_end_matches('\0')
                .to_owned();
            entries.push((
                name,
                octal(&h[100..108]) as u32 & 0o7777,
                octal(&h[108..116]) as u32,
                octal(&h[116..124]) as u32,
            ));
        }
        at += 512 + size.next_multiple_of(512);
    }
    entries
}

/// `cargo turbolift clean`, which takes no package or target directory.
fn clean_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cargo-turbolift"));
    cmd.args(["turbolift", "clean", "--color", "never"])
        .stdin(Stdio::null());
    cmd
}

/// Leaves the swarm this test joined, and removes the bridge swarm mode created.
struct Swarm {
    had_gwbridge: bool,
}

impl Drop for Swarm {
    fn drop(&mut self) {
        let _ = docker(&["swarm", "leave", "--force"]);
        if !self.had_gwbridge {
            let _ = docker(&["network", "rm", "docker_gwbridge"]);
        }
    }
}

/// Removes a stack and waits until its network is gone.
struct Stack(String);

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = docker(&["stack", "rm", &self.0]);
        let filter = format!("label=com.docker.stack.namespace={}", self.0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline
            && (!docker_ok(&["ps", "--all", "--quiet", "--filter", &filter]).is_empty()
                || !docker_ok(&["network", "ls", "--quiet", "--filter", &filter]).is_empty())
        {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The host's target triple.
fn host() -> String {
    let out = Command::new("rustc").arg("-vV").output().unwrap();
    text(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap()
        .to_owned()
}

#[test]
#[ignore = "needs Docker (a daemon that answers `docker info`)"]
fn the_compose_file_deploys_on_a_one_node_swarm() {
    require_docker();
    let _serial = serial();
    let dir = fixture("examples/quickstart");
    let build = output(&mut turbolift(&dir, &["build", "--platform", "docker"]));
    assert_success("cargo turbolift build --platform docker", &build);
    let docker_dir = target_dir().join("turbolift/quickstart/docker");
    let compose = docker_dir.join("compose.yaml");
    let compose_text = std::fs::read_to_string(&compose).unwrap();

    // `docker stack deploy` below reads the file in any case; docker-compose, where it is
    // installed, must accept it too.
    if let Ok(out) = Command::new("docker-compose")
        .arg("--file")
        .arg(&compose)
        .args(["config", "--quiet"])
        .output()
    {
        assert_success("docker-compose config", &out);
    }

    let state = docker_ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    if state != "inactive" {
        cannot_run(&format!(
            "it needs a Docker Engine that is not in swarm mode, and this one is ({state}); the test does not touch a swarm it did not create: point DOCKER_HOST at another engine, or leave the swarm (`docker swarm leave --force`) if it is yours"
        ));
    }
    let had_gwbridge = !docker_ok(&[
        "network",
        "ls",
        "--quiet",
        "--filter",
        "name=^docker_gwbridge$",
    ])
    .is_empty();
    let init = docker(&[
        "swarm",
        "init",
        "--listen-addr",
        "127.0.0.1:2377",
        "--advertise-addr",
        "127.0.0.1",
    ]);
    let _swarm = Swarm { had_gwbridge };
    if !init.status.success() {
        cannot_run(&format!(
            "it needs a one-node swarm, and `docker swarm init --listen-addr 127.0.0.1:2377` failed ({}); the compose file was validated but not deployed",
            text(&init.stderr).trim()
        ));
    }
    let stack = format!("tl-e2e-{}", std::process::id());
    let deploy = docker(&[
        "stack",
        "deploy",
        "--compose-file",
        compose.to_str().unwrap(),
        &stack,
    ]);
    let _stack = Stack(stack.clone());
    assert_success("docker stack deploy", &deploy);
    let service = format!("{stack}_quickstart-square");
    // Both replicas of the stack's service up.
    let both_up = || {
        docker_ok(&[
            "service",
            "ls",
            "--filter",
            &format!("name={service}"),
            "--format",
            "{{.Replicas}}",
        ]) == "2/2"
    };
    wait_for("2 healthy replicas", Duration::from_secs(90), both_up);

    // The program, built statically, runs in a container on the stack's network (the image
    // of the service serves as an empty root for it), with its files of tls/.
    let triple = host();
    let program = static_program_with(
        &dir,
        &triple,
        "quickstart",
        "turbolift/service,turbolift/tls",
    );
    let plain = output(&mut cargo(&dir, &["run", "-q"]));
    let lifted = program_on_stack(&stack, &docker_dir, &program);
    assert_success("the program on the swarm network", &lifted);
    assert_eq!(text(&lifted.stdout), text(&plain.stdout));
    let secrets = docker_ok(&["secret", "ls", "--format", "{{.Name}}"]);
    let key = format!("{stack}_quickstart-square.key.");
    assert!(secrets.contains(&key), "{secrets}");

    // A new build makes a new authority and secrets of new names: deployed again, the
    // stack takes them (a secret of an old name could not change), and the program with
    // the new files calls the updated replicas.
    let build = output(&mut turbolift(&dir, &["build", "--platform", "docker"]));
    assert_success("the second build", &build);
    let again = std::fs::read_to_string(&compose).unwrap();
    assert_ne!(again, compose_text, "a new authority, new secrets");
    let deploy = docker(&[
        "stack",
        "deploy",
        "--compose-file",
        compose.to_str().unwrap(),
        &stack,
    ]);
    assert_success("docker stack deploy, again", &deploy);
    wait_for(
        "the update of the service",
        Duration::from_secs(120),
        || {
            docker_ok(&[
                "service",
                "inspect",
                "--format",
                "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
                &service,
            ]) == "completed"
        },
    );
    wait_for("2 healthy replicas again", Duration::from_secs(90), both_up);
    let lifted = program_on_stack(&stack, &docker_dir, &program);
    assert_success("the program with the new files", &lifted);
    assert_eq!(text(&lifted.stdout), text(&plain.stdout));
    eprintln!(
        "the compose file ran on a one-node swarm over TLS, deployed twice: {}",
        text(&lifted.stdout).trim()
    );
}

/// Runs `program` in a container on the stack's network, as the header of compose.yaml
/// says: the secret of turbolift.env, `TURBOLIFT_ENDPOINTS` from the header, and the
/// program's files of tls/ mounted read-only at /etc/turbolift/tls, read as their owner.
fn program_on_stack(stack: &str, docker_dir: &Path, program: &Path) -> Output {
    let compose_text = std::fs::read_to_string(docker_dir.join("compose.yaml")).unwrap();
    let image = compose_text
        .lines()
        .find_map(|l| l.trim().strip_prefix("image: "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let header = |var: &str| {
        compose_text
            .lines()
            .find_map(|l| l.trim_start_matches('#').trim().strip_prefix(var))
            .unwrap_or_else(|| panic!("no {var} in the header:\n{compose_text}"))
            .to_owned()
    };
    let endpoints = header("TURBOLIFT_ENDPOINTS=");
    assert!(endpoints.contains("=https://tasks."), "{endpoints}");
    let tls = docker_dir.join("tls");
    let owner = std::fs::metadata(&tls).unwrap();
    let user = format!("{}:{}", owner.uid(), owner.gid());
    let mut args: Vec<String> = [
        "run",
        "--rm",
        "--network",
        &format!("{stack}_turbolift"),
        "--user",
        &user,
        "--env-file",
        docker_dir.join("turbolift.env").to_str().unwrap(),
        "--env",
        &format!("TURBOLIFT_ENDPOINTS={endpoints}"),
        "--volume",
        &format!("{}:/program:ro", program.display()),
    ]
    .map(str::to_owned)
    .to_vec();
    for (var, file) in [
        ("TURBOLIFT_TLS_CA=", "ca.crt"),
        ("TURBOLIFT_TLS_CERT=", "program.crt"),
        ("TURBOLIFT_TLS_KEY=", "program.key"),
    ] {
        let inside = header(var);
        args.push("--env".to_owned());
        args.push(format!("{var}{inside}"));
        args.push("--volume".to_owned());
        args.push(format!("{}:{inside}:ro", tls.join(file).display()));
    }
    args.extend(["--entrypoint", "/program", &image].map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&args)
}
