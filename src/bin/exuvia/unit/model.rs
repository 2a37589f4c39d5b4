//! The units as data: sections of directives, each carrying why it is there and the first
//! systemd version that understands it. Rendering (ini or NixOS) only walks this model, so the
//! `--explain` text, the version gate and the output formats cannot drift apart.
use super::hardening;
use super::spec::{Address, Listener, NOTIFY_RELOAD, Profile, Spec, Transport, format_ms};

/// Extra seconds on top of the declared start-up time for the handover itself (MAINPID= +
/// READY=1 round trip, double fork) — the reload is bounded by TimeoutStartSec= too.
pub const HANDOVER_MARGIN_MS: u64 = 5_000;
/// Extra seconds on top of the drain deadline before systemd escalates to SIGKILL.
pub const STOP_MARGIN_MS: u64 = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    Service,
    Socket,
}

#[derive(Debug, Clone)]
pub struct Directive {
    pub key: &'static str,
    pub value: String,
    /// First systemd version that knows this key/value; 0 = older than any supported target.
    pub since: u32,
    pub why: String,
    /// A lint rule this directive trips on purpose; emitted as `# exuvia-lint: allow RULE`.
    pub lint_allow: Option<&'static str>,
}

impl Directive {
    pub fn since_text(&self) -> String {
        if self.since == 0 {
            "any systemd".to_string()
        } else {
            format!("systemd >= {}", self.since)
        }
    }
}

/// A directive left out because the target systemd does not know it (shown by `--explain`).
#[derive(Debug, Clone)]
pub struct Omitted {
    pub key: &'static str,
    pub value: String,
    pub since: u32,
}

#[derive(Debug, Clone)]
pub struct Section {
    pub name: &'static str,
    pub directives: Vec<Directive>,
    pub omitted: Vec<Omitted>,
}

#[derive(Debug, Clone)]
pub struct UnitFile {
    pub file_name: String,
    pub kind: UnitKind,
    pub sections: Vec<Section>,
}

impl UnitFile {
    pub fn unit_name(&self) -> &str {
        self.file_name
            .rsplit_once('.')
            .map_or(&self.file_name, |(n, _)| n)
    }
}

/// Collects one section's directives, dropping those the target version does not know.
pub struct SectionBuilder {
    target: u32,
    section: Section,
}

impl SectionBuilder {
    pub fn new(name: &'static str, target: u32) -> Self {
        Self {
            target,
            section: Section {
                name,
                directives: Vec::new(),
                omitted: Vec::new(),
            },
        }
    }

    pub fn add(
        &mut self,
        key: &'static str,
        value: impl Into<String>,
        since: u32,
        why: impl Into<String>,
    ) -> &mut Self {
        let value = value.into();
        if since > self.target {
            self.section.omitted.push(Omitted { key, value, since });
        } else {
            self.section.directives.push(Directive {
                key,
                value,
                since,
                why: why.into(),
                lint_allow: None,
            });
        }
        self
    }

    pub fn allow_lint(&mut self, rule: &'static str) -> &mut Self {
        if let Some(d) = self.section.directives.last_mut() {
            d.lint_allow = Some(rule);
        }
        self
    }

    pub fn build(self) -> Section {
        self.section
    }
}

