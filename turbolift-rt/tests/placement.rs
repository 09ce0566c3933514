//! Where a service runs synchronous bodies: inline once they proved short, back on the
//! blocking pool after one ran long (for good after the third that the pool confirmed),
//! without ever stalling the other connections.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use turbolift::Config;
use turbolift::service::{DEFAULT_INLINE_MAX, Handler, ServiceOptions, registered};

mod common;

const SECRET: &str = "placement-test-secret";

/// How long the test holds a long call.
const LONG: Duration = Duration::from_millis(80);

static RELEASE: Mutex<Option<Receiver<()>>> = Mutex::new(None);
static WAITING: AtomicBool = AtomicBool::new(false);

/// Quick for `false`; for `true`, waits until the test releases it.
#[turbolift::distribute]
fn gate(wait: bool) -> bool {
    if wait {
        let release = RELEASE.lock().unwrap().take().expect("one waiting call");
        WAITING.store(true, Ordering::SeqCst);
        release
            .recv_timeout(Duration::from_secs(20))
            .expect("released by the test");
    }
    wait
}

#[turbolift::distribute]
fn double(n: u64) -> u64 {
    n * 2
}

/// Serves `handlers` on a runtime of its own with two worker threads, as a service
/// process does.
fn serve_on_own_runtime(handlers: Vec<&'static Handler>) -> String {
    let mut options = ServiceOptions::new(SECRET);
    assert_eq!(options.inline_max, DEFAULT_INLINE_MAX);
    // Far above the short calls (so that a busy machine cannot make one of them count as
    // long), and the long ones far above ten times it (a strike).
    options.inline_max = LONG / 40;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    common::serve_on_own_runtime(handlers, options, runtime)
}

/// `n` short calls of `gate`.
async fn short_calls(n: usize) {
    for _ in 0..n {
        assert_eq!(gate(false).await, Ok(false));
    }
}

/// Calls `gate(true)`, runs `meanwhile` once it is waiting, then lets it finish.
async fn while_a_call_blocks(meanwhile: impl Future<Output = ()>) {
    WAITING.store(false, Ordering::SeqCst);
    let (release, wait) = channel();
    *RELEASE.lock().unwrap() = Some(wait);
    let long = tokio::spawn(gate(true));
    while !WAITING.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let held = tokio::time::sleep(LONG);
    meanwhile.await;
    held.await;
    release.send(()).unwrap();
    assert_eq!(long.await.unwrap(), Ok(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_bodies_run_inline_and_long_ones_neither_stall_others_nor_stay_inline() {
    let handlers: Vec<&'static Handler> = registered()
        .filter(|h| h.info().id().starts_with("placement::"))
        .collect();
    let url = serve_on_own_runtime(handlers.clone());
    Config::new()
        .secret(SECRET)
        .endpoint("placement::gate", [url.clone()])
        .endpoint("placement::double", [url])
        .install()
        .unwrap();
    let info = handlers
        .iter()
        .find(|h| h.info().id() == "placement::gate")
        .unwrap()
        .info();

    assert!(!info.placement().is_inline(), "nothing learnt yet");
    short_calls(40).await;
    assert!(info.placement().is_inline(), "40 short calls");

    // A call that has earned inline execution and then blocks: it holds one of the
    // service's two I/O threads, and the service must go on answering on the other.
    while_a_call_blocks(async {
        for n in 0..200u64 {
            assert_eq!(double(n).await, Ok(n * 2));
        }
        short_calls(20).await;
    })
    .await;
    // It ran long: back on the blocking pool, until it has run short there again.
    assert!(!info.placement().is_inline());
    short_calls(40).await;
    assert!(
        info.placement().is_inline(),
        "earned again after one long call"
    );

    // A long inline call followed by a long call on the pool is a strike; the third
    // sends the function to the pool for good.
    for strike in 1..=3 {
        while_a_call_blocks(async {}).await;
        assert!(!info.placement().is_inline());
        while_a_call_blocks(async {}).await;
        short_calls(40).await;
        if strike < 3 {
            assert!(
                info.placement().is_inline(),
                "earned again after {strike} strike(s)"
            );
        }
    }
    assert!(!info.placement().is_inline(), "the third strike lasts");
}
