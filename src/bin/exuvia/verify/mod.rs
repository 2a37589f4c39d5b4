//! `exuvia verify`: runs `systemd-analyze verify` and `security --offline=true` on unit files and
//! turns their output into a pass/fail gate. `verify` exits 0 on unknown keys and unparsable
//! values (docs/units.md, "The analyzer"), so every line it prints on stderr counts as an error here.
//!
//! `--root DIR` runs the analyzer of another systemd root filesystem through chroot (e.g. a
//! Debian trixie rootfs with systemd 257 on a 252 host). The root is somebody's filesystem, so
//! exuvia writes exactly one thing into it: a fresh directory under its `tmp/` (made by
//! `mkdtemp`, refused if `tmp` is a symlink or leads out of the root), removed again at the end.
//! The units are copied there with their sibling units (so `Sockets=` resolves). `verify` also
//! insists that `Exec*=` binaries exist; inside the root they usually do not, so each missing one
//! is checked on the host instead, and the *staged copy* of the unit is pointed at a placeholder
//! inside that directory — no path the unit names is ever created, written or removed
//! (`--require-exec` makes a binary missing on the host an error).
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use super::lint::{parse, rules};

mod staging;
use staging::{Staged, Staging, copy_with_siblings, is_normalized, point_exec_at};

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

const EXEC_KEYS: [&str; 7] = [
    "ExecStart",
    "ExecStartPre",
    "ExecStartPost",
    "ExecCondition",
    "ExecReload",
    "ExecStop",
    "ExecStopPost",
];

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
    let mut staging = match &args.root {
        Some(root) => Some(Staging::create(root)?),
        None => None,
    };
    let mut ok = true;

    let mut units: Vec<Staged> = Vec::new();
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
        units.push(match &staging {
            // One directory per argument: units of the same name from different directories
            // (e.g. units/ and units/systemd-252/) must not overwrite each other.
            Some(st) => {
                let n = units.len();
                let sub = st.dir.join(n.to_string());
                fs::create_dir(&sub)
                    .map_err(|e| format!("cannot create {}: {e}", sub.display()))?;
                copy_with_siblings(path, &sub)?;
                Staged {
                    path: path.clone(),
                    inner: format!("{}/{n}/{name}", st.inner),
                    copy: Some(sub.join(name)),
                    placeholders: Vec::new(),
                }
            }
            None => Staged {
                path: path.clone(),
                inner: path.display().to_string(),
                copy: None,
                placeholders: Vec::new(),
            },
        });
    }

    for unit in &mut units {
        let path = &unit.path;
        let text =
            fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let parsed = parse::parse(&text);
        let mut staged_text = text.clone();
        for key in EXEC_KEYS {
            for entry in parsed.entries("Service", key) {
                let Some(word) = rules::exec_command(&entry.value) else {
                    continue;
                };
                if !is_normalized(word) {
                    eprintln!(
                        "{}:{}: {key}={word} has '.' or '..' components; systemd refuses such a path",
                        path.display(),
                        entry.line
                    );
                    ok = false;
                    continue;
                }
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
                let (Some(root), Some(st)) = (&args.root, staging.as_mut()) else {
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
                let placeholder = st.placeholder()?;
                staged_text = point_exec_at(&staged_text, entry.line, word, &placeholder)
                    .ok_or_else(|| {
                        format!(
                            "{}:{}: cannot find {word} in the {key}= line to stage it",
                            path.display(),
                            entry.line
                        )
                    })?;
                unit.placeholders.push((placeholder, word.to_string()));
            }
        }
        if let Some(copy) = unit.copy.as_ref().filter(|_| staged_text != text) {
            fs::write(copy, staged_text)
                .map_err(|e| format!("cannot write {}: {e}", copy.display()))?;
        }
    }

    // One verify run per unit: two files with the same unit name cannot be loaded together.
    for unit in &units {
        let (path, inner) = (&unit.path, &unit.inner);
        let (success, _, stderr) = analyzer.run(&["verify", "--man=no", inner])?;
        let problems: Vec<String> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| unit.user_words(l))
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
    for unit in units
        .iter()
        .filter(|u| u.path.extension().is_some_and(|e| e == "service"))
    {
        let (path, inner) = (&unit.path, &unit.inner);
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
