//! The service under test as `exuvia vm` receives it: unit files (or an `exuvia unit` spec
//! rendered per systemd version), and what they say about it — which unit to check, which
//! sockets to start, where the binary goes, where the load goes, what every `Exec*=` runs.
//! All of it is checked here, on the host, before any guest exists: a unit naming a relative
//! binary, two sockets on one port or a missing target cost one line, not a boot.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::Parser;
use exuvia_testing::load::Target;

use super::super::lint::{parse, rules};
use super::super::unit;
use super::rootfs::Suite;

/// Where the units come from.
pub enum Source {
    /// `--unit [VERSION=]PATH`…: (the suite it is limited to, path).
    Files(Vec<(Option<Suite>, PathBuf)>),
    /// `--spec FILE`: rendered for each version.
    Spec(PathBuf),
    /// The service's units come with a package (`--package`).
    Packaged,
}

impl Source {
    pub fn from_args(units: &[String], spec: Option<&Path>) -> Result<Source, String> {
        if let Some(s) = spec {
            if !s.is_file() {
                return Err(format!("--spec {}: no such file", s.display()));
            }
            return Ok(Source::Spec(s.to_path_buf()));
        }
        if units.is_empty() {
            return Ok(Source::Packaged);
        }
        let mut files = Vec::new();
        for u in units {
            let (suite, path) = match u.split_once('=') {
                Some((v, p)) if !v.contains('/') => (Some(Suite::parse(v)?), p),
                _ => (None, u.as_str()),
            };
            let path = PathBuf::from(path);
            let name = file_name(&path)?;
            if !(name.ends_with(".service") || name.ends_with(".socket")) {
                return Err(format!(
                    "--unit {}: give .service and .socket files",
                    path.display()
                ));
            }
            if !path.is_file() {
                return Err(format!("--unit {}: no such file", path.display()));
            }
            files.push((suite, path));
        }
        Ok(Source::Files(files))
    }
}

fn file_name(p: &Path) -> Result<String, String> {
    p.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("{} is not a unit file path", p.display()))
}

/// A unit file to install in the guest's /etc/systemd/system.
#[derive(Clone, Debug)]
pub struct UnitFile {
    pub name: String,
    pub text: String,
}

/// The service under test for one systemd version.
#[derive(Debug)]
pub struct Service {
    pub units: Vec<UnitFile>,
    pub service: String,
    pub sockets: Vec<String>,
    /// The program ExecStart= runs: where `--binary` is installed.
    pub exec_start: Option<String>,
    /// (key, program) of every Exec*= line of the service.
    pub exec_paths: Vec<(String, String)>,
    pub target: Target,
}

/// Resolves the units for `suite` and everything the run needs to know from them.
pub fn resolve(
    src: &Source,
    suite: &Suite,
    service: Option<&str>,
    target: Option<&Target>,
) -> Result<Service, String> {
    let units = match src {
        Source::Files(files) => files_for(files, suite)?,
        Source::Spec(path) => render_spec(path, suite)?,
        Source::Packaged => Vec::new(),
    };
    let services: Vec<&UnitFile> = units
        .iter()
        .filter(|u| u.name.ends_with(".service"))
        .collect();
    let name = match (service, services.as_slice()) {
        (Some(s), _) => s.to_owned(),
        (None, [only]) => only.name.clone(),
        (None, []) => {
            return Err("no service unit: give --unit NAME.service (or --spec), or --service NAME for a unit a --package installs".into());
        }
        (None, _) => {
            return Err(
                "several .service units: say which one to check with --service NAME".into(),
            );
        }
    };
    let sockets: Vec<&UnitFile> = units
        .iter()
        .filter(|u| u.name.ends_with(".socket"))
        .collect();
    let listens = listens(&sockets);
    check_clashes(&listens)?;
    let mut exec_paths = Vec::new();
    let mut exec_start = None;
    if let Some(svc) = units.iter().find(|u| u.name == name) {
        let parsed = parse::parse(&svc.text);
        // Every Exec*= command line; ExecPaths= and ExecSearchPath= are path lists.
        let commands = parsed
            .section("Service")
            .flat_map(|s| s.entries.iter())
            .filter(|e| {
                e.key.starts_with("Exec")
                    && !matches!(e.key.as_str(), "ExecPaths" | "ExecSearchPath")
            });
        for e in commands {
            if let Some(prog) = rules::exec_command(&e.value) {
                if e.key == "ExecStart" && exec_start.is_none() {
                    exec_start = Some(prog.to_owned());
                }
                exec_paths.push((e.key.clone(), prog.to_owned()));
            }
        }
    }
    let target = match (target, listens.first()) {
        (Some(t), _) => t.clone(),
        (None, Some((_, l))) => l.target().ok_or_else(|| {
            format!(
                "cannot load {l:?} (from ListenStream=): give --target tcp:IP:PORT or unix:PATH"
            )
        })?,
        (None, None) => {
            return Err(format!(
                "nothing to load: {name} has no socket unit with ListenStream=; give --target tcp:IP:PORT (where it listens in the guest)"
            ));
        }
    };
    Ok(Service {
        sockets: sockets.iter().map(|u| u.name.clone()).collect(),
        units,
        service: name,
        exec_start,
        exec_paths,
        target,
    })
}

/// The unqualified files, with a file qualified for `suite` replacing one of the same name.
fn files_for(files: &[(Option<Suite>, PathBuf)], suite: &Suite) -> Result<Vec<UnitFile>, String> {
    let mut out: Vec<UnitFile> = Vec::new();
    for pass_qualified in [false, true] {
        for (s, path) in files {
            if s.is_some() != pass_qualified || s.as_ref().is_some_and(|s| s.name != suite.name) {
                continue;
            }
            let name = file_name(path)?;
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            out.retain(|u| u.name != name);
            out.push(UnitFile { name, text });
        }
    }
    Ok(out)
}

