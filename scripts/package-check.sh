#!/usr/bin/env bash
# The published crates, checked as a user gets them:
#   1. `cargo package` of the six crates, each built from its packaged sources alone;
#   2. `cargo install` of cargo-turbolift from its packaged `.crate`;
#   3. that installed `cargo-turbolift` on a crate it has never seen: `cargo turbolift run`
#      starts a service and prints exactly what plain `cargo run` prints.
# Everything goes into target/package (incremental across runs). Needs only a Rust
# toolchain and access to crates.io; `./test.sh` runs it, and it runs alone too.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
out=$repo/target/package
export CARGO_TARGET_DIR=$out
# The libraries, each also a dependency of the next ones, and the subcommand.
libraries=(turbolift-shared turbolift-syntax turbolift-macros turbolift-core turbolift)
crates=("${libraries[@]}" cargo-turbolift)
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)

say() { printf -- '--> %s\n' "$*"; }
fail() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

say "cargo package of ${crates[*]} (version $version), each built from its packaged sources with all its features"
# The libraries are verified as dependencies through a local registry of the packages just
# made. Cargo takes a registry crate of a given version to be immutable: it keeps the
# sources it unpacked and what it compiled from them. Both go, so that no run verifies
# against the packages of an earlier one; everything else stays compiled.
rm -rf "$out/package"
selected=()
for crate in "${libraries[@]}"; do
  rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/"$crate-$version"
  selected+=(--package "$crate")
done
cargo clean --quiet "${selected[@]}"
# One command for all six: the crates that depend on each other are resolved from that
# local registry, as none of this version is on crates.io yet. `--allow-dirty`: uncommitted
# changes are packaged as they are on disk (a clean clone has none). cargo-turbolift's
# package leaves out, with a warning, its `e2e` and `faults` tests (../tests, outside the
# crate) and its `faults` dev-dependency (a path without a version): they drive the
# repository's fixture crates, and run from the repository only.
cargo package --locked --allow-dirty --all-features "${selected[@]}" --package cargo-turbolift

say "cargo install of cargo-turbolift from its packaged cargo-turbolift-$version.crate"
extracted=$out/extracted
rm -rf "$extracted" && mkdir -p "$extracted"
for crate in "${crates[@]}"; do
  tar -xzf "$out/package/$crate-$version.crate" -C "$extracted"
done
# The crates of this workspace it names (turbolift-shared and turbolift-syntax, and
# turbolift for its tests) are not on crates.io yet: they come from their own extracted
# packages, and their entries in the packaged Cargo.lock lose the crates.io source and
# checksum that a path cannot have. With that, `--locked` holds: every other crate is
# built at the version the packaged Cargo.lock names, or the install fails. (The resolution
# takes in cargo-turbolift's dev-dependency on turbolift, which the build then leaves out:
# hence cargo's warnings that the patches of turbolift and turbolift-macros are not used.)
patches=()
for crate in "${libraries[@]}"; do
  patches+=(--config "patch.crates-io.$crate.path=\"$extracted/$crate-$version\"")
done
lock=$extracted/cargo-turbolift-$version/Cargo.lock
awk -v ours=" ${libraries[*]} " '
  /^\[\[package\]\]$/ { mine = 0 }
  /^name = / { name = $3; gsub(/"/, "", name); mine = index(ours, " " name " ") > 0 }
  mine && /^(source|checksum) = / { next }
  { print }
' "$lock" >"$lock.patched"
mv "$lock.patched" "$lock"
install=$out/install
cargo install --locked --force --path "$extracted/cargo-turbolift-$version" \
  --root "$install" "${patches[@]}"
lifted=$install/bin/cargo-turbolift
[ -x "$lifted" ] || fail "cargo install left no $lifted"
echo "installed $lifted, with every crate at the version of the packaged Cargo.lock"

say "the installed cargo-turbolift on a new crate (target/package/newcrate): \`cargo turbolift run\` prints what \`cargo run\` prints"
crate=$out/newcrate
mkdir -p "$crate/src"
cat >"$crate/Cargo.toml" <<EOF
# Written by scripts/package-check.sh: a crate cargo-turbolift has never seen.
[package]
name = "newcrate"
version = "0.1.0"
edition = "2024"
publish = false

[workspace]

[dependencies]
turbolift = { path = "$repo/turbolift-rt" }
tokio = { version = "1", features = ["full"] }
EOF
cat >"$crate/src/main.rs" <<'EOF'
#[turbolift::distribute]
fn cube(x: u64) -> u64 {
    x * x * x
}

#[tokio::main]
async fn main() -> Result<(), turbolift::Error> {
    for x in [0, 2, 3, 10, 1_000] {
        println!("cube({x}) = {}", cube(x).await?);
    }
    Ok(())
}
EOF
# The repository's lock file, so that crate versions are the tested ones.
cp "$repo/Cargo.lock" "$crate/Cargo.lock"
(cd "$crate" && cargo run --quiet >"$out/newcrate.plain.stdout")
(cd "$crate" && "$lifted" turbolift run --color never \
  >"$out/newcrate.lifted.stdout" 2>"$out/newcrate.lifted.stderr") || {
  cat "$out/newcrate.lifted.stderr" >&2
  fail "\`cargo turbolift run\` of the installed cargo-turbolift failed (stderr above)"
}
grep -E '^ *Ready `newcrate::cube`' "$out/newcrate.lifted.stderr" \
  || { cat "$out/newcrate.lifted.stderr" >&2; fail "no \`Ready \`newcrate::cube\`\` line: no service was started (stderr above)"; }
[ -s "$out/newcrate.plain.stdout" ] || fail "\`cargo run\` printed nothing"
cmp "$out/newcrate.plain.stdout" "$out/newcrate.lifted.stdout" \
  || { diff "$out/newcrate.plain.stdout" "$out/newcrate.lifted.stdout" >&2 || true;
       fail "the outputs of \`cargo run\` and \`cargo turbolift run\` differ (diff above)"; }
echo "same $(wc -l <"$out/newcrate.plain.stdout") lines from \`cargo run\` and \`cargo turbolift run\`:"
sed 's/^/    /' "$out/newcrate.plain.stdout"
say "package check passed"
