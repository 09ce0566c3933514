//! Many calls of one distributed function at once: [`Batch`].

use std::future::{Future, IntoFuture};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::{self, BoxStream, Stream, StreamExt};

use crate::__private::FnInfo;
use crate::Error;
use crate::local::{self, panic_message};

/// The results of many calls of one distributed function, in the order of their inputs.
///
/// Every `#[turbolift::distribute] fn f(..)` comes with `f_batch(inputs)`, which makes
/// one call of `f` per input and returns a `Batch`. Remotely, the inputs travel packed
/// into a few requests (up to 4,096 calls each) spread over the function's replicas, two
/// requests per replica at a time, and each request's results stream back as its calls
/// finish; in-process, the calls run on tokio's blocking pool in groups, one group per
/// core at a time. A call that fails does not stop the others: each result is the call's
/// own.
///
/// Await it for every value (`Err` with the first failure, in input order), or use it
/// as a [`Stream`] (or with [`Batch::next`]) to take results as they come (the example of
/// the crate's documentation, which runs as a test, does both):
///
/// ```ignore
/// #[turbolift::distribute]
/// fn square(u: u64) -> u64 {
///     u * u
/// }
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), turbolift::Error> {
/// let squares: Vec<u64> = square_batch(0..10_000).await?;
///
/// let mut results = square_batch(0..10_000);
/// while let Some(result) = results.next().await {
///     let square = result?;
///     # let _ = square;
/// }
/// # Ok(())
/// # }
/// ```
#[must_use = "a batch does nothing unless it is awaited or polled"]
pub struct Batch<R> {
    results: BoxStream<'static, Result<R, Error>>,
    remaining: usize,
}

impl<R: Send + 'static> Batch<R> {
    pub(crate) fn new(len: usize, results: BoxStream<'static, Result<R, Error>>) -> Self {
        Batch {
            results,
            remaining: len,
        }
    }

    /// A batch whose every call fails with `error` (the configuration is invalid, say).
    #[cfg(feature = "distributed")]
    pub(crate) fn failed(len: usize, error: Error) -> Self {
        Batch::new(len, stream::repeat(error).take(len).map(Err).boxed())
    }

    /// How many results are still to come.
    pub fn len(&self) -> usize {
        self.remaining
    }

    /// Whether every result has been taken.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// The next result in input order, `None` after the last.
    pub async fn next(&mut self) -> Option<Result<R, Error>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl<R> Stream for Batch<R> {
    type Item = Result<R, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.results.poll_next_unpin(cx);
        if let Poll::Ready(Some(_)) = &polled {
            self.remaining = self.remaining.saturating_sub(1);
        }
        polled
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<R: Send + 'static> IntoFuture for Batch<R> {
    type Output = Result<Vec<R>, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    /// Every value in input order, or the first error in input order.
    fn into_future(mut self) -> Self::IntoFuture {
        Box::pin(async move {
            let mut values = Vec::with_capacity(self.remaining);
            while let Some(result) = self.next().await {
                values.push(result?);
            }
            Ok(values)
        })
    }
}

impl<R> std::fmt::Debug for Batch<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

/// Calls of an async function that an in-process batch runs at once.
const LOCAL_ASYNC_CONCURRENCY: usize = 64;

/// An in-process batch of a synchronous function: groups of calls on the blocking pool,
/// one group per core at a time.
pub(crate) fn local_blocking<A, R, F>(
    info: &'static FnInfo,
    inputs: Vec<A>,
    f: F,
) -> BoxStream<'static, Result<R, Error>>
where
    A: Send + 'static,
    R: Send + 'static,
    F: Fn(A) -> R + Copy + Send + 'static,
{
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_group = inputs.len().div_ceil(cores * 4).max(1);
    let mut inputs = inputs.into_iter();
    let mut groups = Vec::new();
    loop {
        let group: Vec<A> = inputs.by_ref().take(per_group).collect();
        if group.is_empty() {
            break;
        }
        groups.push(group);
    }
    stream::iter(groups)
        .map(move |group| run_group(info, group, f))
        .buffered(cores)
        .flat_map(stream::iter)
        .boxed()
}

async fn run_group<A, R, F>(info: &'static FnInfo, group: Vec<A>, f: F) -> Vec<Result<R, Error>>
where
    A: Send + 'static,
    R: Send + 'static,
    F: Fn(A) -> R + Send + 'static,
{
    let len = group.len();
    let run = move || -> Vec<Result<R, Error>> {
        group
            .into_iter()
            .map(|args| {
                catch_unwind(AssertUnwindSafe(|| f(args)))
                    .map_err(|payload| info.panic_error(panic_message(&*payload)))
            })
            .collect()
    };
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => match handle.spawn_blocking(run).await {
            Ok(results) => results,
            Err(_) => {
                let error = Error::Unavailable {
                    function: info.id().to_owned(),
                    attempts: 1,
                    last: "the tokio runtime shut down before the calls finished".to_owned(),
                };
                (0..len).map(|_| Err(error.clone())).collect()
            }
        },
        Err(_) => run(),
    }
}

/// An in-process batch of an async function: up to 64 calls at once on the caller's
/// task.
pub(crate) fn local_async<A, R, F, Fut>(
    info: &'static FnInfo,
    inputs: Vec<A>,
    f: F,
) -> BoxStream<'static, Result<R, Error>>
where
    A: Send + 'static,
    R: Send + 'static,
    F: Fn(A) -> Fut + Send + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    stream::iter(inputs)
        .map(move |args| local::run_async(info, f(args)))
        .buffered(LOCAL_ASYNC_CONCURRENCY)
        .boxed()
}
