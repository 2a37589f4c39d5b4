//! The read-only directory a guest sees at /run/exuvia-vm: the in-guest driver and scenarios
//! (compiled into this binary), the judge (this very `exuvia` binary, at judge/exuvia — a path
//! no unit names, so a unit that needs an `exuvia` CLI fails instead of borrowing the judge),
//! `vm.env` with everything the driver knows about the service, one systemd drop-in per
//! scenario, and `root/`: the tree copied onto the guest's / (the `--files` directory, the
//! binary at its ExecStart= path, the units in /etc/systemd/system).
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::cleanup::TempDir;
use super::input::Service;

/// Where the payload is mounted in the guest.
pub const MOUNT: &str = "/run/exuvia-vm";

/// `guest/NAME`, compiled in.
macro_rules! guest {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!("guest/", $name)))),*]
    };
}

const GUEST: [(&str, &str); 19] = guest![
    "driver.sh",
    "lib.sh",
    "faults.sh",
    "preflight.sh",
    "longconn.py",
    "upgrades.py",
    "scenarios/reload.sh",
    "scenarios/replace.sh",
    "scenarios/broken.sh",
    "scenarios/stop.sh",
    "scenarios/sigkill.sh",
    "scenarios/restart.sh",
    "scenarios/kill-old.sh",
    "scenarios/kill-new.sh",
    "scenarios/stop-upgrade.sh",
    "scenarios/storm.sh",
    "scenarios/live.sh",
    "scenarios/notify.sh",
    "scenarios/wrk.sh",
];

/// What the scenarios do, beyond the service itself.
pub struct Plan<'a> {
    pub binary: Option<&'a Path>,
    pub new_binary: Option<&'a Path>,
    pub files: Option<&'a Path>,
    pub mode: String,
    pub http_path: &'a str,
    pub connections: u32,
    pub reloads: u32,
    pub interval_ms: u128,
    pub long: u32,
    pub in_place: bool,
    pub env: &'a [(String, String)],
    pub absent: &'a [String],
    pub probe: Option<(&'a str, &'a str)>,
    pub scenarios: &'a [String],
    /// `--wrk-script`: (file, its arguments).
    pub wrk_scripts: &'a [(PathBuf, Vec<String>)],
}

/// Environment the scenarios set for the service (docs/systemd.md: the library reads them,
/// a service that is not built on exuvia ignores them); the user's `--env` comes after.
fn scenario_env(scenario: &str) -> &'static [(&'static str, &'static str)] {
    match scenario {
        // Long-lived connections stay on the first generation for the whole run.
        "reload" | "replace" => &[("EXUVIA_DRAIN_HARD", "600s")],
        // A hung successor must be given up well within the unit's reload bound.
        "broken" => &[("EXUVIA_READY_TIMEOUT", "3s")],
        _ => &[],
    }
}

