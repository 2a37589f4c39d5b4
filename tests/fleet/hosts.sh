# shellcheck shell=bash
# Plumbing of the fleet test (sourced by run.sh): network namespaces joined by veth pairs,
# systemd containers booted in them, ssh into them, and the cleanup that undoes all of it.
#
# Topology: one namespace for the controller (Ansible runs there) and one per host; a veth
# pair links the controller to each host on its own /30 out of 192.0.2.0/24 (TEST-NET-1,
# RFC 5737: never routed). No address is added outside these namespaces. Each container
# joins its host's namespace (--network-namespace-path) and runs in a cgroup of its own, so
# the cleanup ends exactly what this test started. The host machine need not run systemd:
# nspawn runs unregistered (--register=no --keep-unit), as in `exuvia vm` (docs/ci.md), so
# there is no machinectl to ask; the cgroups are how the containers are found and ended.

declare -a fleet_pids=() fleet_cgroups=() fleet_netns=()
declare -A fleet_addr=()

fleet_cgroot() {
  local d
  for d in /sys/fs/cgroup /sys/fs/cgroup/unified; do
    [[ -e $d/cgroup.controllers ]] && { echo "$d"; return; }
  done
  echo "fleet: no cgroup v2 hierarchy under /sys/fs/cgroup" >&2
  return 1
}

# fleet_netns_add NAME: a namespace with its loopback up.
fleet_netns_add() {
  ip netns add "$1"
  fleet_netns+=("$1")
  ip -n "$1" link set lo up
}

# fleet_link CTL HOSTNS I: veth CTL:hI <-> HOSTNS:host0, 192.0.2.(4I-3)/30 and (4I-2)/30.
# Both ends are created inside their namespaces, so no interface ever appears on the host.
fleet_link() {
  local ctl=$1 ns=$2 i=$3
  ip link add "h$i" netns "$ctl" type veth peer name host0 netns "$ns"
  ip -n "$ctl" addr add "192.0.2.$((4 * i - 3))/30" dev "h$i"
  ip -n "$ns" addr add "192.0.2.$((4 * i - 2))/30" dev host0
  ip -n "$ctl" link set "h$i" up
  ip -n "$ns" link set host0 up
  # shellcheck disable=SC2034 # read by run.sh
  fleet_addr[$i]=192.0.2.$((4 * i - 2))
}

# fleet_cgroup NAME: creates a cgroup of ours; its path in FLEET_CG.
fleet_cgroup() {
  FLEET_CG=$(fleet_cgroot)/$1
  mkdir "$FLEET_CG"
  fleet_cgroups+=("$FLEET_CG")
}

# fleet_boot NAME NETNS ROOTFS LOG NSPAWN-ARGS...: boots ROOTFS (never written: a volatile
# overlay) in the namespace, inside a fresh cgroup, console to LOG.
fleet_boot() {
  local name=$1 ns=$2 root=$3 log=$4
  shift 4
  fleet_cgroup "$name"
  # The shell moves itself into the cgroup, then becomes nspawn: the container starts in it.
  SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$FLEET_CG" \
    systemd-nspawn -q --volatile=overlay --network-namespace-path="/run/netns/$ns" \
    --register=no --keep-unit --machine="$name" -D "$root" --console=read-only "$@" \
    -b systemd.show_status=error </dev/null >"$log" 2>&1 &
  fleet_pids+=($!)
}

fleet_procs() { find "$1" -name cgroup.procs -exec cat {} + 2>/dev/null | grep -c . || true; }

# fleet_cg_end CG: ends every process in a cgroup of ours and removes it (and its children).
fleet_cg_end() {
  local cg=$1 k pid
  [[ -d $cg ]] || return 0
  if (($(fleet_procs "$cg") > 0)); then
    if ! echo 1 >"$cg/cgroup.kill" 2>/dev/null; then
      # Before Linux 5.14: every pid in the tree was started by this test.
      while read -r pid; do kill -KILL "$pid" 2>/dev/null; done < <(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null)
    fi
    for ((k = 0; k < 100 && $(fleet_procs "$cg") > 0; k++)); do sleep 0.1; done
  fi
  find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
  [[ ! -d $cg ]] || echo "fleet: cleanup: cannot remove cgroup $cg" >&2
}

# fleet_cleanup: containers asked to power off (nspawn turns SIGTERM into a poweroff), then
# every cgroup emptied and removed, then the namespaces (their veths go with them). Bounded.
fleet_cleanup() {
  local pid cg ns k
  for pid in "${fleet_pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for cg in "${fleet_cgroups[@]}"; do
    for ((k = 0; k < 100 && $(fleet_procs "$cg") > 0; k++)); do sleep 0.1; done
  done
  for cg in "${fleet_cgroups[@]}"; do fleet_cg_end "$cg"; done
  for pid in "${fleet_pids[@]}"; do wait "$pid" 2>/dev/null; done
  for ns in "${fleet_netns[@]}"; do
    ip netns del "$ns" 2>/dev/null || echo "fleet: cleanup: cannot delete netns $ns" >&2
  done
  fleet_pids=() fleet_cgroups=() fleet_netns=()
}
