# shellcheck shell=bash
# Helpers for driver.sh and scenarios/*.sh (sourced, in the guest, bash).
# Why a library: every scenario needs the same bounded load handling, unit
# property checks and RESULT formatting, and `exuvia vm` on the host parses
# exactly this format (src/bin/exuvia/vm/verdict.rs).
#
# Everything about the service under test comes from vm.env (written by the
# host, see payload.rs): SVC, SOCKS, TARGET, MODE, BIN, ... Nothing here
# knows which service it is.

WORK=/run/exuvia-vm-work
FAILED=0
CHECKS=0
declare -A LOAD_PID LOAD_OK LOAD_FAIL LOAD_SURVIVED
# Totals for the one-line summary (`RESULT metric=summary`) the verdict table
# is built from: every request any load client made, every reload timed.
SUM_REQ=0 SUM_FAIL=0 SUM_RETRIED=0 SUM_P50=-1 SUM_P99=-1 SUM_RELOADS=0 SUM_ENDED=0
LAST_STAGE_MS=$(($(date +%s%N) / 1000000))

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# check NAME OK(1|0) [key=value...]
check() {
  local name=$1 ok=$2
  shift 2
  CHECKS=$((CHECKS + 1))
  [[ $ok == 1 ]] || FAILED=$((FAILED + 1))
  echo "RESULT check=$name ok=$ok $*"
}

metric() {
  local name=$1
  shift
  echo "RESULT metric=$name $*"
}

info() { echo "INFO $*"; }

# fatal MESSAGE: the run cannot start (bad input, not a verdict); the host
# turns this into one error line and exit status 2.
fatal() {
  echo "FATAL $*"
  echo "VERDICT fatal"
  exit 2
}

stage() {
  local t
  t=$(now_ms)
  echo "STAGE $1 ms=$((t - LAST_STAGE_MS))"
  LAST_STAGE_MS=$t
}

prop() { systemctl show -P "$1" "${2:-$SVC}"; }

cgroup_procs() {
  local cg
  cg=$(prop ControlGroup)
  if [[ -n $cg && -r /sys/fs/cgroup$cg/cgroup.procs ]]; then
    wc -l <"/sys/fs/cgroup$cg/cgroup.procs"
  else
    echo 0
  fi
}

# wait_for SECONDS COMMAND...: poll until COMMAND succeeds; 1 on timeout.
wait_for() {
  local deadline=$(($(now_ms) + $1 * 1000))
  shift
  until "$@"; do
    (($(now_ms) > deadline)) && return 1
    sleep 0.05
  done
}

diag() {
  echo "---- diagnostics: systemctl status"
  # shellcheck disable=SC2086 # SOCKS is a list
  systemctl status --no-pager -l "$SVC" $SOCKS 2>&1 | head -40
  echo "---- diagnostics: journal of $SVC (last 80 lines)"
  local u args=(-u "$SVC")
  for u in $SOCKS; do args+=(-u "$u"); done
  journalctl --no-pager -o short-monotonic "${args[@]}" | tail -80
  echo "---- end diagnostics"
}

finish() {
  local k
  for k in "${!LOAD_PID[@]}"; do load_stop "$k" >/dev/null; done
  ((FAILED)) && diag
  metric summary "requests=$SUM_REQ failed=$SUM_FAIL retried=$SUM_RETRIED reloads=$SUM_RELOADS p50_ms=$SUM_P50 p99_ms=$SUM_P99 ended_by_stop=$SUM_ENDED"
  echo "RESULT summary checks=$CHECKS failed=$FAILED"
  if ((FAILED == 0 && CHECKS > 0)); then
    echo "VERDICT pass"
    exit 0
  fi
  echo "VERDICT fail"
  exit 1
}

# The target as HOST and PORT for bash's /dev/tcp and ss; empty for unix.
TARGET_HOST='' TARGET_PORT=''
if [[ $TARGET =~ ^tcp:\[?([^]]*)\]?:([0-9]+)$ ]]; then
  TARGET_HOST=${BASH_REMATCH[1]} TARGET_PORT=${BASH_REMATCH[2]}
fi

