//! A quick look at large bodies: a `Vec<u8>` of 10 MiB echoed through the remote path by
//! a service on 127.0.0.1 in the same process, `N` times (default 40); prints the median
//! round trip and the rate. With `--shm`, through shared memory in a directory of
//! `/dev/shm`, as `cargo turbolift run` passes large bodies on one machine. The full benchmark, with peers, is `bench/` (measurement 3).
//! Profile it with `perf record --call-graph dwarf` to see where the bytes are copied.
//!
//! `cargo run --release -p turbolift --example large_body --features service -- [N] [--shm]`

use std::os::unix::fs::DirBuilderExt;
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
    let shm = std::env::args().any(|a| a == "--shm").then(|| {
        let dir =
            std::path::PathBuf::from(format!("/dev/shm/turbolift-example-{}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .expect("a directory in /dev/shm");
        dir
    });
    let handlers: Vec<_> = registered().collect();
    let mut options = ServiceOptions::new("large_body");
    options.shm_dir = shm.clone();
    let service = Service::new(&handlers, &options);
    tokio::spawn(service.serve(listener, std::future::pending()));
    let mut config = Config::new()
        .secret("large_body")
        .endpoint("large_body::blob", [url]);
    if let Some(dir) = &shm {
        config = config.shared_memory(dir);
    }
    config.install()?;
    let data: Vec<u8> = (0..10 << 20).map(|i| (i % 251) as u8).collect();
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
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
    if let Some(dir) = shm {
        std::fs::remove_dir_all(dir).expect("the directory removed");
    }
    Ok(())
}
