#!/usr/bin/env bash
# Boot the cached Debian rootfs (with kernel) in qemu and run the in-guest
# driver from the kernel command line; the serial console goes to a file.
#
# Why a VM as well as nspawn: a real kernel, a real boot and shutdown, udev
# and PID 1 without a container manager around it (vm-feasibility.md §2, §8).
# Everything the test needs goes on the kernel command line:
#   systemd.run=/payload/driver.sh  systemd.run_*_action=poweroff
#   systemd.mount-extra=LABEL=payload:/payload:ext4:ro   (payload disk)
# so the cached image is never customised per run; `snapshot=on` throws away
# the guest's writes.
#
# Usage: boot.sh --suite SUITE --payload DIR --log FILE [--timeout SECS]
#                [--setenv KEY=VALUE]...
# Exit status: qemu's (0 after the guest powered off), 124 on timeout.
# Env: EXUVIA_CACHE, ACCEL=auto|kvm|tcg (auto: KVM only with vmx/svm, see
#      vm-feasibility.md §1), VM_SMP (2), VM_MEM (1024).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${EXUVIA_CACHE:-/var/cache/exuvia}
suite=trixie payload='' log='' timeout=600 setenv=()
while (($#)); do
  case $1 in
    --suite) suite=$2; shift 2 ;;
    --payload) payload=$2; shift 2 ;;
    --log) log=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --setenv) setenv+=("systemd.setenv=$2"); shift 2 ;;
    *) echo "boot.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n $payload && -n $log ]] || { echo "usage: boot.sh --suite S --payload DIR --log FILE" >&2; exit 2; }
say() { printf 'vm: %s\n' "$*" >&2; }
secs() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# qemu 10 from bookworm-backports (boots ~20% faster than bookworm's 7.2, and
# 7.2 would replace a backports qemu-utils). Private apt lists: the host's
# sources stay untouched and nothing else is upgraded (systemd!).
need_qemu() {
  command -v qemu-system-x86_64 >/dev/null && return 0
  local t dir=$cache/apt-backports kr=/usr/share/keyrings/debian-archive-keyring.gpg
  t=$(date +%s.%N)
  mkdir -p "$dir/lists/partial"
  cat >"$dir/sources.list" <<SRC
deb [signed-by=$kr] http://deb.debian.org/debian bookworm main
deb [signed-by=$kr] http://deb.debian.org/debian bookworm-updates main
deb [signed-by=$kr] http://deb.debian.org/debian-security bookworm-security main
deb [signed-by=$kr] http://deb.debian.org/debian bookworm-backports main
SRC
  local -a o=(-q -o DPkg::Lock::Timeout=300 -o "Dir::Etc::SourceList=$dir/sources.list"
    -o Dir::Etc::SourceParts=/nonexistent -o "Dir::State::Lists=$dir/lists")
  export DEBIAN_FRONTEND=noninteractive
  apt-get "${o[@]}" update >&2 </dev/null
  # pkg/release selects backports for the named packages only (the qemu
  # family and the firmware it needs); never -t bookworm-backports.
  local p pkgs=()
  for p in qemu-system-x86 qemu-system-common qemu-system-data seabios qemu-utils; do
    pkgs+=("$p/bookworm-backports")
  done
  apt-get "${o[@]}" install -y --no-install-recommends "${pkgs[@]}" >&2 </dev/null
  say "installed qemu in $(secs "$t") s: $(qemu-system-x86_64 --version | head -1)"
}

# image: kernel, initrd and raw ext4 image, once per rootfs (its path is keyed).
build_image() {
  local rootfs=$1 t
  img=$cache/vm-$(basename "$rootfs")
  [[ -f $img/root.img ]] && return 0
  t=$(date +%s.%N)
  local tmp
  tmp=$(mktemp -d "$cache/.vm-build.XXXXXX")
  # No loop device, no mount: mke2fs copies the directory (≈1-2 s).
  local k
  k=$(find "$rootfs/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -1)
  cp "$k" "$tmp/vmlinuz"
  cp "$rootfs/boot/initrd.img-${k##*/vmlinuz-}" "$tmp/initrd.img"
  mke2fs -q -t ext4 -L root -d "$rootfs" "$tmp/root.img" 3G
  mv -T "$tmp" "$img"
  say "image built in $(secs "$t") s: $img"
}

need_qemu
rootfs=$("$here/../systemd/rootfs.sh" "$suite" --kernel | tail -1)
exec 9>"$cache/.lock-vm-$(basename "$rootfs")"
flock 9
build_image "$rootfs"
flock -u 9

# Per-run payload disk (milliseconds).
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mke2fs -q -t ext4 -L payload -d "$payload" "$work/payload.img" 256M

accel=${ACCEL:-auto}
if [[ $accel == auto ]]; then
  accel=tcg
  # /dev/kvm alone proves nothing here (PVM nested hypervisor, §1).
  [[ -w /dev/kvm ]] && grep -qwE 'vmx|svm' /proc/cpuinfo && accel=kvm
fi
cpu=()
[[ $accel == kvm ]] && cpu=(-cpu host)
say "booting $suite ($accel, smp ${VM_SMP:-2}, ${VM_MEM:-1024} MB); serial console -> $log"
append="root=/dev/vda rw console=ttyS0 quiet loglevel=3 systemd.show_status=error
  systemd.mount-extra=LABEL=payload:/payload:ext4:ro
  systemd.run=/payload/driver.sh
  systemd.run_success_action=poweroff systemd.run_failure_action=poweroff
  ${setenv[*]}"
rc=0
: >"$log"
# `timeout` runs qemu in its own process group: if this script is
# interrupted, stop that qemu (and only it) instead of leaving it to the timeout.
qpid=''
trap '[[ -n $qpid ]] && kill -TERM "$qpid" 2>/dev/null; rm -rf "$work"' EXIT
trap 'exit 143' TERM INT HUP
timeout -k 10 "$timeout" qemu-system-x86_64 -nodefaults -no-reboot -display none \
  -M pc -accel "$accel" "${cpu[@]}" -smp "${VM_SMP:-2}" -m "${VM_MEM:-1024}" \
  -kernel "$img/vmlinuz" -initrd "$img/initrd.img" -append "$(tr -s ' \n' '  ' <<<"$append")" \
  -drive "file=$img/root.img,format=raw,if=virtio,snapshot=on" \
  -drive "file=$work/payload.img,format=raw,if=virtio,readonly=on" \
  -serial "file:$log" </dev/null >&2 &
qpid=$!
wait "$qpid" || rc=$?
qpid=''
exit "$rc"