# install_inputs: the host's tree onto /, the scenario's drop-in, daemon-reload.
install_inputs() {
  mkdir -p "$WORK"
  cp -a /run/exuvia-vm/root/. /
  local dropin=/run/exuvia-vm/dropins/$SCENARIO.conf
  if [[ -s $dropin ]]; then
    mkdir -p "/etc/systemd/system/$SVC.d"
    install -m 0644 "$dropin" "/etc/systemd/system/$SVC.d/zz-exuvia-vm.conf"
  fi
  systemctl daemon-reload
  local p
  # The service must not depend on anything the harness brings (e.g. an
  # `exuvia` CLI for ExecReload=): the judge lives only under /run/exuvia-vm.
  for p in $ABSENT; do
    check "absent:$p" "$([[ -e $p ]] && echo 0 || echo 1)" "path=$p"
  done
  info "ExecStart: $(prop ExecStart | sed 's/ ; ignore_errors.*//')"
  info "ExecReload: $(prop ExecReload | sed 's/ ; ignore_errors.*//')"
  LOAD=("$JUDGE" load)
  CHECK=("$JUDGE" check --unit "$SVC" --target "$TARGET" --mode "$MODE" --path "$HTTP_PATH")
  ((IN_PLACE)) && CHECK+=(--in-place)
}

# start_units: sockets, then the service; a unit that cannot start is bad input.
start_units() {
  local u rc why
  for u in $SOCKS; do
    rc=0
    timeout 30 systemctl start "$u" 2>"$WORK/start.err" || rc=$?
    if ((rc != 0)); then
      # The line naming the address and the errno says most ("Address already in use").
      why=$(journalctl --no-pager -o cat -u "$u" | grep -iE 'listening socket|address|in use' | tail -1)
      [[ -n $why ]] || why=$(journalctl --no-pager -o cat -u "$u" | grep -iE 'fail|error' | tail -2 | tr '\n' ' ')
      fatal "socket unit $u did not start: ${why:-$(tr '\n' ' ' <"$WORK/start.err")}"
    fi
  done
  rc=0
  timeout 60 systemctl start "$SVC" 2>"$WORK/start.err" || rc=$?
  if ((rc != 0)) || [[ $(prop ActiveState) != active ]]; then
    why=$(journalctl --no-pager -o cat -u "$SVC" | tail -3 | tr '\n' ' ')
    diag
    fatal "$SVC did not start (systemctl start rc=$rc, $(prop ActiveState)/$(prop SubState)): $why"
  fi
  INV0=$(prop InvocationID)
  NR0=$(prop NRestarts)
  info "$SVC active: MainPID=$(prop MainPID)"
}

# load_start NAME MODE CONNECTIONS [extra args...]
load_start() {
  local name=$1 mode=$2 conns=$3
  shift 3
  rm -f "$WORK/stop-$name" "$WORK/$name.json"
  "${LOAD[@]}" --target "$TARGET" --mode "$mode" --connections "$conns" --path "$HTTP_PATH" \
    --duration 600s --until-file "$WORK/stop-$name" --json "$WORK/$name.json" "$@" \
    >"$WORK/$name.out" 2>&1 &
  LOAD_PID[$name]=$!
}

# The long-lived load of a scenario: MODE=echo speaks the line protocol, so
# `long` connections can be held open; other modes hold keep-alive connections.
long_mode() { [[ $MODE == echo ]] && echo long || echo "$MODE"; }

# load_stop NAME [unjudged]: ask the client to finish, wait (bounded), read
# its counts. `unjudged`: its failures are expected (connections a stop
# ends) and stay out of the summary's failed column (shown as ended=).
load_stop() {
  local name=$1 judged=1 pid=${LOAD_PID[$1]:-}
  [[ ${2:-} == unjudged ]] && judged=0
  [[ -n $pid ]] || return 1
  touch "$WORK/stop-$name"
  local i
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid"
    info "load $name did not stop in 30 s, killed"
  fi
  wait "$pid" 2>/dev/null
  unset "LOAD_PID[$name]"
  local counts lost retried
  counts=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
s = d.get("long_lived_survived")
print(int(d["ok"]), int(d["failed"]), {True: "yes", False: "no", None: "n/a"}[s], d.get("connections_lost", 0), d.get("retried", d.get("http_retries", 0)))
' "$WORK/$name.json" 2>/dev/null) || counts="-1 -1 n/a n/a 0"
  read -r "LOAD_OK[$name]" "LOAD_FAIL[$name]" "LOAD_SURVIVED[$name]" lost retried <<<"$counts"
  ((${LOAD_OK[$name]} > 0)) && SUM_REQ=$((SUM_REQ + ${LOAD_OK[$name]}))
  SUM_RETRIED=$((SUM_RETRIED + retried))
  # An unreadable report counts as a failure in the table too.
  if ((!judged)); then
    ((${LOAD_FAIL[$name]} > 0)) && SUM_ENDED=$((SUM_ENDED + ${LOAD_FAIL[$name]}))
  elif ((${LOAD_FAIL[$name]} != 0)); then
    SUM_FAIL=$((SUM_FAIL + (${LOAD_FAIL[$name]} < 0 ? 1 : ${LOAD_FAIL[$name]})))
  fi
  metric "load_$name" "ok=${LOAD_OK[$name]} failures=${LOAD_FAIL[$name]} retried=$retried long_lived_survived=${LOAD_SURVIVED[$name]} connections_lost=$lost"
  if [[ ${LOAD_FAIL[$name]} != 0 ]]; then
    info "load $name output:"
    tail -c 1500 "$WORK/$name.out"
    echo
  fi
}