/// `exuvia unit --config FILE`, for the suite's systemd when the spec aims higher.
fn render_spec(path: &Path, suite: &Suite) -> Result<Vec<UnitFile>, String> {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        opts: unit::UnitOptions,
    }
    let spec_for = |systemd: Option<u32>| {
        let mut argv = vec![
            "unit".to_owned(),
            "--config".to_owned(),
            path.display().to_string(),
        ];
        if let Some(v) = systemd {
            argv.extend(["--systemd".to_owned(), v.to_string()]);
        }
        let cli =
            Cli::try_parse_from(argv).map_err(|e| format!("--spec {}: {e}", path.display()))?;
        unit::spec_from_args(&cli.opts).map_err(|e| format!("--spec {}: {e}", path.display()))
    };
    let mut spec = spec_for(None)?;
    if spec.systemd > suite.nominal {
        spec = spec_for(Some(suite.nominal))?;
    }
    let files = unit::render_files(&spec, unit::Format::Unit, false).map_err(|e| match e {
        unit::RenderError::Spec(e) => format!("--spec {}: {e}", path.display()),
        unit::RenderError::Template(e) => format!("--spec {}: {e}", path.display()),
    })?;
    Ok(files
        .into_iter()
        .map(|(name, text)| UnitFile { name, text })
        .collect())
}

/// One ListenStream= address.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Listen {
    Tcp(SocketAddr, /* a bare port: dual-stack */ bool),
    Unix(String),
    Other(String),
}

impl Listen {
    fn parse(v: &str) -> Listen {
        let v = v.trim();
        if v.starts_with('/') {
            return Listen::Unix(v.to_owned());
        }
        if let Some(p) = v.strip_prefix("%t/") {
            return Listen::Unix(format!("/run/{p}"));
        }
        if let Ok(port) = v.parse::<u16>() {
            return Listen::Tcp(
                SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
                true,
            );
        }
        match v.parse::<SocketAddr>() {
            Ok(a) => Listen::Tcp(a, false),
            Err(_) => Listen::Other(v.to_owned()),
        }
    }

    /// Where a client in the guest reaches it.
    fn target(&self) -> Option<Target> {
        match self {
            Listen::Tcp(a, dual) => {
                let ip = match a.ip() {
                    _ if *dual => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                    ip => ip,
                };
                Some(Target::Tcp(SocketAddr::new(ip, a.port())))
            }
            Listen::Unix(p) => Some(Target::Unix(p.into())),
            Listen::Other(_) => None,
        }
    }
}

fn listens(sockets: &[&UnitFile]) -> Vec<(String, Listen)> {
    sockets
        .iter()
        .flat_map(|u| {
            parse::parse(&u.text)
                .entries("Socket", "ListenStream")
                .map(|e| (u.name.clone(), Listen::parse(&e.value)))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Two listeners that cannot both be bound: the same path, or the same TCP port on the
/// same address or on a wildcard address.
fn check_clashes(ls: &[(String, Listen)]) -> Result<(), String> {
    for (i, (ua, a)) in ls.iter().enumerate() {
        for (ub, b) in &ls[i + 1..] {
            let clash = match (a, b) {
                (Listen::Tcp(x, _), Listen::Tcp(y, _)) => {
                    x.port() == y.port()
                        && (x.ip() == y.ip() || x.ip().is_unspecified() || y.ip().is_unspecified())
                }
                (Listen::Unix(x), Listen::Unix(y)) => x == y,
                _ => false,
            };
            if clash {
                return Err(format!(
                    "port clash: ListenStream= {} in {ub} and {} in {ua} cannot both be bound; give each listener its own port",
                    show(b),
                    show(a)
                ));
            }
        }
    }
    Ok(())
}

fn show(l: &Listen) -> String {
    match l {
        Listen::Tcp(a, true) => a.port().to_string(),
        Listen::Tcp(a, false) => a.to_string(),
        Listen::Unix(p) | Listen::Other(p) => p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(name: &str, listen: &str) -> UnitFile {
        UnitFile {
            name: name.into(),
            text: format!("[Socket]\nListenStream={listen}\n"),
        }
    }

    #[test]
    fn targets_from_listen_stream() {
        let t = |v: &str| Listen::parse(v).target().map(|t| t.to_string());
        assert_eq!(t("127.0.0.1:8080").as_deref(), Some("tcp:127.0.0.1:8080"));
        assert_eq!(t("0.0.0.0:80").as_deref(), Some("tcp:127.0.0.1:80"));
        assert_eq!(t("8080").as_deref(), Some("tcp:127.0.0.1:8080"));
        assert_eq!(t("[::]:80").as_deref(), Some("tcp:[::1]:80"));
        assert_eq!(t("/run/x.sock").as_deref(), Some("unix:/run/x.sock"));
        assert_eq!(t("@abstract"), None);
    }

    #[test]
    fn clashes() {
        let a = sock("a.socket", "127.0.0.1:8080");
        let b = sock("b.socket", "0.0.0.0:8080");
        let c = sock("c.socket", "127.0.0.1:8081");
        assert!(check_clashes(&listens(&[&a, &c])).is_ok());
        let e = check_clashes(&listens(&[&a, &b])).unwrap_err();
        assert!(e.contains("port clash") && e.contains("b.socket"), "{e}");
        assert!(check_clashes(&listens(&[&a, &a])).is_err());
    }
}
