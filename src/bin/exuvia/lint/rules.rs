//! The pitfalls of units for services that upgrade by fork+exec (docs/units.md, "What `exuvia
//! lint` checks"), each with the fix. Findings a unit deliberately accepts are silenced by
//! `# exuvia-lint: allow RULE` on the line directly above the directive.
use std::path::Path;

pub use super::finding::{Finding, finding};
use super::keys::{KeyStatus, key_status, value_needs};
use super::parse::{Entry, UnitText};
use super::{client, deadlines};

/// Sections a unit of this file type may have (besides `X-` extensions).
fn allowed_sections(path: &Path) -> Option<&'static [&'static str]> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("service") => Some(&["Unit", "Service", "Install"]),
        Some("socket") => Some(&["Unit", "Socket", "Install"]),
        Some("conf") => Some(&["Unit", "Service", "Socket", "Install"]),
        _ => None,
    }
}

/// Reported by the start-limit-section rule, so not again as unknown keys.
const START_LIMIT_KEYS: [&str; 4] = [
    "StartLimitIntervalSec",
    "StartLimitInterval",
    "StartLimitBurst",
    "StartLimitAction",
];

fn yes(v: &str) -> bool {
    matches!(v, "yes" | "true" | "on" | "1")
}

pub fn check(path: &Path, unit: &UnitText, target: u32) -> Vec<Finding> {
    let mut out: Vec<Finding> = unit
        .errors
        .iter()
        .map(|(l, m)| {
            finding(
                *l,
                "syntax",
                m.clone(),
                "fix the line; systemd ignores what it cannot parse",
            )
        })
        .collect();
    known_keys(path, unit, target, &mut out);
    reload_model(unit, &mut out);
    client::check(unit, &mut out);
    deadlines::check(unit, &mut out);
    sandbox(unit, &mut out);
    out.retain(|f| {
        !unit
            .allows
            .iter()
            .any(|(l, r)| *l + 1 == f.line && r == f.rule)
    });
    out.sort_by_key(|f| f.line);
    out
}

