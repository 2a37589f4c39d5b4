# shellcheck shell=bash
# Helpers for driver.sh and scenarios/*.sh (sourced, in-guest, bash).
# Why a library: every scenario needs the same bounded load handling, unit
# property checks and RESULT formatting, and the parser on the host relies
# on that format being identical everywhere.

SVC=exuvia-echo.service
SOCK=exuvia-echo.socket
BIN=/usr/local/bin/exuvia-echo
WORK=/run/exuvia-test
FAILED=0
CHECKS=0
declare -A LOAD_PID LOAD_OK LOAD_FAIL LOAD_SURVIVED
# Totals for the one-line summary (`RESULT metric=summary`) the matrix table
# is built from: every request any load client made, every reload timed.
SUM_REQ=0 SUM_FAIL=0 SUM_P50=-1 SUM_P99=-1 SUM_RELOADS=0 SUM_ENDED=0
DURS=()
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
  systemctl status --no-pager -l "$SVC" "$SOCK" 2>&1 | head -40
  echo "---- diagnostics: journal of $SVC (last 80 lines)"
  journalctl --no-pager -o short-monotonic -u "$SVC" -u "$SOCK" | tail -80
  echo "---- end diagnostics"
}

finish() {
  local k
  for k in "${!LOAD_PID[@]}"; do load_stop "$k" >/dev/null; done
  ((FAILED)) && diag
  if ((${#DURS[@]})) && [[ -z ${CK_BEST:-} ]]; then
    local sorted
    sorted=$(printf '%s\n' "${DURS[@]}" | sort -n)
    SUM_P50=$(percentile 50 <<<"$sorted") SUM_P99=$(percentile 99 <<<"$sorted")
  fi
  metric summary "requests=$SUM_REQ failed=$SUM_FAIL reloads=$SUM_RELOADS p50_ms=$SUM_P50 p99_ms=$SUM_P99 ended_by_stop=$SUM_ENDED"
  echo "RESULT summary checks=$CHECKS failed=$FAILED"
  if ((FAILED == 0 && CHECKS > 0)); then
    echo "VERDICT pass"
    exit 0
  fi
  echo "VERDICT fail"
  exit 1
}

install_payload() {
  mkdir -p "$WORK" /usr/local/bin
  local f
  for f in /payload/bin/*; do install -m 0755 "$f" "/usr/local/bin/$(basename "$f")"; done
  # shellcheck source=/dev/null
  [[ -r /payload/expect.env ]] && source /payload/expect.env
  local units=/payload/units
  # The units the project ships (hardened), instead of the bare test units;
  # shipped252 = units/systemd-252/ (Type=notify + ExecReload=kill -HUP).
  [[ $VARIANT == shipped ]] && units=/payload/shipped-units
  [[ $VARIANT == shipped252 ]] && units=/payload/shipped-units-252
  install -m 0644 "$units/$SOCK" "$units/$SVC" /etc/systemd/system/
  mkdir -p "/etc/systemd/system/$SVC.d"
  if [[ $VARIANT != plain && $VARIANT != shipped* ]]; then
    install -m 0644 "/payload/units/variants/$VARIANT.conf" "/etc/systemd/system/$SVC.d/"
  fi
  if [[ -n ${SERVICE_ARGS:-} ]]; then
    printf '[Service]\nEnvironment="ECHO_ARGS=%s"\n' "$SERVICE_ARGS" >"/etc/systemd/system/$SVC.d/args.conf"
    # Shipped units start the binary without flags: only add the test deadlines.
    # shellcheck disable=SC2016 # $ECHO_ARGS is for systemd to expand
    # Keep the shipped ExecStart= (it carries --control for ExecReload=).
    [[ $VARIANT == shipped* ]] &&
      printf 'ExecStart=\nExecStart=%s $ECHO_ARGS\n' "$(sed -n 's/^ExecStart=//p' "$units/$SVC" | head -n 1)" \
        >>"/etc/systemd/system/$SVC.d/args.conf"
  fi
  # The real client once it supports the interface, else the python stand-in.
  if /usr/local/bin/exuvia load --help 2>/dev/null | grep -q -- --until-file; then
    LOAD=(/usr/local/bin/exuvia load)
  else
    LOAD=(python3 /payload/standin/loadgen.py)
  fi
  # shellcheck disable=SC2034 # used by the sourced scenarios
  LOAD_LONG_ARGS=(--interval 200ms)
  info "load client: ${LOAD[*]}"
  # `exuvia check --unit` does the reload assertions when it exists and can
  # judge this unit: on 252, ExecReload=kill returns before the handover, so
  # a check right after `systemctl reload` would see the old MainPID.
  CHECK=()
  if [[ ${ACTION:-reload} == reload && ${RELOAD_ASYNC:-0} == 0 && ${USE_CHECK:-1} == 1 ]] &&
    /usr/local/bin/exuvia check --help 2>/dev/null | grep -q -- '--unit'; then
    CHECK=(/usr/local/bin/exuvia check --unit "$SVC" --target tcp:127.0.0.1:8080)
  fi
  info "reload assertions: ${CHECK[*]:-driver (reload_once)}"
  systemctl daemon-reload
  info "ExecStart: $(prop ExecStart | sed 's/ ; ignore_errors.*//') Environment: $(prop Environment)"
  local out
  out=$(systemd-analyze verify "/etc/systemd/system/$SOCK" "/etc/systemd/system/$SVC" 2>&1)
  check units_verify "$([[ -z $out ]] && echo 1 || echo 0)" "variant=$VARIANT"
  [[ -n $out ]] && printf 'INFO verify: %s\n' "$out"
  systemctl start "$SOCK"
}

start_service() {
  local rc=0
  timeout 30 systemctl start "$SVC" || rc=$?
  check service_started "$([[ $rc == 0 && $(prop ActiveState) == active ]] && echo 1 || echo 0)" \
    "rc=$rc state=$(prop ActiveState)/$(prop SubState) mainpid=$(prop MainPID)"
  INV0=$(prop InvocationID)
  NR0=$(prop NRestarts)
  ((rc == 0)) || finish
}

# load_start NAME MODE CONNECTIONS [extra args...]
load_start() {
  local name=$1 mode=$2 conns=$3
  shift 3
  rm -f "$WORK/stop-$name" "$WORK/$name.json"
  "${LOAD[@]}" --target tcp:127.0.0.1:8080 --mode "$mode" --connections "$conns" \
    --duration 300s --until-file "$WORK/stop-$name" --json "$WORK/$name.json" "$@" \
    >"$WORK/$name.out" 2>&1 &
  LOAD_PID[$name]=$!
}

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
  local counts
  # `failed` is the exact count; `failures` may be a capped list of details.
  counts=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
f = d.get("failed", d.get("failures"))
s = d.get("long_lived_survived")
print(int(d["ok"]), int(f), {True: "yes", False: "no", None: "n/a"}[s], d.get("connections_lost", "n/a"))
' "$WORK/$name.json" 2>/dev/null) || counts="-1 -1 n/a n/a"
  read -r "LOAD_OK[$name]" "LOAD_FAIL[$name]" "LOAD_SURVIVED[$name]" lost <<<"$counts"
  ((${LOAD_OK[$name]} > 0)) && SUM_REQ=$((SUM_REQ + ${LOAD_OK[$name]}))
  # An unreadable report counts as a failure in the table too.
  if ((!judged)); then
    ((${LOAD_FAIL[$name]} > 0)) && SUM_ENDED=$((SUM_ENDED + ${LOAD_FAIL[$name]}))
  elif ((${LOAD_FAIL[$name]} != 0)); then
    SUM_FAIL=$((SUM_FAIL + (${LOAD_FAIL[$name]} < 0 ? 1 : ${LOAD_FAIL[$name]})))
  fi
  metric "load_$name" "ok=${LOAD_OK[$name]} failures=${LOAD_FAIL[$name]} long_lived_survived=${LOAD_SURVIVED[$name]} connections_lost=$lost"
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

# reload_once: sets R_RC R_MS R_OLD R_NEW R_INV R_STATE R_NR.
reload_once() {
  R_OLD=$(prop MainPID)
  local t0
  t0=$(now_ms)
  R_RC=0
  case ${ACTION:-reload} in
    # Negative control: a crash; must show up as failed requests.
    kill9)
      R_NR0=$(prop NRestarts)
      systemctl kill --signal=SIGKILL --kill-whom=main "$SVC" || R_RC=$?
      wait_for 15 restarted_since_kill || R_RC=124
      ;;
    *)
      local st0
      st0=$(prop StatusText)
      timeout 60 systemctl "${ACTION:-reload}" "$SVC" 2>"$WORK/reload.err" || R_RC=$?
      # systemd < 253: the reload job ends when `kill -HUP` returns; the
      # handover (or its failure, in StatusText) comes later. Bounded wait.
      if [[ ${RELOAD_ASYNC:-0} == 1 && ${ACTION:-reload} == reload && $R_RC == 0 ]]; then
        wait_for 15 handover_settled "$st0" || info "reload: no handover or failure seen within 15 s"
      fi
      ;;
  esac
  R_MS=$(($(now_ms) - t0))
  DURS+=("$R_MS")
  SUM_RELOADS=$((SUM_RELOADS + 1))
  # One call: under load every systemctl round trip costs tens of ms.
  local -A p
  local k v
  while IFS='=' read -r k v; do p[$k]=$v; done < <(systemctl show "$SVC" \
    -p MainPID -p InvocationID -p ActiveState -p SubState -p NRestarts)
  R_NEW=${p[MainPID]} R_INV=${p[InvocationID]} R_NR=${p[NRestarts]}
  R_STATE=${p[ActiveState]}/${p[SubState]}
}

# handover_settled STATUS_BEFORE: active again under a new main, or the
# service reported a failed upgrade.
handover_settled() {
  local -A p
  local k v
  while IFS='=' read -r k v; do p[$k]=$v; done < <(systemctl show "$SVC" -p MainPID -p ActiveState -p StatusText)
  [[ ${p[ActiveState]} == active ]] || return 1
  [[ ${p[MainPID]} != "$R_OLD" && ${p[MainPID]} != 0 ]] && return 0
  [[ ${p[StatusText]} == *"upgrade failed"* && ${p[StatusText]} != "$1" ]]
}

# run_check NAME [exuvia check args...]: one `exuvia check --unit` run with
# its JSON report at $WORK/NAME.json; sets CK_PASS CK_OK CK_FAILED
# CK_CHANGES CK_P50 CK_P99 (ms) and prints its reasons.
run_check() {
  local name=$1 rc=0
  shift
  timeout 600 "${CHECK[@]}" --json "$WORK/$name.json" "$@" >"$WORK/$name.out" 2>&1 || rc=$?
  local out
  out=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
q = d.get("reload_duration") or {}
ms = lambda k: int(round(q[k] * 1000)) if k in q else -1
print(int(bool(d["pass"])), d["load"]["ok"], d["load"]["failed"], d["main_pid_changes"], ms("p50"), ms("p99"), ms("max"))
for r in d.get("reasons", []):
    print("reason", r)
' "$WORK/$name.json" 2>&1) || out="0 -1 -1 -1 -1 -1 -1"
  # shellcheck disable=SC2034 # CK_MAX, CK_RC: read by the sourced scenarios
  read -r CK_PASS CK_OK CK_FAILED CK_CHANGES CK_P50 CK_P99 CK_MAX <<<"$(head -1 <<<"$out")"
  # shellcheck disable=SC2034
  CK_RC=$rc
  ((CK_OK > 0)) && SUM_REQ=$((SUM_REQ + CK_OK))
  ((CK_FAILED != 0)) && SUM_FAIL=$((SUM_FAIL + (CK_FAILED < 0 ? 1 : CK_FAILED)))
  ((CK_CHANGES > 0)) && SUM_RELOADS=$((SUM_RELOADS + CK_CHANGES))
  # Quantiles come from the longest check run of the scenario.
  ((CK_P50 >= 0 && CK_CHANGES >= ${CK_BEST:-0})) && { SUM_P50=$CK_P50 SUM_P99=$CK_P99 CK_BEST=$CK_CHANGES; }
  grep '^reason ' <<<"$out" | sed "s/^reason /INFO check $name: /"
  if [[ $CK_PASS != 1 ]]; then
    info "exuvia check output (tail):"
    tail -40 "$WORK/$name.out"
  fi
}

restarted_since_kill() {
  [[ $(prop NRestarts) != "$R_NR0" && $(prop ActiveState) == active ]]
}

# Successful handover: rc 0, new main, same invocation, active, no restart.
reload_ok() {
  [[ $R_RC == 0 && $R_NEW != "$R_OLD" && $R_NEW != 0 && $R_INV == "$INV0" &&
    $R_STATE == active/running && $R_NR == "$NR0" ]]
}

reload_fields() {
  echo "rc=$R_RC ms=$R_MS mainpid=$R_OLD->$R_NEW inv_same=$([[ $R_INV == "$INV0" ]] && echo 1 || echo 0) state=$R_STATE nrestarts=$R_NR"
}

# query LINE: one request on a fresh connection, answer on stdout.
query() {
  local fd line
  exec {fd}<>/dev/tcp/127.0.0.1/8080 || return 1
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

# percentile P < sorted numbers on stdin (nearest rank).
percentile() {
  awk -v p="$1" '{a[NR]=$1} END {if (NR==0) {print -1; exit}; r=int((p*NR+99)/100); if (r<1) r=1; print a[r]}'
}
