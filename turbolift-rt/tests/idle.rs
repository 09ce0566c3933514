//! An idle service wakes no thread: not the inline watchdog once inline calls stopped, not
//! the refusal logger once its flood was told of (a laptop's battery, a cluster of many
//! replicas). Alone in its test binary, so that no other test's threads are counted.

use std::time::Duration;

use common::{handler, route, serve};

mod common;

const SECRET: &str = "idle-test-secret";

#[turbolift::distribute]
fn triple(n: u64) -> u64 {
    n * 3
}

/// Voluntary context switches of every thread of this process so far: each is a thread
/// going to sleep, so a thread woken by a timer adds one a wake-up.
fn sleeps_so_far() -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status"));
        let Ok(status) = status else { continue }; // a thread that just ended
        for line in status.lines() {
            if let Some(n) = line.strip_prefix("voluntary_ctxt_switches:") {
                total += n.trim().parse::<u64>().unwrap();
            }
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_service_does_not_wake_up() {
    let service = serve(&[handler("idle::triple")], SECRET).await;
    route("idle::triple", &[&service.url], SECRET);
    // Enough short calls to run inline (which starts the watchdog), and refusals that are
    // suppressed (which arms the refusal logger).
    for n in 0..200 {
        assert_eq!(triple(n).await.unwrap(), n * 3);
    }
    let mut bad = common::http::Connection::open(&service.url).await;
    let path = turbolift::naming::route("idle::triple");
    for _ in 0..20 {
        let answer = bad.post(&path, 0, "wrong", Vec::new(), |_| {}).await;
        assert_eq!(answer.status.as_u16(), 401);
    }
    drop(bad);
    // The watchdog parks a second after the last inline call, the refusal logger tells
    // its count within two seconds of the last refusal.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = sleeps_so_far();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let woken = sleeps_so_far() - before;
    // This test's own sleep wakes a thread or two; a 2 ms ticker would be ~1,000.
    assert!(woken <= 10, "{woken} wake-ups in 2 s of idleness");
    assert_eq!(triple(7).await.unwrap(), 21, "and it still serves");
    service.stop().await;
}
