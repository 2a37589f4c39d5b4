#!/bin/sh
# Regenerates nixos-tests/exuvia-echo.nix from units/exuvia-echo.toml (check-offline.sh
# fails on any difference). Usage (from the repository root): sh nixos-tests/regenerate.sh
set -eu
EXUVIA=${EXUVIA:-"cargo run --quiet --bin exuvia --"}
$EXUVIA unit --config units/exuvia-echo.toml --format nixos --out nixos-tests --force
