//! `exuvia check --unit NAME`: the same verdict against a real systemd unit on this host.
//!
//! systemd judges the protocol itself, so what is checked is what it decided:
//! `systemctl reload` must return 0, and `systemctl show` before and after must show the unit
//! still active, not restarted (`NRestarts`), not re-activated (`InvocationID`), and under a
//! new `MainPID` — a reload that "succeeds" by restarting the service still drops clients.
//! With `--in-place` (a service that reloads without a new process: nginx, or a plain
//! `Type=notify-reload` server) the MainPID must instead stay the same.
use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use exuvia_testing::load::Target;

use super::drive::{self, Schedule, Service};
use super::progress::Ui;
use super::report::{CheckReport, Quantiles, ReloadEntry, SCHEMA, SystemctlEntry};

/// The properties recorded before and after each reload (the JSON's `before`/`after`).
pub const PROPS: &str = "MainPID,InvocationID,ActiveState,SubState,NRestarts,StatusText";
/// Bound on one `systemctl show`.
const SHOW_TIMEOUT: Duration = Duration::from_secs(10);

type Props = BTreeMap<String, String>;

pub struct UnitPlan {
    pub unit: String,
    pub target: Target,
    pub reload_timeout: Duration,
    pub in_place: bool,
}

pub fn run(plan: &UnitPlan, sched: &Schedule, ui: &Ui) -> Result<CheckReport, String> {
    let name = &plan.unit;
    let meta = show(name, "LoadState,ActiveState,SubState,ControlGroup,Type").map_err(|e| {
        format!("cannot query unit {name}: {e}; --unit needs systemd on this host (or run the check inside the VM/container)")
    })?;
    let get = |k: &str| meta.get(k).map(String::as_str).unwrap_or("");
    if get("LoadState") != "loaded" {
        return Err(format!(
            "unit {name} is {} (LoadState); give the name of an installed unit",
            if get("LoadState").is_empty() {
                "unknown"
            } else {
                get("LoadState")
            }
        ));
    }
    if get("ActiveState") != "active" {
        return Err(format!(
            "unit {name} is {}/{}; start it first (systemctl start {name})",
            get("ActiveState"),
            get("SubState")
        ));
    }
    let svc = UnitService {
        name: name.clone(),
        cgroup: Some(get("ControlGroup").to_owned()).filter(|c| !c.is_empty()),
        reload_timeout: plan.reload_timeout,
        in_place: plan.in_place,
    };
    ui.event(&format!("{name} is active; loading {}", plan.target));
    let driven = drive::drive(sched, plan.target.clone(), &svc, ui)?;
    let durations = driven.completed_durations();
    let mut report = CheckReport {
        schema: SCHEMA,
        mode: "unit",
        reload_method: if plan.in_place {
            "systemctl-reload-in-place"
        } else {
            "systemctl-reload"
        },
        command: None,
        unit: Some(name.clone()),
        target: plan.target.to_string(),
        pass: false,
        reasons: Vec::new(),
        reloads_requested: sched.reloads,
        main_pid_changes: driven.reloads.iter().filter(|r| r.main_pid_changed).count() as u32,
        reloads: driven.reloads,
        reload_duration: Quantiles::of(durations),
        violations: Vec::new(),
        peak_processes: svc.cgroup.as_ref().map(|_| ui.peak()).filter(|&n| n > 0),
        stop: None,
        load: driven.load,
        long_lived: driven.long,
    };
    report.judge();
    if let Some(why) = driven.gone {
        report.reasons.push(why);
    }
    if driven.interrupted {
        report.reasons.push("interrupted".into());
    }
    report.pass = report.reasons.is_empty();
    Ok(report)
}

struct UnitService {
    name: String,
    cgroup: Option<String>,
    reload_timeout: Duration,
    in_place: bool,
}

