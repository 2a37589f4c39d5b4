#!/usr/bin/env bash
# The fleet rollout test (docs/fleet.md): deploy/ansible/rollout.yml, run by ansible-core over
# ssh, rolls a new build of the example echo service over three systemd 257 containers, each
# in a network namespace of its own, with the shipped units and no exuvia CLI where the unit
# could find one. The second host is given a broken build. Asserted:
#   1. the rollout fails (exit 2) and stops at host 2: the recap lists h1 ok and h2 failed,
#      h3 never appears;
#   2. h1 serves the new build (VERSION), under a new MainPID of the same invocation, after
#      the upgrade and the gate's reloads;
#   3. h2 still serves the old build in the same process, its StatusText says why the upgrade
#      failed, and its old binary is back on disk;
#   4. h3 is untouched: same process, old binary, no reload in its journal, and no ssh login
#      from Ansible at all;
#   5. run again with the fixed build, the rollout completes: h1 (already upgraded) is not
#      reloaded, h2 and h3 serve the new build (h3 gated on its reload alone:
#      exuvia_check_reloads=0);
#   6. a third build that takes over but fails the gate (it cannot hand over to itself), given
#      to h1: the rollout stops at h1, which gets the previous build back on disk and in its
#      process (handed back by a reload); h2 and h3 are not reached.
# Usage: run.sh [--profile debug|release] [--no-build] [--bin-dir DIR]
#   --bin-dir: where exuvia and examples/echo{,_sync} are (default target/PROFILE).
# Env: EXUVIA_CACHE (rootfs cache). Needs root. Logs in target/fleet/. Exit 0 iff all held.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
profile=debug build=1 bindir=
while (($#)); do
  case $1 in
    --profile) profile=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --bin-dir) bindir=$2; build=0; shift 2 ;;
    *) echo "fleet: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ $(id -u) == 0 ]] || { echo "fleet: needs root (nspawn, network namespaces)" >&2; exit 2; }