/// Builds the payload in a fresh scratch directory (removed when the result is dropped).
pub fn build(svc: &Service, plan: &Plan) -> Result<TempDir, String> {
    let dir = TempDir::new("exuvia-vm-payload")?;
    let p = &dir.0;
    let err = |what: &Path, e: std::io::Error| format!("cannot write {}: {e}", what.display());
    for (name, text) in GUEST {
        let dest = p.join(name);
        fs::create_dir_all(dest.parent().unwrap_or(p)).map_err(|e| err(&dest, e))?;
        fs::write(&dest, text).map_err(|e| err(&dest, e))?;
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).map_err(|e| err(&dest, e))?;
    }
    let judge =
        std::env::current_exe().map_err(|e| format!("cannot find this exuvia binary: {e}"))?;
    copy_file(&judge, &p.join("judge/exuvia"))?;

    let root = p.join("root");
    fs::create_dir_all(&root).map_err(|e| err(&root, e))?;
    if let Some(files) = plan.files {
        // cp -a keeps modes, links and ownership of the user's tree as they made it.
        let ok = Command::new("cp")
            .arg("-a")
            .arg(files.join("."))
            .arg(&root)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("cannot copy --files {}", files.display()));
        }
    }
    let mut bin_path = String::new();
    if let Some(bin) = plan.binary {
        let at = svc.exec_start.as_deref().filter(|e| e.starts_with('/')).ok_or_else(|| {
            format!(
                "--binary needs a place: {} must run it from an absolute path (ExecStart=/usr/local/bin/NAME …)",
                svc.service
            )
        })?;
        copy_file(bin, &root.join(at.trim_start_matches('/')))?;
        bin_path = at.to_owned();
    }
    let mut new_bin = String::new();
    if let Some(nb) = plan.new_binary {
        copy_file(nb, &p.join("new-binary"))?;
        new_bin = format!("{MOUNT}/new-binary");
    }
    let units = root.join("etc/systemd/system");
    fs::create_dir_all(&units).map_err(|e| err(&units, e))?;
    for u in &svc.units {
        fs::write(units.join(&u.name), &u.text).map_err(|e| err(&units.join(&u.name), e))?;
    }
    let dropins = p.join("dropins");
    fs::create_dir_all(&dropins).map_err(|e| err(&dropins, e))?;
    for s in plan.scenarios {
        let mut text = String::new();
        let pairs = scenario_env(s)
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain(plan.env.iter().cloned());
        for (k, v) in pairs {
            let _ = writeln!(text, "Environment=\"{}\"", unit_escape(&format!("{k}={v}")));
        }
        if !text.is_empty() {
            text.insert_str(
                0,
                "# exuvia vm: deadlines of this scenario, and --env\n[Service]\n",
            );
        }
        fs::write(dropins.join(format!("{s}.conf")), text).map_err(|e| err(&dropins, e))?;
    }

    // Each script under its own number (two may share a name), with its arguments.
    let mut wrk_scripts = Vec::new();
    for (i, (file, args)) in plan.wrk_scripts.iter().enumerate() {
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| {
                s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
            .unwrap_or("script");
        let name = format!("wrk/{stem}.{i}.lua");
        fs::create_dir_all(p.join("wrk")).map_err(|e| err(&p.join("wrk"), e))?;
        fs::copy(file, p.join(&name))
            .map_err(|e| format!("cannot copy --wrk-script {}: {e}", file.display()))?;
        wrk_scripts.push(
            format!("{MOUNT}/{name} {}", args.join(" "))
                .trim_end()
                .to_owned(),
        );
    }

    let exec_paths: Vec<String> = svc
        .exec_paths
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let (probe, probe_new) = plan.probe.unwrap_or(("", ""));
    let vars: [(&str, String); 18] = [
        ("SVC", svc.service.clone()),
        ("SOCKS", svc.sockets.join(" ")),
        ("TARGET", svc.target.to_string()),
        ("MODE", plan.mode.clone()),
        ("HTTP_PATH", plan.http_path.to_owned()),
        ("CONNECTIONS", plan.connections.to_string()),
        ("RELOADS", plan.reloads.to_string()),
        ("INTERVAL", format!("{}ms", plan.interval_ms)),
        ("LONG", plan.long.to_string()),
        ("IN_PLACE", u8::from(plan.in_place).to_string()),
        ("BIN", bin_path),
        ("NEW_BIN", new_bin),
        ("PROBE", probe.to_owned()),
        ("PROBE_NEW", probe_new.to_owned()),
        ("ABSENT", plan.absent.join(" ")),
        (
            "UNIT_FILES",
            svc.units
                .iter()
                .map(|u| u.name.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        ),
        ("EXEC_PATHS", exec_paths.join("\n")),
        ("WRK_SCRIPTS", wrk_scripts.join("\n")),
    ];
    let mut env = String::from("# written by exuvia vm (payload.rs); sourced by driver.sh\n");
    for (k, v) in vars {
        let _ = writeln!(env, "{k}={}", sh_quote(&v));
    }
    let _ = writeln!(env, "JUDGE={MOUNT}/judge/exuvia");
    fs::write(p.join("vm.env"), env).map_err(|e| err(&p.join("vm.env"), e))?;
    Ok(dir)
}

/// Hard link when possible (the judge is tens of MB), else a copy; executable either way.
fn copy_file(from: &Path, to: &PathBuf) -> Result<(), String> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to)
            .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))?;
    }
    let mode = fs::metadata(to)
        .map(|m| m.permissions().mode())
        .unwrap_or(0o755);
    if mode & 0o111 == 0 {
        fs::set_permissions(to, fs::Permissions::from_mode(mode | 0o755))
            .map_err(|e| format!("cannot chmod {}: {e}", to.display()))?;
    }
    Ok(())
}

/// Single-quoted for bash.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Inside a double-quoted unit-file value: backslash and quote escaped, `%` not a specifier.
fn unit_escape(s: &str) -> String {
    s.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('%', "%%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
        assert_eq!(unit_escape(r#"A=1 "x" 50% \n"#), r#"A=1 \"x\" 50%% \\n"#);
    }
}
