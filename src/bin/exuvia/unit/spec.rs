//! What the user asked for, validated: the TOML file and the flags are merged here, and every
//! input error is caught before anything is rendered, so a bad spec never writes a file.
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// Oldest systemd we generate for: RHEL 8. Everything the model needs (FileDescriptorName=,
/// StartLimit* in [Unit], DynamicUser=, StateDirectory=, bare `kill` in ExecReload=) is older.
pub const MIN_SYSTEMD: u32 = 239;
/// First systemd with `Type=notify-reload` and `ReloadSignal=`.
pub const NOTIFY_RELOAD: u32 = 253;

/// A one-line, actionable input error. Nothing has been written when one is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError(msg.into()))
}

/// A duration as written in TOML: an integer (seconds) or a string such as "500ms", "10s", "2min".
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum DurationInput {
    Seconds(u64),
    Text(String),
}

/// One `[[listener]]` table of the TOML file.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ListenerInput {
    pub name: String,
    /// `tcp:ADDR`, `udp:ADDR` or `unix:PATH`.
    pub listen: String,
}

/// The TOML file; every field can also be given (and overridden) by a flag.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct SpecInput {
    pub name: Option<String>,
    pub description: Option<String>,
    pub exec: Option<String>,
    pub args: Option<Vec<String>>,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerInput>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub dynamic_user: Option<bool>,
    pub environment_file: Option<String>,
    pub state_directories: Option<Vec<String>>,
    pub runtime_directories: Option<Vec<String>>,
    pub drain: Option<DurationInput>,
    pub startup: Option<DurationInput>,
    pub systemd: Option<u32>,
    pub profile: Option<String>,
    pub reload_client: Option<String>,
    pub control_arg: Option<String>,
    /// Threads/processes of ONE generation; TasksMax= is twice this.
    pub tasks: Option<u32>,
    /// Memory of ONE generation (e.g. "256M"); MemoryHigh= is twice this.
    pub memory: Option<String>,
    /// Per-process open-file limit (LimitNOFILE=); an rlimit, so not doubled.
    pub nofile: Option<u64>,
    /// The service JIT-compiles code: drop MemoryDenyWriteExecute=.
    pub jit: Option<bool>,
    /// The service reads /proc/meminfo, /proc/sys, …: drop ProcSubset=pid.
    pub full_proc: Option<bool>,
    /// Force PrivateUsers= on or off (default: on unless ambient capabilities are needed).
    pub private_users: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Socket-activated, outbound network allowed.
    Strict,
    /// Socket-activated, no network namespace access at all.
    Isolated,
    /// The service binds its own ports.
    Compat,
}