# check_load NAME MIN_OK: zero failures and enough traffic to mean something.
check_load() {
  local name=$1 min=$2
  local ok=${LOAD_OK[$name]:--1} fail=${LOAD_FAIL[$name]:--1} surv=${LOAD_SURVIVED[$name]:-n/a}
  check "load_${name}_no_failures" "$([[ $fail == 0 && $ok -ge $min ]] && echo 1 || echo 0)" \
    "requests=$ok failures=$fail min_requests=$min"
  # Long mode: every worker must still be on the connection it opened first.
  if [[ $surv != n/a ]]; then
    check "load_${name}_connections_survived" "$([[ $surv == yes ]] && echo 1 || echo 0)" "long_lived_survived=$surv"
  fi
}

# unit_state: MainPID InvocationID ActiveState/SubState NRestarts in one call
# (under load every systemctl round trip costs tens of ms).
unit_state() {
  local -A p
  local k v
  while IFS='=' read -r k v; do p[$k]=$v; done < <(systemctl show "$SVC" \
    -p MainPID -p InvocationID -p ActiveState -p SubState -p NRestarts)
  S_PID=${p[MainPID]} S_INV=${p[InvocationID]} S_NR=${p[NRestarts]}
  S_STATE=${p[ActiveState]}/${p[SubState]}
}

# reload_plain: one `systemctl reload` timed by the driver, for the scenarios
# that judge a reload themselves (broken successors); sets R_RC R_MS R_OLD
# R_NEW R_INV R_STATE R_NR.
reload_plain() {
  R_OLD=$(prop MainPID)
  local t0
  t0=$(now_ms)
  R_RC=0
  timeout 120 systemctl reload "$SVC" 2>"$WORK/reload.err" || R_RC=$?
  R_MS=$(($(now_ms) - t0))
  SUM_RELOADS=$((SUM_RELOADS + 1))
  unit_state
  R_NEW=$S_PID R_INV=$S_INV R_NR=$S_NR R_STATE=$S_STATE
}

# Successful handover: rc 0, new main, same invocation, active, no restart.
reload_ok() {
  [[ $R_RC == 0 && $R_NEW != "$R_OLD" && $R_NEW != 0 && $R_INV == "$INV0" &&
    $R_STATE == active/running && $R_NR == "$NR0" ]]
}

reload_fields() {
  echo "rc=$R_RC ms=$R_MS mainpid=$R_OLD->$R_NEW inv_same=$([[ $R_INV == "$INV0" ]] && echo 1 || echo 0) state=$R_STATE nrestarts=$R_NR"
}

