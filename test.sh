#!/usr/bin/env bash
# The whole test suite: formatting, lints, packaging, unit, UI and end-to-end tests.
# Needs only a Rust toolchain (rustup's stable, with rustfmt and clippy) and access to
# crates.io; it installs the components it misses, and (as root, with apt-get) python3's
# venv, kubectl, the arm64 target, Debian's cross linker and qemu-user-static; it unpacks
# Debian's docker-registry and promtool into target/tools.
#
# The end-to-end tests that need Docker (and kubectl, or the arm64 cross tools), and the
# test that needs promtool, are #[ignore]d: they run here when what they need is present,
# and are counted as not run when it is not. Under CI=true they always run, so a missing
# tool fails them.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n==> %s\n' "$*"; }
ci=false
[ "${CI:-}" = true ] && ci=true

if ! command -v cargo >/dev/null; then
  echo "error: cargo is not installed; install Rust from https://rustup.rs first" >&2
  exit 1
fi
# The workspace's rust-version is the oldest toolchain it is verified with.
need=$(sed -n '/^\[workspace.package\]/,/^\[/s/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
have=$(rustc --version | awk '{ print $2 }')
if ! printf '%s\n%s\n' "$need" "${have%%-*}" | sort --version-sort --check=quiet; then
  echo "error: rustc $have is older than the workspace's rust-version $need;" \
    "update the toolchain (\`rustup update stable\`) and run ./test.sh again" >&2
  exit 1
fi
if command -v rustup >/dev/null; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

# Installs Debian packages as root with apt-get; says what it could not install.
apt_install() {
  local why=$1
  shift
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing $* ($why)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "$@" >/dev/null; } \
      || echo "note: apt-get could not install $*"
  else
    echo "note: $why needs $* (apt-get as root installs it)"
  fi
}

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The runtime's trace context and span export, which no workspace member turns on.
cargo clippy -p turbolift -p turbolift-core --all-targets --features otlp --locked -- -D warnings

step "packaging: the six published crates built from their packages, cargo-turbolift installed from its own"
scripts/package-check.sh

step "kubernetes-validate (Kubernetes schemas, offline) in target/k8s-venv"
if [ ! -x target/k8s-venv/bin/kubernetes-validate ]; then
  python3 -c 'import ensurepip' >/dev/null 2>&1 || apt_install "python3 -m venv" python3 python3-venv
  python3 -m venv target/k8s-venv
  target/k8s-venv/bin/pip install --quiet kubernetes-validate
fi

step "tools of the end-to-end tests: Docker, kubectl, the arm64 cross tools, a registry, promtool"
docker_problem=
if ! command -v docker >/dev/null; then
  docker_problem="Docker is not installed (\`apt-get install docker.io\`, or https://docs.docker.com/engine/install/)"
elif ! docker_error=$(docker info 2>&1 >/dev/null); then
  docker_problem="no Docker daemon answers \`docker info\` ($(printf '%s' "$docker_error" | head -n 1 | cut -c 1-160))"
fi
echo "Docker: ${docker_problem:-$(docker info --format 'Engine {{.ServerVersion}}' 2>/dev/null)}"
command -v kubectl >/dev/null || apt_install "kubectl kustomize" kubernetes-client
echo "kubectl: $(command -v kubectl || echo missing)"
# For tests/e2e/arm64.rs.
if command -v rustup >/dev/null; then
  rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 \
    || echo "note: \`rustup target add aarch64-unknown-linux-gnu\` failed"
