//! Versions × scenarios: for each systemd version its rootfs, its payload, one preflight (bad
//! input stops here, with one line), then one fresh guest per scenario, and its table.
use std::fs;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use exuvia_testing::load::Target;

use super::host::{self, Interrupt};
use super::input::{self, Service};
use super::payload::{self, Plan};
use super::rootfs::{self, Suite};
use super::verdict::{self, Report, Version};
use super::{Request, RunArgs, nspawn, qemu, validate};

pub fn run(a: &RunArgs, intr: &Interrupt) -> Result<ExitCode, String> {
    let req = validate(a)?;
    let json = super::super::check::open_json(a.json.as_deref())?;
    // Everything the units say, for every version, before anything needs root.
    let mut services = Vec::new();
    for (_, suite) in &req.suites {
        services.push(input::resolve(
            &req.source,
            suite,
            a.service.as_deref(),
            a.target.as_ref(),
        )?);
    }
    if let Some(svc) = services
        .iter()
        .find(|s| !matches!(s.target, Target::Tcp(_)))
    {
        if req.scenarios.iter().any(|s| s == "wrk") {
            return Err(format!(
                "scenario wrk sends HTTP to a TCP port, and {} listens on {}: give --target tcp:IP:PORT",
                svc.service, svc.target
            ));
        }
    }
    host::preconditions(intr)?;
    fs::create_dir_all(&a.log_dir)
        .map_err(|e| format!("cannot create --log-dir {}: {e}", a.log_dir.display()))?;
    let cache = rootfs::cache_dir();
    if a.vm {
        fs::create_dir_all(&cache)
            .map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
        qemu::ensure_qemu(&cache, intr)?;
    }
    let mode = a.mode.to_string();
    let mut report = Report {
        pass: true,
        versions: Vec::new(),
    };
    for ((asked, suite), svc) in req.suites.iter().zip(&services) {
        let plan = Plan {
            binary: a.binary.as_deref(),
            new_binary: a.new_binary.as_deref(),
            files: a.files.as_deref(),
            mode: mode.clone(),
            http_path: &a.path,
            connections: a.connections,
            reloads: a.reloads,
            interval_ms: a.interval.as_millis(),
            long: a.long_connections,
            in_place: a.in_place,
            env: &req.env,
            absent: &a.absent,
            probe: a.probe.as_deref().zip(a.probe_new.as_deref()),
            scenarios: &req.scenarios,
            wrk_scripts: &req.wrk_scripts,
        };
        let v = version(a, &req, asked, suite, svc, &plan, &cache, intr)?;
        report.pass &= v.pass;
        let table = v.to_string();
        if json.as_ref().is_some_and(|j| j.is_none()) {
            eprint!("{table}");
        } else {
            print!("{table}");
        }
        report.versions.push(v);
    }
    if let Some(dest) = json {
        super::super::check::write_json(&report, dest)
            .map_err(|e| format!("cannot write the JSON report: {e}"))?;
    }
    Ok(if report.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[allow(clippy::too_many_arguments)]
fn version(
    a: &RunArgs,
    req: &Request,
    asked: &str,
    suite: &Suite,
    svc: &Service,
    plan: &Plan,
    cache: &Path,
    intr: &Interrupt,
) -> Result<Version, String> {
    let (scenarios, timeout) = (&req.scenarios, req.timeout);
    let rootfs = rootfs::ensure(suite, a.vm, &req.packages, intr)?;
    let image = if a.vm {
        Some(qemu::Image::ensure(cache, &rootfs, intr)?)
    } else {
        None
    };
    let payload = payload::build(svc, plan)?;
    let systemd = preflight(&rootfs, &payload.0, suite, svc, intr)?;
    let runner = if a.vm { "qemu" } else { "nspawn" };
    let mut v = Version {
        asked: asked.to_owned(),
        suite: suite.name.to_owned(),
        systemd,
        runner: runner.to_owned(),
        pass: true,
        scenarios: Vec::new(),
    };
    for s in scenarios {
        let log_path = a.log_dir.join(format!("{}-{s}.log", suite.name));
        let t0 = Instant::now();
        eprintln!(
            "exuvia vm: systemd {}, {}, {runner}: {s} ...",
            v.systemd, suite.name
        );
        let ended = match &image {
            Some(img) => img.boot(&payload.0, s, &log_path, timeout, intr)?,
            None => {
                let log = fs::File::create(&log_path)
                    .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
                nspawn::boot(&rootfs, &payload.0, s, &log, timeout, intr)?
            }
        };
        if intr.hit() {
            return Err("interrupted".into());
        }
        let console = fs::read(&log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let r = verdict::parse(
            s,
            &console,
            ended.map(|_| true),
            t0.elapsed().as_secs_f64(),
            log_path.clone(),
        );
        if let Some(fatal) = &r.fatal {
            return Err(format!(
                "systemd {}, {}, scenario {s}: {fatal} (console: {})",
                v.systemd,
                suite.name,
                log_path.display()
            ));
        }
        eprintln!("exuvia vm: {s}: {} in {:.1} s", r.verdict, r.seconds);
        v.pass &= r.pass;
        v.scenarios.push(r);
    }
    Ok(v)
}

/// Installs the inputs in a container that is not booted and asks the guest's systemd about
/// them; any complaint is bad input. Returns the guest's systemd version.
fn preflight(
    rootfs: &Path,
    payload: &Path,
    suite: &Suite,
    svc: &Service,
    intr: &Interrupt,
) -> Result<String, String> {
    let out = nspawn::preflight(rootfs, payload, intr)?;
    let systemd = out
        .lines()
        .find_map(|l| l.strip_prefix("SYSTEMD systemd "))
        .unwrap_or("?")
        .trim()
        .to_owned();
    let here = format!("systemd {systemd}, {}", suite.name);
    if out.lines().any(|l| l == "JUDGE broken") {
        return Err(format!(
            "this exuvia binary does not run in the {here} guest (built against a newer glibc?): build exuvia on the oldest distribution you test, or for musl"
        ));
    }
    if let Some(m) = out.lines().find_map(|l| l.strip_prefix("MISSING ")) {
        let (key, path) = m.split_once(' ').unwrap_or(("Exec", m));
        let hint = if key == "ExecReload" && path.ends_with("/exuvia") {
            "; let the service binary be its own reload client (ExecReload=@BINARY exuvia-reload --wait …), or install the CLI with --files"
        } else {
            "; install it with --binary, --files or --package"
        };
        return Err(format!(
            "{} {key}={path}: not in the {here} guest{hint}",
            svc.service
        ));
    }
    let verify: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("VERIFY "))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if !verify.is_empty() {
        return Err(format!(
            "{here} rejects the units (systemd-analyze verify): {}",
            verify.join("; ")
        ));
    }
    Ok(systemd)
}
