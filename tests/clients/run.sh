#!/usr/bin/env bash
# Proof with clients nobody here wrote (docs/http.md): wrk GETs and POSTs, h2load (h2c) and
# Python websockets against examples/axum, Python grpcio (unary calls and server streams)
# against examples/tonic — each with CONNECTIONS connections while the server upgrades itself
# UPGRADES times by SIGHUP. Every verdict is read from the client's own output; any error,
# wrong answer, abrupt close or missed upgrade fails the run. Every wait is bounded.
#
# usage: tests/clients/run.sh [EXAMPLES_DIR]        (default: target/debug/examples)
# env:   UPGRADES (50)  CONNECTIONS (50)  SPACING (seconds between upgrades, 0.5)
#        ONLY=axum|tonic runs one of the two servers
#        EXUVIA_DRAIN_SOFT for the servers (3s: streams are told 3 s after each handover)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/debug/examples}
upgrades=${UPGRADES:-50}
conns=${CONNECTIONS:-50}
spacing=${SPACING:-0.5}
export EXUVIA_DRAIN_SOFT=${EXUVIA_DRAIN_SOFT:-3s}
out=target/clients
venv=target/clients-venv
here=tests/clients

for tool in wrk h2load; do
  command -v $tool >/dev/null || { echo "$tool is missing (apt-get install wrk nghttp2-client)" >&2; exit 1; }
done
for ex in axum tonic; do
  [[ -x $bin/$ex ]] || { echo "$bin/$ex is missing: build the examples first (cargo test builds them)" >&2; exit 1; }
done
rm -rf "$out"
mkdir -p "$out/py"
[[ -x $venv/bin/python ]] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check 'grpcio>=1.60' 'grpcio-tools>=1.60' 'websockets>=13'
"$venv/bin/python" -m grpc_tools.protoc -I examples/proto --python_out="$out/py" \
  --grpc_python_out="$out/py" examples/proto/echo.proto

# Every generation this script started or watched take over; nothing else is ever signalled.
declare -a gens=() clients=() wrks=() pys=()
cleanup() {
  local p
  for p in "${clients[@]}" "${gens[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

# start NAME [FLAGS…]: runs examples/NAME on a free port; sets $addr and $pidf.
start() {
  local name=$1 deadline=$((SECONDS + 20))
  shift
  pidf=$out/$name.pid
  # A previous phase's files would satisfy the wait below before the new server truncates them.
  rm -f "$pidf" "$out/$name.log"
  NO_COLOR=1 RUST_LOG=${RUST_LOG:-info} "$bin/$name" --listen 127.0.0.1:0 --pid-file "$pidf" \
    --max-draining 16 "$@" 2>"$out/$name.log" &
  gens+=($!)
  until [[ -s $pidf ]] && grep -q 'serving addr=' "$out/$name.log"; do
    ((SECONDS < deadline)) || fail "$name did not start: $(tail -5 "$out/$name.log")"
    sleep 0.05
  done
  addr=$(grep -m1 -o 'serving addr=[0-9.:]*' "$out/$name.log" | cut -d= -f2)
  [[ -n $addr ]] || fail "$name: no address in its log"
}

# upgrade_loop: UPGRADES upgrades by SIGHUP, each confirmed by the pid file naming the
# successor within 15 s; records the count in $upgraded.
upgrade_loop() {
  local i old new deadline
  upgraded=0
  for ((i = 0; i < upgrades; i++)); do
    old=$(cat "$pidf")
    kill -HUP "$old"
    deadline=$((SECONDS + 15))
    while new=$(cat "$pidf" 2>/dev/null || true); [[ -z $new || $new == "$old" ]]; do
      ((SECONDS < deadline)) || fail "upgrade $((i + 1)): no takeover within 15 s"
      sleep 0.01
    done
    gens+=("$new")
    upgraded=$((upgraded + 1))
    sleep "$spacing"
  done
}

# stop: SIGTERM to the current generation, then every generation must exit within 40 s.
stop() {
  local deadline=$((SECONDS + 40)) p
  kill -TERM "$(cat "$pidf")"
  for p in "${gens[@]}"; do
    while kill -0 "$p" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) != Z ]]; do
      ((SECONDS < deadline)) || fail "generation $p still runs 40 s after stop"
      sleep 0.05
    done
  done
  gens=()
}

