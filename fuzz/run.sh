#!/usr/bin/env bash
# Coverage-guided fuzzing of a service's request handling with libFuzzer, on stable Rust:
# the same instrumentation `cargo fuzz` asks rustc for (sancov passes are stable `-C`
# options), without a sanitizer. Usage: fuzz/run.sh [SECONDS]   (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps the instrumentation off build scripts and proc-macros.
host=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release -p turbolift-fuzz --features libfuzzer --bin request --target-dir target/fuzz --target "$host"
mkdir -p target/fuzz/corpus
cp -n fuzz/corpus/request/* target/fuzz/corpus/ 2>/dev/null || true
exec "target/fuzz/$host/release/request" target/fuzz/corpus -max_total_time="$seconds" -max_len=4096 -print_final_stats=1
