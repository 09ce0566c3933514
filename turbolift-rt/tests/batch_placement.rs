//! Where a service runs the calls of a batch of a synchronous function: on the blocking
//! pool until the function has proven short (batches teach that too), then inline on the
//! I/O thread that read the request, but only for as long as the inline limit allows;
//! the rest of a longer batch goes on the pool, and every result comes back in order.

use std::cell::Cell;
use std::time::Duration;

use turbolift::Config;
use turbolift::service::{Handler, ServiceOptions, registered};

mod common;

const SECRET: &str = "batch-placement-test-secret";

/// The inline limit of the test's service: far above a quick call, even on a loaded
/// machine, and above three naps but not four.
const LIMIT: Duration = Duration::from_millis(20);

/// How long `nap(true)` sleeps.
const NAP: Duration = Duration::from_millis(6);

thread_local! {
    /// Set on the service runtime's worker threads (its I/O threads) when they park or
    /// unpark, which its blocking-pool threads never do.
    static IO_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Sleeps for `NAP` if `long`; says whether it ran on one of the service's I/O threads.
#[turbolift::distribute]
fn nap(long: bool) -> (bool, bool) {
    if long {
        std::thread::sleep(NAP);
    }
    (long, IO_THREAD.with(Cell::get))
}

/// Serves `handler` on a runtime of its own, as a service process does, with four I/O
/// threads so that both requests a one-replica batch has in flight find an inline place.
fn serve_on_own_runtime(handler: &'static Handler) -> String {
    let mut options = ServiceOptions::new(SECRET);
    options.inline_max = LIMIT;
    let mark = || IO_THREAD.with(|t| t.set(true));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .on_thread_park(mark)
        .on_thread_unpark(mark)
        .enable_all()
        .build()
        .unwrap();
    common::serve_on_own_runtime(vec![handler], options, runtime)
}

/// Where each call of a batch of `n` calls of `nap(long)` ran (`true`: inline), checking
/// that every result came back, in order.
async fn batch(n: usize, long: bool) -> Vec<bool> {
    let results = nap_batch(vec![long; n]).await.unwrap();
    assert_eq!(results.len(), n);
    results
        .into_iter()
        .map(|(echoed, inline)| {
            assert_eq!(echoed, long);
            inline
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_functions_batches_run_inline_within_the_limit_and_the_rest_on_the_pool() {
    let handler = registered()
        .find(|h| h.info().id() == "batch_placement::nap")
        .unwrap();
    let url = serve_on_own_runtime(handler);
    Config::new()
        .secret(SECRET)
        .endpoint("batch_placement::nap", [url])
        .install()
        .unwrap();
    let placement = handler.info().placement();
    assert!(!placement.is_inline(), "nothing learnt yet");

    // One replica: the batch goes as four requests of ten calls, two in flight at a time.
    // The first two start before anything is learnt, so their twenty calls run on the
    // pool, and those teach the function's placement: no single call is needed.
    let inline = batch(40, false).await;
    let on_pool = inline.iter().filter(|i| !**i).count();
    assert!(
        on_pool >= 20,
        "{on_pool} of 40 calls ran on the pool: {inline:?}"
    );
    assert!(placement.is_inline(), "learnt from the batch's calls");

    // Short calls, proven short: every one runs inline.
    for _ in 0..3 {
        let inline = batch(40, false).await;
        assert!(inline.iter().all(|i| *i), "{inline:?}");
    }

    // Calls of 6 ms each: a request runs inline only until its calls have taken the
    // limit together (at most four of its ten: 24 ms), the rest on the pool.
    let inline = batch(40, true).await;
    let (ran_inline, on_pool) = (
        inline.iter().filter(|i| **i).count(),
        inline.iter().filter(|i| !**i).count(),
    );
    assert!(
        (1..=16).contains(&ran_inline) && on_pool >= 24,
        "{ran_inline} inline, {on_pool} on the pool: {inline:?}"
    );
    // Each call stayed under the limit: the function keeps its inline place.
    assert!(placement.is_inline());
}
