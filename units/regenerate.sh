#!/bin/sh
# Regenerates every unit in units/ from units/exuvia-echo.toml. tests/units/ runs the same
# commands into a temporary directory and fails on any byte difference.
# Usage (from the repository root): sh units/regenerate.sh
set -eu
EXUVIA=${EXUVIA:-"cargo run --quiet --bin exuvia --"}
$EXUVIA unit --config units/exuvia-echo.toml --out units --force
$EXUVIA unit --config units/exuvia-echo.toml --systemd 252 --out units/systemd-252 --force
$EXUVIA unit --config units/exuvia-echo.toml --profile isolated --out units/isolated --force
