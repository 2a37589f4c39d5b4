//! What the generator writes: the checked-in units, the reload model per systemd version, profiles, listeners, formats.
use super::*;
#[test]
fn checked_in_units_match_the_generator() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (dir, flags) in VARIANTS {
        let tmp = TempDir::new("regen");
        let mut args = vec!["unit", "--config", SPEC, "--out", tmp.s()];
        args.extend(*flags);
        let o = exuvia(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let generated = unit_files(tmp.path());
        assert!(!generated.is_empty());
        assert_eq!(
            unit_files(&root.join(dir)),
            generated,
            "file set of {dir} differs; run `sh units/regenerate.sh`"
        );
        for f in &generated {
            let want = fs::read(tmp.path().join(f)).expect("generated");
            let have = fs::read(root.join(dir).join(f)).expect("checked in");
            assert!(
                want == have,
                "{dir}/{f} is stale: regenerate with `sh units/regenerate.sh` and commit"
            );
        }
    }
}

#[test]
fn example_spec_produces_the_reload_model() {
    let out = generate(&["--config", SPEC]);
    for line in [
        "Type=notify-reload",
        "ReloadSignal=SIGHUP",
        "NotifyAccess=main",
        "KillMode=control-group",
        "Environment=EXUVIA_READY_TIMEOUT=5s EXUVIA_DRAIN_SOFT=0s EXUVIA_DRAIN_HARD=10s",
        "TimeoutStartSec=10s", // 5 s readiness deadline + 5 s handover margin
        "TimeoutStopSec=15s",  // 10 s hard drain + 5 s margin
        "Restart=on-failure",
        "TasksMax=1024",
        "DynamicUser=yes",
        "RuntimeDirectory=exuvia-echo",
        "ExecStart=/usr/local/bin/exuvia-echo --control /run/exuvia-echo/control.sock",
        // The service binary is its own reload client; --timeout = readiness deadline + 2 s.
        "ExecReload=@/usr/local/bin/exuvia-echo exuvia-reload --wait --control /run/exuvia-echo/control.sock --timeout 7",
        "Sockets=exuvia-echo.socket",
        "SystemCallErrorNumber=EPERM",
        "ListenStream=127.0.0.1:8080",
        "FileDescriptorName=echo",
        "Service=exuvia-echo.service",
        "FreeBind=yes",
        "WantedBy=sockets.target",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "missing {line:?} in:\n{out}"
        );
    }
    // StartLimit* must be in [Unit], not [Service].
    let unit_section = out.split("[Service]").next().expect("has [Unit]");
    assert!(
        unit_section.contains("StartLimitIntervalSec=60s")
            && unit_section.contains("StartLimitBurst=5")
    );
    // A synchronous reload client by default (a failed upgrade fails the reload); with
    // reload_client = "none", notify-reload needs no ExecReload= at all.
    assert_eq!(out.matches("ExecReload=").count(), 1, "{out}");
    assert!(
        !out.contains("/usr/local/bin/exuvia "),
        "no CLI needed:\n{out}"
    );
    let plain = generate_owned(&base(&["--reload-client", "none"]));
    assert!(
        !plain.contains("ExecReload=") && !plain.contains("control.sock"),
        "notify-reload without a client needs no ExecReload:\n{plain}"
    );
}

#[test]
fn systemd_252_gets_the_notify_fallback() {
    let out = generate_owned(&base(&["--systemd", "252"]));
    assert!(out.lines().any(|l| l == "Type=notify"));
    assert!(
        out.lines().any(|l| l
            == "ExecReload=@/usr/bin/app exuvia-reload --wait --control /run/app/control.sock --timeout 62"),
        "{out}"
    );
    for newer in ["ReloadSignal=", "notify-reload"] {
        assert!(
            !out.contains(newer),
            "{newer} must not appear for 252:\n{out}"
        );
    }
    // Without a client, 252 has only the asynchronous signal, and says so.
    let signal = generate_owned(&base(&["--systemd", "252", "--reload-client", "none"]));
    assert!(signal.lines().any(|l| l == "ExecReload=kill -HUP $MAINPID"));
    assert!(signal.contains("# exuvia-lint: allow exec-reload-kill\nExecReload="));
    let explained = generate_owned(&base(&[
        "--systemd",
        "252",
        "--reload-client",
        "none",
        "--explain",
    ]));
    assert!(
        explained.contains("asynchronous"),
        "the fallback must explain that kill -HUP is asynchronous"
    );
    let old = generate_owned(&base(&["--systemd", "239", "--explain"]));
    assert!(
        !old.lines().any(|l| l.starts_with("ProtectClock=")),
        "ProtectClock needs 245"
    );
    assert!(old.contains("# omitted ProtectClock=yes: needs systemd >= 245, the target is 239"));
}

