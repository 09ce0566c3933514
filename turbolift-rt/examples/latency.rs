//! A quick look at the per-call overhead: a service on 127.0.0.1 and sequential calls to
//! it through the remote path. The full benchmark, with peers, is `benches/` (issue #5).
//!
//! `cargo run --release -p turbolift --example latency --features service`

use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use turbolift::Config;
use turbolift::service::{Service, ServiceOptions, registered};

#[turbolift::distribute]
fn square(u: u64) -> u64 {
    u * u
}

#[tokio::main]
async fn main() -> Result<(), turbolift::Error> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    let handlers: Vec<_> = registered().collect();
    let service = Service::new(&handlers, &ServiceOptions::new("latency"));
    tokio::spawn(service.serve(listener, std::future::pending()));
    Config::new()
        .secret("latency")
        .endpoint("latency::square", [url])
        .install()?;

    for u in 0..1_000 {
        assert_eq!(square(u).await?, u * u);
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(20_000);
    let started = Instant::now();
    for u in 0..20_000u64 {
        let t = Instant::now();
        let v = square(u).await?;
        samples.push(t.elapsed());
        assert_eq!(v, u * u);
    }
    let total = started.elapsed();
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "sequential remote calls: p50 {:?}, p99 {:?}, {:.0} calls/s",
        pct(0.50),
        pct(0.99),
        samples.len() as f64 / total.as_secs_f64()
    );
    Ok(())
}
