//! Guests as systemd-nspawn containers: the cached rootfs booted with real systemd as PID 1.
//!
//! The flags (docs/ci.md, "What it needs"): `--volatile=overlay` so no
//! write ever lands in the cached rootfs; `--private-network` for a loopback of its own (no
//! port clash with the host or a parallel run); `--register=no --keep-unit` because the host
//! need not run systemd or D-Bus; `SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1` for pure cgroup v2
//! (systemd ≥ 258 refuses v1). Each container gets a machine name and a cgroup of its own
//! (cleanup.rs); the driver's exit ends the container (`systemd.run_*_action=exit`), a
//! deadline or an interrupt stops nspawn, and dropping the cgroup ends whatever is left.
use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::cleanup::Cgroup;
use super::host::{self, Interrupt};
use super::payload::MOUNT;

/// Bound on the preflight (no boot: install, verify, look around).
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(120);

/// A machine name no other run uses: our pid and a counter.
pub fn machine_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "exuvia-vm-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn nspawn(rootfs: &Path, payload: &Path, machine: &str, cg: &Cgroup) -> Command {
    // The shell moves itself into the cgroup and then becomes nspawn, so the container
    // starts inside it; no code of ours runs between fork and exec.
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#)
        .arg(&cg.path)
        .arg("systemd-nspawn")
        .args([
            "-q",
            "--volatile=overlay",
            "--private-network",
            "--register=no",
            "--keep-unit",
        ])
        .arg(format!("--machine={machine}"))
        .arg("-D")
        .arg(rootfs)
        .arg(format!("--bind-ro={}:{MOUNT}", payload.display()))
        .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1");
    c
}

/// Runs preflight.sh in a container that is not booted; its stdout.
pub fn preflight(rootfs: &Path, payload: &Path, intr: &Interrupt) -> Result<String, String> {
    let machine = machine_name();
    let cg = Cgroup::create(&machine)?;
    let mut c = nspawn(rootfs, payload, &machine, &cg);
    c.args(["--pipe", &format!("{MOUNT}/preflight.sh")]);
    let out = host::run(&mut c, PREFLIGHT_TIMEOUT, intr)?;
    drop(cg);
    if out.status.is_none() {
        return Err(format!(
            "the preflight container did not finish: {}",
            out.why(2)
        ));
    }
    if !out.stdout.contains("PREFLIGHT done") {
        return Err(format!(
            "cannot start a container from {}: {}",
            rootfs.display(),
            out.why(3)
        ));
    }
    Ok(out.stdout)
}

/// Boots the rootfs, runs the driver for `scenario`, console into `log`. `None`: it was
/// stopped (deadline or interrupt).
pub fn boot(
    rootfs: &Path,
    payload: &Path,
    scenario: &str,
    log: &File,
    timeout: Duration,
    intr: &Interrupt,
) -> Result<Option<std::process::ExitStatus>, String> {
    let machine = machine_name();
    let cg = Cgroup::create(&machine)?;
    let mut c = nspawn(rootfs, payload, &machine, &cg);
    c.args(["--console=read-only", "-b", "systemd.show_status=error"])
        .arg(format!("systemd.run={MOUNT}/driver.sh"))
        .args([
            "systemd.run_success_action=exit",
            "systemd.run_failure_action=exit",
        ])
        .arg(format!("systemd.setenv=SCENARIO={scenario}"));
    let st = host::run_logged(&mut c, log, timeout, intr)?;
    drop(cg);
    Ok(st)
}
