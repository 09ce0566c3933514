//! The in-process path: without `TURBOLIFT_ENDPOINTS`, a call runs the body here.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use turbolift::Error;

static RELEASE: Mutex<Option<Receiver<u64>>> = Mutex::new(None);

/// Blocks its thread until another task sends a value.
#[turbolift::distribute]
fn wait_for_release(add: u64) -> u64 {
    let rx = RELEASE
        .lock()
        .unwrap()
        .take()
        .expect("one waiter at a time");
    rx.recv_timeout(Duration::from_secs(10))
        .expect("released by the other task")
        + add
}

#[turbolift::distribute]
fn checked_div(a: i32, b: i32) -> Result<i32, String> {
    if b == 0 {
        return Err("division by zero".to_owned());
    }
    Ok(a / b)
}

#[turbolift::distribute]
fn boom(n: u8) -> u8 {
    if n > 0 {
        panic!("boom {n}");
    }
    n
}

#[turbolift::distribute]
async fn later(n: u8) -> u8 {
    tokio::task::yield_now().await;
    if n == 0 {
        panic!("async boom");
    }
    n * 2
}

/// On a single-threaded runtime, a blocking body must not stop the runtime's other tasks:
/// the body waits for a value that only another task on the same thread can send.
#[tokio::test(flavor = "current_thread")]
async fn a_blocking_body_does_not_stall_the_callers_runtime() {
    let (tx, rx): (Sender<u64>, Receiver<u64>) = channel();
    *RELEASE.lock().unwrap() = Some(rx);
    let call = tokio::spawn(wait_for_release(1));
    tokio::task::yield_now().await;
    tx.send(41).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the call finished")
        .unwrap();
    assert_eq!(result, Ok(42));
}

#[tokio::test]
async fn results_and_the_functions_own_errors() {
    assert_eq!(checked_div(7, 2).await, Ok(Ok(3)));
    assert_eq!(
        checked_div(7, 0).await,
        Ok(Err("division by zero".to_owned()))
    );
}

#[tokio::test]
async fn panics_become_errors_in_process_too() {
    assert_eq!(boom(0).await, Ok(0));
    assert_eq!(
        boom(3).await,
        Err(Error::Panic {
            function: "local::boom".to_owned(),
            message: "boom 3".to_owned()
        })
    );
    assert_eq!(later(4).await, Ok(8));
    let err = later(0).await.unwrap_err();
    assert_eq!(err.to_string(), "`local::later` panicked: async boom");
}
