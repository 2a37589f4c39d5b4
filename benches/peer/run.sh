#!/usr/bin/env bash
# Peer benchmark: exuvia vs ecdysis vs naive restart vs SO_REUSEPORT.
#   benches/peer/run.sh --quick   a few upgrades, one run; exit 1 if exuvia fails a request (CI)
#   benches/peer/run.sh --full    the README numbers, written to benches/results/
# Extra flags go to the driver (see `--help`). Every contender is built with the release profile.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
target="${CARGO_TARGET_DIR:-$here/target}"
exec "$target/release/peer" "$@"