# shellcheck source-path=SCRIPTDIR source=hosts.sh
source "$here/hosts.sh"
target=${CARGO_TARGET_DIR:-$repo/target}
out=$target/fleet
mkdir -p "$out"
rm -f "$out"/*.log "$out/summary.txt"
t_start=$(date +%s.%N)
secs() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
declare -a times=()
phase() { times+=("$(printf '%-44s %6ss' "$1" "$(secs "$2")")"); }
failures=0
check() { # check NAME OK DETAIL
  if [[ $2 == 1 ]]; then echo "fleet: ok   $1"; else echo "fleet: FAIL $1: $3" >&2; failures=$((failures + 1)); fi
}

work=$(mktemp -d /tmp/exuvia-fleet.XXXXXX)
tag=exfl$$
on_exit() {
  local rc=$?
  set +e
  fleet_cleanup
  rm -rf "$work"
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# --- tools: ssh on the controller, ansible-core from PyPI in a venv under target/
t=$(date +%s.%N)
need=()
command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v objcopy >/dev/null || need+=(binutils)
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if ((${#need[@]})); then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends "${need[@]}" </dev/null
fi
venv=$out/venv
want=$(cat "$here/requirements.txt")
have=$("$venv/bin/python" -c 'import importlib.metadata as m; print("ansible-core==" + m.version("ansible-core"))' 2>/dev/null || true)
if [[ $have != "$want" ]]; then
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input -r "$here/requirements.txt"
fi
phase "tools (ssh, $want in target/fleet/venv)" "$t"

t=$(date +%s.%N)
if ((build)); then
  flag=--release
  [[ $profile == debug ]] && flag=
  (cd "$repo" && cargo build -q $flag --examples --bin exuvia)
fi
bindir=${bindir:-$target/$profile}
E=$bindir/exuvia
root=$("$E" vm rootfs trixie --package openssh-server | tail -n 1)
phase "build, rootfs (trixie + openssh-server)" "$t"

# --- the three builds: old (echo), new (echo_sync: answers VERSION differently), broken
mkdir -p "$work/old" "$work/new" "$work/broken" "$work/gate-failing" "$work/payload"
# Without debug info, as a release ships (a debug build is 40+ MB, most of it DWARF).
objcopy --strip-debug "$bindir/examples/echo" "$work/old/exuvia-echo"
objcopy --strip-debug "$bindir/examples/echo_sync" "$work/new/exuvia-echo"
cp "$here/broken-exuvia-echo.sh" "$work/broken/exuvia-echo"
cp "$here/gate-failing-exuvia-echo.sh" "$work/gate-failing/exuvia-echo"
cp "$work/old/exuvia-echo" "$repo/units/exuvia-echo.service" "$repo/units/exuvia-echo.socket" "$work/payload/"
cp "$work/new/exuvia-echo" "$work/payload/exuvia-echo-new"
sha() { sha256sum "$1" | cut -c1-64; }
sha_old=$(sha "$work/old/exuvia-echo") sha_new=$(sha "$work/new/exuvia-echo")
old_re='^exuvia-example echo [0-9]' new_re='^exuvia-example echo_sync [0-9]'

# --- network and hosts
t=$(date +%s.%N)
ctl=$tag-ctl
fleet_netns_add "$ctl"
ssh-keygen -q -t ed25519 -N '' -C exuvia-fleet-test -f "$work/id"
hostkey=$(cut -d' ' -f1,2 "$root/etc/ssh/ssh_host_ed25519_key.pub")
for i in 1 2 3; do
  fleet_netns_add "$tag-h$i"
  fleet_link "$ctl" "$tag-h$i" "$i"
  echo "${fleet_addr[$i]} $hostkey" >>"$work/known_hosts"
  # The exuvia CLI (the gate's) lives at a path no unit names.
  fleet_boot "$tag-h$i" "$tag-h$i" "$root" "$out/console-h$i.log" \
    --bind-ro="$work/payload:/run/exuvia-fleet" --bind-ro="$E:/opt/exuvia/bin/exuvia" \
    --bind-ro="$work/id.pub:/root/.ssh/authorized_keys"
done
# sshh I CMD...: a command on host I, from the controller's namespace, bounded.
sshh() {
  local i=$1
  shift
  timeout 60 ip netns exec "$ctl" ssh -n -F none -i "$work/id" -o UserKnownHostsFile="$work/known_hosts" \
    -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=3 -o LogLevel=ERROR \
    "root@${fleet_addr[$i]}" "$@"
}
for i in 1 2 3; do
  deadline=$((SECONDS + 90))
  until sshh "$i" true 2>/dev/null; do
    ((SECONDS < deadline)) || { echo "fleet: h$i: no ssh within 90 s; console:" >&2; tail -20 "$out/console-h$i.log" >&2; exit 1; }
    sleep 0.5
  done
  state=$(sshh "$i" 'timeout 60 systemctl is-system-running --wait' || true)
  [[ $state == running ]] || echo "fleet: h$i: system $state: $(sshh "$i" 'systemctl --failed --plain --no-legend' | tr '\n' ' ')" >&2
  sshh "$i" 'set -e
    install -m 0755 /run/exuvia-fleet/exuvia-echo /usr/local/bin/exuvia-echo
    install -m 0644 /run/exuvia-fleet/exuvia-echo.service /run/exuvia-fleet/exuvia-echo.socket /etc/systemd/system/
    systemctl daemon-reload
    systemctl enable -q --now exuvia-echo.socket
    systemctl start exuvia-echo.service'
done
phase "3 hosts: namespaces, boot, ssh, old build" "$t"

# snapshot I PREFIX: records host I's state as S[PREFIX.KEY.I] (one ssh login).
declare -A S=()
snapshot() {
  local i=$1 p=$2 k v
  while IFS='=' read -r k v; do
    [[ -n $k ]] && S[$p.$k.$i]=$v
  done < <(sshh "$i" 'u=exuvia-echo.service
    show() { systemctl show -P "$1" $u; }
    version() { exec 3<>/dev/tcp/127.0.0.1/8080 && printf "VERSION\n" >&3 && IFS= read -r -t 5 l <&3 && printf "%s" "$l"; }
    echo "pid=$(show MainPID)"
    echo "exe=$(readlink /proc/$(show MainPID)/exe)"
    echo "inv=$(show InvocationID)"
    echo "restarts=$(show NRestarts)"
    echo "state=$(show ActiveState)/$(show SubState)"
    echo "status=$(show StatusText)"
    echo "sha=$(sha256sum /usr/local/bin/exuvia-echo | cut -c1-64)"
    echo "version=$(version)"
    echo "logins=$(journalctl -q -o cat -u ssh.service | grep -c "Accepted publickey")"
    echo "reloads=$(journalctl -q -o cat -u $u _PID=1 | grep -c "^Reloading")"
    echo "backups=$(find /usr/local/bin -name "exuvia-echo.*~" | grep -c .)"
    echo "cli=$(command -v exuvia || echo none)"')
}

for i in 1 2 3; do
  snapshot "$i" pre
  check "h$i serves the old build before the rollout" "$([[ ${S[pre.version.$i]} =~ $old_re && ${S[pre.sha.$i]} == "$sha_old" ]] && echo 1 || echo 0)" "version '${S[pre.version.$i]}'"
  check "h$i has no exuvia CLI on PATH (the unit's reload client is the service binary)" "$([[ ${S[pre.cli.$i]} == none ]] && echo 1 || echo 0)" "${S[pre.cli.$i]}"
done

# rollout INVENTORY LOG: ansible-playbook in the controller's namespace, in a cgroup of ours
# (its ssh control masters outlive it; the cleanup ends them), bounded. Sets ROLLOUT_RC.
rollout() {
  fleet_cgroup "$tag-ansible-$2"
  ROLLOUT_RC=0
  env -C "$repo" ANSIBLE_CONFIG="$repo/deploy/ansible/ansible.cfg" ANSIBLE_HOME="$work/ansible" \
    ANSIBLE_LOCAL_TEMP="$work/ansible/tmp" ANSIBLE_SSH_CONTROL_PATH_DIR="$work/cp" ANSIBLE_NOCOLOR=1 \
    ANSIBLE_LOG_PATH="$out/$2.timed.log" LC_ALL=C.UTF-8 PATH="$venv/bin:$PATH" \
    timeout 300 sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$FLEET_CG" \
    ip netns exec "$ctl" ansible-playbook -i "$1" deploy/ansible/rollout.yml </dev/null >"$out/$2.log" 2>&1 ||
    ROLLOUT_RC=$?
  fleet_cg_end "$FLEET_CG"
}
inventory() { # inventory FILE [HOST:VAR=VALUE...]: the new build everywhere, plus host vars
  local f=$1 i a extra
  shift
  {
    echo "[exuvia]"
    for i in 1 2 3; do
      extra=
      for a in "$@"; do [[ $a == "h$i:"* ]] && extra+=" ${a#*:}"; done
      echo "h$i ansible_host=${fleet_addr[$i]}$extra"
    done
    echo "[exuvia:vars]"
    echo "exuvia_binary=$work/new/exuvia-echo"
    echo "ansible_user=root"
    echo "ansible_become=false"
    echo "ansible_python_interpreter=/usr/bin/python3"
    echo "ansible_ssh_private_key_file=$work/id"
    echo "ansible_ssh_common_args='-F none -o UserKnownHostsFile=$work/known_hosts -o StrictHostKeyChecking=yes'"
  } >"$f"
}
recap() { sed -n '/^PLAY RECAP/,$p' "$out/$1.log" | grep -E "^h[0-9] " | grep -E "^$2 " || true; }
field() { sed -n "s/.* $2=\([0-9]*\).*/\1/p" <<<"$1"; }

