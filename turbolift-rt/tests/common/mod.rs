//! What the tests that run services on 127.0.0.1 share: a service started and stopped
//! in the test's runtime, functions routed to it, an address nothing listens on, a
//! `tracing` subscriber that records everything ([`events`]), and a bare HTTP client
//! ([`http`]).

#![allow(dead_code)] // each test crate uses its own part

pub mod events;
pub mod http;

use std::sync::Mutex;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use turbolift::Config;
use turbolift::service::{Handler, Service, ServiceOptions, registered};

/// A service serving on 127.0.0.1 until stopped.
pub struct Running {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops it, and waits until it has finished its calls.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.done.await.unwrap().unwrap();
    }
}

/// Serves `handlers` with the default options and `secret`.
pub async fn serve(handlers: &[&'static Handler], secret: &str) -> Running {
    serve_with(handlers, &ServiceOptions::new(secret)).await
}

/// Serves `handlers` with `options` on an OS-assigned port of 127.0.0.1.
pub async fn serve_with(handlers: &[&'static Handler], options: &ServiceOptions) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let service = Service::new(handlers, options);
    let done = tokio::spawn(service.serve(listener, async {
        let _ = stopped.await;
    }));
    Running {
        url,
        stop: Some(stop),
        done,
    }
}

/// Serves `handlers` with `options` on an OS-assigned port of 127.0.0.1, on `runtime` in a
/// thread of its own, as a service process does (the test's calls run on the test's
/// runtime, as a program's do), for the life of the test; its URL.
pub fn serve_on_own_runtime(
    handlers: Vec<&'static Handler>,
    options: ServiceOptions,
    runtime: tokio::runtime::Runtime,
) -> String {
    let (address, url) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        runtime.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            address
                .send(format!("http://{}", listener.local_addr().unwrap()))
                .unwrap();
            let service = Service::new(&handlers, &options);
            let _ = service.serve(listener, std::future::pending()).await;
        });
    });
    url.recv().unwrap()
}

/// The registered handler of the function `id`.
pub fn handler(id: &str) -> &'static Handler {
    registered()
        .find(|h| h.info().id() == id)
        .unwrap_or_else(|| panic!("`{id}` is registered"))
}

/// Routes the function `id` to `urls`. Every test adds its own functions to one
/// configuration of this test crate, installed anew each time.
pub fn route<S: AsRef<str>>(id: &str, urls: &[S], secret: &str) {
    static CONFIG: Mutex<Option<Config>> = Mutex::new(None);
    let mut config = CONFIG.lock().unwrap();
    let next = config
        .take()
        .unwrap_or_else(|| Config::new().secret(secret))
        .endpoint(id, urls.iter().map(|u| u.as_ref().to_owned()));
    next.clone().install().unwrap();
    *config = Some(next);
}

/// A port nothing listens on.
pub async fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}
