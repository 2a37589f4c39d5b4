#!/bin/bash
# A release that takes over but cannot hand over to itself, for the fleet test (run.sh gives
# it to one host in its third rollout): the first start in a unit's runtime serves (the new
# build, run from the test's payload under the unit's argv[0], so its successors are again
# this file); every later start fails. So `systemctl reload` succeeds and the gate's own
# reloads fail: the playbook must put the previous build back and hand back to it.
# The ExecReload= client role is the exuvia CLI's client (see broken-exuvia-echo.sh).
if [[ -n ${MAINPID:-} ]]; then
  exec /opt/exuvia/bin/exuvia reload "$@"
fi
started=${RUNTIME_DIRECTORY:?not started by systemd}/fleet-gate-failing-started
if [[ -e $started ]]; then
  echo "exuvia-echo: cannot initialise a second time (the fleet test's gate-failing build)" >&2
  exit 1
fi
: >"$started"
exec -a /usr/local/bin/exuvia-echo /run/exuvia-fleet/exuvia-echo-new "$@"
