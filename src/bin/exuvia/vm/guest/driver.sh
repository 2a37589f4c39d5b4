#!/bin/bash
# In-guest driver of `exuvia vm`: runs as root under the guest's systemd
# (started by systemd.run=), installs the inputs and runs ONE scenario.
# Every assertion prints `RESULT check=NAME ok=0|1 key=value...`;
# measurements print `RESULT metric=NAME ...`; the last line is
# `VERDICT pass|fail`, or `FATAL why` + `VERDICT fatal` when the service
# cannot even start (bad input). The exit status is 0 iff the verdict is pass.
#
# SCENARIO comes from the kernel command line (systemd.setenv=); everything
# else from /run/exuvia-vm/vm.env.

# Straight to the console: synchronous and unprefixed, unlike journal+console.
exec >/dev/console 2>&1
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# shellcheck source=/dev/null
source /run/exuvia-vm/vm.env
# shellcheck source-path=SCRIPTDIR source=lib.sh
source /run/exuvia-vm/lib.sh

SCENARIO=${SCENARIO:-reload}
echo "STAGE driver_start epoch=$(date +%s.%N) scenario=$SCENARIO"
echo "INFO systemd=$(systemctl --version | head -1)"
scenario_file=/run/exuvia-vm/scenarios/$SCENARIO.sh
[[ -r $scenario_file ]] || fatal "no scenario $SCENARIO"
"$JUDGE" --version >/dev/null 2>&1 || fatal "the exuvia binary does not run in this guest (built against a newer libc than the guest has?)"

install_inputs
stage install
start_units
stage start
# shellcheck source=/dev/null
source "$scenario_file"
stage "$SCENARIO"
finish
