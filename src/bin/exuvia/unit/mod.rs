//! `exuvia unit`: generates the `.service` and `.socket` units (or a NixOS module) for a service
//! that upgrades itself by fork+exec under `Type=notify-reload`, hardened and version-aware.
//! Hand-written units for this model get the details wrong (docs/units.md), so users should not
//! have to write one.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;

pub mod deadlines;
pub mod error;
pub mod hardening;
pub mod input;
pub mod lifecycle;
pub mod listener;
pub mod model;
pub mod names;
pub mod render;
pub mod section;
pub mod spec;
pub mod timespan;
pub mod write;

use error::SpecError;
use input::{DurationInput, SpecInput};
use listener::Listener;
use spec::Spec;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// .service + .socket unit files
    Unit,
    /// a NixOS module snippet (systemd.services / systemd.sockets)
    Nixos,
}

/// Boxed so the `Command` enum in cli/mod.rs stays small (clippy::large_enum_variant).
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  exuvia unit --name myapp --exec /usr/bin/myapp --listen http=tcp:0.0.0.0:80 --out /etc/systemd/system -- --config /etc/myapp.toml"
)]
pub struct UnitArgs {
    #[command(flatten)]
    pub opts: Box<UnitOptions>,
}

#[derive(clap::Args, Debug)]
pub struct UnitOptions {
    /// TOML file with the same fields as the flags (flags win).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Unit name (NAME.service).
    #[arg(long)]
    pub name: Option<String>,
    /// Description= (default: the name).
    #[arg(long)]
    pub description: Option<String>,
    /// Absolute path of the service binary (the upgrade re-execs this path).
    #[arg(long, value_name = "PATH")]
    pub exec: Option<String>,
    /// Listener NAME=tcp:ADDR, NAME=udp:ADDR or NAME=unix:PATH (repeatable; replaces the file's).
    #[arg(long = "listen", value_name = "NAME=KIND:ADDR")]
    pub listen: Vec<String>,
    /// Static user (default: DynamicUser=yes).
    #[arg(long)]
    pub user: Option<String>,
    /// Static group (with --user).
    #[arg(long)]
    pub group: Option<String>,
    /// EnvironmentFile= (absolute; prefix '-' to make it optional).
    #[arg(long, value_name = "PATH", allow_hyphen_values = true)]
    pub environment_file: Option<String>,
    /// StateDirectory= (repeatable).
    #[arg(long = "state-dir", value_name = "NAME")]
    pub state_dir: Vec<String>,
    /// RuntimeDirectory= (repeatable).
    #[arg(long = "runtime-dir", value_name = "NAME")]
    pub runtime_dir: Vec<String>,
    /// Hard drain deadline of one generation (default 30s; EXUVIA_DRAIN_HARD); TimeoutStopSec= adds a margin.
    #[arg(long, value_name = "TIME")]
    pub drain: Option<String>,
    /// Soft drain deadline: connections are asked to finish (default 0s; EXUVIA_DRAIN_SOFT).
    #[arg(long, value_name = "TIME")]
    pub drain_soft: Option<String>,
    /// Readiness deadline of a new generation (default 60s; EXUVIA_READY_TIMEOUT); TimeoutStartSec= adds the handover margin.
    #[arg(long, value_name = "TIME")]
    pub startup: Option<String>,
    /// Oldest systemd version the unit must work on (252 = Debian 12/RHEL 9 fallback).
    #[arg(long, value_name = "VERSION")]
    pub systemd: Option<u32>,
    /// Hardening profile: strict (default), isolated, compat (alias self-bind).
    #[arg(long)]
    pub profile: Option<String>,
    /// Who answers systemctl reload: self (default; the service binary as `exuvia-reload`),
    /// the path of the exuvia CLI (`exuvia reload --wait`), or none (the reload signal only).
    #[arg(long, value_name = "self|PATH|none")]
    pub reload_client: Option<String>,
    /// ExecReloadPost= command, words separated by spaces (repeatable; systemd >= 259).
    #[arg(long = "reload-post", value_name = "COMMAND")]
    pub reload_post: Vec<String>,
    /// Flag that passes the control-socket path to the service (default --control).
    #[arg(long, value_name = "FLAG", allow_hyphen_values = true)]
    pub control_arg: Option<String>,
    /// Tasks of one generation; TasksMax= is twice this (default 512).
    #[arg(long)]
    pub tasks: Option<u32>,
    /// Memory of one generation (e.g. 256M); MemoryHigh= is twice this.
    #[arg(long)]
    pub memory: Option<String>,
    /// LimitNOFILE= per process.
    #[arg(long)]
    pub nofile: Option<u64>,
    /// The service JIT-compiles code (drops MemoryDenyWriteExecute=).
    #[arg(long)]
    pub jit: bool,
    /// The service reads /proc/meminfo, /proc/sys, … (drops ProcSubset=pid).
    #[arg(long)]
    pub full_proc: bool,
    /// Force PrivateUsers= on or off.
    #[arg(long, value_name = "BOOL")]
    pub private_users: Option<bool>,
    /// Output directory.
    #[arg(long, short, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
    /// Print instead of writing files.
    #[arg(long)]
    pub stdout: bool,
    /// Annotate every directive with why it is there and its minimum systemd version.
    #[arg(long)]
    pub explain: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Unit)]
    pub format: Format,
    /// Arguments for the service binary (after --).
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// Merge the TOML file and the flags into a validated spec.
pub fn spec_from_args(args: &UnitOptions) -> Result<Spec, SpecError> {
    let mut input = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| SpecError(format!("cannot read {}: {e}", path.display())))?;
            toml::from_str::<SpecInput>(&text)
                .map_err(|e| SpecError(format!("{}: {}", path.display(), e.message())))?
        }
        None => SpecInput::default(),
    };
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = &args.$field { input.$field = Some(v.clone()); } )* };
    }
    set!(
        name,
        description,
        exec,
        user,
        group,
        environment_file,
        systemd,
        profile,
        reload_client,
        control_arg,
        tasks,
        memory,
        nofile,
        private_users
    );
    if args.user.is_some() {
        input.dynamic_user = Some(false);
    }
    if let Some(d) = &args.drain {
        input.drain = Some(DurationInput::Text(d.clone()));
    }
    if let Some(d) = &args.drain_soft {
        input.drain_soft = Some(DurationInput::Text(d.clone()));
    }
    if let Some(d) = &args.startup {
        input.startup = Some(DurationInput::Text(d.clone()));
    }
    if !args.reload_post.is_empty() {
        let words = |c: &String| c.split_whitespace().map(String::from).collect();
        input.reload_post = Some(args.reload_post.iter().map(words).collect());
    }
    if !args.args.is_empty() {
        input.args = Some(args.args.clone());
    }
    if !args.state_dir.is_empty() {
        input.state_directories = Some(args.state_dir.clone());
    }
    if !args.runtime_dir.is_empty() {
        input.runtime_directories = Some(args.runtime_dir.clone());
    }
    if args.jit {
        input.jit = Some(true);
    }
    if args.full_proc {
        input.full_proc = Some(true);
    }
    let listeners = if args.listen.is_empty() {
        input
            .listeners
            .iter()
            .map(|l| Listener::parse(&l.name, &l.listen))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        args.listen
            .iter()
            .map(|l| Listener::parse_flag(l))
            .collect::<Result<Vec<_>, _>>()?
    };
    Spec::validate(input, listeners)
}

