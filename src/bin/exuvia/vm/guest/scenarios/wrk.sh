# wrk: a client nobody here wrote (HTTP/1.1 keep-alive, no retries) through RELOADS
# `systemctl reload`s. One wrk per script of WRK_SCRIPTS (a plain GET of HTTP_PATH when
# there is none), each with CONNECTIONS connections, all running while the unit is reloaded
# one reload after the other. Fails on any socket error wrk counts (connect, read, write,
# timeout), any status wrk counts as an error (>= 400), any response a script counts as bad
# (a `checked responses: N ok, M bad` line, as tests/clients/check.lua prints; then N must
# equal wrk's own request count), a wrk that did not run to its end, and any reload that
# failed, did not give the unit a new MainPID, restarted it or changed its invocation.
# A request lost on a keep-alive connection at the handover is a read error here: wrk does
# not retry, and neither does this scenario (docs/http.md).
# Sourced by driver.sh (see lib.sh for the helpers; faults.sh for `dead`).
# shellcheck source=/dev/null
source /run/exuvia-vm/faults.sh
[[ -n $TARGET_PORT ]] || fatal "scenario wrk needs a TCP target (http://HOST:PORT), not $TARGET"
command -v wrk >/dev/null || fatal "scenario wrk: no wrk in the guest (exuvia vm adds the Debian package; with --files, bring one that runs here)"
n=$RELOADS
pause=$(awk -v m="${INTERVAL%ms}" 'BEGIN { print m / 1000 }')
host=$TARGET_HOST
[[ $host == *:* ]] && host="[$host]"
url="http://$host:$TARGET_PORT$HTTP_PATH"
# Bounded even if the stop below were never sent: every reload may take its unit's
# TimeoutStartSec=, and the guest itself is bounded by --timeout.
limit=$((n * 10 + 60))
declare -a labels=() pids=()
# WRK_SCRIPTS: one `FILE [ARG...]` per line (payload.rs); FILE is in the payload.
while read -r script args; do
  [[ -n $script ]] || continue
  # FILE is wrk/STEM.N.lua: the label is STEM and the arguments (N only to tell twins apart).
  label=$(basename "$script" .lua)
  label=${label%.*}
  [[ -n $args ]] && label+="-${args// /-}"
  label=${label//[!A-Za-z0-9_-]/_}
  [[ " ${labels[*]} " == *" $label "* ]] && label+="-${#labels[@]}"
  labels+=("$label")
  # shellcheck disable=SC2086 # args: the script's own arguments, split as given
  wrk -t1 -c"$CONNECTIONS" -d"${limit}s" --timeout 10s -s "$script" "$url" -- $args \
    >"$WORK/wrk-$label.txt" 2>&1 &
  pids+=($!)
done <<<"$WRK_SCRIPTS"
if ((${#labels[@]} == 0)); then
  labels=(get)
  wrk -t1 -c"$CONNECTIONS" -d"${limit}s" --timeout 10s "$url" >"$WORK/wrk-get.txt" 2>&1 &
  pids=($!)
fi
info "wrk: ${#labels[@]} run(s) (${labels[*]}) of $CONNECTIONS connections each against $url; $n reloads"
# Every connection open before the first reload.
sleep 1
pid_start=$(prop MainPID)
bad_reload=0
declare -a ms=() mains=("$pid_start")
for ((i = 1; i <= n; i++)); do
  reload_plain
  ms+=("$R_MS")
  mains+=("$R_NEW")
  if ! reload_ok; then
    bad_reload=$((bad_reload + 1))
    info "wrk: reload $i: $(reload_fields)"
  fi
  sleep "$pause"
done
# The last generation serves a while too.
sleep 1
# SIGINT: wrk stops and prints its counts (it installs its own handler, so a background
# job's ignored SIGINT does not keep it from that).
for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null; done
for i in "${!pids[@]}"; do
  wait_for 15 dead "${pids[$i]}" || { kill -KILL "${pids[$i]}" 2>/dev/null; info "wrk ${labels[$i]}: did not stop in 15 s, killed"; }
  rc=0
  wait "${pids[$i]}" 2>/dev/null || rc=$?
  f=$WORK/wrk-${labels[$i]}.txt
  reqs=$(sed -nE 's/^ *([0-9]+) requests in .*/\1/p' "$f")
  # "Socket errors: connect 0, read 2, write 0, timeout 0", printed only when one is not 0.
  sock=$(sed -nE 's/^ *Socket errors: (.*)/\1/p' "$f" | tr -d ' ' | tr ',' ' ')
  sock=${sock// /,}
  nerr=0
  for kv in ${sock//,/ }; do nerr=$((nerr + ${kv//[!0-9]/})); done
  status=$(sed -nE 's/^ *Non-2xx or 3xx responses: ([0-9]+)/\1/p' "$f")
  checked=$(sed -nE 's/^checked responses: ([0-9]+) ok, ([0-9]+) bad.*/\1 \2/p' "$f")
  read -r c_ok c_bad <<<"${checked:-- -}"
  ok=1
  [[ $rc == 0 && ${reqs:-0} -ge $((n * 10)) && $nerr == 0 && -z $status ]] || ok=0
  [[ -z $checked || ($c_bad == 0 && $c_ok == "$reqs") ]] || ok=0
  check "wrk_${labels[$i]}_clean" "$ok" "requests=${reqs:--1} socket_errors=${sock:-none} socket_error_count=$nerr status_errors=${status:-0} checked_ok=$c_ok checked_bad=$c_bad rc=$rc min_requests=$((n * 10))"
  metric "wrk_${labels[$i]}" "requests=${reqs:--1} socket_errors=$nerr status_errors=${status:-0} bad=$c_bad rps=$(sed -nE 's/^Requests\/sec: *([0-9.]+)/\1/p' "$f")"
  ((${reqs:-0} > 0)) && SUM_REQ=$((SUM_REQ + reqs))
  SUM_FAIL=$((SUM_FAIL + nerr + ${status:-0} + (${c_bad/-/0})))
  ((ok)) || { info "wrk ${labels[$i]} output:"; cat "$f"; }
done
distinct=$(printf '%s\n' "${mains[@]}" | sort -u | wc -l)
check reloads_hand_over "$([[ $bad_reload == 0 && $distinct == $((n + 1)) ]] && echo 1 || echo 0)" \
  "reloads=$n not_handed_over=$bad_reload distinct_main_pids=$distinct want=$((n + 1))"
end_state "$pid_start"
SUM_P50=$(printf '%s\n' "${ms[@]}" | sort -n | percentile 50)
SUM_P99=$(printf '%s\n' "${ms[@]}" | sort -n | percentile 99)
metric reload_ms "n=$n p50=$SUM_P50 p99=$SUM_P99 source=systemctl"
