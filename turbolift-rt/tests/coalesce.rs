//! Concurrent calls of one function coalesced into batch requests, seen through a proxy
//! that counts the requests between the program and a real service on 127.0.0.1: a lone
//! call still goes alone; many at once go together, each with its own result, panic,
//! timeout or cancellation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{handler, route, serve};
use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use turbolift::Error;

mod common;

const SECRET: &str = "coalesce-test-secret";

#[turbolift::distribute]
fn plus_one(n: u64) -> u64 {
    n + 1
}

#[turbolift::distribute]
fn fragile(n: u64) -> u64 {
    if n % 100 == 7 {
        panic!("{n} ends in 07");
    }
    n
}

static RAN: AtomicU64 = AtomicU64::new(0);

#[turbolift::distribute]
async fn counted(ms: u64) -> u64 {
    RAN.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms
}

#[turbolift::distribute(timeout = "300ms")]
async fn patient(ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms
}

/// Requests that went through a proxy, by kind.
#[derive(Default)]
struct Seen {
    calls: AtomicU64,
    batches: AtomicU64,
}

/// A proxy in front of `url` that counts the requests it carries; its URL.
async fn counting_proxy(url: &str, seen: Arc<Seen>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let target = url.trim_start_matches("http://").to_owned();
    tokio::spawn(async move {
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            let mut service = TcpStream::connect(&target).await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let (mut from_client, mut to_client) = client.split();
                let (mut from_service, mut to_service) = service.split();
                let upstream = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match from_client.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        // Request lines start a line: a body never holds these bytes here
                        // (the arguments are small postcard integers).
                        let text = &buf[..n];
                        let count = |needle: &[u8]| {
                            text.windows(needle.len()).filter(|w| *w == needle).count() as u64
                        };
                        seen.calls
                            .fetch_add(count(b"POST /v1/call/"), Ordering::SeqCst);
                        seen.batches
                            .fetch_add(count(b"POST /v1/batch/"), Ordering::SeqCst);
                        if to_service.write_all(text).await.is_err() {
                            break;
                        }
                    }
                    let _ = to_service.shutdown().await;
                };
                let downstream = tokio::io::copy(&mut from_service, &mut to_client);
                let _ = tokio::join!(upstream, downstream);
            });
        }
    });
    proxy
}

/// Held by each test for its whole run. Routing a function installs a new configuration,
/// and every function's calls then start on a new lane: a test routing its function while
/// another test's calls are at once would split those over two lanes and what each has
/// learnt of the function's time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Serves `id` behind a counting proxy and routes the function there.
async fn proxied(id: &str) -> (common::Running, Arc<Seen>) {
    let service = serve(&[handler(id)], SECRET).await;
    let seen = Arc::new(Seen::default());
    let proxy = counting_proxy(&service.url, seen.clone()).await;
    route(id, &[proxy], SECRET);
    (service, seen)
}

#[tokio::test]
async fn a_lone_call_goes_alone_and_many_at_once_go_together_in_order() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let (service, seen) = proxied("coalesce::plus_one").await;
    for n in 0..50 {
        assert_eq!(plus_one(n).await.unwrap(), n + 1);
    }
    assert_eq!(
        seen.calls.load(Ordering::SeqCst),
        50,
        "one request per lone call"
    );
    assert_eq!(seen.batches.load(Ordering::SeqCst), 0);

    let answers = join_all((0..5_000).map(plus_one)).await;
    for (n, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.unwrap(), n as u64 + 1, "call {n}");
    }
    let calls = seen.calls.load(Ordering::SeqCst) - 50;
    let batches = seen.batches.load(Ordering::SeqCst);
    assert!(batches > 0, "no batch request ({calls} calls)");
    assert!(
        calls + batches < 5_000 / 10,
        "{calls} call requests and {batches} batch requests for 5,000 calls"
    );
    service.stop().await;
}

