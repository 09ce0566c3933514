//! `--arch`: services cross-compiled for arm64 on this (x86-64) machine, checked as ELF
//! files, put into `linux/arm64` images, and run under user-mode emulation
//! (`qemu-aarch64-static`) on 127.0.0.1, called by the amd64 program through the normal
//! remote path; and `--arch all`: per-architecture images, one multi-arch reference per
//! image in the Kubernetes manifests, and `push.sh` making it a manifest list in a
//! registry (Debian's `docker-registry`, on 127.0.0.1).
//!
//! The two tests that build for arm64 are `#[ignore]`d as needing Docker and the arm64
//! cross tools: `./test.sh` installs the rustup target, the cross linker, qemu and the
//! registry, and runs them when those and a Docker daemon are there, and always under
//! `CI=true`; run without them, they fail and say what is missing. The test of the
//! messages about missing tools needs none of them and always runs.

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::docker::{docker, docker_ok, require_docker, serial};
use crate::support::*;

const TRIPLE: &str = "aarch64-unknown-linux-gnu";
const LINKER: &str = "aarch64-linux-gnu-gcc";
const QEMU: &str = "qemu-aarch64-static";
/// `e_machine` of AArch64 (EM_AARCH64).
const EM_AARCH64: u16 = 0xB7;
/// `e_machine` of x86-64 (EM_X86_64).
const EM_X86_64: u16 = 0x3E;

/// Why the arm64 tests cannot run here, if they cannot.
fn missing_cross_tools() -> Option<String> {
    let libdir = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", TRIPLE])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(text(&o.stdout).trim()));
    let has_std = libdir
        .and_then(|d| std::fs::read_dir(d).ok())
        .is_some_and(|mut entries| {
            entries
                .any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libcore-")))
        });
    if !has_std {
        return Some(format!(
            "the rustup target {TRIPLE} is not installed (`rustup target add {TRIPLE}`)"
        ));
    }
    match Command::new(LINKER).arg("-print-file-name=libc.a").output() {
        Err(_) => {
            return Some(format!(
                "`{LINKER}` is not on PATH (`apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross`)"
            ));
        }
        Ok(out) if !text(&out.stdout).trim().starts_with('/') => {
            return Some(format!(
                "`{LINKER}` has no static libc (`apt-get install libc6-dev-arm64-cross`)"
            ));
        }
        Ok(_) => {}
    }
    if Command::new(QEMU).arg("--version").output().is_err() {
        return Some(format!(
            "`{QEMU}` is not on PATH (`apt-get install qemu-user-static`)"
        ));
    }
    None
}

/// Fails the test, saying what to install, unless the arm64 cross tools and Docker are here.
fn require_cross_tools() {
    if let Some(why) = missing_cross_tools() {
        cannot_run(&format!(
            "it needs the arm64 cross tools, and {why}; ./test.sh installs them (apt-get as root)"
        ));
    }
    require_docker();
}

/// What an ELF64 little-endian file says about itself.
#[derive(Debug, PartialEq, Eq)]
struct Elf {
    machine: u16,
    /// `ET_EXEC` (2) or `ET_DYN` (3, a static-pie is one too).
    file_type: u16,
    /// Whether a program header of type `PT_INTERP` names a dynamic loader.
    interpreter: bool,
    /// Whether a `PT_DYNAMIC` header is there (a static-pie has one, for its relocations).
    dynamic: bool,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Parses the ELF header and the program headers (ELF64, little-endian only).
fn elf(bytes: &[u8]) -> Elf {
    assert!(bytes.len() >= 64, "too short for an ELF64 header");
    assert_eq!(&bytes[..4], b"\x7fELF", "no ELF magic");
    assert_eq!(bytes[4], 2, "not ELFCLASS64");
    assert_eq!(bytes[5], 1, "not little-endian (ELFDATA2LSB)");
    let phoff = u64_at(bytes, 0x20) as usize;
    let phentsize = u16_at(bytes, 0x36) as usize;
    let phnum = u16_at(bytes, 0x38) as usize;
    assert!(phentsize >= 56 && phoff + phnum * phentsize <= bytes.len());
    let types: Vec<u32> = (0..phnum)
        .map(|i| u32_at(bytes, phoff + i * phentsize))
        .collect();
    Elf {
        machine: u16_at(bytes, 0x12),
        file_type: u16_at(bytes, 0x10),
        interpreter: types.contains(&3),
        dynamic: types.contains(&2),
    }
}

/// `(what, reference)` of the build's `Image` lines (`what` is `` `id` `` or `the program`).
fn images_of(stderr: &str) -> Vec<(String, String)> {
    lines_of(stderr, "Image ")
}

/// `(what, reference)` of the build's `Multi-arch` lines.
fn multi_arch_of(stderr: &str) -> Vec<(String, String)> {
    lines_of(stderr, "Multi-arch ")
}

fn lines_of(stderr: &str, status: &str) -> Vec<(String, String)> {
    stderr
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix(status))
        .map(|rest| {
            let (what, rest) = rest.split_once(": ").unwrap();
            let reference = rest.split([',', ' ']).next().unwrap();
            (what.to_owned(), reference.to_owned())
        })
        .collect()
}

