//! A quick look at large bodies: a `Vec<u8>` of 10 MiB echoed through the remote path by
//! a service on 127.0.0.1 in the same process, `N` times (default 40); prints the median
//! round trip and the rate. The full benchmark, with peers, is `bench/` (measurement 3).
//! Profile it with `perf record --call-graph dwarf` to see where the bytes are copied.
//!
//! `cargo run --release -p turbolift --example large_body --features service -- [N]`

use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use turbolift::Config;
use turbolift::service::{Service, ServiceOptions, registered};

#[turbolift::distribute]
fn blob(data: Vec<u8>) -> Vec<u8> {
    data
}

#[tokio::main]
async fn main() -> Result<(), turbolift::Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    let handlers: Vec<_> = registered().collect();
    let service = Service::new(&handlers, &ServiceOptions::new("large_body"));
    tokio::spawn(service.serve(listener, std::future::pending()));
    Config::new()
        .secret("large_body")
        .endpoint("large_body::blob", [url])
        .install()?;
    let data: Vec<u8> = (0..10 << 20).map(|i| (i % 251) as u8).collect();
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(40);
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..n {
        let arg = data.clone();
        let t = Instant::now();
        let back = blob(arg).await?;
        times.push(t.elapsed());
        assert_eq!(back.len(), data.len());
    }
    times.sort();
    let m = times[times.len() / 2].as_secs_f64();
    println!(
        "median {:.2} ms, {:.0} MB/s",
        m * 1e3,
        data.len() as f64 / 1e6 / m
    );
    Ok(())
}
