//! The sandbox of each profile. Every directive here was checked against the fork+exec upgrade
//! (docs/units.md, "Hardening that survives the upgrade"): the old and the new generation share
//! the unit's namespaces, seccomp filter and capability sets, so nothing may pin or hide the
//! binary, start a PID namespace (PrivatePIDs=), or pair PrivateUsers= with ambient capabilities.
use super::listener::Transport;
use super::section::SectionBuilder;
use super::spec::{Profile, Spec};

pub fn apply(spec: &Spec, s: &mut SectionBuilder) {
    capabilities(spec, s);
    let families = match spec.profile {
        Profile::Isolated => "AF_UNIX",
        Profile::Strict | Profile::Compat => "AF_UNIX AF_INET AF_INET6",
    };
    let why_families = match spec.profile {
        Profile::Isolated => {
            "AF_UNIX only: sd_notify and SCM_RIGHTS need it; accepting on an inherited listener needs no socket() call"
        }
        _ => {
            "AF_UNIX for sd_notify and fd passing, AF_INET/AF_INET6 for outbound connections (accepting on inherited listeners needs none)"
        }
    };
    s.add("RestrictAddressFamilies", families, 211, why_families);
    if spec.profile == Profile::Isolated {
        s.add("PrivateNetwork", "yes", 0, "no network namespace access: the activated sockets live in the host namespace and keep working; the service cannot connect out or bind new ports");
        s.add("IPAddressDeny", "any", 235, "no IP traffic from sockets the service creates itself; the activated sockets follow the .socket unit's own ACL");
    }
    s.add(
        "NoNewPrivileges",
        "yes",
        187,
        "no setuid/file-capability gains on exec, also for every future binary version",
    );
    s.add("ProtectSystem", "strict", 214, "read-only OS; a package upgrade replaces the binary by rename, which a read-only bind of the directory tree still shows");
    s.add(
        "ProtectHome",
        "yes",
        214,
        "no access to /home, /root, /run/user",
    );
    s.add("PrivateTmp", "yes", 0, "private /tmp shared by old and new generation (same unit), wiped on restart, not on reload");
    s.add(
        "PrivateDevices",
        "yes",
        209,
        "only pseudo devices (/dev/null, /dev/urandom, …)",
    );
    s.add(
        "DevicePolicy",
        "closed",
        208,
        "no device nodes beyond the standard pseudo devices",
    );
    s.add(
        "PrivateMounts",
        "yes",
        239,
        "mount propagation into the host is cut off",
    );
    s.add(
        "PrivateIPC",
        "yes",
        248,
        "private SysV IPC/POSIX message queues; old and new generation share it",
    );
    s.add(
        "ProtectKernelTunables",
        "yes",
        232,
        "/proc/sys and /sys read-only",
    );
    s.add("ProtectKernelModules", "yes", 232, "no module loading");
    s.add(
        "ProtectKernelLogs",
        "yes",
        244,
        "no kernel log ring buffer access",
    );
    s.add("ProtectControlGroups", "yes", 232, "cgroup tree read-only");
    s.add(
        "ProtectClock",
        "yes",
        245,
        "no clock changes (implies DeviceAllow=char-rtc r, which the analyzer charges 0.1)",
    );
    s.add("ProtectHostname", "yes", 242, "no hostname changes");
    s.add("ProtectProc", "invisible", 247, "other users' processes are hidden; old and new generation share the UID and still see each other");
    if !spec.full_proc {
        s.add("ProcSubset", "pid", 247, "only /proc/PID entries; set full_proc = true if the service reads /proc/meminfo, /proc/sys or /proc/cpuinfo (the sysinfo crate does)");
    }
    s.add("RestrictNamespaces", "yes", 233, "no new namespaces; fork/clone for the upgrade is unaffected (clone3 gets ENOSYS, std falls back to clone)");
    s.add("RestrictRealtime", "yes", 231, "no realtime scheduling");
    s.add("RestrictSUIDSGID", "yes", 242, "no setuid/setgid files");
    s.add("LockPersonality", "yes", 235, "no execution-domain changes");
    if !spec.jit {
        s.add("MemoryDenyWriteExecute", "yes", 231, "no writable+executable memory; set jit = true for JIT engines (wasmtime, PCRE2-JIT, LuaJIT)");
    }
    s.add(
        "SystemCallArchitectures",
        "native",
        209,
        "no foreign-ABI syscalls",
    );
    s.add("SystemCallFilter", "@system-service", 231, "allow-list: execve (@default), fork/clone/pidfd (@process) and sendmsg/recvmsg (@network-io) are all inside; pidfd_getfd is not, so fds move by inheritance or SCM_RIGHTS");
    s.add(
        "SystemCallFilter",
        "~@privileged @resources",
        231,
        "no privileged or resource-limit syscalls",
    );
    s.add("SystemCallErrorNumber", "EPERM", 209, "the filter is frozen at the first start and inherited by every future binary version: a newer binary using a new syscall gets EPERM instead of being killed with SIGSYS");
    s.add("UMask", "0077", 0, "files the service creates are private");
    s.add(
        "RemoveIPC",
        "yes",
        232,
        "IPC objects are removed on stop (they survive a reload: the generations overlap)",
    );
    match spec.profile {
        Profile::Strict | Profile::Isolated if !spec.listeners.is_empty() => {
            s.add("SocketBindDeny", "any", 249, "all listeners come from socket activation: a compromised process cannot open new IP listeners");
        }
        Profile::Compat => {
            let mut any = false;
            for l in &spec.listeners {
                let (proto, port) = match (l.transport, l.address.port()) {
                    (Transport::Tcp, Some(port)) => ("tcp", port),
                    (Transport::Udp, Some(port)) => ("udp", port),
                    _ => continue,
                };
                any = true;
                s.add(
                    "SocketBindAllow",
                    format!("{proto}:{port}"),
                    249,
                    format!(
                        "the service binds listener {} itself; only its port may be bound",
                        l.name
                    ),
                );
            }
            if any {
                s.add(
                    "SocketBindDeny",
                    "any",
                    249,
                    "every other IP bind is refused",
                );
            }
        }
        _ => {}
    }
}

fn capabilities(spec: &Spec, s: &mut SectionBuilder) {
    if spec.needs_bind_cap {
        s.add(
            "CapabilityBoundingSet",
            "CAP_NET_BIND_SERVICE",
            0,
            "the service binds a port < 1024 itself; nothing else can ever be regained by a reload",
        );
        s.add("AmbientCapabilities", "CAP_NET_BIND_SERVICE", 229, "survives execve into the new binary (file capabilities on the binary would clear the ambient set — do not setcap it); PrivateUsers= is left off because the capability would only be valid inside the user namespace");
    } else {
        s.add("CapabilityBoundingSet", "", 0, "no capabilities at all: listeners come from socket activation (or are unprivileged), and a reload can never regain one");
        s.add("AmbientCapabilities", "", 229, "no ambient capabilities");
    }
    if spec.private_users {
        s.add("PrivateUsers", "yes", 232, "user namespace with only the service user mapped; safe because no ambient capability is needed");
    }
}