# --- rollout 1: h2 gets the broken build
t=$(date +%s.%N)
inventory "$work/inventory-1.ini" "h2:exuvia_binary=$work/broken/exuvia-echo"
rollout "$work/inventory-1.ini" rollout-1
rc1=$ROLLOUT_RC
phase "rollout 1 (h2 broken)" "$t"
echo "=== rollout 1 (h2 broken): exit $ROLLOUT_RC; log $out/rollout-1.log"
sed -n '/^PLAY RECAP/,$p' "$out/rollout-1.log"
check "rollout 1 fails (ansible-playbook exit 2)" "$([[ $ROLLOUT_RC == 2 ]] && echo 1 || echo 0)" "exit $ROLLOUT_RC"
r1=$(recap rollout-1 h1) r2=$(recap rollout-1 h2) r3=$(recap rollout-1 h3)
check "recap: h1 ok" "$([[ -n $r1 && $(field "$r1" failed) == 0 && $(field "$r1" unreachable) == 0 ]] && echo 1 || echo 0)" "'$r1'"
check "recap: h2 failed" "$([[ $(field "$r2" failed) == 1 ]] && echo 1 || echo 0)" "'$r2'"
check "h2 stopped by its reload" "$(grep -q 'h2: "Reload the unit .*" failed' "$out/rollout-1.log" && echo 1 || echo 0)" "see $out/rollout-1.log"
check "recap: h3 never reached" "$([[ -z $r3 ]] && echo 1 || echo 0)" "'$r3'"