/// Escape one word for `ExecStart=`-style command lines: `%` starts a specifier, `$` an
/// environment expansion, and whitespace, quotes, backslashes or a lone `;` need quoting.
pub fn exec_word(word: &str) -> String {
    let escaped = word.replace('%', "%%").replace('$', "$$");
    let needs_quotes = escaped.is_empty()
        || escaped == ";"
        || escaped.contains(|c: char| c.is_whitespace() || "\"'\\".contains(c));
    if !needs_quotes {
        return escaped;
    }
    format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Escape a plain value (paths, descriptions): only specifiers are special there.
pub fn plain(value: &str) -> String {
    value.replace('%', "%%")
}

/// The socket unit name of each listener: `NAME.socket` for a single listener (so
/// `systemctl enable NAME.socket` reads naturally), `NAME-LISTENER.socket` for several.
pub fn socket_units(spec: &Spec) -> Vec<(&Listener, String)> {
    if !spec.profile.socket_activated() {
        return Vec::new();
    }
    match spec.listeners.as_slice() {
        [only] => vec![(only, format!("{}.socket", spec.name))],
        many => many
            .iter()
            .map(|l| (l, format!("{}-{}.socket", spec.name, l.name)))
            .collect(),
    }
}

/// Every unit file for the spec: the service first, then one socket per listener.
pub fn build(spec: &Spec) -> Vec<UnitFile> {
    let sockets = socket_units(spec);
    let mut units = vec![service(spec, &sockets)];
    units.extend(sockets.iter().map(|(l, file)| socket(spec, l, file)));
    units
}

fn service(spec: &Spec, sockets: &[(&Listener, String)]) -> UnitFile {
    let t = spec.systemd;
    let mut unit = SectionBuilder::new("Unit", t);
    unit.add(
        "Description",
        plain(&spec.description),
        0,
        "shown by systemctl status and in the journal",
    );
    if spec.profile != Profile::Isolated {
        unit.add("After", "network.target", 0, "start after basic networking so outbound connections made at start-up do not race interface set-up");
    }
    unit.add("StartLimitIntervalSec", "60s", 229, "crash-loop guard; it belongs in [Unit] (in [Service] it is a legacy alias many generators still write)");
    unit.add(
        "StartLimitBurst",
        "5",
        229,
        "at most 5 (re)starts per minute, then the unit fails instead of flapping",
    );

    let mut svc = SectionBuilder::new("Service", t);
    reload_model(spec, &mut svc);
    svc.add("SyslogIdentifier", plain(&spec.name), 0, "after a handover the new process inherits the journal stream of the first one; a fixed identifier keeps the log lines attributable");
    if !sockets.is_empty() {
        let names: Vec<&str> = sockets.iter().map(|(_, f)| f.as_str()).collect();
        svc.add("Sockets", names.join(" "), 0, "hands the listeners over as named fds (LISTEN_FDNAMES) and pulls the sockets in when the service is started directly");
    }
    identity(spec, &mut svc);
    hardening::apply(spec, &mut svc);

    let mut install = SectionBuilder::new("Install", t);
    install.add("WantedBy", "multi-user.target", 0, "start eagerly at boot; enable the .socket units too so the listeners exist before the service");

    UnitFile {
        file_name: format!("{}.service", spec.name),
        kind: UnitKind::Service,
        sections: vec![unit.build(), svc.build(), install.build()],
    }
}

/// Type=, reload, kill and timeout directives: the part of the unit the upgrade model depends on.
fn reload_model(spec: &Spec, svc: &mut SectionBuilder) {
    let t = spec.systemd;
    let mut exec_start: Vec<String> = std::iter::once(spec.exec.as_str())
        .chain(spec.args.iter().map(String::as_str))
        .map(exec_word)
        .collect();
    let client = spec.reload_client.as_ref().map(|c| {
        exec_start.push(exec_word(&spec.control_arg));
        exec_start.push(exec_word(&spec.control_socket()));
        format!(
            "{} reload --wait --control {}",
            exec_word(c),
            exec_word(&spec.control_socket())
        )
    });

    if t >= NOTIFY_RELOAD {
        svc.add("Type", "notify-reload", NOTIFY_RELOAD, "systemctl reload sends ReloadSignal= and waits for RELOADING=1 … READY=1; the old main hands MAINPID= to the new process in that window");
        svc.add("ReloadSignal", "SIGHUP", NOTIFY_RELOAD, "the signal that starts the fork+exec upgrade (SIGHUP is the default; stated so lint and readers need not know that)");
    } else {
        svc.add("Type", "notify", 0, "systemd < 253 has no notify-reload (it would silently fall back to Type=simple); notify keeps READY=1/RELOADING=1/MAINPID= working");
    }
    svc.add("ExecStart", exec_start.join(" "), 0, "the install path, not /proc/self/exe: the upgrade re-execs this path, so a package upgrade that replaced the file takes effect");
    match (client, t >= NOTIFY_RELOAD) {
        (Some(cmd), true) => {
            svc.add("ExecReload", cmd, NOTIFY_RELOAD, "synchronous reload client: systemctl reload fails when the upgrade fails. On 253-261 systemd also sends ReloadSignal= at the same time, so the service must join an upgrade already in flight rather than start a second one");
        }
        (Some(cmd), false) => {
            svc.add("ExecReload", cmd, 0, "synchronous reload client: systemctl reload waits for the handover and fails when the upgrade fails");
        }
        (None, false) => {
            svc.add("ExecReload", "kill -HUP $MAINPID", 0, "fallback for systemd < 253: the reload result is asynchronous — systemctl reload returns once kill does, and a failed upgrade is only visible in the journal (use --reload-client for a synchronous result)")
                .allow_lint("exec-reload-kill");
        }
        (None, true) => {}
    }
    svc.add("NotifyAccess", "main", 0, "only the current main PID may change state: the old process hands over with MAINPID=<new>+READY=1 in one datagram, and a stray STOPPING=1 from the draining old process is refused");
    svc.add("KillMode", "control-group", 0, "stop signals every process in the cgroup, so an old generation still draining is stopped gracefully too (mixed would SIGKILL it; process would leave it running)");
    let start = spec.startup_ms + HANDOVER_MARGIN_MS;
    svc.add("TimeoutStartSec", format_ms(start), 0, format!("start-up ({}) + handover margin ({}): systemd bounds every reload by TimeoutStartSec= as well, and the reload starts a whole new process", format_ms(spec.startup_ms), format_ms(HANDOVER_MARGIN_MS)));
    let stop = spec.drain_ms + STOP_MARGIN_MS;
    svc.add("TimeoutStopSec", format_ms(stop), 0, format!("drain deadline ({}) + margin ({}) before SIGKILL; all generations get SIGTERM at once and drain in parallel", format_ms(spec.drain_ms), format_ms(STOP_MARGIN_MS)));
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
        svc.add("MemoryHigh", double_memory(m), 231, format!("throttle (not kill) above twice the memory of one generation ({m}): old and new overlap during a reload"));
    }
    if let Some(n) = spec.nofile {
        svc.add("LimitNOFILE", n.to_string(), 0, "per-process rlimit, frozen at service start and inherited by every future binary version (change needs a restart)");
    }
}

