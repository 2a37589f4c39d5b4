#!/usr/bin/env bash
# What CI can check of the NixOS tests without nixpkgs or a binary cache (CI
# has neither, and VM tests need KVM): every .nix file parses, exuvia-echo.nix is exactly
# what `exuvia unit --format nixos` generates today, and a mock-pkgs
# evaluation (mock-eval.nix) forces every test's modules and test script,
# whose Python then has to compile.
#
# Usage: nixos-tests/check-offline.sh [EXUVIA_BINARY]   (default: target/debug/exuvia)
# Installs Debian's nix-bin if nix-instantiate is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
exuvia=${1:-$repo/target/debug/exuvia}
# Debian's nix has no nixbld group; nothing here builds, so no build users.
export NIX_CONFIG="build-users-group ="

if ! command -v nix-instantiate >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends nix-bin </dev/null >&2 ||
    { apt-get update -q </dev/null >&2 && apt-get install -y -q --no-install-recommends nix-bin </dev/null >&2; }
fi

rc=0
for f in "$repo/flake.nix" "$here"/*.nix; do
  if nix-instantiate --parse "$f" >/dev/null; then
    echo "nix parse ok: ${f#"$repo"/}"
  else
    echo "nix parse FAILED: ${f#"$repo"/}"
    rc=1
  fi
done

# The module is generated, never edited: regenerate and compare.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$exuvia" unit --config "$repo/units/exuvia-echo.toml" --format nixos --out "$tmp" >/dev/null
if diff -u "$here/exuvia-echo.nix" "$tmp/exuvia-echo.nix"; then
  echo "nixos module up to date: nixos-tests/exuvia-echo.nix"
else
  echo "nixos-tests/exuvia-echo.nix differs from \`exuvia unit --format nixos\`; run nixos-tests/regenerate.sh"
  rc=1
fi

if nix-instantiate --eval --strict --json "$here/mock-eval.nix" >"$tmp/scripts.json"; then
  python3 - "$tmp/scripts.json" <<'PY' || rc=1
import json, sys
scripts = json.load(open(sys.argv[1]))
bad = 0
for name, script in sorted(scripts.items()):
    try:
        compile(script, f"<{name} testScript>", "exec")
        print(f"mock eval + python compile ok: {name} ({len(script.splitlines())} lines)")
    except SyntaxError as e:
        bad += 1
        print(f"testScript of {name} does not compile: {e}")
        for i, line in enumerate(script.splitlines(), 1):
            print(f"{i:4} {line}")
if len(scripts) < 7:
    bad += 1
    print(f"expected 6 scenarios + the user default, got {sorted(scripts)}")
sys.exit(1 if bad else 0)
PY
else
  echo "mock evaluation of nixos-tests FAILED"
  rc=1
fi
exit "$rc"