# The clients run until the upgrades are done (then wrk gets SIGINT, the Python clients
# SIGTERM: each prints its summary), bounded by $limit seconds in any case.
limit=$((upgrades * 3 + 60))
declare -a rows=()
row() { rows+=("$(printf '%-24s %10s %9s %7s   %s' "$@")"); }
failed=0
check() { # LABEL STATUS DETAIL: records a failed check (the run goes on to print them all)
  if [[ $2 != 0 ]]; then
    echo "FAIL: $1: $3" >&2
    failed=1
  fi
}
json() { "$venv/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }

# run_load NAME: the upgrade loop while the clients the caller started run; then the
# clients are told to finish, and the service is stopped.
run_load() {
  local name=$1 t0=$SECONDS c
  sleep 1
  upgrade_loop
  echo "    $name: $upgraded upgrades in $((SECONDS - t0 - 1)) s"
  sleep 1
  touch "$out/upgrades-done"
  for c in "${wrks[@]}"; do kill -INT "$c" 2>/dev/null || true; done
  for c in "${pys[@]}"; do kill -TERM "$c" 2>/dev/null || true; done
  for c in "${clients[@]}"; do wait "$c" || true; done
  clients=() wrks=() pys=()
  stop
  rm -f "$out/upgrades-done"
}

# h2load opens no new connection after a GOAWAY (1.52 to 1.70: that client just stops, and
# prints "Process Request Failure" for the request it could not send), so one run meets one
# upgrade: run it back to back, half a second each, a fresh set of connections every time.
h2load_runs() {
  local i
  for ((i = 0; i < 400; i++)); do
    [[ -e $out/upgrades-done ]] && return
    h2load -c"$conns" -t1 -m1 -D500ms "http://$addr/" >"$out/h2load-$i.txt" 2>&1 || true
  done
}

axum_phase() {
echo "=== axum: wrk GET, wrk POST, h2load (h2c), websockets; $conns connections each; $upgrades upgrades"
start axum
wrk -t1 -c"$conns" -d"${limit}s" --timeout 10s -s $here/check.lua "http://$addr/" >"$out/wrk-get.txt" 2>&1 &
clients+=($!) wrks+=($!)
WRK_POST=1 wrk -t1 -c"$conns" -d"${limit}s" --timeout 10s -s $here/check.lua "http://$addr/" >"$out/wrk-post.txt" 2>&1 &
clients+=($!) wrks+=($!)
h2load_runs &
clients+=($!)
"$venv/bin/python" $here/ws_stay.py "ws://$addr/ws" "$conns" "$limit" >"$out/ws-stay.json" 2>"$out/ws-stay.err" &
clients+=($!) pys+=($!)
run_load axum

for kind in get post; do
  f=$out/wrk-$kind.txt
  reqs=$(sed -nE 's/^ *([0-9]+) requests in .*/\1/p' "$f")
  sock=$(grep -oE 'Socket errors:.*' "$f" || echo none)
  non2xx=$(sed -nE 's/^ *Non-2xx or 3xx responses: ([0-9]+)/\1/p' "$f")
  ok=$(sed -nE 's/^checked responses: ([0-9]+) ok.*/\1/p' "$f")
  bad=$(sed -nE 's/^checked responses: [0-9]+ ok, ([0-9]+) bad.*/\1/p' "$f")
  st=0
  [[ $sock == none && -z $non2xx && ${bad:-1} == 0 && ${ok:-0} -gt 0 && $ok == "${reqs:-}" ]] || st=1
  check "wrk $kind" $st "$(cat "$f")"
  row "wrk ${kind^^} (HTTP/1.1)" "${reqs:-0}" "$upgraded" "$((${bad:-0} + ${non2xx:-0}))" "socket errors: $sock"
done

read -r runs h2ok h2fail h2err h2timeout h2bad < <(cat "$out"/h2load-*.txt /dev/null | awk '
  /^requests: / { runs++; ok += $8; fail += $10; err += $12; to += $14; if ($8 == 0) bad++ }
  /^status codes: / { c2 += $3 }
  END { printf "%d %d %d %d %d %d\n", runs, ok, fail, err, to, bad + (c2 != ok) }')
st=0
[[ $runs -gt 0 && $h2ok -gt 0 && $h2fail == 0 && $h2err == 0 && $h2timeout == 0 && $h2bad == 0 ]] || st=1
check h2load $st "$(grep -h '^requests:' "$out"/h2load-*.txt | sort | uniq -c | sort -rn | head)"
met=$(cat "$out"/h2load-*.txt | grep -c '^Process Request Failure' || true)
row "h2load (h2c)" "$h2ok" "$upgraded" "$((h2fail + h2err + h2timeout))" "$runs runs; $met connections met a GOAWAY; failed $h2fail, errored $h2err, timeout $h2timeout"

st=0
"$venv/bin/python" - "$out/ws-stay.json" <<'PY' || st=1
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["failures"] == 0 and d["echoes"] > 0 and d["large"] > 0 else 1)
PY
check "websockets (handed over)" $st "$(cat "$out/ws-stay.json" "$out/ws-stay.err")"
handed=$(grep -c 'live connections adopted' "$out/axum.log" || true)
# Every successor must have taken the connections over: a generation that let them drain
# instead would show up here even if its clients' reconnects went unnoticed.
[ "$handed" -ge "$upgraded" ] || check "websockets (one adoption per upgrade)" 1 "$handed adoptions for $upgraded upgrades"
row "websockets, handed over" "$(json "$out/ws-stay.json" echoes)" "$upgraded" "$(json "$out/ws-stay.json" failures)" \
  "one connection each throughout: disconnects $(json "$out/ws-stay.json" disconnects), $(json "$out/ws-stay.json" large) large messages, $handed adoptions"

# A successor that refuses the WebSockets (another state format): the old generation keeps
# them and, at its soft deadline, closes each in order (1001) for the client to reconnect.
echo "=== axum, successor refusing the hand-off: websockets; $conns connections; ${REFUSED_UPGRADES:-20} upgrades"
echo "state-version 2" >"$out/refuse"
start axum --fail-file "$out/refuse"
"$venv/bin/python" $here/ws_client.py "ws://$addr/ws" "$conns" "$limit" >"$out/ws.json" 2>"$out/ws.err" &
clients+=($!) pys+=($!)
upgrades_all=$upgrades upgrades=${REFUSED_UPGRADES:-20}
run_load axum
upgrades=$upgrades_all
st=0
"$venv/bin/python" - "$out/ws.json" "$upgraded" <<'PY' || st=1
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["failures"] == 0 and d["orderly_closes"] >= int(sys.argv[2]) and d["reconnects"] > 0 else 1)
PY
check "websockets (refused)" $st "$(cat "$out/ws.json" "$out/ws.err")"
row "websockets, refused" "$(json "$out/ws.json" echoes)" "$upgraded" "$(json "$out/ws.json" failures)" \
  "orderly closes (1001) $(json "$out/ws.json" orderly_closes), reconnects $(json "$out/ws.json" reconnects), abrupt $(json "$out/ws.json" abrupt_closes)"

}

