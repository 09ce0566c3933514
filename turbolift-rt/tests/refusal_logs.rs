//! A flood of refused requests costs a service's log a few lines a second: the first
//! refusal of each kind, then at most one line per kind per second with how many more
//! there were, and every refusal is accounted for.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::events::{record_everything, recorded};
use common::handler;
use common::http::Connection;
use tracing::Level;
use turbolift::protocol;
use turbolift::wire;

mod common;

const SECRET: &str = "refusal-logs-secret";

#[turbolift::distribute]
fn square(u: u64) -> u64 {
    u * u
}

/// Rounds of requests, a pause after each, so that the flood lasts over a second.
const ROUNDS: usize = 10;
const PAUSE: Duration = Duration::from_millis(150);
/// Connections sending at once, and requests each sends per round, with a wrong secret;
/// and with a wrong protocol version.
const CONNECTIONS: usize = 4;
const UNAUTHORIZED: usize = 125;
const MISMATCHED: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_thousand_refusals_take_a_few_lines() {
    record_everything();
    let running = common::serve(&[handler("refusal_logs::square")], SECRET).await;
    let signature = handler("refusal_logs::square").info().signature();
    let route = turbolift::naming::route("refusal_logs::square");
    let mut connections = Vec::new();
    for _ in 0..CONNECTIONS {
        connections.push(Connection::open(&running.url).await);
    }
    let started = Instant::now();
    for _ in 0..ROUNDS {
        let senders = connections.drain(..).map(|mut connection| {
            let route = route.clone();
            tokio::spawn(async move {
                for _ in 0..UNAUTHORIZED {
                    let body = wire::encode(&(3u64,)).unwrap();
                    let answer = connection
                        .post(&route, signature, "wrong", body, |_| {})
                        .await;
                    assert_eq!(answer.kind(), Some("unauthorized"));
                }
                for _ in 0..MISMATCHED {
                    let body = wire::encode(&(3u64,)).unwrap();
                    let answer = connection
                        .post(&route, signature, SECRET, body, |r| {
                            r.headers_mut()
                                .insert(protocol::PROTOCOL_HEADER, "7".parse().unwrap());
                        })
                        .await;
                    assert_eq!(answer.kind(), Some("protocol-mismatch"));
                }
                // A good call is still answered.
                let body = wire::encode(&(3u64,)).unwrap();
                let answer = connection
                    .post(&route, signature, SECRET, body, |_| {})
                    .await;
                assert_eq!(wire::decode::<u64>(&answer.body).unwrap(), 9);
                connection
            })
        });
        for sender in senders.collect::<Vec<_>>() {
            connections.push(sender.await.unwrap());
        }
        tokio::time::sleep(PAUSE).await;
    }
    let took = started.elapsed();
    drop(connections);
    running.stop().await;

    let sent = BTreeMap::from([
        ("protocol-mismatch", ROUNDS * CONNECTIONS * MISMATCHED),
        ("unauthorized", ROUNDS * CONNECTIONS * UNAUTHORIZED),
    ]);
    let recorded = recorded();
    let mut lines = BTreeMap::<String, Vec<u64>>::new();
    for event in recorded.iter().filter(|e| {
        e.kind == "event" && e.level == Level::WARN && e.target.starts_with("turbolift::service")
    }) {
        let kind = event
            .field("kind")
            .expect("a refusal's line names its kind");
        let refused = event.field("refused").expect("and how many it tells of");
        lines
            .entry(kind.to_owned())
            .or_default()
            .push(refused.parse().unwrap());
    }
    // Per kind: the first at once, at most one line per second the flood lasted (rounded
    // up), and the rest when the service stops.
    let most = 2 + took.as_secs_f64().ceil() as usize;
    for (kind, count) in &sent {
        let told = &lines[*kind];
        eprintln!(
            "{kind}: {count} refused in {:.2} s, {} lines: {told:?}",
            took.as_secs_f64(),
            told.len()
        );
        assert!(
            told.len() <= most,
            "{kind}: {} lines, at most {most}",
            told.len()
        );
        assert!(
            told.len() >= 2,
            "{kind}: the first at once, then how many more"
        );
        // The first line comes at once: it covers the first refusal and those that arrived
        // with it before it was written (at most one per connection).
        assert!(
            (1..=CONNECTIONS as u64).contains(&told[0]),
            "{kind}: the first line covers {} refusals",
            told[0]
        );
        assert_eq!(told.iter().sum::<u64>(), *count as u64, "{kind}: {told:?}");
    }
    assert_eq!(lines.len(), sent.len(), "{lines:?}");
    let stopped = recorded
        .iter()
        .find(|e| e.field("message") == Some("stopped"))
        .expect("the stop line");
    assert_eq!(stopped.field("rejected"), Some("5200"));
    assert_eq!(
        stopped.field("refusals"),
        Some("unauthorized 5000, protocol-mismatch 200")
    );
}
