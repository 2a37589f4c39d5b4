//! systemd protocol simulator (owned by the simulator work item).
