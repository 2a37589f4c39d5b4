//! The TOML file of `exuvia unit --config`; every field can also be given (and overridden) by a
//! flag. Nothing here is checked yet: `Spec::validate` turns it into a spec or one clear error.
use serde::Deserialize;

/// A duration as written in TOML: an integer (seconds) or a string such as "500ms", "10s",
/// "1min 30s".
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
    /// Hard drain deadline of one generation (EXUVIA_DRAIN_HARD).
    pub drain: Option<DurationInput>,
    /// Soft drain deadline: connections are asked to finish (EXUVIA_DRAIN_SOFT).
    pub drain_soft: Option<DurationInput>,
    /// How long a new generation may take to become ready (EXUVIA_READY_TIMEOUT).
    pub startup: Option<DurationInput>,
    pub systemd: Option<u32>,
    pub profile: Option<String>,
    /// Who answers `systemctl reload`: "self" (default: the service binary as
    /// `exuvia-reload`), the path of the `exuvia` CLI, or "none" (the reload signal only).
    pub reload_client: Option<String>,
    pub control_arg: Option<String>,
    /// Commands for ExecReloadPost= (systemd >= 259), each as its argument list.
    pub reload_post: Option<Vec<Vec<String>>>,
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