#[test]
fn reload_client_is_synchronous_on_both_models() {
    for version in ["257", "252"] {
        let cli = generate_owned(&base(&[
            "--systemd",
            version,
            "--reload-client",
            "/usr/bin/exuvia",
            "--control-arg=--ctl",
            "--startup",
            "8s",
            "--",
            "--port",
            "8080",
        ]));
        assert!(
            cli.lines().any(|l| l
                == "ExecReload=/usr/bin/exuvia reload --wait --control /run/app/control.sock --timeout 10"),
            "{cli}"
        );
        assert!(
            cli.lines()
                .any(|l| l == "ExecStart=/usr/bin/app --port 8080 --ctl /run/app/control.sock"),
            "{cli}"
        );
        assert!(cli.lines().any(|l| l == "RuntimeDirectory=app"), "{cli}");
        assert!(!cli.contains("kill -HUP"), "{cli}");
        // The default needs no second binary: the service answers as exuvia-reload.
        let own = generate_owned(&base(&["--systemd", version, "--startup", "500ms"]));
        assert!(
            own.lines().any(|l| l
                == "ExecReload=@/usr/bin/app exuvia-reload --wait --control /run/app/control.sock --timeout 2.5"),
            "{own}"
        );
        assert!(own.lines().any(|l| l == "TimeoutStartSec=5500ms"), "{own}");
        assert!(own.lines().any(|l| l == "RuntimeDirectory=app"), "{own}");
    }
}

#[test]
fn compat_profile_binds_its_own_ports() {
    let privileged = generate(&[
        "--name",
        "app",
        "--exec",
        "/usr/bin/app",
        "--profile",
        "self-bind",
        "--listen",
        "https=tcp:[::]:443",
    ]);
    assert!(
        privileged
            .lines()
            .any(|l| l == "AmbientCapabilities=CAP_NET_BIND_SERVICE")
    );
    assert!(
        privileged
            .lines()
            .any(|l| l == "CapabilityBoundingSet=CAP_NET_BIND_SERVICE")
    );
    assert!(
        !privileged.contains("PrivateUsers="),
        "PrivateUsers with ambient caps:\n{privileged}"
    );
    assert!(privileged.lines().any(|l| l == "SocketBindAllow=tcp:443"));
    assert!(!privileged.contains("[Socket]") && !privileged.contains("Sockets="));

    let unprivileged = generate(&[
        "--name",
        "app",
        "--exec",
        "/usr/bin/app",
        "--profile",
        "compat",
        "--listen",
        "web=tcp:8080",
    ]);
    assert!(unprivileged.lines().any(|l| l == "AmbientCapabilities="));
    assert!(unprivileged.lines().any(|l| l == "PrivateUsers=yes"));
}