fi
missing=()
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
case "$(aarch64-linux-gnu-gcc -print-file-name=libc.a 2>/dev/null)" in
  /*) ;;
  *) missing+=(libc6-dev-arm64-cross) ;;
esac
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
[ ${#missing[@]} -eq 0 ] || apt_install "the arm64 tests" "${missing[@]}"
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
    echo "note: could not fetch docker-registry (\`apt-get download docker-registry\`)"
  fi
  rm -rf target/tools/download
fi
# Debian's promtool (package prometheus), only its executable unpacked: no Prometheus
# server is installed or started. For `promtool check metrics` in turbolift-rt/tests/metrics.rs.
promtool=$(command -v promtool || echo "$PWD/target/tools/prometheus/usr/bin/promtool")
if [ ! -x "$promtool" ] && command -v apt-get >/dev/null; then
  rm -rf target/tools/download && mkdir -p target/tools/download target/tools/prometheus
  if (cd target/tools/download && { apt-get download prometheus >/dev/null 2>&1 \
        || { [ "$(id -u)" = 0 ] && apt-get update -qq && apt-get download prometheus >/dev/null; }; }) \
    && dpkg-deb --fsys-tarfile target/tools/download/prometheus_*.deb \
      | tar -x -C target/tools/prometheus ./usr/bin/promtool; then
    echo "unpacked promtool into target/tools"
  else
    echo "note: could not fetch promtool (\`apt-get download prometheus\`)"
  fi
  rm -rf target/tools/download
fi
promtool_problem=
[ -x "$promtool" ] \
  || promtool_problem="promtool is missing (./test.sh unpacks it with \`apt-get download prometheus\`)"
arm64_problem=
libdir=$(rustc --print target-libdir --target aarch64-unknown-linux-gnu 2>/dev/null || true)
if ! ls "$libdir"/libcore-* >/dev/null 2>&1; then
  arm64_problem="the rustup target aarch64-unknown-linux-gnu is missing (\`rustup target add aarch64-unknown-linux-gnu\`)"
elif case "$(aarch64-linux-gnu-gcc -print-file-name=libc.a 2>/dev/null)" in /*) false ;; *) true ;; esac; then
  arm64_problem="the cross linker or its libc is missing (\`apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross\`)"
elif ! command -v qemu-aarch64-static >/dev/null; then
  arm64_problem="qemu-aarch64-static is missing (\`apt-get install qemu-user-static\`)"
fi
registry_problem=
command -v docker-registry >/dev/null || [ -x "$registry" ] \
  || registry_problem="docker-registry is missing (./test.sh unpacks it with \`apt-get download docker-registry\`)"
kubectl_problem=
command -v kubectl >/dev/null \
  || kubectl_problem="kubectl is missing (\`apt-get install kubernetes-client\`, or https://kubernetes.io/docs/tasks/tools/)"
echo "arm64 cross tools: ${arm64_problem:-present}; registry: ${registry_problem:-present}"
echo "promtool: ${promtool_problem:-$promtool}"

step "cargo test (unit, UI, end-to-end, fault injection, seeded fuzz inputs)"
rm -f target/faults-summary.txt
cargo test --workspace --locked

step "cargo test of the runtime with its otel and otlp features (trace context across calls)"
cargo test -p turbolift --features otlp --locked --lib --test otel
cargo test -p turbolift-core --features otlp,tls --locked --lib

step "end-to-end tests that need Docker, kubectl or the arm64 cross tools (#[ignore]d above)"
# What each ignored test needs, from its `#[ignore = "needs ..."]` in tests/e2e/.
declare -A needs=()
while IFS=$'\t' read -r name reason; do
  needs[$name]=$reason
done < <(awk '
  FNR == 1 { module = FILENAME; sub(/.*\//, "", module); sub(/\.rs$/, "", module); reason = "" }
  /^#\[ignore = "/ { reason = $0; sub(/^#\[ignore = "/, "", reason); sub(/"\]$/, "", reason); next }
  reason != "" && /^(async )?fn / {
    name = $0; sub(/^(async )?fn /, "", name); sub(/[(<].*/, "", name)
    printf "%s::%s\t%s\n", module, name, reason; reason = ""
  }' tests/e2e/*.rs)
listed=$(cargo test --workspace --locked --quiet --test e2e -- --list --ignored)
mapfile -t ignored < <(sed -n 's/: test$//p' <<<"$listed")
# The first problem that keeps each test from running here; none under CI=true.
declare -A not_run=()
skip=()
for name in "${ignored[@]}"; do
  reason=${needs[$name]:-}
  problem=
  if [ "$ci" != true ]; then
    case "$reason" in *Docker*) problem=$docker_problem ;; esac
    case "$reason" in *arm64*) [ -n "$problem" ] || problem=$arm64_problem ;; esac
    case "$reason" in *docker-registry*) [ -n "$problem" ] || problem=$registry_problem ;; esac
    case "$reason" in *kubectl*) [ -n "$problem" ] || problem=$kubectl_problem ;; esac
  fi
  if [ -n "$problem" ]; then
    not_run[$problem]=$((${not_run[$problem]:-0} + 1))
    skip+=(--skip "$name")
  fi
done
to_run=$((${#ignored[@]} - ${#skip[@]} / 2))
if [ "$to_run" -gt 0 ]; then
  [ "$ci" = true ] && echo "CI=true: all ${#ignored[@]} of them run; a missing tool fails them"
  cargo test --workspace --locked --test e2e -- --ignored --exact "${skip[@]}"
fi

step "the test that needs promtool (#[ignore]d above)"
if [ "$ci" = true ] || [ -z "$promtool_problem" ]; then
  PROMTOOL=$promtool cargo test --locked -p turbolift --test metrics -- --ignored
else
  not_run[$promtool_problem]=$((${not_run[$promtool_problem]:-0} + 1))
  echo "not run: $promtool_problem"
fi
not_run_lines=()
for problem in "${!not_run[@]}"; do
  n=${not_run[$problem]}
  not_run_lines+=("$n test$([ "$n" = 1 ] || echo s) not run: $problem")
done
if [ ${#not_run_lines[@]} -eq 0 ]; then
  echo "all ${#ignored[@]} of them ran"
else
  printf '%s\n' "${not_run_lines[@]}"
fi

if [ -f target/faults-summary.txt ]; then
  step "fault-injection summary"
  cat target/faults-summary.txt
fi

if [ ${#not_run_lines[@]} -gt 0 ]; then
  step "not run (they need a tool this machine lacks; CI=true makes them fail instead)"
  printf '%s\n' "${not_run_lines[@]}"
fi