impl Profile {
    pub fn parse(s: &str) -> Result<Self, SpecError> {
        match s {
            "strict" => Ok(Self::Strict),
            "isolated" => Ok(Self::Isolated),
            "compat" | "self-bind" => Ok(Self::Compat),
            other => err(format!(
                "unknown profile {other:?}: use strict (default, socket-activated), isolated (no outbound network) or compat (the service binds its own ports)"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "strict",
            Self::Isolated => "isolated",
            Self::Compat => "compat",
        }
    }

    /// Whether listeners come from `.socket` units (the service never binds).
    pub fn socket_activated(self) -> bool {
        !matches!(self, Self::Compat)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `ListenStream=`/`ListenDatagram=` value: `127.0.0.1:80`, `[::]:443` or a bare port.
    Inet {
        text: String,
        port: u16,
        wildcard: bool,
        v6_any: bool,
    },
    /// Absolute path or `@abstract`.
    Unix(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
    Unix,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub transport: Transport,
    pub address: Address,
}

impl Listener {
    /// Parse `NAME=tcp:ADDR` as given on the command line.
    pub fn parse_flag(s: &str) -> Result<Self, SpecError> {
        match s.split_once('=') {
            Some((name, listen)) => Self::parse(name, listen),
            None => err(format!(
                "listener {s:?} does not parse: write NAME=tcp:ADDR, NAME=udp:ADDR or NAME=unix:/PATH (e.g. http=tcp:0.0.0.0:80)"
            )),
        }
    }

    pub fn parse(name: &str, listen: &str) -> Result<Self, SpecError> {
        check_listener_name(name)?;
        let bad = || {
            SpecError(format!(
                "listener {name}={listen:?} does not parse: write tcp:ADDR:PORT, tcp:PORT, udp:ADDR:PORT or unix:/absolute/path (e.g. tcp:127.0.0.1:8080, tcp:[::]:443)"
            ))
        };
        let (kind, rest) = listen.split_once(':').ok_or_else(bad)?;
        let transport = match kind {
            "tcp" => Transport::Tcp,
            "udp" => Transport::Udp,
            "unix" => Transport::Unix,
            _ => return Err(bad()),
        };
        let address = if transport == Transport::Unix {
            let ok_path = rest.starts_with('/') && !rest.contains("/../") && !rest.ends_with('/');
            let ok_abstract = rest.len() > 1 && rest.starts_with('@');
            if !(ok_path || ok_abstract) || rest.len() > 107 || has_bad_chars(rest) {
                return Err(bad());
            }
            Address::Unix(rest.to_string())
        } else if let Ok(port) = rest.parse::<u16>() {
            if port == 0 {
                return err(format!(
                    "listener {name}: port 0 cannot be socket-activated; pick a fixed port"
                ));
            }
            Address::Inet {
                text: rest.to_string(),
                port,
                wildcard: true,
                v6_any: true,
            }
        } else {
            let addr: SocketAddr = rest.parse().map_err(|_| bad())?;
            if addr.port() == 0 {
                return err(format!(
                    "listener {name}: port 0 cannot be socket-activated; pick a fixed port"
                ));
            }
            let v6_any = matches!(addr, SocketAddr::V6(a) if a.ip().is_unspecified());
            Address::Inet {
                text: addr.to_string(),
                port: addr.port(),
                wildcard: addr.ip().is_unspecified(),
                v6_any,
            }
        };
        Ok(Self {
            name: name.to_string(),
            transport,
            address,
        })
    }

    /// A TCP/UDP port below 1024, which needs CAP_NET_BIND_SERVICE when the service binds it.
    pub fn privileged_port(&self) -> Option<u16> {
        match self.address {
            Address::Inet { port, .. } if port < 1024 => Some(port),
            _ => None,
        }
    }

    pub fn address_text(&self) -> &str {
        match &self.address {
            Address::Inet { text, .. } => text,
            Address::Unix(p) => p,
        }
    }
}

/// The validated spec the unit model is built from.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub description: String,
    pub exec: String,
    pub args: Vec<String>,
    pub listeners: Vec<Listener>,
    /// `None` = DynamicUser=yes.
    pub user: Option<String>,
    pub group: Option<String>,
    pub environment_file: Option<String>,
    pub state_directories: Vec<String>,
    pub runtime_directories: Vec<String>,
    pub drain_ms: u64,
    pub startup_ms: u64,
    pub systemd: u32,
    pub profile: Profile,
    pub reload_client: Option<String>,
    pub control_arg: String,
    pub tasks: u32,
    pub memory: Option<String>,
    pub nofile: Option<u64>,
    pub jit: bool,
    pub full_proc: bool,
    pub private_users: bool,
    /// A port < 1024 the service binds itself: it gets CAP_NET_BIND_SERVICE.
    pub needs_bind_cap: bool,
}

impl Spec {
    /// Where the service's control socket lives when a reload client is configured.
    pub fn control_socket(&self) -> String {
        format!("/run/{}/control.sock", self.name)
    }

    pub fn validate(input: SpecInput, listeners: Vec<Listener>) -> Result<Spec, SpecError> {
        let name = input.name.ok_or_else(|| {
            SpecError(
                "missing unit name: pass --name NAME or set name = \"...\" in the TOML file".into(),
            )
        })?;
        check_unit_name(&name)?;
        let exec = input.exec.ok_or_else(|| SpecError("missing executable: pass --exec /absolute/path or set exec = \"/usr/bin/...\" in the TOML file".into()))?;
        check_exec(&exec, "exec")?;
        let args = input.args.unwrap_or_default();
        for a in &args {
            if a.chars().any(char::is_control) {
                return err(format!(
                    "argument {a:?} contains a control character (newline, tab, …); unit files cannot carry it — pass it via the environment file instead"
                ));
            }
        }
        let description = input.description.unwrap_or_else(|| name.clone());
        if has_bad_chars(&description) {
            return err("description contains a control character; use one plain line");
        }

        let profile = Profile::parse(input.profile.as_deref().unwrap_or("strict"))?;
        let mut seen = std::collections::BTreeSet::new();
        let mut seen_addr = std::collections::BTreeSet::new();
        for l in &listeners {
            if !seen.insert(l.name.clone()) {
                return err(format!(
                    "listener name {:?} is used twice: every listener needs its own name (it becomes FileDescriptorName=)",
                    l.name
                ));
            }
            if !seen_addr.insert((l.transport as u8, l.address_text().to_string())) {
                return err(format!(
                    "address {} is listed twice: give each listener its own address",
                    l.address_text()
                ));
            }
        }

        let dynamic = input.dynamic_user.unwrap_or(input.user.is_none());
        let user = match (dynamic, input.user) {
            (true, Some(u)) => {
                return err(format!(
                    "both DynamicUser and user = {u:?} given: drop one (dynamic_user = false to run as a static user)"
                ));
            }
            (false, None) => {
                return err("dynamic_user = false needs a static user: pass --user NAME");
            }
            (_, u) => u,
        };
        for (what, v) in [("user", &user), ("group", &input.group)] {
            let valid = |v: &str| {
                !v.is_empty()
                    && !v.starts_with('-')
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            };
            match v {
                Some(v) if !valid(v) => {
                    return err(format!(
                        "{what} {v:?} is not a valid user/group name: use letters, digits, '_', '-', '.'"
                    ));
                }
                _ => {}
            }
        }
        if input.group.is_some() && user.is_none() {
            return err(
                "group given with DynamicUser: DynamicUser allocates its own group; drop --group or set --user",
            );
        }

        if let Some(f) = &input.environment_file {
            let path = f.strip_prefix('-').unwrap_or(f);
            if !path.starts_with('/') || has_bad_chars(path) {
                return err(format!(
                    "environment file {f:?} must be an absolute path (prefix it with '-' to make it optional: -/etc/NAME/env)"
                ));
            }
        }
        let state_directories = input.state_directories.unwrap_or_default();
        let mut runtime_directories = input.runtime_directories.unwrap_or_default();
        for d in state_directories.iter().chain(&runtime_directories) {
            if d.is_empty()
                || d.starts_with('/')
                || d.split('/').any(|c| c.is_empty() || c == "." || c == "..")
                || has_bad_chars(d)
                || d.contains(char::is_whitespace)
            {
                return err(format!(
                    "directory {d:?} must be a relative name like {name} or {name}/sub (systemd puts it under /var/lib or /run)"
                ));
            }
        }

        let drain_ms = duration_ms(input.drain.as_ref(), 30_000, "drain")?;
        let startup_ms = duration_ms(input.startup.as_ref(), 10_000, "startup")?;
        if startup_ms == 0 {
            return err(
                "startup must be > 0: it bounds both the first start and every reload (TimeoutStartSec=)",
            );
        }

        let systemd = input.systemd.unwrap_or(257);
        if systemd < MIN_SYSTEMD {
            return err(format!(
                "systemd {systemd} is too old: the oldest supported target is {MIN_SYSTEMD} (RHEL 8)"
            ));
        }
        if systemd > 999 {
            return err(format!(
                "systemd {systemd} is not a version number: pass the major version, e.g. --systemd 257"
            ));
        }

        let reload_client = input.reload_client;
        if let Some(c) = &reload_client {
            check_exec(c, "reload client")?;
            if !runtime_directories.contains(&name) {
                runtime_directories.push(name.clone());
            }
        }
        let control_arg = input.control_arg.unwrap_or_else(|| "--control".into());
        if control_arg.is_empty()
            || control_arg.contains(char::is_whitespace)
            || has_bad_chars(&control_arg)
        {
            return err(format!(
                "control_arg {control_arg:?} must be one word such as --control"
            ));
        }

        let tasks = input.tasks.unwrap_or(512);
        if tasks == 0 {
            return err(
                "tasks must be > 0 (threads + processes of one generation; TasksMax= is twice this)",
            );
        }
        if let Some(m) = &input.memory {
            let digits = m.trim_end_matches(['K', 'M', 'G', 'T']);
            if digits.is_empty()
                || !digits.chars().all(|c| c.is_ascii_digit())
                || m.len() - digits.len() > 1
            {
                return err(format!(
                    "memory {m:?} does not parse: write bytes with an optional K/M/G/T suffix, e.g. 256M"
                ));
            }
        }
        if input.nofile == Some(0) {
            return err("nofile must be > 0");
        }

        let privileged: Vec<u16> = listeners
            .iter()
            .filter_map(Listener::privileged_port)
            .collect();
        let needs_bind_cap = profile == Profile::Compat && !privileged.is_empty();
        let private_users = match (input.private_users, needs_bind_cap) {
            (Some(true), true) => {
                return err(format!(
                    "private_users conflicts with self-binding port {}: the capability would only be valid inside the user namespace — use profile strict (socket activation) or drop private_users",
                    privileged[0]
                ));
            }
            (Some(v), _) => v,
            (None, cap) => !cap,
        };

        Ok(Spec {
            name,
            description,
            exec,
            args,
            listeners,
            user,
            group: input.group,
            environment_file: input.environment_file,
            state_directories,
            runtime_directories,
            drain_ms,
            startup_ms,
            systemd,
            profile,
            reload_client,
            control_arg,
            tasks,
            memory: input.memory,
            nofile: input.nofile,
            jit: input.jit.unwrap_or(false),
            full_proc: input.full_proc.unwrap_or(false),
            private_users,
            needs_bind_cap,
        })
    }
}

fn has_bad_chars(s: &str) -> bool {
    s.chars().any(char::is_control)
}

fn check_unit_name(name: &str) -> Result<(), SpecError> {
    if name.contains('@') {
        return err(format!(
            "unit name {name:?}: template units (name@.service) are not supported; use a plain name such as myapp"
        ));
    }
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && !name.starts_with(['-', '.'])
        && !name.ends_with(".service");
    if ok {
        Ok(())
    } else {
        err(format!(
            "invalid unit name {name:?}: use 1-200 letters, digits, '_', '.', '-' without the .service suffix (e.g. my-app)"
        ))
    }
}

fn check_listener_name(name: &str) -> Result<(), SpecError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c));
    if ok {
        Ok(())
    } else {
        err(format!(
            "invalid listener name {name:?}: use 1-64 letters, digits, '_', '-' (it becomes FileDescriptorName= and part of the socket unit name)"
        ))
    }
}

