#!/bin/bash
# Preflight of `exuvia vm`, once per systemd version, in a container that is
# NOT booted (systemd-nspawn --pipe, --volatile=overlay: nothing persists):
# install the inputs as the scenarios will, then ask the guest's own systemd
# whether it accepts the units and whether everything they run exists.
# Output lines, parsed by the host (vm/preflight.rs):
#   SYSTEMD <version line>
#   VERIFY <line>         systemd-analyze verify printed this (any output fails)
#   MISSING <key> <path>  an Exec*= program that is not in the guest
#   JUDGE broken          the exuvia binary does not run here
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# shellcheck source=/dev/null
source /run/exuvia-vm/vm.env
echo "SYSTEMD $(systemctl --version | head -1)"
"$JUDGE" --version >/dev/null 2>&1 || echo "JUDGE broken"
cp -a /run/exuvia-vm/root/. /
units=()
for u in $UNIT_FILES; do units+=("/etc/systemd/system/$u"); done
if ((${#units[@]})); then
  SYSTEMD_COLORS=0 SYSTEMD_LOG_COLOR=0 systemd-analyze verify "${units[@]}" 2>&1 | sed 's/^/VERIFY /'
fi
while read -r key path; do
  [[ -n $path ]] || continue
  if [[ $path == /* ]]; then
    [[ -x $path ]] || echo "MISSING $key $path"
  else
    command -v "$path" >/dev/null || echo "MISSING $key $path"
  fi
done <<<"$EXEC_PATHS"
echo "PREFLIGHT done"