tonic_phase() {
echo "=== tonic: grpcio unary calls + server streams; $conns + 10 channels; $upgrades upgrades"
start tonic
PYTHONPATH=$out/py "$venv/bin/python" $here/grpc_client.py "$addr" "$conns" "${STREAMS:-10}" "$limit" >"$out/grpc.json" 2>"$out/grpc.err" &
clients+=($!) pys+=($!)
run_load tonic
st=0
"$venv/bin/python" - "$out/grpc.json" <<'PY' || st=1
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["failures"] == 0 and d["calls_ok"] > 0 and d["streams_ended_by_drain"] > 0 else 1)
PY
check grpcio $st "$(cat "$out/grpc.json"; tail -5 "$out/grpc.err")"
g=$out/grpc.json
row "grpcio unary" "$(($(json "$g" calls_ok) + $(json "$g" calls_failed)))" "$upgraded" \
  "$(($(json "$g" calls_failed) + $(json "$g" wrong_answers)))" "$conns channels, retries off (grpc.enable_retries=0)"
row "grpcio server streams" "$(($(json "$g" streams_ok) + $(json "$g" streams_ended_by_drain) + $(json "$g" streams_failed)))" \
  "$upgraded" "$(json "$g" streams_failed)" \
  "${STREAMS:-10} channels; status OK: $(json "$g" streams_ok) by count, $(json "$g" streams_ended_by_drain) with a last tick at the drain"

}

case ${ONLY:-both} in
  both) axum_phase && tonic_phase ;;
  axum) axum_phase ;;
  tonic) tonic_phase ;;
  *) fail "ONLY must be axum or tonic" ;;
esac
echo "=== HTTP clients through upgrades (requests: answered requests / calls / echoes / streams)"
printf '%-24s %10s %9s %7s   %s\n' client requests upgrades errors detail
printf '%s\n' "${rows[@]}"
((failed == 0)) || fail "see above"
echo "PASS"