for i in 1 2 3; do snapshot "$i" mid; done
check "h1 serves the new build" "$([[ ${S[mid.version.1]} =~ $new_re && ${S[mid.sha.1]} == "$sha_new" ]] && echo 1 || echo 0)" "version '${S[mid.version.1]}'"
check "h1 upgraded in place: new MainPID, same invocation, no restart" "$([[ ${S[mid.pid.1]} != "${S[pre.pid.1]}" && ${S[mid.inv.1]} == "${S[pre.inv.1]}" && ${S[mid.restarts.1]} == 0 && ${S[mid.state.1]} == active/running ]] && echo 1 || echo 0)" "pid ${S[pre.pid.1]}->${S[mid.pid.1]} restarts ${S[mid.restarts.1]} ${S[mid.state.1]}"
check "h1 reloaded by the upgrade and the gate (1 + 2)" "$([[ $((${S[mid.reloads.1]} - ${S[pre.reloads.1]})) == 3 ]] && echo 1 || echo 0)" "reloads ${S[pre.reloads.1]}->${S[mid.reloads.1]}"
check "h1 kept no backup" "$([[ ${S[mid.backups.1]} == 0 ]] && echo 1 || echo 0)" "${S[mid.backups.1]} backups"
check "h2 still serves the old build in the same process" "$([[ ${S[mid.version.2]} =~ $old_re && ${S[mid.pid.2]} == "${S[pre.pid.2]}" && ${S[mid.inv.2]} == "${S[pre.inv.2]}" && ${S[mid.restarts.2]} == 0 && ${S[mid.state.2]} == active/running ]] && echo 1 || echo 0)" "version '${S[mid.version.2]}' pid ${S[pre.pid.2]}->${S[mid.pid.2]} ${S[mid.state.2]}"
check "h2 says why (StatusText)" "$([[ ${S[mid.status.2]} == *"upgrade failed"* ]] && echo 1 || echo 0)" "'${S[mid.status.2]}'"
check "h2 has its old binary back, no backup left" "$([[ ${S[mid.sha.2]} == "$sha_old" && ${S[mid.backups.2]} == 0 ]] && echo 1 || echo 0)" "sha ${S[mid.sha.2]:0:12} backups ${S[mid.backups.2]}"
check "h2 reloaded once (the failed upgrade)" "$([[ $((${S[mid.reloads.2]} - ${S[pre.reloads.2]})) == 1 ]] && echo 1 || echo 0)" "reloads ${S[pre.reloads.2]}->${S[mid.reloads.2]}"
check "h3 untouched: same process, old binary, no reload" "$([[ ${S[mid.version.3]} =~ $old_re && ${S[mid.pid.3]} == "${S[pre.pid.3]}" && ${S[mid.sha.3]} == "$sha_old" && ${S[mid.reloads.3]} == "${S[pre.reloads.3]}" ]] && echo 1 || echo 0)" "version '${S[mid.version.3]}' pid ${S[pre.pid.3]}->${S[mid.pid.3]} reloads ${S[pre.reloads.3]}->${S[mid.reloads.3]}"
# One login between the snapshots: the snapshot's own.
check "h3 untouched: Ansible never logged in" "$([[ $((${S[mid.logins.3]} - ${S[pre.logins.3]})) == 1 ]] && echo 1 || echo 0)" "ssh logins ${S[pre.logins.3]}->${S[mid.logins.3]}"
grep -E '^\[ERROR\]: Task failed: Action failed' "$out/rollout-1.log" | sed 's/^/  operator sees: /' || true

