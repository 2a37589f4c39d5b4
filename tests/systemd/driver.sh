#!/bin/bash
# In-guest driver: runs as root under the guest's systemd (started by
# systemd.run=), installs the payload and runs ONE scenario. Every assertion
# prints `RESULT check=NAME ok=0|1 key=value...`; measurements print
# `RESULT metric=NAME ...`; the last line is `VERDICT pass|fail`. The exit
# status is 0 iff the verdict is pass (systemd.run_*_action=exit hands it to
# nspawn).
#
# Environment (systemd.setenv= on the nspawn command line):
#   SCENARIO  reload50 | replace | broken | stop | sigkill | restart
#   VARIANT   plain | execreload   (unit variant, see units/variants/)
#             shipped | shipped252  (the generated units from units/ and
#             units/systemd-252/; the latter reloads asynchronously)
#   RELOADS   number of reloads in reload50 (default 50)
#   ACTION    reload (default) | restart | kill9: what reload_once does;
#             the last two are negative controls that must fail checks
#   DRAIN_HARD  overrides the service's hard drain deadline (seconds)

# Straight to the console: synchronous and unprefixed, unlike journal+console.
exec >/dev/console 2>&1
set -u
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# shellcheck source=/dev/null
source /payload/lib-driver.sh

SCENARIO=${SCENARIO:-reload50}
VARIANT=${VARIANT:-plain}
echo "STAGE driver_start epoch=$(date +%s.%N) scenario=$SCENARIO variant=$VARIANT"
echo "INFO systemd=$(systemctl --version | head -1)"

scenario_file=/payload/scenarios/$SCENARIO.sh
if [[ ! -r $scenario_file ]]; then
  check scenario_exists 0 "name=$SCENARIO"
  finish
fi

# Deadlines per scenario (flags of the example servers and the stand-in).
# shellcheck disable=SC2034 # read by install_payload in lib-driver.sh
case $SCENARIO in
  # Long-lived connections stay on the first generation for the whole run.
  reload50) SERVICE_ARGS="--ready-timeout 5 --drain-hard 300" ;;
  # Short enough that a stop waits visibly for the drain, well under TimeoutStopSec=15s.
  stop) SERVICE_ARGS="--ready-timeout 5 --drain-hard 7" ;;
  broken) SERVICE_ARGS="--ready-timeout 3 --drain-hard 10" ;;
  # A restart's SIGTERM drains in-flight requests; bound it well under TimeoutStopSec.
  restart) SERVICE_ARGS="--ready-timeout 5 --drain-hard 5" ;;
  *) SERVICE_ARGS="" ;;
esac
# Negative controls restart the service: don't let it drain for minutes.
# shellcheck disable=SC2034
[[ -n ${DRAIN_HARD:-} ]] && SERVICE_ARGS="--ready-timeout 5 --drain-hard $DRAIN_HARD"
# ExecReload=kill returns before the handover: reload_once waits for it.
# shellcheck disable=SC2034 # read by reload_once in lib-driver.sh
[[ $VARIANT == shipped252 ]] && RELOAD_ASYNC=1
install_payload
stage install
start_service
stage start
# shellcheck source=/dev/null
source "$scenario_file"
stage "$SCENARIO"
finish