/// Work of the caller's own, as long as `d`, on this thread.
fn busy(d: Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

#[tokio::test]
async fn a_burst_after_lone_calls_is_coalesced_however_long_the_caller_takes_to_make_it() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let (service, seen) = proxied("coalesce::plus_one").await;
    // Lone calls first: the lane knows the function's calls are short.
    for n in 0..20 {
        assert_eq!(plus_one(n).await.unwrap(), n + 1);
    }
    // Then 5,000 at once, each made after 40 µs of the caller's own work: the two sent
    // alone are written only once all 5,000 have been made, 200 ms later, so their time
    // is the caller's. It must not make the function look slow.
    let calls = (0..5_000u64).map(|n| async move {
        busy(Duration::from_micros(40));
        plus_one(n).await
    });
    for (n, answer) in join_all(calls).await.into_iter().enumerate() {
        assert_eq!(answer.unwrap(), n as u64 + 1, "call {n}");
    }
    let calls = seen.calls.load(Ordering::SeqCst) - 20;
    let batches = seen.batches.load(Ordering::SeqCst);
    assert!(
        batches > 0 && calls + batches < 5_000 / 10,
        "{calls} call requests and {batches} batch requests for 5,000 calls"
    );
    service.stop().await;
}

#[tokio::test]
async fn a_first_burst_is_coalesced_before_any_call_has_come_back() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let (service, seen) = proxied("coalesce::plus_one").await;
    // No call before: 5,000 at once on a lane that has timed nothing yet. On this
    // single-threaded runtime the first two, sent alone, are written only once all 5,000
    // have been made, so their time is the caller's more than the function's.
    let answers = join_all((0..5_000).map(plus_one)).await;
    for (n, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.unwrap(), n as u64 + 1, "call {n}");
    }
    let (calls, batches) = (
        seen.calls.load(Ordering::SeqCst),
        seen.batches.load(Ordering::SeqCst),
    );
    assert!(
        batches > 0 && calls + batches < 5_000 / 10,
        "{calls} call requests and {batches} batch requests for 5,000 calls"
    );
    service.stop().await;
}

#[tokio::test]
async fn a_slow_functions_first_burst_goes_alone_side_by_side() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let (service, seen) = proxied("coalesce::counted").await;
    let before = RAN.load(Ordering::SeqCst);
    // Twenty calls of 200 ms at once: two take the lane's slots and eighteen gather. The
    // first answers look slow; a request of one gathered call confirms it, and the others
    // are handed back to go alone, side by side, each once.
    let answers = join_all((0..20).map(|_| counted(200))).await;
    assert!(answers.into_iter().all(|a| a == Ok(200)));
    assert_eq!(
        RAN.load(Ordering::SeqCst) - before,
        20,
        "each call ran once"
    );
    let (calls, batches) = (
        seen.calls.load(Ordering::SeqCst),
        seen.batches.load(Ordering::SeqCst),
    );
    assert!(
        (1..=2).contains(&batches) && calls + batches == 20,
        "{calls} call requests and {batches} batch requests of one call"
    );
    // From then on its calls go alone at once.
    let answers = join_all((0..10).map(|_| counted(20))).await;
    assert!(answers.into_iter().all(|a| a == Ok(20)));
    assert_eq!(seen.calls.load(Ordering::SeqCst), calls + 10);
    assert_eq!(seen.batches.load(Ordering::SeqCst), batches);
    service.stop().await;
}

#[tokio::test]
async fn a_panic_stays_with_its_own_call() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let (service, seen) = proxied("coalesce::fragile").await;
    for n in 0..20 {
        fragile(n * 100).await.unwrap();
    }
    let answers = join_all((0..2_000).map(fragile)).await;
    for (n, answer) in answers.into_iter().enumerate() {
        let n = n as u64;
        match answer {
            Err(Error::Panic { message, .. }) if n % 100 == 7 => {
                assert!(message.contains(&format!("{n} ends in 07")), "{message}");
            }
            Ok(value) if n % 100 != 7 => assert_eq!(value, n),
            other => panic!("call {n}: {other:?}"),
        }
    }
    assert!(seen.batches.load(Ordering::SeqCst) > 0);
    service.stop().await;
}

