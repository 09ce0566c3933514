#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, UI and end-to-end tests.
# Needs only a Rust toolchain (rustup's stable, with rustfmt and clippy); it installs
# the components it misses, and, for the arm64 tests, the rustup target and (as root, with
# apt-get) Debian's cross linker and qemu-user-static.
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

step "arm64 cross-compilation and emulation (rustup target, linker, qemu, a registry)"
# For tests/e2e/arm64.rs; each missing piece makes those tests skip with a one-line reason.
if command -v rustup >/dev/null; then
  rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 \
    || echo "note: \`rustup target add aarch64-unknown-linux-gnu\` failed; the arm64 tests will skip"
fi
missing=()
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
case "$(aarch64-linux-gnu-gcc -print-file-name=libc.a 2>/dev/null)" in
  /*) ;;
  *) missing+=(libc6-dev-arm64-cross) ;;
esac
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]}"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null; } \
      || echo "note: apt-get could not install ${missing[*]}; the arm64 tests will skip"
  else
    echo "note: the arm64 tests will skip: they need ${missing[*]} (apt-get as root)"
  fi
fi
# Debian's registry (distribution), unpacked rather than installed so that no system
# service is set up: the multi-arch test starts it on 127.0.0.1 and pushes to it.
registry=target/tools/docker-registry/usr/bin/docker-registry
if ! command -v docker-registry >/dev/null && [ ! -x "$registry" ] && command -v apt-get >/dev/null; then
  rm -rf target/tools/download && mkdir -p target/tools/download
  if (cd target/tools/download && { apt-get download docker-registry >/dev/null 2>&1 \
        || { [ "$(id -u)" = 0 ] && apt-get update -qq && apt-get download docker-registry >/dev/null; }; }) \
    && dpkg-deb -x target/tools/download/docker-registry_*.deb target/tools/docker-registry; then
    echo "unpacked docker-registry into target/tools"
  else
    echo "note: could not fetch docker-registry; the multi-arch push test will skip"
  fi
  rm -rf target/tools/download
fi

step "cargo test (unit, UI, end-to-end, fault injection, seeded fuzz inputs)"
rm -f target/faults-summary.txt
cargo test --workspace --locked

if [ -f target/faults-summary.txt ]; then
  step "fault-injection summary"
  cat target/faults-summary.txt
fi