#[test]
fn several_listeners_get_one_named_socket_each() {
    let tmp = TempDir::new("multi");
    let o = exuvia(&[
        "unit",
        "--name",
        "app",
        "--exec",
        "/usr/bin/app",
        "--out",
        tmp.s(),
        "--listen",
        "http=tcp:[::]:80",
        "--listen",
        "ctl=unix:/run/app.sock",
        "--listen",
        "dns=udp:127.0.0.1:5353",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        unit_files(tmp.path()),
        [
            "app-ctl.socket",
            "app-dns.socket",
            "app-http.socket",
            "app.service"
        ]
    );
    let service = fs::read_to_string(tmp.path().join("app.service")).expect("service");
    assert!(
        service
            .lines()
            .any(|l| l == "Sockets=app-http.socket app-ctl.socket app-dns.socket")
    );
    let http = fs::read_to_string(tmp.path().join("app-http.socket")).expect("socket");
    assert!(
        http.contains("ListenStream=[::]:80\n")
            && http.contains("BindIPv6Only=both\n")
            && http.contains("FileDescriptorName=http\n")
    );
    let dns = fs::read_to_string(tmp.path().join("app-dns.socket")).expect("socket");
    assert!(dns.contains("ListenDatagram=127.0.0.1:5353\n"));
    let ctl = fs::read_to_string(tmp.path().join("app-ctl.socket")).expect("socket");
    assert!(ctl.contains("ListenStream=/run/app.sock\n") && !ctl.contains("FreeBind"));
}

#[test]
fn every_profile_and_version_is_lint_clean_and_fork_exec_safe() {
    let forbidden = [
        "PrivatePIDs=",
        "InaccessiblePaths=",
        "ExecPaths=",
        "BindReadOnlyPaths=",
        "BindPaths=",
        "NotifyAccess=all",
        "KillMode=mixed",
        "KillMode=process",
        "RootDirectory=",
    ];
    for profile in ["strict", "isolated", "compat"] {
        for version in ["239", "252", "253", "255", "257", "262"] {
            for client in ["self", "/usr/bin/exuvia", "none"] {
                let tmp = TempDir::new("matrix");
                let mut args = base(&[
                    "--profile",
                    profile,
                    "--systemd",
                    version,
                    "--out",
                    tmp.s(),
                    "--listen",
                    "admin=tcp:127.0.0.1:443",
                ]);
                args.extend(["--reload-client".to_string(), client.to_string()]);
                let mut full = vec!["unit".to_string()];
                full.extend(args);
                let o = exuvia(&full.iter().map(String::as_str).collect::<Vec<_>>());
                assert!(o.status.success(), "{profile}/{version}: {}", stderr(&o));
                let files = unit_files(tmp.path());
                for f in &files {
                    let text = fs::read_to_string(tmp.path().join(f)).expect("read");
                    for bad in forbidden {
                        assert!(
                            !text.contains(bad),
                            "{profile}/{version}/{f} contains {bad}"
                        );
                    }
                    let ambient = text
                        .lines()
                        .any(|l| l.starts_with("AmbientCapabilities=CAP"));
                    assert!(
                        !(ambient && text.contains("PrivateUsers=yes")),
                        "{profile}/{version}: PrivateUsers with ambient caps"
                    );
                }
                let paths: Vec<String> = files
                    .iter()
                    .map(|f| tmp.path().join(f).display().to_string())
                    .collect();
                let mut lint = vec!["lint", "--systemd", version];
                lint.extend(paths.iter().map(String::as_str));
                let o = exuvia(&lint);
                assert!(
                    o.status.success(),
                    "lint of {profile}/{version} (client {client}) found:\n{}",
                    stdout(&o)
                );
            }
        }
    }
}

#[test]
fn explain_annotates_every_directive() {
    let out = generate(&["--config", SPEC, "--explain"]);
    let lines: Vec<&str> = out.lines().collect();
    let mut directives = 0;
    for (i, l) in lines.iter().enumerate() {
        if l.is_empty() || l.starts_with('#') || l.starts_with('[') {
            continue;
        }
        directives += 1;
        let comment = lines[..i]
            .iter()
            .rev()
            .find(|p| !p.starts_with("# exuvia-lint"))
            .expect("a line above");
        assert!(
            comment.starts_with("# ")
                && (comment.ends_with("[any systemd]") || comment.contains("[systemd >= ")),
            "{l:?} not explained (above: {comment:?})"
        );
    }
    assert!(directives > 40, "only {directives} directives");
    assert!(out.contains("[systemd >= 253]\nType=notify-reload"));
}

#[test]
fn nixos_format_has_services_and_sockets() {
    let out = generate(&["--config", SPEC, "--format", "nixos"]);
    for want in [
        "systemd.services.\"exuvia-echo\" = {",
        "systemd.sockets.\"exuvia-echo\" = {",
        "listenStreams = [ \"127.0.0.1:8080\" ];",
        "wantedBy = [ \"sockets.target\" ];",
        "wantedBy = [ \"multi-user.target\" ];",
        "Type = \"notify-reload\";",
        "SystemCallFilter = [ \"@system-service\" \"~@privileged @resources\" ];",
        "FileDescriptorName = \"echo\";",
        "StartLimitBurst = \"5\";",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert_eq!(out.matches('{').count(), out.matches('}').count());
    let tricky = generate_owned(&base(&["--format", "nixos", "--", "a ${b}", "\"q\""]));
    assert!(
        tricky.contains(
            r#"ExecStart = "/usr/bin/app \"a $\${b}\" \"\\\"q\\\"\" --control /run/app/control.sock";"#
        ),
        "{tricky}"
    );
}
