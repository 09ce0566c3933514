//! Each program prints under `cargo turbolift run` exactly what it prints under plain
//! `cargo run`, and its calls really went to the services.

use crate::support::*;

/// Runs `fixture` both ways and compares; returns `cargo turbolift run`'s stderr.
fn same_output_both_ways(fixture_name: &str, args: &[&str], run_args: &[&str]) -> String {
    let dir = fixture(fixture_name);
    let mut plain_args = vec!["run", "-q"];
    plain_args.extend_from_slice(args);
    plain_args.push("--");
    plain_args.extend_from_slice(run_args);
    let plain = output(&mut cargo(&dir, &plain_args));
    assert_success("cargo run", &plain);

    let mut tl_args = vec!["run"];
    tl_args.extend_from_slice(args);
    tl_args.push("--");
    tl_args.extend_from_slice(run_args);
    let lifted = output(&mut turbolift(&dir, &tl_args));
    assert_success("cargo turbolift run", &lifted);
    assert_eq!(
        text(&lifted.stdout),
        text(&plain.stdout),
        "stdout differs between `cargo turbolift run` and `cargo run` for {fixture_name}"
    );
    assert!(text(&plain.stdout).ends_with("done\n") || fixture_name.contains("quickstart"));
    text(&lifted.stderr)
}

/// Every service replica log of the run, and at least one replica of each service
/// served calls: the calls went over the network, not in-process.
fn assert_every_service_served(stderr: &str, services: usize) {
    let logs = logs_dir(stderr);
    let served = served_calls(&logs);
    assert_eq!(served.len(), services * 2, "two replicas each: {served:?}");
    let mut by_service: std::collections::BTreeMap<String, u64> = Default::default();
    for (file, calls) in served {
        let service = file.rsplit_once('-').unwrap().0.to_owned();
        *by_service.entry(service).or_default() += calls;
    }
    assert_eq!(by_service.len(), services, "{by_service:?}");
    for (service, calls) in by_service {
        assert!(
            calls > 0,
            "`{service}` served no call: the program did not use it"
        );
    }
}

#[test]
fn layout_fixture_with_every_trap() {
    let main_log = tempfile::NamedTempFile::new().unwrap();
    let dir = fixture("layout");
    let plain = output(
        cargo(&dir, &["run", "-q", "--features", "fancy"])
            .env("LAYOUT_FIXTURE_MAIN_LOG", main_log.path()),
    );
    assert_success("cargo run", &plain);
    std::fs::write(main_log.path(), "").unwrap();
    let lifted = output(
        turbolift(&dir, &["run", "--features", "fancy"])
            .env("LAYOUT_FIXTURE_MAIN_LOG", main_log.path()),
    );
    assert_success("cargo turbolift run", &lifted);
    assert_eq!(text(&lifted.stdout), text(&plain.stdout));
    // Twenty service processes compiled the same `main`; only the program ran it.
    assert_eq!(
        std::fs::read_to_string(main_log.path()).unwrap(),
        "main ran\n"
    );
    let stdout = text(&lifted.stdout);
    assert!(
        stdout.contains("module: layout_fixture::renamed"),
        "{stdout}"
    );
    assert!(stdout.contains("package: layout-fixture"), "{stdout}");
    assert!(
        stdout.contains("fancy ratio"),
        "the feature reached the services: {stdout}"
    );
    assert_every_service_served(&text(&lifted.stderr), 10);
}

#[test]
fn library_functions_of_a_lib_and_bin_package() {
    let stderr = same_output_both_ways("lib-and-bin", &[], &[]);
    assert_every_service_served(&stderr, count_ready(&stderr));
    // The large text and its summary went through the run's shared memory: the program
    // keeps the region of the arguments, and the one the service wrote the result into.
    let regions = stderr
        .lines()
        .find_map(|l| l.strip_prefix("shared memory regions of 256 KiB or more: "))
        .unwrap_or_else(|| panic!("the program saw no directory of shared memory:\n{stderr}"));
    assert!(
        regions.trim().parse::<usize>().unwrap() >= 2,
        "{regions} regions:\n{stderr}"
    );
}