fn known_keys(path: &Path, unit: &UnitText, target: u32, out: &mut Vec<Finding>) {
    let allowed = allowed_sections(path);
    for s in &unit.sections {
        if s.name.starts_with("X-") {
            continue;
        }
        if let Some(allowed) = allowed {
            if !allowed.contains(&s.name.as_str()) {
                out.push(finding(
                    s.line,
                    "unknown-section",
                    format!("section [{}] is not valid here; systemd ignores it", s.name),
                    format!(
                        "use one of {}",
                        allowed
                            .iter()
                            .map(|a| format!("[{a}]"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
                continue;
            }
        } else if !["Unit", "Install"].contains(&s.name.as_str()) {
            continue; // .timer, .mount, …: no key list for those.
        }
        for e in &s.entries {
            if s.name == "Service" && START_LIMIT_KEYS.contains(&e.key.as_str()) {
                continue;
            }
            match key_status(&s.name, &e.key, target) {
                KeyStatus::Known => {}
                KeyStatus::Newer(v) => out.push(finding(e.line, "unknown-key", format!("{}= needs systemd {v}; systemd {target} ignores it with only a warning", e.key), format!("drop it or ship a variant per systemd version (exuvia unit --systemd {target})"))),
                KeyStatus::Unknown => out.push(finding(e.line, "unknown-key", format!("unknown key {}= in [{}]: systemd ignores it and `systemd-analyze verify` still exits 0", e.key, s.name), "fix the spelling or remove it (e.g. ExecReloadPre= does not exist)")),
            }
            if let Some(v) = value_needs(&e.key, &e.value, target) {
                let fix = if e.key == "Type" {
                    "systemd < 253 treats it as Type=simple (no readiness, no reload): use Type=notify plus ExecReload= (exuvia unit --systemd 252)".to_string()
                } else {
                    format!("use a value systemd {target} knows, or ship a per-version variant")
                };
                out.push(finding(
                    e.line,
                    "unknown-value",
                    format!(
                        "{}={} needs systemd {v}; systemd {target} ignores the setting",
                        e.key, e.value
                    ),
                    fix,
                ));
            }
        }
    }
}

fn reload_model(unit: &UnitText, out: &mut Vec<Finding>) {
    let ty = unit.last("Service", "Type").map(|e| e.value.as_str());
    if let Some(e) = unit
        .last("Service", "NotifyAccess")
        .filter(|e| e.value == "all")
    {
        out.push(finding(e.line, "notify-access-all", "NotifyAccess=all lets any process of the cgroup change state: a late STOPPING=1 from the draining old generation stops the whole unit", "use NotifyAccess=main and send MAINPID=<new> and READY=1 in one datagram from the old main"));
    }
    if let Some(e) = unit
        .last("Service", "KillMode")
        .filter(|e| matches!(e.value.as_str(), "process" | "mixed" | "none"))
    {
        let why = match e.value.as_str() {
            "mixed" => {
                "KillMode=mixed SIGKILLs a still-draining old generation as soon as the main process exits"
            }
            _ => {
                "this KillMode leaves a still-draining old generation running after the unit stopped"
            }
        };
        out.push(finding(
            e.line,
            "kill-mode",
            why,
            "use KillMode=control-group (the default): every generation gets SIGTERM and drains",
        ));
    }
    for e in unit.entries("Service", "ExecReload") {
        if !is_kill_hup(&e.value) {
            continue;
        }
        if ty == Some("notify-reload") {
            out.push(finding(e.line, "exec-reload-kill", "ExecReload= sends SIGHUP although Type=notify-reload already sends ReloadSignal=: systemd 253-261 run both, starting two upgrades", "replace it by the synchronous client exuvia unit writes (ExecReload=@/usr/bin/APP exuvia-reload --wait --control /run/APP/control.sock, or `exuvia reload --wait`), or remove ExecReload="));
        } else {
            out.push(finding(e.line, "exec-reload-kill", "ExecReload=kill -HUP returns at once: systemctl reload reports success before the upgrade ran, and a failed upgrade stays invisible", "use a synchronous reload client (ExecReload=@/usr/bin/APP exuvia-reload --wait --control /run/APP/control.sock, as exuvia unit writes it), or Type=notify-reload with ReloadSignal=SIGHUP (systemd >= 253)"));
        }
    }
    if let Some(e) = unit.last("Service", "PIDFile") {
        if matches!(ty, None | Some("simple" | "exec")) {
            out.push(finding(e.line, "pidfile-simple", format!("PIDFile= has no effect with Type={}: systemd tracks the process it started, and stops the unit when that process exits after a handover", ty.unwrap_or("simple")), "use Type=notify-reload (or Type=notify on < 253) and send MAINPID=<new> from the old main"));
        }
    }
    for key in START_LIMIT_KEYS {
        for e in unit.entries("Service", key) {
            let (what, fix) = match key {
                "StartLimitIntervalSec" => (
                    "is ignored in [Service] (systemd only knows it in [Unit])",
                    "move it to [Unit]",
                ),
                "StartLimitInterval" => (
                    "in [Service] is a legacy alias",
                    "move it to [Unit] as StartLimitIntervalSec=",
                ),
                _ => ("in [Service] is a legacy alias", "move it to [Unit]"),
            };
            out.push(finding(
                e.line,
                "start-limit-section",
                format!("{key}= {what}"),
                fix,
            ));
        }
    }
    for e in unit
        .entries("Service", "ExecStart")
        .filter(|e| e.value.contains("/proc/self/exe"))
    {
        out.push(finding(e.line, "proc-self-exe", "ExecStart= runs /proc/self/exe: after a package upgrade it names the deleted old binary", "use the install path of the binary"));
    }
}

fn sandbox(unit: &UnitText, out: &mut Vec<Finding>) {
    if let Some(e) = unit
        .last("Service", "PrivatePIDs")
        .filter(|e| yes(&e.value))
    {
        out.push(finding(e.line, "private-pids", "PrivatePIDs=yes: the kernel kills the PID namespace when its init (the old main) exits after the handover, and MAINPID= would carry a namespaced PID", "remove PrivatePIDs="));
    }
    let filters: Vec<&Entry> = unit.entries("Service", "SystemCallFilter").collect();
    if filters.last().is_some_and(|e| !e.value.is_empty())
        && unit
            .last("Service", "SystemCallErrorNumber")
            .is_none_or(|e| e.value.is_empty())
    {
        out.push(finding(filters[0].line, "syscall-errno", "SystemCallFilter= without SystemCallErrorNumber=: the filter is frozen at the first start, so a newer binary using a new syscall after a reload is killed with SIGSYS", "add SystemCallErrorNumber=EPERM"));
    }
    let private_users = unit.last("Service", "PrivateUsers").is_some_and(|e| {
        yes(&e.value) || matches!(e.value.as_str(), "self" | "identity" | "full" | "managed")
    });
    if let Some(e) = unit
        .last("Service", "AmbientCapabilities")
        .filter(|e| !e.value.is_empty() && private_users)
    {
        out.push(finding(e.line, "private-users-caps", "AmbientCapabilities= with PrivateUsers=: the capabilities only apply inside the user namespace (binding a port < 1024 fails)", "drop PrivateUsers=, or get the listener from a .socket unit and drop the capability"));
    }
    let Some(binary) = unit
        .last("Service", "ExecStart")
        .and_then(|e| exec_path(&e.value))
    else {
        return;
    };
    for key in [
        "InaccessiblePaths",
        "TemporaryFileSystem",
        "NoExecPaths",
        "ExecPaths",
        "BindPaths",
        "BindReadOnlyPaths",
        "ReadOnlyPaths",
    ] {
        for e in unit.entries("Service", key) {
            for word in e.value.split_whitespace() {
                let path = word
                    .trim_start_matches(['-', '+'])
                    .split(':')
                    .next()
                    .unwrap_or("");
                let path = path.trim_end_matches('/');
                let hides = matches!(
                    key,
                    "InaccessiblePaths" | "TemporaryFileSystem" | "NoExecPaths"
                ) && !path.is_empty()
                    && (binary == path || binary.starts_with(&format!("{path}/")));
                let pins = path == binary && !hides && key != "ReadOnlyPaths";
                if hides || pins {
                    let what = if hides {
                        "hides or blocks"
                    } else {
                        "pins (binds the inode of)"
                    };
                    out.push(finding(e.line, "binary-path", format!("{key}={path} {what} the service binary {binary}: a re-exec after a package upgrade fails or runs the old binary"), "never point sandbox paths at the binary file; use directory-level options that keep its directory visible"));
                }
            }
        }
    }
}

/// `kill -HUP $MAINPID`, `/bin/kill -s HUP …`, `kill -SIGHUP …`, `kill -1 …`.
fn is_kill_hup(cmd: &str) -> bool {
    let mut words = cmd.split_whitespace();
    let first = words
        .next()
        .unwrap_or("")
        .trim_start_matches(['-', '@', ':', '+', '!', '|']);
    if first.rsplit('/').next() != Some("kill") {
        return false;
    }
    words.any(|w| matches!(w.trim_start_matches('-'), "HUP" | "SIGHUP" | "1"))
}

/// The binary of an ExecStart= line, without the `-@:+!` prefixes.
pub fn exec_path(cmd: &str) -> Option<&str> {
    exec_command(cmd).filter(|c| c.starts_with('/'))
}

/// The command word of an Exec*= line (absolute path or bare name), without the `-@:+!|` prefixes.
pub fn exec_command(cmd: &str) -> Option<&str> {
    let first = cmd
        .split_whitespace()
        .next()?
        .trim_start_matches(['-', '@', ':', '+', '!', '|']);
    (!first.is_empty()).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_hup_forms() {
        assert!(is_kill_hup("kill -HUP $MAINPID"));
        assert!(is_kill_hup("/bin/kill -s HUP $MAINPID"));
        assert!(is_kill_hup("-/usr/bin/kill -SIGHUP $MAINPID"));
        assert!(!is_kill_hup("/usr/bin/exuvia reload --wait"));
        assert!(!is_kill_hup("kill -TERM $MAINPID"));
    }
}