#[tokio::test]
async fn a_dropped_call_is_not_sent_or_its_answer_is_dropped() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let (service, seen) = proxied("coalesce::counted").await;
    for _ in 0..20 {
        counted(0).await.unwrap();
    }
    let before = RAN.load(Ordering::SeqCst);
    // Two thousand calls at once, and half of them given up after 1 ms, while most wait in
    // the lane.
    let calls = (0..2_000u64).map(|n| async move {
        let call = counted(1);
        if n % 2 == 0 {
            tokio::time::timeout(Duration::from_millis(1), call)
                .await
                .ok()
        } else {
            Some(call.await)
        }
    });
    let answers = join_all(calls).await;
    for (n, answer) in answers.into_iter().enumerate() {
        match answer {
            Some(answer) => assert_eq!(answer.unwrap(), 1, "call {n}"),
            None => assert_eq!(n % 2, 0, "call {n} was not given up"),
        }
    }
    let ran = RAN.load(Ordering::SeqCst) - before;
    assert!(ran >= 1_000, "{ran} ran, fewer than the calls kept");
    assert!(
        ran < 2_000,
        "every call ran: the dropped ones were sent anyway"
    );
    assert!(seen.batches.load(Ordering::SeqCst) > 0);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_keeps_its_own_timeout_and_a_stall_ends_coalescing() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let (service, seen) = proxied("coalesce::patient").await;
    for _ in 0..20 {
        patient(0).await.unwrap();
    }
    // Most calls are quick; every fiftieth takes longer than the function's 300 ms.
    let wave = || join_all((0..1_000u64).map(|n| patient(if n % 50 == 0 { 2_000 } else { 1 })));
    let check = |answers: Vec<Result<u64, Error>>, slow: &dyn Fn(usize) -> bool| {
        let mut right = 0;
        for (n, answer) in answers.into_iter().enumerate() {
            match answer {
                Ok(value) => {
                    assert!(!slow(n), "call {n} outlived its timeout");
                    assert_eq!(value, 1);
                    right += 1;
                }
                Err(Error::Timeout { after, .. }) => {
                    assert_eq!(after, Duration::from_millis(300))
                }
                Err(other) => panic!("call {n}: {other}"),
            }
        }
        right
    };
    // The slow calls time out, each on its own; the quick ones travelling with them
    // are answered as they finish (the service runs a batch's async calls side by side,
    // and its frames come as they finish).
    assert_eq!(check(wave().await, &|n| n % 50 == 0), 980);
    // The requests already under way finish (the rest of a batch after a timed-out call
    // is sent again, as for any batch).
    // Settled: no new batch for three looks in a row (a loaded machine spaces the
    // resent rests of batches out).
    let mut batches = seen.batches.load(Ordering::SeqCst);
    let mut still = 0;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = seen.batches.load(Ordering::SeqCst);
        still = if now == batches { still + 1 } else { 0 };
        if still == 3 {
            break;
        }
        batches = now;
    }
    assert!(batches > 0);
    // A coalesced call timed out: the function's calls go alone from now on.
    let second = join_all((0..200u64).map(|_| patient(1))).await;
    assert_eq!(check(second, &|_| false), 200);
    assert_eq!(
        seen.batches.load(Ordering::SeqCst),
        batches,
        "no batch after the stall"
    );
    service.stop().await;
}

#[tokio::test]
async fn coalescing_can_be_turned_off_for_a_function() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let (service, seen) = proxied("coalesce::alone").await;
    for n in 0..20 {
        alone(n).await.unwrap();
    }
    let answers = join_all((0..2_000).map(alone)).await;
    for (n, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.unwrap(), n as u64);
    }
    assert_eq!(seen.batches.load(Ordering::SeqCst), 0);
    assert_eq!(seen.calls.load(Ordering::SeqCst), 2_020);
    service.stop().await;
}

#[turbolift::distribute(coalesce = false)]
fn alone(n: u64) -> u64 {
    n
}
