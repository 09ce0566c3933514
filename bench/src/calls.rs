//! Measurements 1-3, the call path: turbolift next to the axum peer and the tarpc peer.
//!
//! Sequential calls and calls in flight (1 and 2) are measured by the fixture program for
//! all three sides, in rounds whose order rotates (a line per round, see
//! `bench/fixture/src/main.rs`): this machine's speed moves by a third from one second to
//! the next, so each round gives a figure to each side and the ratios of that round. The
//! 10 MiB echo (3) is measured here for the peers (their clients on runtimes of their own)
//! and by the fixture for turbolift, the three in a rotating order from repeat to repeat.
//!
//! What TLS costs (7) is measured after them: the fixture runs once more per repeat, with
//! the same arguments, under `cargo turbolift run --tls` (built once, after every plain
//! run, since switching would rebuild the services each time), next to the plain runs.
//! What metrics cost (8) needs no rebuild: each repeat runs the fixture a second time with
//! `TURBOLIFT_METRICS=off`, right after or right before the run with them on (the order
//! alternates), so that the two runs of a pair see the same machine.

use serde_json::Value;

use crate::peer::{Blob, Peer};
use crate::stats::{Figure, Row};
use crate::tarpc_peer::TarpcPeer;
use crate::{
    Env, Options, Sizes, bench_lines, field, prepare_tls, turbolift_run_tls,
    turbolift_run_uncounted,
};

/// The rows of 1-3 against the axum peer, and against tarpc; those of 7, TLS against
/// plain; those of 8, metrics on against off.
pub struct Rows {
    pub peer: Vec<Row>,
    pub tarpc: Vec<Row>,
    pub tls: Vec<Row>,
    pub metrics: Vec<Row>,
}