# --- rollout 2: the build fixed, the same playbook resumes; h3 gated on the reload alone
t=$(date +%s.%N)
inventory "$work/inventory-2.ini" "h3:exuvia_check_reloads=0"
rollout "$work/inventory-2.ini" rollout-2
phase "rollout 2 (fixed: resume)" "$t"
echo "=== rollout 2 (fixed): exit $ROLLOUT_RC; log $out/rollout-2.log"
sed -n '/^PLAY RECAP/,$p' "$out/rollout-2.log"
check "rollout 2 completes (exit 0)" "$([[ $ROLLOUT_RC == 0 ]] && echo 1 || echo 0)" "exit $ROLLOUT_RC"
r1=$(recap rollout-2 h1)
check "recap: h1 unchanged" "$([[ -n $r1 && $(field "$r1" changed) == 0 && $(field "$r1" failed) == 0 ]] && echo 1 || echo 0)" "'$r1'"
for i in 1 2 3; do snapshot "$i" end; done
check "h1 not reloaded again" "$([[ ${S[end.pid.1]} == "${S[mid.pid.1]}" ]] && echo 1 || echo 0)" "pid ${S[mid.pid.1]}->${S[end.pid.1]}"
check "h2 reloaded by the upgrade and the gate (1 + 2), h3 by the upgrade alone (exuvia_check_reloads=0)" "$([[ $((${S[end.reloads.2]} - ${S[mid.reloads.2]})) == 3 && $((${S[end.reloads.3]} - ${S[mid.reloads.3]})) == 1 ]] && echo 1 || echo 0)" "h2 reloads ${S[mid.reloads.2]}->${S[end.reloads.2]}, h3 ${S[mid.reloads.3]}->${S[end.reloads.3]}"
for i in 2 3; do
  check "h$i serves the new build, same invocation, no restart" "$([[ ${S[end.version.$i]} =~ $new_re && ${S[end.sha.$i]} == "$sha_new" && ${S[end.pid.$i]} != "${S[mid.pid.$i]}" && ${S[end.inv.$i]} == "${S[pre.inv.$i]}" && ${S[end.restarts.$i]} == 0 && ${S[end.state.$i]} == active/running ]] && echo 1 || echo 0)" "version '${S[end.version.$i]}' pid ${S[mid.pid.$i]}->${S[end.pid.$i]} ${S[end.state.$i]}"
done

# --- rollout 3: a build that takes over but fails the gate, to h1 (h2, h3 already current)
t=$(date +%s.%N)
inventory "$work/inventory-3.ini" "h1:exuvia_binary=$work/gate-failing/exuvia-echo"
rollout "$work/inventory-3.ini" rollout-3
phase "rollout 3 (h1 fails the gate: roll back)" "$t"
echo "=== rollout 3 (h1 fails the gate): exit $ROLLOUT_RC; log $out/rollout-3.log"
sed -n '/^PLAY RECAP/,$p' "$out/rollout-3.log"
check "rollout 3 fails (exit 2)" "$([[ $ROLLOUT_RC == 2 ]] && echo 1 || echo 0)" "exit $ROLLOUT_RC"
r1=$(recap rollout-3 h1) r2=$(recap rollout-3 h2) r3=$(recap rollout-3 h3)
check "recap: h1 failed, h2 and h3 never reached" "$([[ $(field "$r1" failed) == 1 && -z $r2 && -z $r3 ]] && echo 1 || echo 0)" "'$r1' '$r2' '$r3'"
check "h1 stopped by the gate, after a good reload" "$(grep -q 'h1: "Gate on exuvia check --unit .*" failed' "$out/rollout-3.log" && echo 1 || echo 0)" "see $out/rollout-3.log"
for i in 1 2 3; do snapshot "$i" back; done
# The gate-failing build ran from the payload; a process of the file on disk means handed back.
check "h1 handed back to the previous build" "$([[ ${S[back.version.1]} =~ $new_re && ${S[back.exe.1]} == /usr/local/bin/exuvia-echo && ${S[back.sha.1]} == "$sha_new" && ${S[back.pid.1]} != "${S[end.pid.1]}" && ${S[back.inv.1]} == "${S[pre.inv.1]}" && ${S[back.restarts.1]} == 0 && ${S[back.state.1]} == active/running && ${S[back.backups.1]} == 0 ]] && echo 1 || echo 0)" "version '${S[back.version.1]}' exe ${S[back.exe.1]} pid ${S[end.pid.1]}->${S[back.pid.1]} sha ${S[back.sha.1]:0:12} backups ${S[back.backups.1]}"
for i in 2 3; do
  check "h$i untouched by rollout 3" "$([[ ${S[back.pid.$i]} == "${S[end.pid.$i]}" && ${S[back.reloads.$i]} == "${S[end.reloads.$i]}" && $((${S[back.logins.$i]} - ${S[end.logins.$i]})) == 1 ]] && echo 1 || echo 0)" "pid ${S[end.pid.$i]}->${S[back.pid.$i]} logins ${S[end.logins.$i]}->${S[back.logins.$i]}"
done
grep -E '^\[ERROR\]: Task failed: Action failed' "$out/rollout-3.log" | sed 's/^/  operator sees: /' || true

phase total "$t_start"
{
  echo "fleet rollout test: $failures failed check(s)"
  printf '  %s\n' "${times[@]}"
  echo "rollout 1 (h2 broken): exit $rc1"
  sed -n '/^PLAY RECAP/,$p' "$out/rollout-1.log"
} >"$out/summary.txt"
cat "$out/summary.txt"
((failures == 0))
