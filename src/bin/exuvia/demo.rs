//! `exuvia demo`: the first thing a newcomer runs. The same echo server (`demo-server`, built
//! into this binary, so there is nothing to set up) is put under load and reloaded a few times
//! twice — once upgraded by exuvia under the simulated systemd, once restarted the naive way
//! (stop, start, bind again) — and the two results are printed side by side. Everything stays
//! on loopback and takes well under a minute.
use std::ffi::OsString;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use exuvia_testing::load::{Mode, Target};
use exuvia_testing::sim::NotifyAccess;
use nix::sys::signal::Signal;
use serde::Serialize;

use super::check::{
    CheckReport, KINDS, Method, Output, Schedule, SimPlan, Ui, kinds, ms, open_json, validate,
    write_json,
};
use super::load::{HttpOptions, parse_duration};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Reloads on each side.
    #[arg(long, default_value_t = 5)]
    reloads: u32,
    /// Load alone before, between and after the reloads.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// Concurrent load workers.
    #[arg(long, default_value_t = 4)]
    connections: u32,
    /// Also write both reports as JSON ({"exuvia": …, "naive": …}) to FILE, or stdout with -.
    #[arg(long, value_name = "FILE|-")]
    json: Option<PathBuf>,
}

#[derive(Serialize)]
struct Both<'a> {
    exuvia: &'a CheckReport,
    naive: &'a CheckReport,
}

pub fn run(args: DemoArgs) -> ExitCode {
    match demo(args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("exuvia demo: {msg}");
            ExitCode::from(2)
        }
    }
}

fn demo(args: DemoArgs) -> Result<ExitCode, String> {
    let upgrade_ui = Ui::new("exuvia upgrade", false);
    let json = open_json(args.json.as_deref())?;
    let sched = Schedule {
        mode: Mode::Echo,
        connections: args.connections,
        request_timeout: Duration::from_secs(5),
        http_path: "/".into(),
        http: HttpOptions::default(),
        reloads: args.reloads,
        interval: args.interval,
        min_duration: Duration::ZERO,
    };
    validate(&sched)?;
    if args.reloads == 0 {
        return Err("--reloads must be at least 1".into());
    }
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find this program's own path: {e}"))?;
    let say = |s: String| {
        if json.as_ref().is_some_and(Option::is_none) {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
    };
    say(format!(
        "exuvia demo: an echo server on loopback under load ({} connections), reloaded {} times,\n\
         first upgraded by exuvia (SIGHUP → new process takes the listener, old one drains),\n\
         then restarted the naive way (SIGTERM, start again, bind the port again).\n",
        args.connections, args.reloads
    ));
    let base = |cmd: Vec<OsString>, method, target| SimPlan {
        command: cmd,
        listeners: Vec::new(),
        target,
        method,
        notify_access: NotifyAccess::Main,
        reload_signal: Signal::SIGHUP,
        reload_timeout: Duration::from_secs(10),
        start_timeout: Duration::from_secs(10),
        stop_timeout: Duration::from_secs(10),
        output: Output::Null,
    };
    let mut upgrade = base(
        vec![exe.clone().into(), "demo-server".into()],
        Method::Signal,
        None,
    );
    upgrade.listeners = vec![
        "echo=tcp:127.0.0.1:0"
            .parse()
            .map_err(|e: String| e.to_string())?,
    ];
    let a = super::check::sim::run(&upgrade, &sched, &upgrade_ui)?;
    if upgrade_ui.aborted() {
        return Ok(ExitCode::from(130));
    }

    let naive_ui = Ui::new("naive restart", false);
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("cannot find a free loopback port: {e}"))?;
    let naive = base(
        vec![
            exe.into(),
            "demo-server".into(),
            "--naive".into(),
            "--listen".into(),
            port.to_string().into(),
        ],
        Method::Restart,
        Some(Target::Tcp(port)),
    );
    let b = super::check::sim::run(&naive, &sched, &naive_ui)?;

    say(side_by_side(&a, &b));
    if let Some(dest) = json {
        write_json(
            &Both {
                exuvia: &a,
                naive: &b,
            },
            dest,
        )
        .map_err(|e| format!("cannot write the JSON report: {e}"))?;
    }
    Ok(if naive_ui.aborted() {
        ExitCode::from(130)
    } else if a.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn side_by_side(a: &CheckReport, b: &CheckReport) -> String {
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let mut row = |k: &str, x: String, y: String| rows.push((k.to_owned(), x, y));
    row("requests", total(a).to_string(), total(b).to_string());
    row(
        "failed",
        a.load.failed.to_string(),
        b.load.failed.to_string(),
    );
    for k in KINDS {
        let (x, y) = (a.load.count(k), b.load.count(k));
        if x + y > 0 {
            row(&format!("  {k}"), x.to_string(), y.to_string());
        }
    }
    // The demo never asks for retries; were there any, they are failures in disguise.
    if a.load.retried + b.load.retried > 0 {
        row(
            "RETRIED",
            a.load.retried.to_string(),
            b.load.retried.to_string(),
        );
    }
    let q = |r: &CheckReport, f: fn(&super::check::report::Quantiles) -> Duration| {
        r.reload_duration.as_ref().map_or("-".into(), |d| ms(f(d)))
    };
    row("reload time p50", q(a, |d| d.p50), q(b, |d| d.p50));
    row("reload time max", q(a, |d| d.max), q(b, |d| d.max));
    let pids = |r: &CheckReport| format!("{}/{}", r.main_pid_changes, r.reloads_requested);
    row("MainPID changes", pids(a), pids(b));
    row(
        "protocol violations",
        a.violations.len().to_string(),
        b.violations.len().to_string(),
    );
    let peak = |r: &CheckReport| r.peak_processes.map_or("-".into(), |n| n.to_string());
    row("peak processes", peak(a), peak(b));

    let mut out = format!(
        "\n  {:<22}{:>16}{:>16}\n",
        "", "exuvia upgrade", "naive restart"
    );
    for (k, x, y) in rows {
        out.push_str(&format!("  {k:<22}{x:>16}{y:>16}\n"));
    }
    out.push('\n');
    out.push_str(&format!(
        "exuvia: {} failed of {} requests over {} reloads; naive restart: {} failed of {} ({})",
        a.load.failed,
        total(a),
        a.reloads.len(),
        b.load.failed,
        total(b),
        kinds(&b.load)
    ));
    if !a.pass {
        out.push_str("\n\nexuvia side FAILED:\n");
        for r in &a.reasons {
            out.push_str(&format!("  - {r}\n"));
        }
    }
    if b.load.failed == 0 {
        out.push_str("\n(the naive restart got lucky: its gap is only milliseconds long; try --connections 16)");
    }
    out
}

fn total(r: &CheckReport) -> u64 {
    r.load.ok + r.load.failed
}
