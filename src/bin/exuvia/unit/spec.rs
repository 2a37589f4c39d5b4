//! What the user asked for, validated: the TOML file and the flags are merged into a
//! [`SpecInput`], and every input error is caught here (or, for what a unit line cannot carry,
//! by `section::check_value` while the model is built) before anything is written.
use super::deadlines::Deadlines;
use super::error::{SpecError, err};
use super::input::SpecInput;
use super::listener::{Listener, check_distinct};
use super::names::{check_command, check_directory, check_path, check_unit_name, check_user};

/// Oldest systemd we generate for: RHEL 8. Everything the model needs (FileDescriptorName=,
/// StartLimit* in [Unit], DynamicUser=, StateDirectory=, bare `kill` in ExecReload=) is older.
pub const MIN_SYSTEMD: u32 = 239;
/// First systemd with `Type=notify-reload` and `ReloadSignal=`.
pub const NOTIFY_RELOAD: u32 = 253;
/// First systemd with `ExecReloadPost=`.
pub const EXEC_RELOAD_POST: u32 = 259;
/// Highest `LimitNOFILE=` a process can get: systemd raises `fs.nr_open` to this at boot, and
/// the kernel refuses a larger limit, so the service would not start.
pub const MAX_NOFILE: u64 = 1_073_741_816;

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

/// What `ExecReload=` runs (docs/units.md, "Reload").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadClient {
    /// The service binary itself, started as `exuvia-reload` (systemd's `@` prefix).
    SelfBinary,
    /// The `exuvia` CLI at this path (`exuvia reload --wait`).
    Cli(String),
    /// No client: the reload signal only (`kill -HUP` on systemd < 253).
    Signal,
}

/// Memory of one generation as given (`256M`), so `MemoryHigh=` keeps the user's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub value: u64,
    pub suffix: &'static str,
}

impl Memory {
    fn parse(m: &str) -> Result<Self, SpecError> {
        let (digits, suffix, shift) = [("K", 10), ("M", 20), ("G", 30), ("T", 40)]
            .into_iter()
            .find_map(|(s, shift)| m.strip_suffix(s).map(|d| (d, s, shift)))
            .unwrap_or((m, "", 0));
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return err(format!(
                "memory {m:?} does not parse: write bytes with an optional K/M/G/T suffix, e.g. 256M"
            ));
        }
        let range = || {
            SpecError(format!(
                "memory {m:?} is out of range: MemoryHigh= is twice it and must stay below 16 EiB"
            ))
        };
        let value: u64 = digits.parse().map_err(|_| range())?;
        value
            .checked_mul(1 << shift)
            .and_then(|b| b.checked_mul(2))
            .filter(|b| *b < u64::MAX)
            .ok_or_else(range)?;
        if value == 0 {
            return err("memory must be > 0 (it is the memory of one generation)");
        }
        Ok(Self { value, suffix })
    }

    /// `MemoryHigh=`: twice one generation (old and new overlap during a reload).
    pub fn doubled(&self) -> String {
        format!("{}{}", self.value * 2, self.suffix)
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
    pub deadlines: Deadlines,
    pub systemd: u32,
    pub profile: Profile,
    pub reload: ReloadClient,
    pub control_arg: String,
    pub reload_post: Vec<Vec<String>>,
    pub tasks: u32,
    pub memory: Option<Memory>,
    pub nofile: Option<u64>,
    pub jit: bool,
    pub full_proc: bool,
    pub private_users: bool,
    /// A port < 1024 the service binds itself: it gets CAP_NET_BIND_SERVICE.
    pub needs_bind_cap: bool,
}

impl Spec {
    /// Where the service's control socket lives, when a reload client talks to it.
    pub fn control_socket(&self) -> Option<String> {
        (self.reload != ReloadClient::Signal).then(|| format!("/run/{}/control.sock", self.name))
    }

