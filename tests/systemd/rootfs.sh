#!/usr/bin/env bash
# Build (once per key) a Debian rootfs whose systemd can boot as PID 1 under
# systemd-nspawn, and print its path as the last line of stdout.
#
# Why a cache outside the clone: the rootfs is ~200 MB and takes 15-60 s to
# build; CI clones are fresh, the machine (and so /var/cache) may be kept.
#
# Usage: rootfs.sh SUITE [--kernel]
#   SUITE = trixie (257) | sid (newest) | bookworm-backports (254) | bookworm (252)
#   --kernel  also install linux-image-amd64 (+ initramfs) for a qemu boot
#             (tests/vm/); a separate cache entry, the nspawn one stays small
# Env:   EXUVIA_CACHE (default /var/cache/exuvia), EXUVIA_DEBIAN_MIRROR
set -euo pipefail

suite=${1:?usage: rootfs.sh SUITE [--kernel]}
kernel=0
[[ ${2:-} == --kernel ]] && kernel=1
cache=${EXUVIA_CACHE:-/var/cache/exuvia}
mirror=${EXUVIA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
log() { printf 'rootfs: %s\n' "$*" >&2; }

# Guest packages: only what PID 1, the driver and the python stand-in need.
# No kernel: nspawn shares the host's.
packages=(systemd systemd-sysv dbus iproute2 procps python3)
dist=$suite
extra_mirrors=()
case $suite in
  trixie | sid | forky) ;;
  # Plain bookworm: systemd 252, no Type=notify-reload; for units/systemd-252/.
  bookworm) ;;
  bookworm-backports)
    # Bookworm userland with systemd 254 from backports.
    dist=bookworm
    extra_mirrors=("deb $mirror bookworm-backports main")
    packages=(systemd/bookworm-backports systemd-sysv/bookworm-backports
      libsystemd0/bookworm-backports libudev1/bookworm-backports
      libsystemd-shared/bookworm-backports dbus iproute2 procps python3)
    ;;
  *) log "unknown suite '$suite'"; exit 2 ;;
esac

name=$suite
if ((kernel)); then
  # udev: a booted kernel's block devices only become .device units (for
  # the payload disk's systemd.mount-extra=LABEL=...) through udev.
  packages+=(udev linux-image-amd64)
  name=$suite-kernel
fi

# Bump when the recipe below changes in a way the package list does not show.
recipe_version=1
key=$(printf '%s\n' "$recipe_version" "$suite" "${packages[@]}" "${extra_mirrors[@]}" |
  sha256sum | cut -c1-12)
dest=$cache/rootfs-$name-$key

need_tools() {
  local -a missing=()
  # gpg: mmdebstrap's keyring handling (a Recommends, tested with it).
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap gpg)
  command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
  command -v zstd >/dev/null || missing+=(zstd)
  command -v flock >/dev/null || missing+=(util-linux)
  [[ -e /usr/share/keyrings/debian-archive-keyring.gpg ]] || missing+=(debian-archive-keyring)
  ((${#missing[@]} == 0)) && return 0
  log "installing host tools: ${missing[*]}"
  # Plain suite install: never -t bookworm-backports, which would upgrade the
  # host's systemd (systemd-container pulls only the matching point release).
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends "${missing[@]}" >&2 </dev/null; then
    apt-get update -q -o DPkg::Lock::Timeout=300 >&2 </dev/null
    apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends "${missing[@]}" >&2 </dev/null
  fi
}

need_tools
mkdir -p "$cache"

exec 9>"$cache/.lock-$name-$key"
flock 9
if [[ -d $dest ]]; then
  log "cached: $dest"
  echo "$dest"
  exit 0
fi

tmp=$(mktemp -d "$cache/.build-$name-$key.XXXXXX")
trap 'rm -rf --one-file-system "$tmp"' EXIT
start=$(date +%s.%N)
include=$(IFS=,; echo "${packages[*]}")
args=(--variant=apt --mode=root --include="$include" --components=main
  --aptopt='Acquire::Retries "3"'
  # sid's Release has a 7-day Valid-Until; a mirror snapshot or a skewed
  # clock must not break the build (signatures are still checked).
  --aptopt='Acquire::Check-Valid-Until "false"'
  --dpkgopt='path-exclude=/usr/share/{doc,man,locale,info}/*'
  --dpkgopt='path-include=/usr/share/locale/locale.alias')
log "building $suite ($include) -> $dest"
if ((${#extra_mirrors[@]})); then
  mmdebstrap "${args[@]}" "$dist" "$tmp" "deb $mirror $dist main" "${extra_mirrors[@]}" >&2 </dev/null
else
  mmdebstrap "${args[@]}" "$dist" "$tmp" "$mirror" >&2 </dev/null
fi
# An initialised machine-id would be shared by every boot of this rootfs;
# empty means "generate a transient one at boot".
: >"$tmp/etc/machine-id"
rm -f "$tmp/var/lib/dbus/machine-id"
# Nothing in the guest may wait for a network or a getty.
chroot "$tmp" systemctl mask -q console-getty.service getty@.service \
  systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
  dpkg-db-backup.timer e2scrub_all.timer fstrim.timer 2>/dev/null || true
chroot "$tmp" systemctl --version | head -1 >&2
mv -T "$tmp" "$dest"
trap - EXIT
log "built in $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
echo "$dest"
