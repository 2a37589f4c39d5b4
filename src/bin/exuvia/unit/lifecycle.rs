//! Type=, reload, kill and timeout directives: the part of the service unit the upgrade model
//! depends on (docs/units.md, "What the unit must say"). The reload client is the service's
//! own binary started as `exuvia-reload` (systemd's `@` prefix sets argv[0]), so a host needs
//! no second binary; the deadlines reach the service through `Environment=` and systemd's
//! timeouts are derived from the same numbers.
use super::deadlines::{CLIENT_MARGIN_MS, HANDOVER_MARGIN_MS, STOP_MARGIN_MS};
use super::section::{SectionBuilder, exec_word};
use super::spec::{EXEC_RELOAD_POST, NOTIFY_RELOAD, ReloadClient, Spec};
use super::timespan::{format_ms, format_secs};

fn command(words: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    words
        .into_iter()
        .map(|w| exec_word(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `ExecReload=` for the spec's client, if it has one.
fn reload_command(spec: &Spec, control: &str) -> Option<String> {
    let timeout = format_secs(spec.deadlines.client_ms);
    let tail = ["--wait", "--control", control, "--timeout", &timeout];
    match &spec.reload {
        ReloadClient::SelfBinary => Some(format!(
            "@{} exuvia-reload {}",
            exec_word(&spec.exec),
            command(tail)
        )),
        ReloadClient::Cli(cli) => Some(format!("{} reload {}", exec_word(cli), command(tail))),
        ReloadClient::Signal => None,
    }
}

pub fn apply(spec: &Spec, svc: &mut SectionBuilder) {
    let t = spec.systemd;
    let d = &spec.deadlines;
    let control = spec.control_socket();
    let mut exec_start: Vec<&str> = std::iter::once(spec.exec.as_str())
        .chain(spec.args.iter().map(String::as_str))
        .collect();
    if let Some(sock) = &control {
        exec_start.extend([spec.control_arg.as_str(), sock.as_str()]);
    }

    if t >= NOTIFY_RELOAD {
        svc.add("Type", "notify-reload", NOTIFY_RELOAD, "systemctl reload sends ReloadSignal= and waits for RELOADING=1 … READY=1; the old main hands MAINPID= to the new process in that window");
        svc.add("ReloadSignal", "SIGHUP", NOTIFY_RELOAD, "the signal that starts the fork+exec upgrade (SIGHUP is the default; stated so lint and readers need not know that)");
    } else {
        svc.add("Type", "notify", 0, "systemd < 253 has no notify-reload (it would silently fall back to Type=simple); notify keeps READY=1/RELOADING=1/MAINPID= working");
    }
    svc.add("ExecStart", command(&exec_start), 0, "the install path, not /proc/self/exe: the upgrade re-execs this path, so a package upgrade that replaced the file takes effect");
    let client_why = match &spec.reload {
        ReloadClient::SelfBinary => {
            "the service binary is its own reload client ('@' makes argv[0] exuvia-reload, which the library answers before the service's own argument parsing): systemctl reload waits for the handover and fails when the upgrade fails, with no second binary on the host"
        }
        _ => {
            "synchronous reload client (the exuvia CLI): systemctl reload waits for the handover and fails when the upgrade fails"
        }
    };
    match (
        reload_command(spec, control.as_deref().unwrap_or_default()),
        t >= NOTIFY_RELOAD,
    ) {
        (Some(cmd), true) => {
            svc.add("ExecReload", cmd, 0, format!("{client_why}. On 253-261 systemd also sends ReloadSignal= for the same reload; the client's request joins the upgrade the signal started. --timeout is the readiness deadline + {}", format_ms(CLIENT_MARGIN_MS)));
        }
        (Some(cmd), false) => {
            svc.add(
                "ExecReload",
                cmd,
                0,
                format!(
                    "{client_why}. --timeout is the readiness deadline + {}",
                    format_ms(CLIENT_MARGIN_MS)
                ),
            );
        }
        (None, false) => {
            svc.add("ExecReload", "kill -HUP $MAINPID", 0, "reload_client = \"none\" on systemd < 253: the reload result is asynchronous — systemctl reload returns once kill does, and a failed upgrade is only visible in the journal (drop reload_client = \"none\" for a synchronous result)")
                .allow_lint("exec-reload-kill");
        }
        (None, true) => {}
    }
    for cmd in &spec.reload_post {
        svc.add(
            "ExecReloadPost",
            command(cmd),
            EXEC_RELOAD_POST,
            "runs after a successful reload, i.e. after the new generation took over (reload_post)",
        );
    }
    svc.add("NotifyAccess", "main", 0, "only the current main PID may change state: the old process hands over with MAINPID=<new>+READY=1 in one datagram, and a stray STOPPING=1 from the draining old process is refused");
    svc.add("KillMode", "control-group", 0, "stop signals every process in the cgroup, so an old generation still draining is stopped gracefully too (mixed would SIGKILL it; process would leave it running)");
    svc.add("Environment", d.environment(), 0, "the service's own deadlines (readiness of a new generation, soft and hard drain): the library reads them at start, and the timeouts below are derived from the same numbers");
    svc.add("TimeoutStartSec", format_ms(d.start_ms), 0, format!("readiness deadline ({}) + handover margin ({}): systemd bounds every reload by TimeoutStartSec= as well, and the reload starts a whole new process", format_ms(d.ready_ms), format_ms(HANDOVER_MARGIN_MS)));
    svc.add("TimeoutStopSec", format_ms(d.stop_ms), 0, format!("hard drain deadline ({}) + margin ({}) before SIGKILL; all generations get SIGTERM at once and drain in parallel", format_ms(d.drain_hard_ms), format_ms(STOP_MARGIN_MS)));
    svc.add("Restart", "on-failure", 0, "a crash of the new generation after the handover is restarted; a clean exit (also a fatal SIGHUP before the handler is installed) is not");
    svc.add("RestartSec", "1s", 0, "short pause before a restart; socket activation queues connections in the backlog meanwhile");
    svc.add("OOMPolicy", "continue", 243, "the default (stop) would stop the whole unit when the kernel OOM-kills one draining old process; a killed main still fails and restarts");
    svc.add(
        "TasksMax",
        (u64::from(spec.tasks) * 2).to_string(),
        227,
        format!(
            "two generations overlap during a reload: twice the {} tasks of one",
            spec.tasks
        ),
    );
    if let Some(m) = &spec.memory {
        svc.add("MemoryHigh", m.doubled(), 231, format!("throttle (not kill) above twice the memory of one generation ({}{}): old and new overlap during a reload", m.value, m.suffix));
    }
    if let Some(n) = spec.nofile {
        svc.add("LimitNOFILE", n.to_string(), 0, "per-process rlimit, frozen at service start and inherited by every future binary version (change needs a restart)");
    }
}