impl Service for UnitService {
    fn reload(&self, mut r: ReloadEntry) -> ReloadEntry {
        let before = match show(&self.name, PROPS) {
            Ok(p) => p,
            Err(e) => return r.failed("error", format!("systemctl show: {e}")),
        };
        let t0 = Instant::now();
        let (rc, stderr) =
            systemctl(&["reload", &self.name], self.reload_timeout).unwrap_or_else(|e| (None, e));
        r.duration = t0.elapsed();
        let after = show(&self.name, PROPS).unwrap_or_default();
        r = judge(r, rc, &before, &after, self.in_place);
        r.systemctl = Some(SystemctlEntry {
            rc,
            stderr,
            before,
            after,
        });
        r
    }

    fn alive(&self) -> Result<(), String> {
        let p = show(&self.name, "ActiveState,SubState")?;
        match p.get("ActiveState").map(String::as_str) {
            Some("active" | "reloading") => Ok(()),
            other => Err(format!(
                "unit {} is {}/{}",
                self.name,
                other.unwrap_or("?"),
                p.get("SubState").map(String::as_str).unwrap_or("?")
            )),
        }
    }

    fn processes(&self) -> Option<usize> {
        let cg = self.cgroup.as_ref()?;
        let procs = std::fs::read_to_string(format!("/sys/fs/cgroup{cg}/cgroup.procs")).ok()?;
        Some(procs.lines().filter(|l| !l.trim().is_empty()).count())
    }
}

/// The verdict on one reload from systemctl's exit code and the unit's state around it.
fn judge(
    mut r: ReloadEntry,
    rc: Option<i32>,
    before: &Props,
    after: &Props,
    in_place: bool,
) -> ReloadEntry {
    let get = |p: &Props, k: &str| p.get(k).cloned().unwrap_or_default();
    let pid = |p: &Props| get(p, "MainPID").parse::<u32>().ok().filter(|&n| n != 0);
    r.old_main_pid = pid(before);
    r.new_main_pid = pid(after);
    r.status = Some(get(after, "StatusText")).filter(|s| !s.is_empty());
    r.completed = rc == Some(0);
    r.main_pid_changed = r.new_main_pid.is_some() && r.old_main_pid != r.new_main_pid;
    r.ok = true;
    let state = get(after, "ActiveState");
    if state != "active" {
        r = r.failed(
            "unit-dead",
            format!(
                "the unit is {state}/{} after the reload",
                get(after, "SubState")
            ),
        );
    }
    let (n0, n1) = (get(before, "NRestarts"), get(after, "NRestarts"));
    if n0 != n1 {
        r = r.failed(
            "restarted",
            format!("NRestarts went {n0} -> {n1}: systemd restarted the service"),
        );
    }
    let (i0, i1) = (get(before, "InvocationID"), get(after, "InvocationID"));
    if i0 != i1 {
        r = r.failed(
            "reactivated",
            format!("InvocationID changed ({i0} -> {i1}): the unit was stopped and started again"),
        );
    }
    if rc != Some(0) {
        let how = rc.map_or("was killed after the reload timeout".into(), |c| {
            format!("exited {c}")
        });
        r = r.failed("systemctl-failed", format!("systemctl reload {how}"));
    }
    if in_place {
        if r.new_main_pid.is_none() || r.main_pid_changed {
            r = r.failed(
                "main-pid-changed",
                format!(
                    "MainPID went {} -> {}: an in-place reload keeps its process",
                    get(before, "MainPID"),
                    get(after, "MainPID")
                ),
            );
        }
    } else if !r.main_pid_changed {
        r = r.failed(
            "no-main-pid-change",
            format!(
                "MainPID stayed {}: no new process took over",
                get(after, "MainPID")
            ),
        );
    }
    r
}

