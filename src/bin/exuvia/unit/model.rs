//! The service and socket units of a spec, built as data (see `section`): the reload model
//! comes from `lifecycle`, the sandbox from `hardening`; this file adds identity, directories
//! and one named `.socket` per listener.
use super::error::SpecError;
use super::hardening;
use super::lifecycle;
use super::listener::{Address, Listener, Transport};
use super::section::{Section, SectionBuilder, UnitFile, UnitKind, ValueError, plain};
use super::spec::{Profile, ReloadClient, Spec};

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
/// Fails only for a value no unit line can carry (`section::check_value`).
pub fn build(spec: &Spec) -> Result<Vec<UnitFile>, SpecError> {
    let sockets = socket_units(spec);
    let mut units = vec![service(spec, &sockets)];
    units.extend(sockets.iter().map(|(l, file)| socket(spec, l, file)));
    units
        .into_iter()
        .collect::<Result<_, ValueError>>()
        .map_err(|e| SpecError(e.0))
}

fn sections(list: Vec<SectionBuilder>) -> Result<Vec<Section>, ValueError> {
    list.into_iter().map(SectionBuilder::build).collect()
}

fn service(spec: &Spec, sockets: &[(&Listener, String)]) -> Result<UnitFile, ValueError> {
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
    lifecycle::apply(spec, &mut svc);
    svc.add("SyslogIdentifier", plain(&spec.name), 0, "after a handover the new process inherits the journal stream of the first one; a fixed identifier keeps the log lines attributable");
    if !sockets.is_empty() {
        let names: Vec<&str> = sockets.iter().map(|(_, f)| f.as_str()).collect();
        svc.add("Sockets", names.join(" "), 0, "hands the listeners over as named fds (LISTEN_FDNAMES) and pulls the sockets in when the service is started directly");
    }
    identity(spec, &mut svc);
    hardening::apply(spec, &mut svc);

    let mut install = SectionBuilder::new("Install", t);
    install.add("WantedBy", "multi-user.target", 0, "start eagerly at boot; enable the .socket units too so the listeners exist before the service");

    Ok(UnitFile {
        file_name: format!("{}.service", spec.name),
        kind: UnitKind::Service,
        sections: sections(vec![unit, svc, install])?,
    })
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
        let why = if spec.reload != ReloadClient::Signal && *d == spec.name {
            "holds the control socket the reload client talks to; kept across reloads, removed on stop"
        } else {
            "writable /run/ directory, kept across reloads, removed on stop"
        };
        svc.add("RuntimeDirectory", plain(d), 235, why);
    }
}

fn socket(spec: &Spec, l: &Listener, file: &str) -> Result<UnitFile, ValueError> {
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
    sock.add(key, plain(&l.address.text()), 0, format!("{what} created and kept open by PID 1: it outlives every reload and restart, connections queue in the backlog meanwhile"));
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
    if let Address::Port(_) | Address::Ip(_) = l.address {
        if !l.address.wildcard() {
            sock.add("FreeBind", "yes", 0, "binding a specific IP must not fail when the address is not configured yet at boot");
        }
        if l.address.dual_stack() {
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

    Ok(UnitFile {
        file_name: file.to_string(),
        kind: UnitKind::Socket,
        sections: sections(vec![unit, sock, install])?,
    })
}
