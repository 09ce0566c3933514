//! Large arguments and results through shared memory: a program and a service on
//! 127.0.0.1 that share a run's directory, as `cargo turbolift run` gives them on one
//! machine.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use common::http::Connection;
use common::{handler, serve_with};
use hyper::StatusCode;
use serde_bytes::ByteBuf;
use turbolift::serde::{Deserialize, Serialize};
use turbolift::service::{ServiceOptions, registered};
use turbolift::{Config, Error, RemoteError, protocol, wire};

mod common;

const SECRET: &str = "shm-test-secret";
const MIB: usize = 1 << 20;

#[turbolift::distribute]
fn echo(data: Vec<u8>) -> Vec<u8> {
    data
}

#[turbolift::distribute]
fn echo_bytes(data: bytes::Bytes) -> bytes::Bytes {
    data
}

#[turbolift::distribute]
fn reverse(data: ByteBuf) -> ByteBuf {
    ByteBuf::from(data.into_iter().rev().collect::<Vec<u8>>())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "turbolift::serde")]
struct Image {
    name: String,
    #[serde(with = "serde_bytes")]
    pixels: Vec<u8>,
}

#[turbolift::distribute]
fn invert(image: Image, label: String) -> Image {
    Image {
        name: format!("{label}:{}", image.name),
        pixels: image.pixels.iter().map(|p| !p).collect(),
    }
}

#[turbolift::distribute]
fn make(len: u64, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_add(seed)).collect()
}

#[turbolift::distribute]
fn checksum(data: Vec<u8>) -> u64 {
    if data.first() == Some(&0xff) {
        panic!("the first byte is 0xff");
    }
    data.iter().map(|b| u64::from(*b)).sum()
}

#[turbolift::distribute(timeout = "200ms")]
fn slow_echo(data: Vec<u8>) -> Vec<u8> {
    std::thread::sleep(Duration::from_millis(600));
    data
}

#[turbolift::distribute]
fn no_shm_echo(data: Vec<u8>) -> Vec<u8> {
    data
}

/// The test process's run directory, mode 0700, in the target's directory for tests
/// (those of test processes that are gone are removed first).
fn run_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let parent = Path::new(env!("CARGO_TARGET_TMPDIR"));
        for entry in std::fs::read_dir(parent).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap_or_default();
            if let Some(pid) = name.strip_prefix("shm-test-")
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = std::fs::remove_dir_all(parent.join(&name));
            }
        }
        let dir = parent.join(format!("shm-test-{}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        dir
    })
}

/// The regions in the run's directory: name and length.
fn regions() -> Vec<(String, u64)> {
    std::fs::read_dir(run_dir())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                e.metadata().unwrap().size(),
            )
        })
        .collect()
}

/// One service with the run's directory and one without, each serving every function;
/// the functions routed to the first, except `no_shm_echo` to the second; the program's
/// configuration with the directory.
fn services() -> &'static (String, String) {
    static URLS: OnceLock<(String, String)> = OnceLock::new();
    URLS.get_or_init(|| {
        let handlers: Vec<_> = registered().collect();
        let mut options = ServiceOptions::new(SECRET);
        options.shm_dir = Some(run_dir().to_owned());
        let with = serve_on_own_runtime(&handlers, options);
        let without = serve_on_own_runtime(&handlers, ServiceOptions::new(SECRET));
        let mut config = Config::new().secret(SECRET).shared_memory(run_dir());
        for h in &handlers {
            let id = h.info().id();
            let url = if id.ends_with("no_shm_echo") {
                &without
            } else {
                &with
            };
            config = config.endpoint(id, [url.clone()]);
        }
        config.install().unwrap();
        (with, without)
    })
}