/// `systemctl show -p PROPS NAME` as a map.
fn show(name: &str, props: &str) -> Result<Props, String> {
    let (rc, out) = systemctl_out(&["show", "-p", props, "--", name], SHOW_TIMEOUT)?;
    if rc != Some(0) {
        let why: Vec<&str> = out
            .1
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let how = rc.map_or_else(
            || {
                format!(
                    "was killed (no answer within {} s, or a signal)",
                    SHOW_TIMEOUT.as_secs()
                )
            },
            |c| format!("exited {c}"),
        );
        return Err(format!("systemctl show {name} {how}: {}", why.join("; ")));
    }
    Ok(out
        .0
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// Runs systemctl with a deadline; returns its exit code (None if killed) and stderr.
fn systemctl(args: &[&str], timeout: Duration) -> Result<(Option<i32>, String), String> {
    systemctl_out(args, timeout).map(|(rc, (_, err))| {
        let lines: Vec<&str> = err
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        (rc, lines.join("; "))
    })
}

#[allow(clippy::type_complexity)]
fn systemctl_out(
    args: &[&str],
    timeout: Duration,
) -> Result<(Option<i32>, (String, String)), String> {
    let mut child = Command::new("systemctl")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run systemctl: {e}"))?;
    // Drained on threads so a chatty child cannot block on a full pipe while we wait.
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let read_out = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let read_err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                // Only the systemctl we started; the unit is untouched.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let out = read_out.join().unwrap_or_default();
    let err = read_err.join().unwrap_or_default();
    Ok((status.and_then(|s| s.code()), (out, err)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn props(pid: &str, inv: &str, state: &str, restarts: &str) -> Props {
        [
            ("MainPID", pid),
            ("InvocationID", inv),
            ("ActiveState", state),
            ("SubState", "running"),
            ("NRestarts", restarts),
            ("StatusText", "serving"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn entry() -> ReloadEntry {
        ReloadEntry::pending(1, 1, Duration::ZERO)
    }

    #[test]
    fn good_reload() {
        let r = judge(
            entry(),
            Some(0),
            &props("10", "a", "active", "0"),
            &props("11", "a", "active", "0"),
            false,
        );
        assert!(r.ok && r.completed && r.main_pid_changed, "{r:?}");
        assert_eq!((r.old_main_pid, r.new_main_pid), (Some(10), Some(11)));
    }

    #[test]
    fn rc_zero_but_restarted_fails() {
        let r = judge(
            entry(),
            Some(0),
            &props("10", "a", "active", "0"),
            &props("11", "a", "active", "1"),
            false,
        );
        assert!(!r.ok);
        assert_eq!(r.failure, Some("restarted"));
    }

    #[test]
    fn rc_zero_but_reactivated_fails() {
        let r = judge(
            entry(),
            Some(0),
            &props("10", "a", "active", "0"),
            &props("11", "b", "active", "0"),
            false,
        );
        assert_eq!(r.failure, Some("reactivated"));
    }

    #[test]
    fn dead_after_reload_fails_first_as_dead() {
        let r = judge(
            entry(),
            Some(0),
            &props("10", "a", "active", "0"),
            &props("0", "a", "failed", "0"),
            false,
        );
        assert_eq!(r.failure, Some("unit-dead"));
    }

    #[test]
    fn same_pid_fails() {
        let r = judge(
            entry(),
            Some(0),
            &props("10", "a", "active", "0"),
            &props("10", "a", "active", "0"),
            false,
        );
        assert_eq!(r.failure, Some("no-main-pid-change"));
        assert!(r.completed);
    }

    #[test]
    fn in_place_reload_keeps_its_main_pid() {
        let same = judge(
            entry(),
            Some(0),
            &props("10", "a", "active", "0"),
            &props("10", "a", "active", "0"),
            true,
        );
        assert!(
            same.ok && same.completed && !same.main_pid_changed,
            "{same:?}"
        );
        let moved = judge(
            entry(),
            Some(0),
            &props("10", "a", "active", "0"),
            &props("11", "a", "active", "0"),
            true,
        );
        assert_eq!(moved.failure, Some("main-pid-changed"));
        let restarted = judge(
            entry(),
            Some(0),
            &props("10", "a", "active", "0"),
            &props("10", "a", "active", "1"),
            true,
        );
        assert_eq!(restarted.failure, Some("restarted"));
    }

    #[test]
    fn nonzero_rc_fails() {
        let r = judge(
            entry(),
            Some(1),
            &props("10", "a", "active", "0"),
            &props("11", "a", "active", "0"),
            false,
        );
        assert_eq!(r.failure, Some("systemctl-failed"));
        assert!(!r.completed);
    }
}