#[test]
fn a_workspace_member_with_inherited_fields_and_a_path_dependency() {
    let stderr = same_output_both_ways("workspace", &["-p", "app"], &[]);
    assert_every_service_served(&stderr, count_ready(&stderr));
}

#[test]
fn the_quickstart_example() {
    let stderr = same_output_both_ways("examples/quickstart", &[], &[]);
    assert_every_service_served(&stderr, 1);
}

#[test]
fn the_wordstats_example() {
    let stderr = same_output_both_ways("examples/wordstats", &[], &[]);
    assert_every_service_served(&stderr, 4);
}

fn count_ready(stderr: &str) -> usize {
    let n = stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("Ready"))
        .count();
    assert!(n > 0, "no service was started:\n{stderr}");
    n
}

/// A change to a binary with distributed functions compiles its code once: as its service
/// package's library, which the services' executable and the program's both link.
#[test]
fn a_binary_s_code_is_compiled_once_for_its_services_and_its_program() {
    let dir = fixture("layout");
    let root = dir.join("src/main.rs").canonicalize().unwrap();
    let build = || output(&mut turbolift(&dir, &["build", "-v"]));
    assert_success("cargo turbolift build", &build());
    // A new modification time: cargo compiles whatever reads the file again.
    let file = std::fs::File::options().append(true).open(&root).unwrap();
    file.set_modified(std::time::SystemTime::now()).unwrap();
    let out = build();
    assert_success("cargo turbolift build -v after a change", &out);
    let stderr = text(&out.stderr);
    let root_text = root.display().to_string();
    let compilations: Vec<&str> = stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("Running `") && l.contains("--crate-name "))
        .filter(|l| l.split_whitespace().any(|word| word == root_text))
        .collect();
    assert_eq!(
        compilations.len(),
        1,
        "one compilation of the binary's code:\n{compilations:#?}"
    );
    assert!(
        compilations[0].contains("--crate-type lib"),
        "{}",
        compilations[0]
    );
}

/// A binary with distributed functions whose crate name is also its package's library's:
/// a clear error before anything is built, and with the library renamed, a build.
#[test]
fn a_binary_named_like_its_library_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shapes-app");
    std::fs::create_dir_all(root.join("src")).unwrap();
    let manifest = format!(
        "[package]\nname = \"shapes-app\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n[workspace]\n\n[dependencies]\nturbolift = {{ path = {:?} }}\ntokio = {{ version = \"1\", features = [\"full\"] }}\n",
        repo().join("turbolift-rt").display().to_string()
    );
    std::fs::write(root.join("Cargo.toml"), &manifest).unwrap();
    std::fs::write(
        root.join("src/lib.rs"),
        "#[turbolift::distribute]\npub fn area(w: u64, h: u64) -> u64 {\n    w * h\n}\n",
    )
    .unwrap();
    let main = "#[turbolift::distribute]\nfn label(n: u64) -> String {\n    format!(\"{n} units\")\n}\n\n#[tokio::main]\nasync fn main() {\n    let a = LIB::area(6, 7).await.unwrap();\n    println!(\"{}\", label(a).await.unwrap());\n}\n";
    std::fs::write(root.join("src/main.rs"), main.replace("LIB", "shapes_app")).unwrap();
    std::fs::copy(repo().join("Cargo.lock"), root.join("Cargo.lock")).unwrap();

    let out = output(&mut turbolift(&root, &["build"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the binary `shapes-app` has distributed functions and the same crate name as the package's library, `shapes_app`")
            && stderr.contains("[lib] name = \"shapes_app_core\""),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Compiling"),
        "refused before building:\n{stderr}"
    );

    std::fs::write(
        root.join("Cargo.toml"),
        format!("{manifest}\n[lib]\nname = \"shapes_app_core\"\n"),
    )
    .unwrap();
    std::fs::write(
        root.join("src/main.rs"),
        main.replace("LIB", "shapes_app_core"),
    )
    .unwrap();
    let out = output(&mut turbolift(&root, &["run"]));
    assert_success("cargo turbolift run with the library renamed", &out);
    assert_eq!(text(&out.stdout), "42 units\n");
    assert_eq!(count_ready(&text(&out.stderr)), 2, "{}", text(&out.stderr));
}
