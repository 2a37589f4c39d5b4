//! The property of `exuvia unit`: whatever spec and flags it accepts, what it renders is
//! exactly the unit it meant, as systemd and Nix read it. The input is a spec file with flags
//! (`input.rs`) or choices a spec is built from (`spec_gen.rs`).
//!
//! - Every file name is one plain file name of the right kind: nothing escapes `--out`.
//! - systemd reads each unit file as the generator's model of it, directive for directive and
//!   value for value: every line is a section header, a comment, blank, or exactly one of the
//!   model's `Key=value`, so no value can add a directive, a line or a section (a value ending
//!   in a backslash would join the next line; a newline would start one).
//! - Each value is one systemd accepts for its key and says what the spec asked for
//!   (see `unit_values.rs`), no two listeners bind one address, and the unit is clean under
//!   `exuvia lint` for its target: the analyzer has nothing to reject that the spec check let by.
//! - Nix reads the module as the same directives, with no interpolation.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Component, Path};

use crate::input;
use crate::lint;
use crate::nix;
use crate::spec_gen;
use crate::systemd_ini;
use crate::unit::listener::{Address, Transport};
use crate::unit::model;
use crate::unit::section::{UnitFile, UnitKind};
use crate::unit::spec::{ReloadClient, Spec};
use crate::unit::{Format, RenderError, render_files};
use crate::unit_values::{self, Asked};

const WHITESPACE: &[char] = &[' ', '\t', '\n', '\r'];
/// `--explain` adds comments carrying spec values to the same directives: a superset to check.
const EXPLAIN: bool = true;

/// The spec `exuvia unit` builds from this input, if it accepts it.
pub fn accepted(data: &[u8]) -> Option<Spec> {
    let (toml, flags) = if data.first() == Some(&spec_gen::MARKER) {
        spec_gen::generate(&mut arbitrary::Unstructured::new(&data[1..])).ok()?
    } else {
        let (toml, flags) = input::split(data)?;
        (
            toml.to_string(),
            flags.iter().map(|f| f.to_string()).collect(),
        )
    };
    // An argv cannot carry a NUL byte.
    if flags.iter().any(|f| f.contains('\0')) {
        return None;
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    input::spec(&toml, &flags)?.ok()
}

pub fn check(data: &[u8]) {
    let Some(spec) = accepted(data) else {
        return;
    };
    // The model refuses values no unit line can carry (a spec error, exit 2, nothing written).
    let Ok(units) = model::build(&spec) else {
        assert!(matches!(
            render_files(&spec, Format::Unit, EXPLAIN),
            Err(RenderError::Spec(_))
        ));
        return;
    };
    let files = rendered(&spec, Format::Unit);
    assert_eq!(files.len(), units.len());
    for ((name, text), unit) in files.iter().zip(&units) {
        plain_file_name(name);
        assert_eq!(name, &unit.file_name);
        unit_values::unit_name(name).unwrap_or_else(|why| panic!("unit name {name:?}: {why}"));
        unit_file(text, unit, &spec);
    }
    distinct_addresses(&spec);
    let nixos = rendered(&spec, Format::Nixos);
    let [(name, text)] = nixos.as_slice() else {
        panic!("{} NixOS files", nixos.len());
    };
    plain_file_name(name);
    assert!(name.ends_with(".nix"), "{name}");
    nix_module(text, &units);
}

fn rendered(spec: &Spec, format: Format) -> Vec<(String, String)> {
    match render_files(spec, format, EXPLAIN) {
        Ok(files) => files,
        Err(RenderError::Spec(e)) => panic!("the model took the spec, {format:?} refuses it: {e}"),
        Err(RenderError::Template(e)) => panic!("{format:?} does not render: {e}"),
    }
}

/// One normal path component: joined to `--out`, it names a file directly inside it.
fn plain_file_name(name: &str) {
    let mut parts = Path::new(name).components();
    assert!(
        matches!(
            (parts.next(), parts.next()),
            (Some(Component::Normal(_)), None)
        ),
        "file name {name:?} is not one plain name"
    );
    assert!(
        !name.starts_with('.') && !name.chars().any(char::is_control),
        "{name:?}"
    );
}

fn asked(spec: &Spec) -> Asked<'_> {
    let d = &spec.deadlines;
    Asked {
        exec: &spec.exec,
        args: &spec.args,
        reload_client: match &spec.reload {
            ReloadClient::Cli(path) => Some(path),
            ReloadClient::SelfBinary | ReloadClient::Signal => None,
        },
        reload_post: &spec.reload_post,
        startup_ms: d.ready_ms,
        drain_ms: d.drain_hard_ms.max(d.drain_soft_ms),
        tasks: spec.tasks,
        memory: spec.memory.map(|m| format!("{}{}", m.value, m.suffix)),
    }
}