    pub fn validate(input: SpecInput, listeners: Vec<Listener>) -> Result<Spec, SpecError> {
        let name = input.name.ok_or_else(|| {
            SpecError(
                "missing unit name: pass --name NAME or set name = \"...\" in the TOML file".into(),
            )
        })?;
        check_unit_name(&name)?;
        let exec = input.exec.ok_or_else(|| SpecError("missing executable: pass --exec /absolute/path or set exec = \"/usr/bin/...\" in the TOML file".into()))?;
        check_command(&exec, "exec")?;
        let description = input.description.unwrap_or_else(|| name.clone());

        let profile = Profile::parse(input.profile.as_deref().unwrap_or("strict"))?;
        check_distinct(&listeners)?;
        if let Some(l) = listeners.iter().find(|l| name.len() + l.name.len() > 240) {
            return err(format!(
                "unit name {name:?} with listener {:?} makes a socket unit name longer than systemd allows (255); shorten one",
                l.name
            ));
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
            if let Some(v) = v {
                check_user(what, v)?;
            }
        }
        if input.group.is_some() && user.is_none() {
            return err(
                "group given with DynamicUser: DynamicUser allocates its own group; drop --group or set --user",
            );
        }

        if let Some(f) = &input.environment_file {
            check_path(f.strip_prefix('-').unwrap_or(f), "environment file").map_err(|e| {
                SpecError(format!(
                    "{e} (prefix it with '-' to make it optional: -/etc/NAME/env)"
                ))
            })?;
        }
        let state_directories = input.state_directories.unwrap_or_default();
        let mut runtime_directories = input.runtime_directories.unwrap_or_default();
        for d in state_directories.iter().chain(&runtime_directories) {
            check_directory(d, &name)?;
        }

        let deadlines = Deadlines::new(
            input.startup.as_ref(),
            input.drain_soft.as_ref(),
            input.drain.as_ref(),
        )?;

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

        let reload = match input.reload_client.as_deref() {
            None | Some("self") => ReloadClient::SelfBinary,
            Some("none") => ReloadClient::Signal,
            Some(c) => {
                check_command(c, "reload client").map_err(|e| {
                    SpecError(format!("{e}; or use reload_client = \"self\" (the service binary, the default) or \"none\""))
                })?;
                ReloadClient::Cli(c.to_string())
            }
        };
        if reload != ReloadClient::Signal {
            // The service binds this path; sun_path holds 107 bytes and a NUL.
            if format!("/run/{name}/control.sock").len() > 107 {
                return err(format!(
                    "unit name {name:?} is too long for the control socket /run/NAME/control.sock (at most 107 bytes): shorten it to 89 characters, or use reload_client = \"none\""
                ));
            }
            if !runtime_directories.contains(&name) {
                runtime_directories.push(name.clone());
            }
        }
        let control_arg = input.control_arg.unwrap_or_else(|| "--control".into());
        if control_arg.is_empty() || control_arg.contains(char::is_whitespace) {
            return err(format!(
                "control_arg {control_arg:?} must be one word such as --control"
            ));
        }

        let reload_post = input.reload_post.unwrap_or_default();
        if !reload_post.is_empty() && systemd < EXEC_RELOAD_POST {
            return err(format!(
                "reload_post needs ExecReloadPost= (systemd >= {EXEC_RELOAD_POST}); systemd {systemd} would ignore it with only a warning: drop reload_post or target --systemd {EXEC_RELOAD_POST}"
            ));
        }
        for cmd in &reload_post {
            match cmd.first() {
                Some(bin) => check_command(bin, "reload_post command")?,
                None => {
                    return err(
                        "reload_post has an empty command: give [\"/path/to/bin\", \"args\"…]",
                    );
                }
            }
        }

        let tasks = input.tasks.unwrap_or(512);
        if tasks == 0 {
            return err(
                "tasks must be > 0 (threads + processes of one generation; TasksMax= is twice this)",
            );
        }
        let memory = input.memory.as_deref().map(Memory::parse).transpose()?;
        match input.nofile {
            Some(0) => return err("nofile must be > 0"),
            Some(n) if n > MAX_NOFILE => {
                return err(format!(
                    "nofile {n} is above {MAX_NOFILE}, the most the kernel allows (fs.nr_open): the service would fail to start"
                ));
            }
            _ => {}
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
            args: input.args.unwrap_or_default(),
            listeners,
            user,
            group: input.group,
            environment_file: input.environment_file,
            state_directories,
            runtime_directories,
            deadlines,
            systemd,
            profile,
            reload,
            control_arg,
            reload_post,
            tasks,
            memory,
            nofile: input.nofile,
            jit: input.jit.unwrap_or(false),
            full_proc: input.full_proc.unwrap_or(false),
            private_users,
            needs_bind_cap,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_parsed_and_bounded() {
        assert_eq!(Memory::parse("256M").unwrap().doubled(), "512M");
        assert_eq!(Memory::parse("1000").unwrap().doubled(), "2000");
        for bad in [
            "99999999999999999999999M",
            "8388608T",
            "9223372036854775808",
            "0",
            "0M",
            "M",
            "12MB",
            "-1M",
            "1.5G",
        ] {
            assert!(Memory::parse(bad).is_err(), "{bad}");
        }
        assert!(Memory::parse("4194303T").is_ok());
    }
}