/// Measurements 1-3, turbolift and the peers taking turns.
pub fn calls(env: &Env, options: &Options, sizes: Sizes) -> Rows {
    let peer = Peer::start(false);
    let same_process = Peer::start(true);
    let tarpc = TarpcPeer::start();
    let mut tl: Vec<Vec<Value>> = Vec::new();
    let mut uncounted: Vec<Vec<Value>> = Vec::new();
    let mut peer_blob: Vec<Blob> = Vec::new();
    let mut tarpc_blob: Vec<f64> = Vec::new();
    let mut same_process_p50: Vec<f64> = Vec::new();
    let mut all_args: Vec<Vec<String>> = Vec::new();
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
                0 => {
                    let on = || bench_lines(turbolift_run_tls(env, Some(1), false, &args));
                    let off = || bench_lines(turbolift_run_uncounted(env, Some(1), &args));
                    match (options.wants(8), r % 2) {
                        (false, _) => tl.push(on()),
                        (true, 0) => {
                            tl.push(on());
                            uncounted.push(off());
                        }
                        (true, _) => {
                            uncounted.push(off());
                            tl.push(on());
                        }
                    }
                }
                1 if options.wants(3) => peer_blob.push(peer.blob(sizes)),
                2 if options.wants(3) => tarpc_blob.push(tarpc.blob(sizes)),
                _ => {}
            }
        }
        if options.wants(1) {
            same_process_p50.push(same_process.sequential_p50(sizes.seq));
        }
        all_args.push(args);
    }
    // 7: the same runs over TLS, after all the plain ones (one rebuild with the `tls`
    // feature), the peers still serving the fixture's rounds.
    let mut tls: Vec<Vec<Value>> = Vec::new();
    if options.wants(7) {
        prepare_tls(env);
        for (r, args) in all_args.iter().enumerate() {
            eprintln!(
                "turbolift-bench: 7 calls over TLS, repeat {}/{}",
                r + 1,
                options.repeats
            );
            tls.push(bench_lines(turbolift_run_tls(env, Some(1), true, args)));
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
    // The rows of a side ("peer" or "tarpc"); the goals are on the axum peer, but for 64
    // in flight, which has one against tarpc too.
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
            pair(
                "1. sequential p99",
                "µs",
                "p99_us",
                (side == "peer").then_some(("≤ 1.3× peer", 1.3, false)),
            ),
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
        tls: if options.wants(7) {
            variant_rows(&tl, &tls, "plain", TLS_GOALS)
        } else {
            Vec::new()
        },
        metrics: if options.wants(8) {
            variant_rows(&uncounted, &tl, "off", METRICS_GOALS)
        } else {
            Vec::new()
        },
    };
    if options.wants(1) {
        rows.peer = seq_rows("peer", Some(("≤ 1.10× peer", 1.10, false)));
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
            Some(("≥ 2.5× peer", 2.5, true)),
            Some(("≥ 2× peer", 2.0, true)),
        ));
        rows.tarpc
            .extend(par_rows("tarpc", Some(("≥ 1.2× tarpc", 1.2, true)), None));
    }
    if options.wants(3) {
        rows.peer.push(Row::pair(
            "3. 10 MiB echo, Vec<u8> (vs serde_bytes)",
            "MB/s",
            Figure::of(tl_f("blob", "mb_per_s")),
            Figure::of(peer_blob.iter().map(|b| b.mb_per_s).collect()),
            Some(("≥ 2.0× peer", 2.0, true)),
        ));
        rows.peer.push(Row::pair(
            "3. 10 MiB echo, ByteBuf (vs serde_bytes)",
            "MB/s",
            Figure::of(tl_f("blob_buf", "mb_per_s")),
            Figure::of(peer_blob.iter().map(|b| b.mb_per_s).collect()),
            Some(("≥ 2.0× peer", 2.0, true)),
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

/// Goals of a variant against its base: on the sequential p50 and on 64 in flight.
struct Goals {
    p50: Option<(&'static str, f64, bool)>,
    in_flight: Option<(&'static str, f64, bool)>,
}

const TLS_GOALS: Goals = Goals {
    p50: Some(("TLS p50 ≤ 1.2× plaintext", 1.2, false)),
    in_flight: None,
};

const METRICS_GOALS: Goals = Goals {
    p50: Some(("on ≤ 1.03× off", 1.03, false)),
    in_flight: Some(("on ≥ 0.97× off", 0.97, true)),
};

/// Measurements 7 and 8: turbolift in a variant (`variant`, the fixture's lines of each
/// repeat: over TLS; with metrics on) next to turbolift without it (`base`, named
/// `base_name`: plain HTTP; metrics off), both in the same benchmark run.
fn variant_rows(
    base: &[Vec<Value>],
    variant: &[Vec<Value>],
    base_name: &str,
    goals: Goals,
) -> Vec<Row> {
    let rounds = |runs: &[Vec<Value>], kind: &str, name: &str| -> Vec<f64> {
        let lines = runs.iter().flatten().filter(|l| l["kind"] == kind);
        lines.map(|l| l[name].as_f64().expect(name)).collect()
    };
    let pair = |name: &str, unit: &str, kind: &str, figure: &str, goal| {
        Row::pair(
            name,
            unit,
            Figure::of(rounds(variant, kind, figure)),
            Figure::of(rounds(base, kind, figure)),
            goal,
        )
        .with_peer_name(base_name)
    };
    // Turbolift over the axum peer of the same round: the machine's drift between the
    // base runs and the variant's runs cancels out.
    let over_peer = |name: &str, kind: &str, ours: &str, theirs: &str| {
        let of = |runs: &[Vec<Value>]| {
            Figure::of(each_round(
                &rounds(runs, kind, ours),
                &rounds(runs, kind, theirs),
            ))
        };
        Row::pair(name, "×", of(variant), of(base), None).with_peer_name(base_name)
    };
    let per_run = |runs: &[Vec<Value>], kind: &str, name: &str| -> Vec<f64> {
        runs.iter().map(|l| field(l, kind, name)).collect()
    };
    vec![
        pair("1. sequential p50", "µs", "seq", "p50_us", goals.p50),
        pair("1. sequential p99", "µs", "seq", "p99_us", None),
        over_peer(
            "1. sequential p50 over the peer's of the same round",
            "seq",
            "p50_us",
            "peer_p50_us",
        ),
        pair(
            "2. 64 in flight",
            "calls/s",
            "par",
            "calls_per_s",
            goals.in_flight,
        ),
        over_peer(
            "2. 64 in flight over the peer's of the same round",
            "par",
            "calls_per_s",
            "peer_calls_per_s",
        ),
        Row::pair(
            "3. 10 MiB echo",
            "MB/s",
            Figure::of(per_run(variant, "blob", "mb_per_s")),
            Figure::of(per_run(base, "blob", "mb_per_s")),
            None,
        )
        .with_peer_name(base_name),
    ]
}

/// Turbolift's figure over a peer's, round by round.
fn each_round(turbolift: &[f64], peer: &[f64]) -> Vec<f64> {
    turbolift.iter().zip(peer).map(|(t, p)| t / p).collect()
}