fn identity(spec: &Spec, svc: &mut SectionBuilder) {
    match &spec.user {
        None => {
            svc.add("DynamicUser", "yes", 235, "a transient UID shared by old and new generation; implies ProtectSystem=strict, ProtectHome=read-only, PrivateTmp, RemoveIPC, NoNewPrivileges");
        }
        Some(u) => {
            svc.add(
                "User",
                u.clone(),
                0,
                "static user (ship a sysusers.d fragment); old and new generation share it",
            );
            if let Some(g) = &spec.group {
                svc.add("Group", g.clone(), 0, "static group");
            }
        }
    }
    if let Some(f) = &spec.environment_file {
        svc.add("EnvironmentFile", plain(f), 0, "read once at start: a reload keeps the environment of the first start (restart to change it)");
    }
    for d in &spec.state_directories {
        svc.add("StateDirectory", plain(d), 235, "writable /var/lib/ directory owned by the service user, instead of ReadWritePaths= through ProtectSystem=strict");
    }
    for d in &spec.runtime_directories {
        let why = if spec.reload_client.is_some() && *d == spec.name {
            "holds the control socket the reload client talks to; kept across reloads, removed on stop"
        } else {
            "writable /run/ directory, kept across reloads, removed on stop"
        };
        svc.add("RuntimeDirectory", plain(d), 235, why);
    }
}

fn double_memory(m: &str) -> String {
    let split = m.find(|c: char| !c.is_ascii_digit()).unwrap_or(m.len());
    let (n, suffix) = m.split_at(split);
    let n: u64 = n.parse().unwrap_or(0);
    format!("{}{suffix}", n.saturating_mul(2))
}

fn socket(spec: &Spec, l: &Listener, file: &str) -> UnitFile {
    let t = spec.systemd;
    let mut unit = SectionBuilder::new("Unit", t);
    unit.add(
        "Description",
        plain(&format!("{} listener of {}", l.name, spec.name)),
        0,
        "shown by systemctl status",
    );

    let mut sock = SectionBuilder::new("Socket", t);
    let (key, what) = match l.transport {
        Transport::Udp => ("ListenDatagram", "datagram socket"),
        Transport::Tcp | Transport::Unix => ("ListenStream", "stream socket"),
    };
    sock.add(key, plain(l.address_text()), 0, format!("{what} created and kept open by PID 1: it outlives every reload and restart, connections queue in the backlog meanwhile"));
    sock.add("FileDescriptorName", l.name.clone(), 227, "the service finds this fd by name (LISTEN_FDNAMES); with several socket units the fd order is undefined");
    sock.add(
        "Service",
        format!("{}.service", spec.name),
        0,
        "the service that receives this fd",
    );
    sock.add(
        "Accept",
        "no",
        0,
        "one long-running service receives the listening socket itself",
    );
    if let Address::Inet {
        wildcard, v6_any, ..
    } = l.address
    {
        if !wildcard {
            sock.add("FreeBind", "yes", 0, "binding a specific IP must not fail when the address is not configured yet at boot");
        }
        if v6_any {
            sock.add(
                "BindIPv6Only",
                "both",
                0,
                "[::] or a bare port also accepts IPv4 (dual stack), whatever the sysctl default",
            );
        }
    }
    let mut install = SectionBuilder::new("Install", t);
    install.add(
        "WantedBy",
        "sockets.target",
        0,
        "enable the socket, not only the service: the listener then exists from early boot on",
    );

    UnitFile {
        file_name: file.to_string(),
        kind: UnitKind::Socket,
        sections: vec![unit.build(), sock.build(), install.build()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_words_are_escaped() {
        assert_eq!(exec_word("/usr/bin/x"), "/usr/bin/x");
        assert_eq!(exec_word("a b"), "\"a b\"");
        assert_eq!(exec_word("100%"), "100%%");
        assert_eq!(exec_word("$HOME"), "$$HOME");
        assert_eq!(exec_word("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(exec_word(";"), "\";\"");
        assert_eq!(exec_word(""), "\"\"");
    }

    #[test]
    fn memory_doubles_with_suffix() {
        assert_eq!(double_memory("256M"), "512M");
        assert_eq!(double_memory("1000"), "2000");
    }
}