/// A service on a runtime of its own that outlives each test's runtime.
fn serve_on_own_runtime(
    handlers: &[&'static turbolift::service::Handler],
    options: ServiceOptions,
) -> String {
    let handlers = handlers.to_vec();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let running = serve_with(&handlers, &options).await;
            tx.send(running.url.clone()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// One test at a time looks at the directory.
static DIRECTORY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_arguments_and_results_travel_through_regions_of_the_run_directory() {
    services();
    let _directory = DIRECTORY.lock().await;
    let data = bytes(3 * MIB, 7);
    assert_eq!(echo(data.clone()).await.unwrap(), data);
    // The program keeps the regions of the call: one held the arguments, one the result.
    let kept = regions();
    assert!(
        kept.iter()
            .filter(|(_, len)| *len >= 3 * MIB as u64)
            .count()
            >= 2,
        "{kept:?}"
    );
    for (name, _) in &kept {
        let mode = std::fs::metadata(run_dir().join(name)).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    // Kept and used again: more calls, no more regions.
    for seed in 0..5 {
        let data = bytes(2 * MIB + seed as usize, seed);
        assert_eq!(echo(data.clone()).await.unwrap(), data);
    }
    assert_eq!(regions().len(), kept.len(), "{:?}", regions());
    // A `ByteBuf` and a struct with a large field, and a result that is a struct.
    let data = bytes(MIB, 1);
    let back = reverse(ByteBuf::from(data.clone())).await.unwrap();
    assert_eq!(
        back.into_vec(),
        data.iter().rev().copied().collect::<Vec<u8>>()
    );
    let image = Image {
        name: "moon".to_owned(),
        pixels: bytes(2 * MIB, 3),
    };
    let back = invert(image.clone(), "neg".to_owned()).await.unwrap();
    assert_eq!(back.name, "neg:moon");
    assert_eq!(
        back.pixels,
        image.pixels.iter().map(|p| !p).collect::<Vec<u8>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_result_of_small_arguments_comes_through_a_region_from_the_second_call_on() {
    services();
    let _directory = DIRECTORY.lock().await;
    let before: Vec<String> = regions().into_iter().map(|(n, _)| n).collect();
    // The first large result comes in the body: the program did not know it would be.
    let first = make(4 * MIB as u64, 1).await.unwrap();
    assert_eq!(first, bytes_of_make(4 * MIB, 1));
    // From then on every call offers a region, and a large result is written there.
    let second = make(5 * MIB as u64, 2).await.unwrap();
    assert_eq!(second, bytes_of_make(5 * MIB, 2));
    assert!(
        regions().iter().any(|(_, len)| *len >= 5 * MIB as u64),
        "a region holds the 5 MiB result: {:?} (before: {before:?})",
        regions()
    );
    // A small result still comes in the body.
    assert_eq!(make(3, 5).await.unwrap(), vec![5, 6, 7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bytes_result_read_in_its_region_keeps_it_until_dropped() {
    services();
    let _directory = DIRECTORY.lock().await;
    // `Bytes` results are the regions they came in: while the first is held, its region
    // is not used for the next call, whose result must not overwrite it.
    let first = echo_bytes(bytes::Bytes::from(bytes(MIB, 1))).await.unwrap();
    let second = echo_bytes(bytes::Bytes::from(bytes(MIB, 2))).await.unwrap();
    let third = echo_bytes(bytes::Bytes::from(bytes(MIB, 3))).await.unwrap();
    assert_eq!(first, bytes(MIB, 1));
    assert_eq!(second, bytes(MIB, 2));
    assert_eq!(third, bytes(MIB, 3));
    let held = regions().len();
    // Dropped, their regions are kept for later calls: no new region for the next ones.
    drop((first, second, third));
    for seed in 4..8 {
        let back = echo_bytes(bytes::Bytes::from(bytes(MIB, seed)))
            .await
            .unwrap();
        assert_eq!(back, bytes(MIB, seed));
    }
    assert_eq!(regions().len(), held, "{:?}", regions());
}

fn bytes_of_make(len: usize, seed: u8) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i as u8).wrapping_add(seed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_calls_each_get_their_own_result_and_a_panic_stays_with_its_call() {
    services();
    let _directory = DIRECTORY.lock().await;
    let calls = (0..24u8).map(|i| async move {
        let mut data = bytes(MIB / 2 + usize::from(i) * 1000, i);
        if i % 8 == 5 {
            data[0] = 0xff;
        }
        let expected: u64 = data.iter().map(|b| u64::from(*b)).sum();
        (i, expected, checksum(data).await)
    });
    let results = futures_util::future::join_all(calls).await;
    for (i, expected, got) in results {
        if i % 8 == 5 {
            match got {
                Err(Error::Panic { message, .. }) => {
                    assert!(message.contains("the first byte is 0xff"), "{message}")
                }
                other => panic!("call {i}: {other:?}"),
            }
        } else {
            assert_eq!(got.unwrap(), expected, "call {i}");
        }
    }
    assert!(
        regions().len() <= 8,
        "at most 8 regions kept: {:?}",
        regions()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_times_out_leaves_no_region_behind() {
    services();
    let _directory = DIRECTORY.lock().await;
    let before = regions();
    let error = slow_echo(bytes(MIB, 9)).await.unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    // The call's regions are gone at once; the service, still running it, finds its
    // result's region gone and has nowhere to write it.
    let now = regions();
    assert!(
        now.iter().all(|r| before.iter().any(|(n, _)| *n == r.0)),
        "{before:?} then {now:?}"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(regions(), now);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_the_directory_refuses_with_what_to_do() {
    services();
    let _directory = DIRECTORY.lock().await;
    let error = no_shm_echo(bytes(MIB, 2)).await.unwrap_err();
    match error {
        Error::Remote {
            error: RemoteError::BadRequest(text),
            ..
        } => assert!(
            text.contains("start the program and the services with the same `cargo turbolift run`"),
            "{text}"
        ),
        other => panic!("{other:?}"),
    }
    // Small bodies do not need it.
    assert_eq!(no_shm_echo(vec![1, 2, 3]).await.unwrap(), vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_naming_regions_that_are_not_there_or_not_names_are_refused() {
    let (with, _) = services();
    let info = handler("shm::echo").info();
    let route = turbolift::naming::route("shm::echo");
    let mut connection = Connection::open(with).await;
    for (header, says) in [
        ("../../etc/passwd 10", "is not the name of a region"),
        ("0123456789abcdef0123456789abcdef 10", "cannot open region"),
        (
            "0123456789abcdef0123456789abcdef",
            "must be a region's name and a length",
        ),
        ("0123456789abcdef0123456789abcdef 99999999999", "too-large"),
    ] {
        let answer = connection
            .post(&route, info.signature(), SECRET, Vec::new(), |request| {
                request.headers_mut().insert(
                    protocol::SHM_ARGS_HEADER,
                    hyper::header::HeaderValue::from_static(header),
                );
            })
            .await;
        let text = String::from_utf8_lossy(&answer.body).into_owned();
        assert_ne!(answer.status, StatusCode::OK, "{header}");
        assert!(
            text.contains(says) || answer.kind() == Some(says),
            "{header}: {} {:?} {text}",
            answer.status,
            answer.kind()
        );
    }
    // The connection still serves a call with its arguments in the body.
    let body = wire::encode(&(vec![4u8, 5],)).unwrap();
    let answer = connection
        .post(&route, info.signature(), SECRET, body, |_| {})
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(wire::decode::<Vec<u8>>(&answer.body).unwrap(), vec![4, 5]);
}
