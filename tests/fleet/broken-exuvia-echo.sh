#!/bin/sh
# A release that cannot start, for the fleet test (tests/fleet/run.sh gives it to one host).
# As the server it fails during initialisation, as a build with a missing config or library
# does. As the unit's ExecReload= client (systemd sets $MAINPID for control processes, never
# for the main process) it runs the exuvia CLI's client, which is the same client as the
# service binary's, so the reload really starts the upgrade and the successor is what fails.
if [ -n "${MAINPID:-}" ]; then
  exec /opt/exuvia/bin/exuvia reload "$@"
fi
echo "exuvia-echo: cannot initialise (the fleet test's broken build)" >&2
exit 1