fn check_exec(path: &str, what: &str) -> Result<(), SpecError> {
    if !Path::new(path).is_absolute() {
        return err(format!(
            "{what} path {path:?} is not absolute: give the install path, e.g. /usr/bin/{path} (the upgrade re-execs exactly this path)"
        ));
    }
    if path.starts_with("/proc/") {
        return err(format!(
            "{what} path {path:?} points into /proc: after a package upgrade it names the deleted old binary; give the install path"
        ));
    }
    if has_bad_chars(path) || path.contains(char::is_whitespace) {
        return err(format!(
            "{what} path {path:?} contains whitespace or control characters: install the binary under a plain path"
        ));
    }
    Ok(())
}

/// Milliseconds from an integer (seconds) or "N", "Nms", "Ns", "Nmin".
pub fn duration_ms(
    input: Option<&DurationInput>,
    default: u64,
    what: &str,
) -> Result<u64, SpecError> {
    let text = match input {
        None => return Ok(default),
        Some(DurationInput::Seconds(s)) => return Ok(s.saturating_mul(1000)),
        Some(DurationInput::Text(t)) => t.trim(),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let factor = match unit.trim() {
        "ms" => 1,
        "" | "s" | "sec" => 1000,
        "m" | "min" => 60_000,
        _ => 0,
    };
    match num.parse::<u64>() {
        Ok(n) if factor > 0 && n <= 86_400_000 => Ok(n * factor),
        _ => err(format!(
            "{what} {text:?} does not parse: write e.g. 500ms, 10s or 2min"
        )),
    }
}

/// systemd time span for a millisecond count.
pub fn format_ms(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}
