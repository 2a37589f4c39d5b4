# shellcheck shell=bash
# Helpers for the scenarios that break an upgrade on purpose (sourced after lib.sh).
# Why a file of its own: a fault needs the upgrade caught at one exact step — the successor
# started but not ready, ready but not yet handed over — and that takes a successor the
# harness controls (a stand-in that starts the real binary late) and a way to see each
# step from outside the service: its processes and its private handover socket, never its
# logs (a service need not log for these scenarios to judge it).

# stand_in NAME ACTION: $WORK/NAME, a stand-in for the service binary. Run by systemd as a
# control process ($MAINPID is set, e.g. ExecReload=@BIN exuvia-reload …, the service
# binary as its own reload client) it is the real binary under the unit's argv[0], so the
# reload really starts an upgrade; started as a successor it runs ACTION (bash) instead.
# The real binary is kept at $WORK/good-binary (copied on first use).
stand_in() {
  local name=$1 act=$2 argv0
  [[ -s $WORK/good-binary ]] || cp "$BIN" "$WORK/good-binary"
  argv0=$(sed -n 's/.*argv\[\]=\([^ ;]*\).*/\1/p' <<<"$(prop ExecReload)" | head -1)
  # shellcheck disable=SC2016 # $MAINPID and $@ are for the generated script
  printf '#!/bin/bash\nif [[ -n ${MAINPID:-} ]]; then exec -a %q %q "$@"; fi\n%s\n' \
    "${argv0:-$BIN}" "$WORK/good-binary" "$act" >"$WORK/$name"
}

# The slow successor of the fault scenarios: SLOW_S seconds before the real binary runs
# (then it is the real successor: same pid, same fds, same arguments).
# Wide enough that a loaded CI machine still sees it waiting (1.5 s was missed once under load).
SLOW_S=2.5
slow_stand_in() {
  # shellcheck disable=SC2016 # "$@" is for the generated script
  stand_in slow "sleep $SLOW_S; exec -a $(printf %q "$BIN") $(printf %q "$WORK/good-binary") \"\$@\""
}

# find_successor SECONDS: SUCC = the pid of the stand-in started as a successor: a bash
# running $BIN in the unit's cgroup, a child of PID 1 (the successor is double-forked; a
# child bash forks for `sleep` looks the same for a moment and shares its fds), and not a
# control process (those have $MAINPID: the reload client runs the stand-in too, for a
# moment); 1 if none appears in time.
find_successor() {
  local deadline=$(($(now_ms) + $1 * 1000)) cg p
  cg=/sys/fs/cgroup$(prop ControlGroup)
  SUCC=''
  while (($(now_ms) < deadline)); do
    while read -r p; do
      if [[ $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) == "/bin/bash $BIN "* ]] &&
        [[ $(awk '/^PPid:/ { print $2 }' "/proc/$p/status" 2>/dev/null) == 1 ]] &&
        ! tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -q '^MAINPID='; then
        # shellcheck disable=SC2034 # read by the scenarios
        SUCC=$p
        return 0
      fi
    done <"$cg/cgroup.procs"
    sleep 0.01
  done
  return 1
}

# client_asking SECONDS: the reload client (a control process of the unit: it has $MAINPID)
# holds a socket, so it has connected to the service and handles SIGTERM (it says "not
# upgraded" and exits 0). In its first milliseconds after exec it cannot: a stop then kills
# it and systemd records "Failed with result 'signal'" whatever the program does
# (docs/systemd.md, "A stop or restart during a reload"). 1 if none does in time.
client_asking() {
  local deadline=$(($(now_ms) + $1 * 1000)) cg p
  cg=/sys/fs/cgroup$(prop ControlGroup)
  while (($(now_ms) < deadline)); do
    while read -r p; do
      tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -q '^MAINPID=' || continue
      find "/proc/$p/fd" -mindepth 1 -lname 'socket:*' 2>/dev/null | grep -q . && return 0
    done <"$cg/cgroup.procs"
    sleep 0.01
  done
  return 1
}

