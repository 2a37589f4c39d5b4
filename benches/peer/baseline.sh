#!/usr/bin/env bash
# Builds this benchmark's servers against another revision of the library, for
# `peer --baseline DIR`: before/after in one run, on the same machine at the same time.
#   benches/peer/baseline.sh REV [DIR]    default DIR: benches/peer/target/baseline
# The library is taken from REV (git archive, no worktree); the benchmark's own sources are
# this checkout's, so both builds run the same servers and differ only in the library.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
rev="${1:?usage: baseline.sh REV [DIR]}"
out="${2:-$here/target/baseline}"
repo="$(git -C "$here" rev-parse --show-toplevel)"
src="$here/target/baseline-src"
rm -rf "$src"
mkdir -p "$src" "$out"
git -C "$repo" archive "$rev" | tar -x -C "$src"
rm -rf "$src/benches/peer"
mkdir -p "$src/benches/peer"
cp -r "$here/src" "$here/Cargo.toml" "$here/Cargo.lock" "$src/benches/peer/"
# Its own target directory: the bench's binaries of this checkout stay as they are.
CARGO_TARGET_DIR="$here/target/baseline-build" \
  cargo build --release --quiet --manifest-path "$src/benches/peer/Cargo.toml"
for bin in accept-cost echo-exuvia http-exuvia; do
  cp "$here/target/baseline-build/release/$bin" "$out/"
done
echo "$rev ($(git -C "$repo" rev-parse --short "$rev")) built into $out"