/// Why no files were rendered: a spec error (exit 2) or a template failure (exit 1).
pub enum RenderError {
    Spec(SpecError),
    Template(String),
}

/// Rendered files (name, text) for the spec.
pub fn render_files(
    spec: &Spec,
    format: Format,
    explain: bool,
) -> Result<Vec<(String, String)>, RenderError> {
    let units = model::build(spec).map_err(RenderError::Spec)?;
    let err = |e: askama::Error| RenderError::Template(format!("template error: {e}"));
    match format {
        Format::Unit => units
            .iter()
            .map(|u| {
                Ok((
                    u.file_name.clone(),
                    render::ini(spec, u, explain).map_err(err)?,
                ))
            })
            .collect(),
        Format::Nixos => Ok(vec![(
            format!("{}.nix", spec.name),
            render::nixos(spec, &units, explain).map_err(err)?,
        )]),
    }
}

pub fn run(args: UnitArgs) -> ExitCode {
    let args = *args.opts;
    let spec = match spec_from_args(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("exuvia unit: {e}");
            return ExitCode::from(2);
        }
    };
    let files = match render_files(&spec, args.format, args.explain) {
        Ok(f) => f,
        Err(RenderError::Spec(e)) => {
            eprintln!("exuvia unit: {e}");
            return ExitCode::from(2);
        }
        Err(RenderError::Template(e)) => {
            eprintln!("exuvia unit: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.stdout {
        let texts: Vec<&str> = files.iter().map(|(_, t)| t.as_str()).collect();
        print!("{}", texts.join("\n"));
        return ExitCode::SUCCESS;
    }
    match write::write_all(&args.out, &files, args.force) {
        Ok(written) => {
            for p in &written {
                eprintln!("wrote {}", p.display());
            }
            if args.format == Format::Unit {
                let socket_names: Vec<String> = model::socket_units(&spec)
                    .into_iter()
                    .map(|(_, f)| f)
                    .collect();
                let enable = if socket_names.is_empty() {
                    format!("{}.service", spec.name)
                } else {
                    socket_names.join(" ")
                };
                eprintln!(
                    "next: copy them to /etc/systemd/system (or /usr/lib/systemd/system in a package), systemctl daemon-reload, systemctl enable --now {enable}"
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("exuvia unit: {e}");
            ExitCode::FAILURE
        }
    }
}
