//! `exuvia verify`: runs `systemd-analyze verify` and `security --offline=true` on unit files and
//! turns their output into a pass/fail gate. `verify` exits 0 on unknown keys and unparsable
//! values (units.md §2.4), so every line it prints on stderr counts as an error here.
//!
//! `--root DIR` runs the analyzer of another systemd root filesystem through chroot (e.g. a
//! Debian trixie rootfs with systemd 257 on a 252 host). The units are copied into a temporary
//! directory inside the root together with their sibling units (so `Sockets=` resolves).
//! `verify` also insists that `Exec*=` binaries exist; inside the root they usually do not, so
//! each missing one is checked on the host instead and replaced by a temporary placeholder in
//! the root for the run (`--require-exec` makes a binary missing on the host an error).
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use super::lint::{parse, rules};

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Unit files to check; sibling units in the same directory are loaded too.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Root filesystem whose systemd-analyze to use (run through chroot; needs root).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Fail when a service's overall exposure is above this (e.g. 1.1).
    #[arg(long, value_name = "SCORE")]
    pub max_exposure: Option<f64>,
    /// Treat an Exec*= binary that exists neither in the root nor on the host as an error.
    #[arg(long)]
    pub require_exec: bool,
}

const UNIT_SUFFIXES: &[&str] = &["service", "socket", "target", "timer", "path", "mount"];

/// Files created inside the root for one run; removed on drop, whatever happened.
/// Holds a lock on the root so concurrent runs do not remove each other's placeholders.
#[derive(Default)]
struct Staging {
    dir: Option<PathBuf>,
    stubs: Vec<PathBuf>,
    created_dirs: Vec<PathBuf>,
    lock: Option<nix::fcntl::Flock<fs::File>>,
}

impl Drop for Staging {
    fn drop(&mut self) {
        for s in &self.stubs {
            let _ = fs::remove_file(s);
        }
        for d in self.created_dirs.iter().rev() {
            let _ = fs::remove_dir(d);
        }
        if let Some(d) = &self.dir {
            let _ = fs::remove_dir_all(d);
        }
    }
}

struct Analyzer<'a> {
    root: Option<&'a Path>,
}

impl Analyzer<'_> {
    fn command(&self) -> Command {
        let mut c = match self.root {
            Some(root) => {
                let mut c = Command::new("chroot");
                c.arg(root).arg("systemd-analyze");
                c
            }
            None => Command::new("systemd-analyze"),
        };
        c.env("SYSTEMD_COLORS", "0")
            .env("SYSTEMD_PAGER", "cat")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Result<(bool, String, String), String> {
        let out = self.command().args(args).output().map_err(|e| {
            format!(
                "cannot run systemd-analyze{}: {e}",
                self.root
                    .map(|r| format!(" in {}", r.display()))
                    .unwrap_or_default()
            )
        })?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    fn exists_executable(&self, path: &str) -> bool {
        let mut c = match self.root {
            Some(root) => {
                let mut c = Command::new("chroot");
                c.arg(root).arg("test");
                c
            }
            None => Command::new("test"),
        };
        c.args(["-x", path])
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

pub fn run(args: VerifyArgs) -> ExitCode {
    match verify(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("exuvia verify: {e}");
            ExitCode::from(2)
        }
    }
}

/// Ok(true) = all checks passed.
fn verify(args: &VerifyArgs) -> Result<bool, String> {
    let analyzer = Analyzer {
        root: args.root.as_deref(),
    };
    let (_, version, _) = analyzer.run(&["--version"])?;
    let version = version.lines().next().unwrap_or("systemd ?").to_string();
    let mut staging = Staging::default();
    let mut ok = true;

    // (path given by the user, path as the analyzer sees it)
    let mut units: Vec<(PathBuf, String)> = Vec::new();
    let stage_dir = match &args.root {
        Some(root) => {
            let lock_path = root.join("tmp/.exuvia-verify.lock");
            let lock = fs::File::create(&lock_path).map_err(|e| format!("cannot create {}: {e} (is --root a systemd root filesystem, and are you root?)", lock_path.display()))?;
            let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, e)| format!("cannot lock {}: {e}", lock_path.display()))?;
            staging.lock = Some(lock);
            let sub = format!("tmp/exuvia-verify-{}", std::process::id());
            let dir = root.join(&sub);
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e} (is --root a systemd root filesystem, and are you root?)", dir.display()))?;
            staging.dir = Some(dir.clone());
            Some((dir, format!("/{sub}")))
        }
        None => None,
    };
    for path in &args.paths {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{} is not a unit file path", path.display()))?;
        if !fs::metadata(path).is_ok_and(|m| m.is_file()) {
            return Err(format!(
                "{} does not exist or is not a file",
                path.display()
            ));
        }
        match &stage_dir {
            // One directory per argument: units of the same name from different directories
            // (e.g. units/ and units/systemd-252/) must not overwrite each other.
            Some((dir, inner)) => {
                let n = units.len();
                let sub = dir.join(n.to_string());
                fs::create_dir(&sub)
                    .map_err(|e| format!("cannot create {}: {e}", sub.display()))?;
                copy_with_siblings(path, &sub)?;
                units.push((path.clone(), format!("{inner}/{n}/{name}")));
            }
            None => units.push((path.clone(), path.display().to_string())),
        }
    }

    for (path, _) in &units {
        let text =
            fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let unit = parse::parse(&text);
        for key in [
            "ExecStart",
            "ExecStartPre",
            "ExecStartPost",
            "ExecCondition",
            "ExecReload",
            "ExecStop",
            "ExecStopPost",
        ] {
            for word in unit
                .entries("Service", key)
                .filter_map(|e| rules::exec_command(&e.value))
            {
                // systemd looks bare names up in its fixed PATH (v239+); check the usual spots.
                let candidates: Vec<String> = if word.starts_with('/') {
                    vec![word.to_string()]
                } else {
                    ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"]
                        .iter()
                        .map(|d| format!("{d}/{word}"))
                        .collect()
                };
                if candidates.iter().any(|c| analyzer.exists_executable(c)) {
                    continue;
                }
                let bin = candidates[0].as_str();
                let on_host = candidates.iter().any(|c| Path::new(c).exists());
                let Some(root) = &args.root else {
                    eprintln!(
                        "{}: {key}={bin} does not exist here; systemd-analyze will reject it (use --root to check against a staged root)",
                        path.display()
                    );
                    continue;
                };
                if !on_host && args.require_exec {
                    eprintln!(
                        "{}: {key}={bin} exists neither in {} nor on this host",
                        path.display(),
                        root.display()
                    );
                    ok = false;
                    continue;
                }
                if !on_host {
                    eprintln!(
                        "note: {bin} is not installed on this host either; checking {} with a placeholder (--require-exec makes this an error)",
                        path.display()
                    );
                }
                stub(root, bin, &mut staging)?;
            }
        }
    }

    // One verify run per unit: two files with the same unit name cannot be loaded together.
    for (path, inner) in &units {
        let (success, _, stderr) = analyzer.run(&["verify", "--man=no", inner])?;
        let problems: Vec<String> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.replace(inner.as_str(), &path.display().to_string()))
            .collect();
        for p in &problems {
            eprintln!("{p}");
        }
        if !success || !problems.is_empty() {
            eprintln!(
                "exuvia verify: systemd-analyze verify ({version}) reported {} problem(s) for {}{}",
                problems.len(),
                path.display(),
                if success {
                    "; it exits 0 on these, exuvia does not"
                } else {
                    ""
                }
            );
            ok = false;
        }
    }

    let max = args.max_exposure.map(|m| (m * 10.0).round() as u32);
    for (path, inner) in units
        .iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "service"))
    {
        let (_, stdout, stderr) =
            analyzer.run(&["security", "--offline=true", "--no-pager", inner])?;
        let Some(score) = overall_exposure(&stdout) else {
            eprintln!(
                "{}: no exposure score from systemd-analyze security:\n{}",
                path.display(),
                stderr.trim()
            );
            ok = false;
            continue;
        };
        let verdict = match max {
            Some(m) if score > m => {
                ok = false;
                format!("FAIL (above --max-exposure {}.{})", m / 10, m % 10)
            }
            Some(_) => "ok".to_string(),
            None => "(no --max-exposure)".to_string(),
        };
        println!(
            "{}: exposure {}.{} ({version}) {verdict}",
            path.display(),
            score / 10,
            score % 10
        );
    }
    if ok {
        eprintln!(
            "exuvia verify: {} unit(s) clean with {version}",
            units.len()
        );
    }
    Ok(ok)
}

