#!/usr/bin/env bash
# Assemble the read-only payload the guest sees at /payload.
#
# Usage: payload.sh --impl standin|real [--target-dir DIR] [--profile release|debug] OUTDIR
#   standin  python stand-in service + python load client (proves the harness)
#   real     target/release/examples/{echo,echo_sync} and target/release/exuvia
#            (built beforehand: cargo build --release --examples --bin exuvia)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
impl=standin profile=release
target=${CARGO_TARGET_DIR:-$repo/target}
while (($#)); do
  case $1 in
    --impl) impl=$2; shift 2 ;;
    --target-dir) target=$2; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
    -*) echo "payload.sh: unknown option $1" >&2; exit 2 ;;
    *) out=$1; shift ;;
  esac
done
: "${out:?usage: payload.sh --impl standin|real OUTDIR}"

rm -rf "$out"
mkdir -p "$out/bin"
cp -r "$here/units" "$here/scenarios" "$here/standin" "$out/"
# The units the project ships, for VARIANT=shipped (absent before they exist).
if [[ -f $repo/units/exuvia-echo.service && -f $repo/units/exuvia-echo.socket ]]; then
  mkdir -p "$out/shipped-units"
  cp "$repo/units/exuvia-echo.service" "$repo/units/exuvia-echo.socket" "$out/shipped-units/"
fi
# VARIANT=shipped252: the fallback for systemd < 253 (Type=notify + ExecReload=).
if [[ -f $repo/units/systemd-252/exuvia-echo.service ]]; then
  mkdir -p "$out/shipped-units-252"
  cp "$repo/units/systemd-252/exuvia-echo.service" "$repo/units/systemd-252/exuvia-echo.socket" "$out/shipped-units-252/"
fi
install -m 0755 "$here/driver.sh" "$out/driver.sh"
install -m 0644 "$here/lib-driver.sh" "$out/lib-driver.sh"
case $impl in
  standin)
    install -m 0755 "$here/standin/echo-standin.py" "$out/bin/exuvia-echo"
    sed 's/^TAG = "exuvia-standin echo"/TAG = "exuvia-standin echo_sync"/' \
      "$here/standin/echo-standin.py" >"$out/bin/exuvia-echo-new"
    chmod 0755 "$out/bin/exuvia-echo-new"
    grep -q '^TAG = "exuvia-standin echo_sync"' "$out/bin/exuvia-echo-new"
    cat >"$out/expect.env" <<'ENV'
IMPL=standin
EXPECT_OLD_VERSION='^exuvia-standin echo [0-9]'
EXPECT_NEW_VERSION='^exuvia-standin echo_sync [0-9]'
ENV
    ;;
  real)
    rel=$target/$profile
    for f in "$rel/examples/echo" "$rel/examples/echo_sync" "$rel/exuvia"; do
      [[ -x $f ]] || { echo "payload.sh: missing $f (cargo build $([[ $profile == release ]] && echo --release) --examples --bin exuvia)" >&2; exit 1; }
    done
    install -m 0755 "$rel/examples/echo" "$out/bin/exuvia-echo"
    install -m 0755 "$rel/examples/echo_sync" "$out/bin/exuvia-echo-new"
    install -m 0755 "$rel/exuvia" "$out/bin/exuvia"
    cat >"$out/expect.env" <<'ENV'
IMPL=real
EXPECT_OLD_VERSION='^exuvia-example echo [0-9]'
EXPECT_NEW_VERSION='^exuvia-example echo_sync [0-9]'
ENV
    ;;
  *) echo "payload.sh: unknown impl $impl" >&2; exit 2 ;;
esac
echo "$out"