/// The executables on the build's `Service` lines.
fn service_binaries(stderr: &str) -> Vec<(String, PathBuf)> {
    stderr
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("Service `"))
        .map(|rest| {
            let (id, path) = rest.split_once("`: ").unwrap();
            (id.to_owned(), PathBuf::from(path.trim()))
        })
        .collect()
}

/// The file `path` of the image `reference`, copied out of a container that never runs.
fn file_in_image(reference: &str, platform: &str, path: &str) -> Vec<u8> {
    let id = docker_ok(&["create", "--platform", platform, reference]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("file");
    let copied = docker(&["cp", &format!("{id}:{path}"), dest.to_str().unwrap()]);
    docker_ok(&["rm", &id]);
    assert_success("docker cp", &copied);
    std::fs::read(dest).unwrap()
}

/// The quickstart's program built for the host as the images hold it (static, with the
/// remote call path), copied away from the shared target directory so that other tests'
/// builds cannot replace it while it runs.
fn static_program(dir: &Path, keep: &Path) -> PathBuf {
    let built = crate::support::static_program(dir, "x86_64-unknown-linux-gnu", "quickstart");
    let program = keep.join("quickstart");
    std::fs::copy(built, &program).unwrap();
    program
}

/// A service binary running under qemu on 127.0.0.1, and the address it printed.
struct Emulated {
    child: Running,
    addr: String,
}

fn start_emulated(binary: &Path, secret: &str) -> Emulated {
    let mut child = Running(
        Command::new(QEMU)
            .arg(binary)
            .env("TURBOLIFT_SECRET", secret)
            .env("TURBOLIFT_BIND", "127.0.0.1:0")
            .env("TURBOLIFT_REPLICA", "arm64-0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the emulated service printed its address within 60 s");
    let addr = line
        .trim()
        .strip_prefix("turbolift: listening on http://")
        .unwrap_or_else(|| panic!("not an address line: {line:?}"))
        .to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    Emulated { child, addr }
}

/// SIGTERM, then the service's exit status and its stderr.
fn stop_emulated(mut service: Emulated) -> (std::process::ExitStatus, String) {
    kill(service.child.0.id(), "TERM");
    let mut stderr = String::new();
    service
        .child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (service.child.0.wait().unwrap(), stderr)
}

#[test]
#[ignore = "needs Docker and the arm64 cross tools (rustup target, gcc-aarch64-linux-gnu, qemu-user-static)"]
fn quickstart_services_built_for_arm64_answer_under_emulation() {
    require_cross_tools();
    let _serial = serial();
    let dir = fixture("examples/quickstart");
    let plain = output(&mut cargo(&dir, &["run", "-q"]));
    assert_success("cargo run", &plain);

    let build = output(&mut turbolift(
        &dir,
        &["build", "--platform", "docker", "--arch", "arm64"],
    ));
    assert_success(
        "cargo turbolift build --platform docker --arch arm64",
        &build,
    );
    let stderr = text(&build.stderr);

    // The services: aarch64, static, for each distributed function.
    let services = service_binaries(&stderr);
    assert_eq!(services.len(), 1, "{stderr}");
    let images = images_of(&stderr);
    assert_eq!(images.len(), services.len(), "{stderr}");
    for ((id, binary), (what, reference)) in services.iter().zip(&images) {
        assert_eq!(what, &format!("`{id}`"));
        assert!(
            binary.starts_with(target_dir().join("turbolift-static").join(TRIPLE)),
            "a separate target directory per triple: {}",
            binary.display()
        );
        let bytes = std::fs::read(binary).unwrap();
        let header = elf(&bytes);
        assert_eq!(header.machine, EM_AARCH64, "{}", binary.display());
        assert!(
            !header.interpreter,
            "static: no PT_INTERP in {}",
            binary.display()
        );
        // The image: linux/arm64, and the very same binary inside.
        assert!(reference.ends_with("-arm64"), "{reference}");
        assert_eq!(
            docker_ok(&[
                "image",
                "inspect",
                "--format",
                "{{.Architecture}}|{{.Os}}",
                reference
            ]),
            "arm64|linux",
            "{reference}"
        );
        let inside = file_in_image(reference, "linux/arm64", "/service");
        assert!(
            inside == bytes,
            "/service in {reference} is the built binary"
        );
        eprintln!(
            "{id}: {reference}, aarch64 {} ELF without PT_INTERP{}",
            if header.file_type == 3 {
                "ET_DYN"
            } else {
                "ET_EXEC"
            },
            if header.dynamic {
                ", with PT_DYNAMIC"
            } else {
                ""
            }
        );
    }

    // Each service under qemu on 127.0.0.1, the amd64 program calling them.
    let keep = tempfile::tempdir().unwrap();
    let program = static_program(&dir, keep.path());
    assert_eq!(elf(&std::fs::read(&program).unwrap()).machine, EM_X86_64);
    let secret = "e2e-arm64-secret-0123456789abcdef";
    let running: Vec<(String, Emulated)> = services
        .iter()
        .map(|(id, binary)| (id.clone(), start_emulated(binary, secret)))
        .collect();
    let endpoints: Vec<String> = running
        .iter()
        .map(|(id, s)| format!("{id}=http://{}", s.addr))
        .collect();
    let lifted = Command::new(&program)
        .env("TURBOLIFT_ENDPOINTS", endpoints.join(";"))
        .env("TURBOLIFT_SECRET", secret)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_success("the amd64 program against the arm64 services", &lifted);
    assert_eq!(text(&lifted.stdout), text(&plain.stdout));
    assert!(!text(&plain.stdout).is_empty());

    for (id, service) in running {
        let (status, log) = stop_emulated(service);
        assert!(status.success(), "{id} after SIGTERM: {status}\n{log}");
        let served: u64 = log
            .lines()
            .filter_map(|l| l.split("stopped served=").nth(1))
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        assert!(served > 0, "the arm64 `{id}` served the calls:\n{log}");
        eprintln!("{id} under {QEMU}: served {served} calls");
    }
    eprintln!(
        "amd64 program + arm64 services: {}",
        text(&lifted.stdout).trim()
    );
}

/// A registry (Debian's `docker-registry`) on 127.0.0.1, stopped and its data removed at
/// the end.
struct Registry {
    child: Running,
    port: u16,
    _data: tempfile::TempDir,
}

/// `docker-registry` from PATH, else the copy `./test.sh` unpacks into `target/tools/`.
fn registry_binary() -> Option<PathBuf> {
    let unpacked = repo().join("target/tools/docker-registry/usr/bin/docker-registry");
    [PathBuf::from("docker-registry"), unpacked]
        .into_iter()
        .find(|bin| Command::new(bin).arg("--version").output().is_ok())
}

fn start_registry() -> Registry {
    let binary = registry_binary().unwrap_or_else(|| {
        cannot_run(
            "it pushes to a registry, and there is no `docker-registry` (Debian's package) on PATH or in target/tools/docker-registry; ./test.sh unpacks it there (`apt-get download docker-registry`)",
        )
    });
    let data = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = data.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            data.path().join("data").display()
        ),
    )
    .unwrap();
    let child = Running(
        Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the registry did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Registry {
        child,
        port,
        _data: data,
    }
}

/// Removes the images with `prefix` that the test built or pulled.
struct Images(String);

impl Drop for Images {
    fn drop(&mut self) {
        let filter = format!("reference={}/*", self.0);
        let listed = docker(&["images", "--quiet", "--filter", &filter]);
        let mut ids: Vec<String> = text(&listed.stdout).lines().map(str::to_owned).collect();
        ids.sort();
        ids.dedup();
        if !ids.is_empty() {
            let mut args = vec!["rmi".to_owned(), "--force".to_owned()];
            args.extend(ids);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let _ = docker(&args);
        }
    }
}

#[test]
#[ignore = "needs Docker, the arm64 cross tools (rustup target, gcc-aarch64-linux-gnu, qemu-user-static) and docker-registry"]
fn all_architectures_give_one_multi_arch_reference_per_image() {
    require_cross_tools();
    let _serial = serial();
    let dir = fixture("examples/quickstart");
    let registry = start_registry();
    let prefix = format!("127.0.0.1:{}/e2e", registry.port);
    let _images = Images(prefix.clone());
    let build = output(&mut turbolift(
        &dir,
        &[
            "build",
            "--platform",
            "kubernetes",
            "--arch",
            "all",
            "--registry",
            &prefix,
        ],
    ));
    assert_success(
        "cargo turbolift build --platform kubernetes --arch all",
        &build,
    );
    let stderr = text(&build.stderr);

    // An image per architecture, the service's and the program's, and a multi-arch
    // reference for each.
    let images = images_of(&stderr);
    let multi = multi_arch_of(&stderr);
    let whats = ["`quickstart::square`", "the program"];
    assert_eq!(
        multi.iter().map(|(w, _)| w.as_str()).collect::<Vec<_>>(),
        whats,
        "{stderr}"
    );
    for (what, reference) in &multi {
        let own: Vec<&str> = images
            .iter()
            .filter(|(w, _)| w == what)
            .map(|(_, r)| r.as_str())
            .collect();
        assert_eq!(
            own,
            [format!("{reference}-amd64"), format!("{reference}-arm64")],
            "{stderr}"
        );
        for (arch, machine) in [("amd64", EM_X86_64), ("arm64", EM_AARCH64)] {
            let local = format!("{reference}-{arch}");
            assert_eq!(
                docker_ok(&["image", "inspect", "--format", "{{.Architecture}}", &local]),
                arch
            );
            let path = if what == "the program" {
                "/program"
            } else {
                "/service"
            };
            let header = elf(&file_in_image(&local, &format!("linux/{arch}"), path));
            assert_eq!(header.machine, machine, "{local}");
            assert!(!header.interpreter, "{local} is static");
        }
    }
    // The services of both architectures were built, each into its triple's directory.
    let services = service_binaries(&stderr);
    assert_eq!(services.len(), 2, "{stderr}");
    assert!(
        services[0]
            .1
            .to_string_lossy()
            .contains("/x86_64-unknown-linux-gnu/")
    );
    assert!(
        services[1]
            .1
            .to_string_lossy()
            .contains(&format!("/{TRIPLE}/"))
    );

    // The manifests name the multi-arch references, and do not pin an architecture.
    let manifests = target_dir().join("turbolift/quickstart/kubernetes");
    let read = |file: &str| -> Value {
        serde_saphyr::from_str(&std::fs::read_to_string(manifests.join(file)).unwrap()).unwrap()
    };
    let deployment = read("quickstart-square.deployment.yaml");
    let job = read("quickstart-program.job.yaml");
    for (object, reference) in [(&deployment, &multi[0].1), (&job, &multi[1].1)] {
        let pod = &object["spec"]["template"]["spec"];
        assert_eq!(
            pod["containers"][0]["image"],
            Value::from(reference.as_str())
        );
        assert_eq!(
            pod["nodeSelector"],
            serde_json::json!({ "kubernetes.io/os": "linux" })
        );
    }

    // push.sh: every image, then each manifest list.
    let push = target_dir().join("turbolift/quickstart/docker/push.sh");
    let script = std::fs::read_to_string(&push).unwrap();
    for (_, reference) in &images {
        assert!(
            script.contains(&format!("docker push {reference}\n")),
            "{script}"
        );
    }
    for (_, reference) in &multi {
        assert!(
            script.contains(&format!(
                "docker manifest create ${{MANIFEST_FLAGS:-}} {reference} {reference}-amd64 {reference}-arm64\n"
            )),
            "{script}"
        );
    }

    // Pushed to a real registry, each reference is a manifest list of both platforms, and
    // pulling it for arm64 gives the arm64 image that was built.
    let pushed = Command::new("sh")
        .arg(&push)
        .env("MANIFEST_FLAGS", "--insecure")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_success("push.sh", &pushed);
    for (what, reference) in &multi {
        let list: Value = serde_json::from_str(&docker_ok(&[
            "manifest",
            "inspect",
            "--insecure",
            reference,
        ]))
        .unwrap();
        assert_eq!(
            list["mediaType"],
            "application/vnd.docker.distribution.manifest.list.v2+json"
        );
        let platforms: Vec<(String, String)> = list["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["platform"]["os"].as_str().unwrap().to_owned(),
                    m["platform"]["architecture"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            platforms,
            [
                ("linux".to_owned(), "amd64".to_owned()),
                ("linux".to_owned(), "arm64".to_owned())
            ],
            "{what}: {list}"
        );
        let built_arm64 = docker_ok(&[
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            &format!("{reference}-arm64"),
        ]);
        docker_ok(&["pull", "--quiet", "--platform", "linux/arm64", reference]);
        assert_eq!(
            docker_ok(&["image", "inspect", "--format", "{{.Id}}", reference]),
            built_arm64,
            "{reference} for linux/arm64 is the arm64 image built"
        );
        eprintln!("{what}: {reference} is a manifest list of linux/amd64 and linux/arm64");
    }
    drop(registry.child);
}

/// A tool that is missing is named with the command that installs it, before anything is
/// built; `--arch` without an image platform is refused.
#[test]
fn missing_cross_tools_are_named_with_their_install_command() {
    let dir = fixture("examples/quickstart");
    let run = |env: &[(&str, &std::ffi::OsStr)], args: &[&str]| -> String {
        let mut cmd = turbolift(&dir, args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{args:?} must fail");
        text(&out.stderr)
    };
    let said = run(&[], &["build", "--arch", "arm64"]);
    assert!(
        said.contains("`--arch`") && said.contains("--platform docker"),
        "{said}"
    );

    // No cross linker on PATH: only the toolchain's own directory (cargo and rustc).
    let toolchain = Path::new(env!("CARGO")).parent().unwrap().as_os_str();
    let said = run(
        &[("PATH", toolchain)],
        &["build", "--platform", "docker", "--arch", "arm64"],
    );
    // (The target is checked first: without it, that is what is said.)
    let target_missing = missing_cross_tools().is_some_and(|why| why.contains("rustup target"));
    let expected = if target_missing {
        "the arm64 target is missing: run `rustup target add aarch64-unknown-linux-gnu`"
    } else {
        "install the linker: `apt-get install gcc-aarch64-linux-gnu` (Debian/Ubuntu)"
    };
    assert!(said.contains(expected), "{said}");

    // A toolchain without the arm64 standard library: a rustc that points elsewhere.
    let fake = tempfile::tempdir().unwrap();
    let rustc = fake.path().join("rustc");
    let real = Path::new(env!("CARGO")).with_file_name("rustc");
    std::fs::write(
        &rustc,
        format!(
            "#!/bin/sh\ncase \"$*\" in\n  *target-libdir*) echo {}/lib ;;\n  *) exec {} \"$@\" ;;\nesac\n",
            fake.path().display(),
            real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rustc, std::fs::Permissions::from_mode(0o755)).unwrap();
    let said = run(
        &[("RUSTC", rustc.as_os_str())],
        &["build", "--platform", "kubernetes", "--arch", "all"],
    );
    assert!(
        said.contains(
            "the arm64 target is missing: run `rustup target add aarch64-unknown-linux-gnu`"
        ),
        "{said}"
    );
}
