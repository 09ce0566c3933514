//! Measurements 1-3, the call path: turbolift next to the axum peer and the tarpc peer.
//!
//! Sequential calls and calls in flight (1 and 2) are measured by the fixture program for
//! all three sides, in rounds whose order rotates (a line per round, see
//! `bench/fixture/src/main.rs`): this machine's speed moves by a third from one second to
//! the next, so each round gives a figure to each side and the ratios of that round. The
//! 10 MiB echo (3) is measured here for the peers (their clients on runtimes of their own)
//! and by the fixture for turbolift, the three in a rotating order from repeat to repeat.

use serde_json::Value;

use crate::peer::{Blob, Peer};
use crate::stats::{Figure, Row};
use crate::tarpc_peer::TarpcPeer;
use crate::{Env, Options, Sizes, bench_lines, field, turbolift_run};

/// The rows of 1-3 against the axum peer, and against tarpc.
pub struct Rows {
    pub peer: Vec<Row>,
    pub tarpc: Vec<Row>,
}

/// Measurements 1-3, turbolift and the peers taking turns.
pub fn calls(env: &Env, options: &Options, sizes: Sizes) -> Rows {
    let peer = Peer::start(false);
    let same_process = Peer::start(true);
    let tarpc = TarpcPeer::start();
    let mut tl: Vec<Vec<Value>> = Vec::new();
    let mut peer_blob: Vec<Blob> = Vec::new();
    let mut tarpc_blob: Vec<f64> = Vec::new();
    let mut same_process_p50: Vec<f64> = Vec::new();
    for r in 0..options.repeats {
        eprintln!(
            "turbolift-bench: 1-3 calls, repeat {}/{}",
            r + 1,
            options.repeats
        );
        // The fixture's rounds are numbered across repeats, so that its rotation goes on
        // from one run to the next.
        let first_round = r as u64 * sizes.rounds;
        let args: Vec<String> = [
            "suite".to_owned(),
            sizes.seq.to_string(),
            sizes.par.to_string(),
            sizes.inflight.to_string(),
            sizes.blob_bytes.to_string(),
            sizes.blob_calls.to_string(),
            peer.addr().to_string(),
            sizes.rounds.to_string(),
            tarpc.addr().to_string(),
            first_round.to_string(),
        ]
        .into();
        // Turbolift (the fixture run), the axum peer's and tarpc's 10 MiB echo: repeat `r`
        // starts with the `r % 3`th.
        for k in 0..3 {
            match (r + k) % 3 {
                0 => tl.push(bench_lines(turbolift_run(env, Some(1), &args))),
                1 if options.wants(3) => peer_blob.push(peer.blob(sizes)),
                2 if options.wants(3) => tarpc_blob.push(tarpc.blob(sizes)),
                _ => {}
            }
        }
        if options.wants(1) {
            same_process_p50.push(same_process.sequential_p50(sizes.seq));
        }
    }
    drop(peer);
    drop(same_process);
    drop(tarpc);
    let tl_f = |kind: &str, name: &str| tl.iter().map(|l| field(l, kind, name)).collect();
    // Measurements 1 and 2 come from the fixture for all sides: a line per round.
    let rounds = |kind: &str, name: &str| -> Vec<f64> {
        let lines = tl.iter().flatten().filter(|l| l["kind"] == kind);
        lines.map(|l| l[name].as_f64().expect(name)).collect()
    };
    let seq = |name: &str| rounds("seq", name);
    let par = |name: &str| rounds("par", name);
    // The rows of a side ("peer" or "tarpc"); the goals are on the axum peer only.
    let seq_rows = |side: &str, goal| {
        let theirs = |name: &str| seq(&format!("{side}_{name}"));
        let pair = |name: &str, unit: &str, figure: &str, goal| {
            let (ours, theirs) = (Figure::of(seq(figure)), Figure::of(theirs(figure)));
            Row::pair(name, unit, ours, theirs, goal).with_peer_name(side)
        };
        vec![
            pair("1. sequential p50", "µs", "p50_us", goal),
            Row::single(
                &format!("1. sequential p50, turbolift/{side} of each round"),
                "×",
                Figure::of(each_round(&seq("p50_us"), &theirs("p50_us"))),
            ),
            pair("1. sequential p99", "µs", "p99_us", None),
            pair("1. sequential calls/s", "calls/s", "calls_per_s", None),
        ]
    };
    let par_rows = |side: &str, goal, batch_goal| {
        let theirs = par(&format!("{side}_calls_per_s"));
        vec![
            Row::pair(
                "2. 64 in flight",
                "calls/s",
                Figure::of(par("calls_per_s")),
                Figure::of(theirs.clone()),
                goal,
            )
            .with_peer_name(side),
            Row::single(
                &format!("2. 64 in flight, turbolift/{side} of each round"),
                "×",
                Figure::of(each_round(&par("calls_per_s"), &theirs)),
            ),
            Row::pair(
                &format!("2. many-calls API (`echo_batch`) vs {side}'s 64 in flight"),
                "calls/s",
                Figure::of(tl_f("batch", "calls_per_s")),
                Figure::of(theirs),
                batch_goal,
            )
            .with_peer_name(side),
        ]
    };
    let mut rows = Rows {
        peer: Vec::new(),
        tarpc: Vec::new(),
    };
    if options.wants(1) {
        rows.peer = seq_rows("peer", Some(("≤ 1.15× peer", 1.15, false)));
        rows.peer.insert(
            2,
            Row::pair(
                "1. sequential p50, peer's server in the benchmark's process",
                "µs",
                Figure::of(seq("p50_us")),
                Figure::of(same_process_p50),
                None,
            ),
        );
        rows.tarpc = seq_rows("tarpc", None);
    }
    if options.wants(2) {
        rows.peer.extend(par_rows(
            "peer",
            Some(("≥ 0.9× peer", 0.9, true)),
            Some(("≥ 2× peer", 2.0, true)),
        ));
        rows.tarpc.extend(par_rows("tarpc", None, None));
    }
    if options.wants(3) {
        rows.peer.push(Row::pair(
            "3. 10 MiB echo (vs serde_bytes)",
            "MB/s",
            Figure::of(tl_f("blob", "mb_per_s")),
            Figure::of(peer_blob.iter().map(|b| b.mb_per_s).collect()),
            Some(("≥ 1.0× peer", 1.0, true)),
        ));
        rows.peer.push(Row::pair(
            "3. 10 MiB echo (vs plain Vec<u8>)",
            "MB/s",
            Figure::of(tl_f("blob", "mb_per_s")),
            Figure::of(peer_blob.iter().map(|b| b.vec_mb_per_s).collect()),
            None,
        ));
        rows.tarpc.push(
            Row::pair(
                "3. 10 MiB echo (tarpc with serde_bytes)",
                "MB/s",
                Figure::of(tl_f("blob", "mb_per_s")),
                Figure::of(tarpc_blob),
                None,
            )
            .with_peer_name("tarpc"),
        );
    }
    rows
}

/// Turbolift's figure over a peer's, round by round.
fn each_round(turbolift: &[f64], peer: &[f64]) -> Vec<f64> {
    turbolift.iter().zip(peer).map(|(t, p)| t / p).collect()
}