# unread_from RECEIVER SENDER: SENDER wrote to RECEIVER over a private socket and RECEIVER
# has not read it yet: a unix socket of RECEIVER has unread bytes and its peer is one of
# SENDER's sockets. The handover channel carries, in order, the old main's manifest and
# listeners (read by the successor once its program runs) and the successor's `ready`.
unread_from() {
  local peers
  peers=" $(find "/proc/$2/fd" -mindepth 1 -printf '%l\n' 2>/dev/null |
    sed -n 's/^socket:\[\([0-9]*\)\]$/\1/p' | tr '\n' ' ')"
  ss -xpH 2>/dev/null | awk -v p="pid=$1," -v peers="$peers" \
    'index($0, p) && $3 > 0 && index(peers, " " $8 " ") { found = 1 } END { exit !found }'
}

# handover_queued OLD SUCC: the old main has sent its manifest and listeners; the stand-in
# successor holds them unread (it is still asleep). Before this, stopping or killing the old
# main would catch it before the handover began.
handover_queued() { unread_from "$2" "$1"; }

# ready_sent OLD SUCC: the successor said `ready` and the old main has not read it (only
# meaningful while the old main is stopped: it would read it at once otherwise).
ready_sent() { unread_from "$1" "$2"; }

# successor_waiting OLD SECONDS: find_successor, then wait until it holds the handover.
successor_waiting() {
  find_successor "$2" && wait_for "$2" handover_queued "$1" "$SUCC"
}

# proc_state PID: the state letter from /proc/PID/stat (R, S, T, Z, …), or `gone`.
proc_state() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo gone; return; }
  s=${s##*) }
  echo "${s%% *}"
}

dead() { [[ $(proc_state "$1") =~ ^(gone|Z|X)$ ]]; }
stopped() { [[ $(proc_state "$1") == T ]]; }

# stop_proc PID: SIGSTOP, and wait (bounded) until it is really stopped.
stop_proc() {
  kill -STOP "$1" || return 1
  wait_for 5 stopped "$1"
}

# unit_jobs: the unit's queued or running jobs (empty: none).
unit_jobs() { systemctl list-jobs --no-legend --no-pager "$SVC" 2>/dev/null; }
no_jobs() { [[ -z $(unit_jobs) ]]; }

# prop_ms PROPERTY: a time-span property of the unit in milliseconds (e.g. TimeoutStartUSec).
prop_ms() {
  local us
  us=$(systemd-analyze timespan "$(prop "$1")" 2>/dev/null | sed -n 's/^ *μs: *\([0-9]*\)$/\1/p')
  echo $((${us:-0} / 1000))
}

# check_load_cost NAME MIN MAX WHAT: like check_load, but the fault may cost up to MAX
# requests, and WHAT says which (it is in the check's detail, next to the count).
check_load_cost() {
  local name=$1 min=$2 max=$3 what=$4
  local ok=${LOAD_OK[$name]:--1} fail=${LOAD_FAIL[$name]:--1}
  check "load_${name}_within_cost" "$([[ $fail -ge 0 && $fail -le $max && $ok -ge $min ]] && echo 1 || echo 0)" \
    "requests=$ok failures=$fail allowed=$max cost='$what' min_requests=$min"
}

# reload_bg: `systemctl reload` in the background (RB_PID); reload_bg_rc waits (bounded by
# the timeout inside) and sets RB_RC and RB_ERR.
reload_bg() {
  timeout 120 systemctl reload "$SVC" 2>"$WORK/reload-bg.err" &
  RB_PID=$!
}
# shellcheck disable=SC2034 # RB_RC, RB_ERR: read by the scenarios
reload_bg_rc() {
  RB_RC=0
  wait "$RB_PID" || RB_RC=$?
  RB_ERR=$(tr '\n' ' ' <"$WORK/reload-bg.err")
}

# The reload's rc when an upgrade fails: non-zero when ExecReload= waits for the verdict
# (`… --wait`), else 0 (a plain notify-reload unit: systemd only sees READY=1).
want_failed_reload_rc() {
  [[ $(prop ExecReload) == *--wait* ]] && echo nonzero || echo zero
}
rc_is() { # RC WANT(zero|nonzero)
  if [[ $2 == zero ]]; then [[ $1 == 0 ]]; else [[ $1 != 0 ]]; fi
}
