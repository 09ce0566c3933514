//! `coalesce = false` and `coalesce = true` expand, compile, run in-process, and reach the
//! function's `FnInfo`.

#[turbolift::distribute(coalesce = false)]
fn uneven(n: u64) -> u64 {
    n + 1
}

#[turbolift::distribute(timeout = "5s", coalesce = true)]
async fn even(n: u64) -> u64 {
    n * 2
}

#[turbolift::distribute]
fn plain(n: u64) -> u64 {
    n
}

fn main() {
    assert!(!__TURBOLIFT_uneven_MUST_BE_DECLARED_AT_MODULE_LEVEL.coalesces());
    assert!(__TURBOLIFT_even_MUST_BE_DECLARED_AT_MODULE_LEVEL.coalesces());
    assert!(__TURBOLIFT_plain_MUST_BE_DECLARED_AT_MODULE_LEVEL.coalesces());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        assert_eq!(uneven(1).await.unwrap(), 2);
        assert_eq!(uneven_batch([1, 2]).await.unwrap(), vec![2, 3]);
        assert_eq!(even(4).await.unwrap(), 8);
        assert_eq!(plain(3).await.unwrap(), 3);
    });
}
