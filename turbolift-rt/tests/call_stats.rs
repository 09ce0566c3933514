//! The program's counts of its remote calls, written when the process exits into
//! `TURBOLIFT_STATS_DIR` for `cargo turbolift`'s summary: a child process (this test
//! binary, running [`calls_then_exit`]) calls a real service on 127.0.0.1 and exits
//! through the test harness's `std::process::exit`; its file holds what it did.

use std::process::Command;

use common::{handler, route, serve};
use futures_util::future::join_all;
use turbolift_shared::protocol::env;
use turbolift_shared::stats;

mod common;

const SECRET: &str = "call-stats-test-secret";
const CHILD: &str = "TURBOLIFT_TEST_STATS_CHILD";

#[turbolift::distribute]
fn halve(n: u64) -> u64 {
    assert!(n.is_multiple_of(2), "{n} is odd");
    n / 2
}

#[test]
#[ignore = "the child process of `counts_reach_the_file_at_exit`, which runs it"]
fn calls_then_exit() {
    assert!(
        std::env::var_os(CHILD).is_some(),
        "run by counts_reach_the_file_at_exit"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let service = serve(&[handler("call_stats::halve")], SECRET).await;
        route("call_stats::halve", &[&service.url], SECRET);
        // 40 calls at once (coalesced), 10 of them panicking.
        let results =
            join_all((0..40).map(|i| halve(if i < 10 { 2 * i + 1 } else { 2 * i }))).await;
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 10);
        // One alone, and a batch of 5 whose stream is dropped after its first result.
        assert_eq!(halve(8).await.unwrap(), 4);
        let mut batch = halve_batch(vec![2, 4, 6, 8, 10]);
        assert_eq!(batch.next().await.unwrap().unwrap(), 1);
        drop(batch);
        service.stop().await;
    });
}

#[test]
fn counts_reach_the_file_at_exit() {
    let dir = std::env::temp_dir().join(format!("turbolift-call-stats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "calls_then_exit",
            "--ignored",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env(env::STATS_DIR, &dir)
        .output()
        .unwrap();
    assert!(
        child.status.success(),
        "the child failed: {}",
        String::from_utf8_lossy(&child.stdout)
    );
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one file per process: {files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("program-") && name.ends_with(".stats"),
        "{name}"
    );
    let read = stats::parse(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let f = read
        .iter()
        .find(|f| f.function == "call_stats::halve")
        .unwrap_or_else(|| panic!("halve is counted: {read:?}"));
    // 40 + 1 calls, and 5 in the batch of which 4 were dropped unanswered (or answered
    // after the stream was dropped: either way not handed to the program).
    assert_eq!(f.calls, 46, "{f:?}");
    assert_eq!((f.served, f.panics, f.cancelled), (42, 10, 4), "{f:?}");
    assert_eq!(
        (f.timeouts, f.decode, f.unavailable, f.refused, f.retries),
        (0, 0, 0, 0, 0)
    );
    assert_eq!(f.time.total(), 42);
    assert!(f.time.quantile(0.5).is_some());
}
