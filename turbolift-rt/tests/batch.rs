//! Batches (`f_batch(inputs)`): many calls in few requests, against real services on
//! 127.0.0.1, and in-process.

use std::time::{Duration, Instant};

use common::{Running, dead_url, handler};
use futures_core::Stream;
use turbolift::service::ServiceOptions;
use turbolift::{Error, RemoteError};

mod common;

const SECRET: &str = "batch-test-secret";

#[turbolift::distribute]
fn square(u: u64) -> u64 {
    u * u
}

#[turbolift::distribute]
fn fragile(n: u32) -> u32 {
    if n.is_multiple_of(3) {
        panic!("{n} is a multiple of three");
    }
    n
}

#[turbolift::distribute]
fn pair(a: String, b: u8) -> String {
    format!("{a}{b}")
}

#[turbolift::distribute(timeout = "300ms")]
fn slow(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[turbolift::distribute(timeout = "300ms")]
fn held(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[turbolift::distribute]
fn holder(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[turbolift::distribute]
async fn later(ms: u64) -> u64 {
    // Later inputs finish first: the order must still be the inputs'.
    tokio::time::sleep(Duration::from_millis(50 - ms)).await;
    ms * 10
}

#[turbolift::distribute]
fn guarded(u: u8) -> u8 {
    u
}

#[turbolift::distribute]
fn local_only(n: i32) -> i32 {
    if n < 0 {
        panic!("negative {n}");
    }
    n + 1
}

#[turbolift::distribute]
async fn local_async(n: u32) -> u32 {
    tokio::task::yield_now().await;
    n * 3
}

/// Routes this test crate's function `name` to `urls`.
fn route<S: AsRef<str>>(name: &str, urls: &[S]) {
    common::route(&format!("batch::{name}"), urls, SECRET);
}

/// Serves this test crate's function `name` with `secret`.
async fn serve(name: &str, secret: &str) -> Running {
    common::serve(&[common::handler(&format!("batch::{name}"))], secret).await
}

#[tokio::test]
async fn ten_thousand_calls_come_back_in_order_over_two_replicas_and_a_dead_one() {
    let (a, b) = (serve("square", SECRET).await, serve("square", SECRET).await);
    route("square", &[a.url.clone(), dead_url().await, b.url.clone()]);
    let inputs: Vec<u64> = (0..10_000).collect();
    let batch = square_batch(inputs.clone());
    assert_eq!(batch.len(), 10_000);
    let squares = batch.await.unwrap();
    assert_eq!(squares, inputs.iter().map(|u| u * u).collect::<Vec<_>>());
    assert_eq!(square_batch(Vec::new()).await.unwrap(), Vec::<u64>::new());
    a.stop().await;
    // With one replica gone for good, what remains still answers every call.
    let squares = square_batch(0..1_000u64).await.unwrap();
    assert_eq!(squares, (0..1_000u64).map(|u| u * u).collect::<Vec<_>>());
    b.stop().await;
    // Nothing left: every call says so, none is lost.
    let results = collect(square_batch(0..10u64)).await;
    assert_eq!(results.len(), 10);
    for result in results {
        match result {
            Err(Error::Unavailable { function, last, .. }) => {
                assert_eq!(function, "batch::square");
                assert!(last.contains("cannot connect"), "{last}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
}

async fn collect<R: Send + 'static>(mut batch: turbolift::Batch<R>) -> Vec<Result<R, Error>> {
    let mut results = Vec::new();
    while let Some(result) = batch.next().await {
        results.push(result);
        assert_eq!(batch.size_hint().0, batch.len());
    }
    assert!(batch.is_empty());
    results
}

#[tokio::test]
async fn a_panicking_call_fails_alone_and_its_neighbours_succeed() {
    let running = serve("fragile", SECRET).await;
    route("fragile", &[&running.url]);
    let results = collect(fragile_batch(1..=30u32)).await;
    assert_eq!(results.len(), 30);
    for (n, result) in (1..=30u32).zip(results) {
        match result {
            Ok(v) => assert_eq!(v, n),
            Err(Error::Panic { function, message }) => {
                assert!(n.is_multiple_of(3), "{n} should not fail");
                assert_eq!(function, "batch::fragile");
                assert_eq!(message, format!("{n} is a multiple of three"));
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    // Awaited whole, the batch is the first failure in input order.
    match fragile_batch([1u32, 2, 6, 9]).await {
        Err(Error::Panic { message, .. }) => assert_eq!(message, "6 is a multiple of three"),
        other => panic!("expected the panic of 6, got {other:?}"),
    }
    running.stop().await;
}

#[tokio::test]
async fn several_arguments_travel_as_tuples_and_async_results_keep_input_order() {
    let (p, l) = (serve("pair", SECRET).await, serve("later", SECRET).await);
    route("pair", &[&p.url]);
    route("later", &[&l.url]);
    let joined = pair_batch([("a".to_owned(), 1u8), ("b".to_owned(), 2)]).await;
    assert_eq!(joined.unwrap(), ["a1", "b2"]);
    let tens = later_batch(0..50u64).await.unwrap();
    assert_eq!(tens, (0..50u64).map(|m| m * 10).collect::<Vec<_>>());
    p.stop().await;
    l.stop().await;
}

#[tokio::test]
async fn a_hung_call_times_out_alone_and_the_rest_of_its_batch_still_runs() {
    let running = serve("slow", SECRET).await;
    route("slow", &[&running.url]);
    let started = Instant::now();
    let results = collect(slow_batch([5u64, 2_000, 5, 5])).await;
    let took = started.elapsed();
    assert_eq!(results[0], Ok(5));
    match &results[1] {
        Err(Error::Timeout { function, after }) => {
            assert_eq!(function, "batch::slow");
            assert_eq!(*after, Duration::from_millis(300));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(results[2..], [Ok(5), Ok(5)]);
    assert!(took < Duration::from_millis(1_900), "took {took:?}");
    running.stop().await;
}

#[tokio::test]
async fn a_batch_no_replica_takes_times_out_as_a_whole_not_call_by_call() {
    // One place and no line: while a long call holds the place, the batch gets `busy`.
    let mut options = ServiceOptions::new(SECRET);
    options.max_concurrency = 1;
    options.max_queue = 0;
    let handlers = [handler("batch::held"), handler("batch::holder")];
    let running = common::serve_with(&handlers, &options).await;
    route("held", &[&running.url]);
    route("holder", &[&running.url]);
    let holding = tokio::spawn(holder(1_500));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let results = collect(held_batch([5u64, 5, 5, 5, 5])).await;
    let took = started.elapsed();
    for result in &results {
        assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    }
    // Five timeouts of 300 ms one after another would take 1.5 s.
    assert!(took < Duration::from_millis(1_000), "took {took:?}");
    assert_eq!(holding.await.unwrap(), Ok(1_500));
    running.stop().await;
}

#[tokio::test]
async fn a_refused_batch_fails_every_call_with_the_reason() {
    let running = serve("guarded", "another-secret").await;
    route("guarded", &[&running.url]);
    let results = collect(guarded_batch([1u8, 2, 3])).await;
    assert_eq!(results.len(), 3);
    for result in results {
        match result {
            Err(Error::Remote {
                error: RemoteError::Unauthorized(reason),
                ..
            }) => assert!(reason.contains("x-turbolift-secret"), "{reason}"),
            other => panic!("expected Unauthorized, got {other:?}"),
        }
    }
    running.stop().await;
}

#[tokio::test]
async fn without_endpoints_a_batch_runs_in_process_in_order() {
    let inputs: Vec<i32> = (-3..200).collect();
    let results = collect(local_only_batch(inputs.clone())).await;
    for (n, result) in inputs.into_iter().zip(results) {
        match result {
            Ok(v) => assert_eq!(v, n + 1),
            Err(Error::Panic { message, .. }) => {
                assert!(n < 0);
                assert_eq!(message, format!("negative {n}"));
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    let tripled = local_async_batch(0..1_000u32).await.unwrap();
    assert_eq!(tripled, (0..1_000u32).map(|n| n * 3).collect::<Vec<_>>());
}

#[test]
fn without_a_runtime_an_in_process_batch_runs_on_the_polling_thread() {
    let results = futures_executor_block_on(local_only_batch([1, 2, 3]));
    assert_eq!(results.unwrap(), [2, 3, 4]);
}

/// Polls `fut` to completion on this thread, without any runtime.
fn futures_executor_block_on<F: std::future::IntoFuture>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut fut = std::pin::pin!(fut.into_future());
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(value) = fut.as_mut().poll(&mut cx) {
            return value;
        }
        std::thread::yield_now();
    }
}
