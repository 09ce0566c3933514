//! Allocations per remote call, counted by a counting global allocator in a test binary of
//! its own: the program's side and the service's side of a call both run in this process,
//! so the count is the whole round trip's. A regression that adds allocations to the hot
//! path fails here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use common::{handler, route, serve};

mod common;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SECRET: &str = "allocations-test-secret";

#[turbolift::distribute]
fn increment(n: u64) -> u64 {
    n + 1
}

/// Most allocations one sequential call may make, program and service together: what
/// the call path needs today (request and response heads, bodies, the call's future and
/// timer, the service's routing and task), with little room; see the printed count.
const MOST_PER_CALL: u64 = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_call_allocates_a_bounded_handful() {
    let service = serve(&[handler("allocations::increment")], SECRET).await;
    route("allocations::increment", &[&service.url], SECRET);
    // Connections, the pool and the function's route are set up by the first calls.
    for n in 0..200 {
        assert_eq!(increment(n).await.unwrap(), n + 1);
    }
    let calls = 2_000;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for n in 0..calls {
        assert_eq!(increment(n).await.unwrap(), n + 1);
    }
    let per_call = (ALLOCATIONS.load(Ordering::Relaxed) - before) / calls;
    println!("allocations per sequential call, program and service: {per_call}");
    assert!(
        per_call <= MOST_PER_CALL,
        "{per_call} allocations per call, more than {MOST_PER_CALL}"
    );
    service.stop().await;
}
