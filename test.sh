#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, UI and end-to-end tests.
# Needs only a Rust toolchain (rustup's stable, with rustfmt and clippy); it installs
# the components it misses.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n==> %s\n' "$*"; }

if ! command -v cargo >/dev/null; then
  echo "error: cargo is not installed; install Rust from https://rustup.rs first" >&2
  exit 1
fi
if command -v rustup >/dev/null; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "kubernetes-validate (Kubernetes schemas, offline) in target/k8s-venv"
if [ ! -x target/k8s-venv/bin/kubernetes-validate ]; then
  python3 -m venv target/k8s-venv
  target/k8s-venv/bin/pip install --quiet kubernetes-validate
fi

step "cargo test (unit, UI, end-to-end, fault injection, seeded fuzz inputs)"
rm -f target/faults-summary.txt
cargo test --workspace --locked

if [ -f target/faults-summary.txt ]; then
  step "fault-injection summary"
  cat target/faults-summary.txt
fi