fn copy_with_siblings(path: &Path, dir: &Path) -> Result<(), String> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let siblings =
        fs::read_dir(parent).map_err(|e| format!("cannot list {}: {e}", parent.display()))?;
    for entry in siblings.flatten() {
        let p = entry.path();
        let is_unit = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| UNIT_SUFFIXES.contains(&e));
        if (is_unit && p.is_file()) || p == path {
            let target = dir.join(entry.file_name());
            fs::copy(&p, &target)
                .map_err(|e| format!("cannot copy {} into the root: {e}", p.display()))?;
        }
    }
    Ok(())
}

/// A placeholder executable at `bin` inside `root`, removed again when `staging` drops.
fn stub(root: &Path, bin: &str, staging: &mut Staging) -> Result<(), String> {
    let target = root.join(bin.trim_start_matches('/'));
    let mut missing = Vec::new();
    let mut dir = target.parent();
    while let Some(d) = dir.filter(|d| !d.exists()) {
        missing.push(d.to_path_buf());
        dir = d.parent();
    }
    for d in missing.iter().rev() {
        fs::create_dir(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        staging.created_dirs.push(d.clone());
    }
    fs::write(&target, "#!/bin/sh\nexit 0\n")
        .map_err(|e| format!("cannot create placeholder {}: {e}", target.display()))?;
    staging.stubs.push(target.clone());
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot chmod {}: {e}", target.display()))
}

/// "→ Overall exposure level for x.service: 1.1 OK 🙂" → 11 (tenths).
fn overall_exposure(stdout: &str) -> Option<u32> {
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level for"))?;
    let value = line.rsplit_once(": ")?.1.split_whitespace().next()?;
    let (int, frac) = value.split_once('.').unwrap_or((value, "0"));
    Some(int.parse::<u32>().ok()? * 10 + frac.get(..1)?.parse::<u32>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exposure_line() {
        assert_eq!(
            overall_exposure("x\n→ Overall exposure level for a.service: 1.1 OK 🙂\n"),
            Some(11)
        );
        assert_eq!(
            overall_exposure("→ Overall exposure level for a.service: 9.6 UNSAFE 😨"),
            Some(96)
        );
        assert_eq!(overall_exposure("nothing"), None);
    }
}
