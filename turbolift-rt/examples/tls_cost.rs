//! What TLS costs a remote call, paired: one service serving plain HTTP and one serving
//! TLS with mutual authentication, both on 127.0.0.1 in this process, called in
//! alternating rounds (the order swapped each round), so that the two are measured under
//! the same conditions; per round the TLS/plain ratio of sequential p50 and p99, and of
//! calls/s with 64 calls in flight (coalesced, as one future per call is).
//!
//! `cargo run --release -p turbolift --example tls_cost --features service,tls [ROUNDS]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use tokio::net::TcpListener;
use turbolift::service::{Service, ServiceOptions, registered};
use turbolift::{Config, TlsFiles};

#[turbolift::distribute]
fn plain(u: u64) -> u64 {
    u.wrapping_add(1)
}

#[turbolift::distribute]
fn secure(u: u64) -> u64 {
    u.wrapping_add(1)
}

const SEQUENTIAL: usize = 4_000;
const IN_FLIGHT: usize = 64;
const PER_TASK: usize = 500;

#[tokio::main]
async fn main() -> Result<(), turbolift::Error> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(8);
    let dir = std::env::temp_dir().join(format!("turbolift-tls-cost-{}", std::process::id()));
    let (service_files, program_files) = authority(&dir);

    let handlers: Vec<_> = registered().collect();
    let plain_url = serve(&handlers, None).await;
    let secure_url = serve(&handlers, Some(service_files)).await;
    Config::new()
        .secret("tls-cost")
        .tls(program_files)
        .endpoint("tls_cost::plain", [plain_url])
        .endpoint(
            "tls_cost::secure",
            [secure_url.replace("http://", "https://")],
        )
        .install()?;
    for u in 0..1_000 {
        plain(u).await?;
        secure(u).await?;
    }

    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    let mut rate = Vec::new();
    for round in 0..rounds {
        let tls_first = round % 2 == 1;
        let (mut p, mut s) = (None, None);
        for tls in [tls_first, !tls_first] {
            let measured = if tls {
                measure(secure).await?
            } else {
                measure(plain).await?
            };
            if tls {
                s = Some(measured)
            } else {
                p = Some(measured)
            }
        }
        let (p, s) = (p.expect("measured"), s.expect("measured"));
        println!(
            "round {round}: sequential p50 {:?} plain, {:?} TLS; p99 {:?}, {:?}; 64 in flight {:.0}, {:.0} calls/s",
            p.p50, s.p50, p.p99, s.p99, p.rate, s.rate
        );
        p50.push(s.p50.as_secs_f64() / p.p50.as_secs_f64());
        p99.push(s.p99.as_secs_f64() / p.p99.as_secs_f64());
        rate.push(s.rate / p.rate);
    }
    println!(
        "TLS/plain, median of {rounds} rounds: sequential p50 {:.2}x, p99 {:.2}x, 64 in flight {:.2}x",
        median(p50),
        median(p99),
        median(rate)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

struct Measured {
    p50: Duration,
    p99: Duration,
    rate: f64,
}

async fn measure<F, Fut>(call: F) -> Result<Measured, turbolift::Error>
where
    F: Fn(u64) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = Result<u64, turbolift::Error>> + Send,
{
    let mut samples = Vec::with_capacity(SEQUENTIAL);
    for u in 0..SEQUENTIAL as u64 {
        let t = Instant::now();
        assert_eq!(call(u).await?, u + 1);
        samples.push(t.elapsed());
    }
    samples.sort();
    let started = Instant::now();
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            tokio::spawn(async move {
                for u in 0..PER_TASK as u64 {
                    assert_eq!(call(u).await.expect("a call"), u + 1);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a task");
    }
    Ok(Measured {
        p50: samples[samples.len() / 2],
        p99: samples[samples.len() * 99 / 100],
        rate: (IN_FLIGHT * PER_TASK) as f64 / started.elapsed().as_secs_f64(),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn serve(handlers: &[&'static turbolift::service::Handler], tls: Option<TlsFiles>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    let mut options = ServiceOptions::new("tls-cost");
    options.tls = tls;
    tokio::spawn(Service::new(handlers, &options).serve(listener, std::future::pending()));
    url
}

/// An authority of this run, a service certificate for 127.0.0.1 and a client
/// certificate, as files in `dir`.
fn authority(dir: &std::path::Path) -> (TlsFiles, TlsFiles) {
    std::fs::create_dir_all(dir).expect("a folder for the files");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let issuer = Arc::new(
        CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("a key")).expect("the CA"),
    );
    std::fs::write(dir.join("ca.crt"), issuer.pem()).expect("write");
    let issue = |name: &str, san: &str, purpose| {
        let mut params = CertificateParams::new(vec![san.to_owned()]).expect("parameters");
        params.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &issuer).expect("signed");
        let files = TlsFiles {
            ca: dir.join("ca.crt"),
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write");
        std::fs::write(&files.key, key.serialize_pem()).expect("write");
        files
    };
    (
        issue("service", "127.0.0.1", ExtendedKeyUsagePurpose::ServerAuth),
        issue("program", "program", ExtendedKeyUsagePurpose::ClientAuth),
    )
}