fn unit_file(text: &str, unit: &UnitFile, spec: &Spec) {
    let read = systemd_ini::parse(text)
        .unwrap_or_else(|e| panic!("systemd refuses {}: {e:?}\n{text}", unit.file_name));
    assert!(
        read.ignored.is_empty(),
        "systemd ignores lines of {}: {:?}\n{text}",
        unit.file_name,
        read.ignored
    );
    let got: Vec<(&str, Vec<(&str, &str)>)> = read
        .sections
        .iter()
        .map(|s| {
            let entries = s
                .entries
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            (s.name.as_str(), entries)
        })
        .collect();
    let want: Vec<(&str, Vec<(&str, &str)>)> = unit
        .sections
        .iter()
        .map(|s| {
            let entries = s
                .directives
                .iter()
                .map(|d| (d.key, d.value.trim_matches(WHITESPACE)))
                .collect();
            (s.name, entries)
        })
        .collect();
    assert_eq!(
        got, want,
        "systemd reads {} differently from the model:\n{text}",
        unit.file_name
    );
    let asked = asked(spec);
    for d in unit.sections.iter().flat_map(|s| &s.directives) {
        unit_values::check(d.key, &d.value, &asked);
    }
    let findings = lint::rules::check(
        Path::new(&unit.file_name),
        &lint::parse::parse(text),
        spec.systemd,
    );
    assert!(
        findings.is_empty(),
        "exuvia lint --systemd {} finds {:?} in {}:\n{text}",
        spec.systemd,
        findings
            .iter()
            .map(|f| (f.rule, &f.message))
            .collect::<Vec<_>>(),
        unit.file_name
    );
}

/// Where a listener binds, as the kernel compares addresses.
#[derive(Debug, PartialEq, Eq)]
enum Bound {
    Inet {
        udp: bool,
        ip: Option<IpAddr>,
        port: u16,
    },
    Path(String),
    Abstract(String),
}

fn bound(transport: Transport, address: &Address) -> Bound {
    let inet = |ip: Option<IpAddr>, port: u16| Bound::Inet {
        udp: transport == Transport::Udp,
        // 0.0.0.0 and [::] overlap the dual-stack wildcard a bare port binds.
        ip: ip.filter(|ip| !ip.is_unspecified()),
        port,
    };
    match address {
        Address::Abstract(p) => Bound::Abstract(p.clone()),
        Address::Path(p) => {
            let parts: Vec<&str> = p
                .split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .collect();
            Bound::Path(format!("/{}", parts.join("/")))
        }
        Address::Port(port) => inet(None, *port),
        Address::Ip(a) => inet(Some(a.ip()), a.port()),
    }
}

fn overlap(a: &Bound, b: &Bound) -> bool {
    match (a, b) {
        (
            Bound::Inet { udp, ip, port },
            Bound::Inet {
                udp: u2,
                ip: i2,
                port: p2,
            },
        ) => udp == u2 && port == p2 && (ip.is_none() || i2.is_none() || ip == i2),
        _ => a == b,
    }
}

fn distinct_addresses(spec: &Spec) {
    let all: Vec<(&str, Bound)> = spec
        .listeners
        .iter()
        .map(|l| (l.name.as_str(), bound(l.transport, &l.address)))
        .collect();
    for (i, (n1, a)) in all.iter().enumerate() {
        for (n2, b) in &all[i + 1..] {
            assert!(
                !overlap(a, b),
                "listeners {n1} and {n2} bind one address: {a:?}, {b:?}"
            );
        }
    }
}

fn nix_module(text: &str, units: &[UnitFile]) {
    let read = nix::parse(text).unwrap_or_else(|e| panic!("Nix misreads the module: {e}\n{text}"));
    assert_eq!(read.len(), units.len());
    for (n, u) in read.iter().zip(units) {
        let (collection, config) = match u.kind {
            UnitKind::Service => ("services", "serviceConfig"),
            UnitKind::Socket => ("sockets", "socketConfig"),
        };
        assert_eq!(
            (n.collection.as_str(), n.name.as_str()),
            (collection, u.unit_name())
        );
        let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in &u.sections {
            for d in &s.directives {
                if (s.name, d.key) == ("Service", "Environment") {
                    // NixOS's `environment` set: one attribute per assignment.
                    assert!(
                        !d.value.contains(['"', '\'', '\\']),
                        "Environment={}",
                        d.value
                    );
                    for kv in d.value.split_ascii_whitespace() {
                        let (k, v) = kv.split_once('=').expect("Environment= holds K=V words");
                        want.entry(format!("environment.{k}"))
                            .or_default()
                            .push(v.to_string());
                    }
                    continue;
                }
                let attr = match (s.name, d.key) {
                    ("Unit", "Description") => "description".to_string(),
                    ("Unit", "After") => "after".to_string(),
                    ("Install", "WantedBy") => "wantedBy".to_string(),
                    ("Socket", "ListenStream") => "listenStreams".to_string(),
                    ("Socket", "ListenDatagram") => "listenDatagrams".to_string(),
                    ("Unit", key) => format!("unitConfig.{key}"),
                    (_, key) => format!("{config}.{key}"),
                };
                want.entry(attr).or_default().push(d.value.clone());
            }
        }
        assert_eq!(
            n.attrs, want,
            "Nix reads {} differently from the model:\n{text}",
            u.file_name
        );
    }
}