# run_check NAME [exuvia check args...]: one `exuvia check --unit` run with
# its JSON report at $WORK/NAME.json; sets CK_PASS CK_OK CK_FAILED CK_RETRIED
# CK_CHANGES CK_P50 CK_P99 CK_MAX (ms) CK_RC and prints its reasons.
run_check() {
  local name=$1 rc=0
  shift
  timeout 900 "${CHECK[@]}" --json "$WORK/$name.json" "$@" >"$WORK/$name.out" 2>&1 || rc=$?
  local out
  out=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
q = d.get("reload_duration") or {}
ms = lambda k: int(round(q[k] * 1000)) if k in q else -1
l = d["load"]
print(int(bool(d["pass"])), l["ok"], l["failed"], l.get("retried", l.get("http_retries", 0)), d["main_pid_changes"], ms("p50"), ms("p99"), ms("max"))
for r in d.get("reasons", []):
    print("reason", r)
' "$WORK/$name.json" 2>&1) || out="0 -1 -1 0 -1 -1 -1 -1"
  # shellcheck disable=SC2034 # CK_MAX, CK_RC: read by the sourced scenarios
  read -r CK_PASS CK_OK CK_FAILED CK_RETRIED CK_CHANGES CK_P50 CK_P99 CK_MAX <<<"$(head -1 <<<"$out")"
  # shellcheck disable=SC2034
  CK_RC=$rc
  ((CK_OK > 0)) && SUM_REQ=$((SUM_REQ + CK_OK))
  ((CK_FAILED != 0)) && SUM_FAIL=$((SUM_FAIL + (CK_FAILED < 0 ? 1 : CK_FAILED)))
  SUM_RETRIED=$((SUM_RETRIED + CK_RETRIED))
  local n
  n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["reloads"]))' "$WORK/$name.json" 2>/dev/null || echo 0)
  SUM_RELOADS=$((SUM_RELOADS + n))
  # Quantiles come from the longest check run of the scenario.
  ((CK_P50 >= 0 && n >= ${CK_BEST:-0})) && { SUM_P50=$CK_P50 SUM_P99=$CK_P99 CK_BEST=$n; }
  grep '^reason ' <<<"$out" | sed "s/^reason /INFO check $name: /"
  if [[ $CK_PASS != 1 ]]; then
    info "exuvia check output (tail):"
    tail -40 "$WORK/$name.out"
  fi
}

# check_ok NAME RELOADS [MIN_REQUESTS]: the verdict of the last run_check, with
# the expected number of MainPID changes (none for an in-place reload).
check_ok() {
  local name=$1 n=$2 min=${3:-1} want=$2
  ((IN_PLACE)) && want=0
  check "$name" "$([[ $CK_PASS == 1 && $CK_RC == 0 && $CK_CHANGES == "$want" && $CK_FAILED == 0 && $CK_OK -ge $min ]] && echo 1 || echo 0)" \
    "rc=$CK_RC requests=$CK_OK failed=$CK_FAILED retried=$CK_RETRIED mainpid_changes=$CK_CHANGES want_changes=$want"
}

# end_state PID_BEFORE: the unit's state after a run of reloads, checked
# independently of the tool under test.
end_state() {
  unit_state
  local pid_ok
  if ((IN_PLACE)); then pid_ok=$([[ $S_PID == "$1" ]] && echo 1 || echo 0); else pid_ok=$([[ $S_PID != "$1" && $S_PID != 0 ]] && echo 1 || echo 0); fi
  check end_state "$([[ $S_INV == "$INV0" && $S_NR == "$NR0" && $S_STATE == active/* && $pid_ok == 1 ]] && echo 1 || echo 0)" \
    "inv_same=$([[ $S_INV == "$INV0" ]] && echo 1 || echo 0) nrestarts=$NR0->$S_NR state=$S_STATE mainpid=$1->$S_PID in_place=$IN_PLACE"
}

# query LINE: one request on a fresh connection, answer on stdout.
query() {
  local fd line
  exec {fd}<>"/dev/tcp/$TARGET_HOST/$TARGET_PORT" || return 1
  printf '%s\n' "$1" >&"$fd"
  IFS= read -r -t 5 line <&"$fd"
  exec {fd}>&-
  printf '%s\n' "${line%$'\r'}"
}

# Atomic replacement of the installed binary, as a package manager does it.
replace_binary() {
  cp "$1" "$BIN.new.$$"
  chmod 0755 "$BIN.new.$$"
  mv -f "$BIN.new.$$" "$BIN"
}

# The inode of a file, and of the program a process runs.
inode() { stat -L -c %i "$1" 2>/dev/null || echo none; }

# needs_binary SCENARIO: the scenario swaps the service binary.
needs_binary() {
  [[ -n $BIN && -x $BIN ]] || fatal "scenario $1 replaces the service binary: give --binary"
}

percentile() {
  awk -v p="$1" '{a[NR]=$1} END {if (NR==0) {print -1; exit}; r=int((p*NR+99)/100); if (r<1) r=1; print a[r]}'
}
