//! `exuvia unit` and `exuvia verify` through the real binary: the checked-in units/ are exactly
//! what the generator produces, bad input writes nothing, every profile × systemd version is
//! free of the directives that break a fork+exec upgrade, and — with a systemd 257 root in
//! EXUVIA_SYSTEMD_ROOT — the analyzer accepts the units and their exposure stays in budget.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXUVIA: &str = env!("CARGO_BIN_EXE_exuvia");
const SPEC: &str = "units/exuvia-echo.toml";

/// Must match units/regenerate.sh: (output directory, extra flags).
const VARIANTS: &[(&str, &[&str])] = &[
    ("units", &[]),
    ("units/systemd-252", &["--systemd", "252"]),
    ("units/isolated", &["--profile", "isolated"]),
];

fn exuvia(args: &[&str]) -> Output {
    Command::new(EXUVIA)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run exuvia")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "exuvia-test-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn s(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn unit_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".service") || n.ends_with(".socket") || n.ends_with(".nix"))
        .collect();
    v.sort();
    v
}

fn generate(args: &[&str]) -> String {
    let mut full = vec!["unit", "--stdout"];
    full.extend(args);
    let o = exuvia(&full);
    assert!(o.status.success(), "exuvia {full:?} failed: {}", stderr(&o));
    stdout(&o)
}

fn base(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--name",
        "app",
        "--exec",
        "/usr/bin/app",
        "--listen",
        "web=tcp:0.0.0.0:8080",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn generate_owned(args: &[String]) -> String {
    generate(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

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
        "TimeoutStartSec=10s", // 5 s start-up + 5 s handover margin
        "TimeoutStopSec=15s",  // 10 s drain + 5 s margin
        "Restart=on-failure",
        "TasksMax=1024",
        "DynamicUser=yes",
        "RuntimeDirectory=exuvia-echo",
        "ExecStart=/usr/local/bin/exuvia-echo --control /run/exuvia-echo/control.sock",
        "ExecReload=/usr/local/bin/exuvia reload --wait --control /run/exuvia-echo/control.sock",
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
    // The example uses the synchronous reload client (a failed upgrade fails the reload);
    // without one, notify-reload needs no ExecReload= at all.
    assert_eq!(out.matches("ExecReload=").count(), 1, "{out}");
    let plain = generate_owned(&base(&[]));
    assert!(
        !plain.contains("ExecReload="),
        "notify-reload without a client needs no ExecReload:\n{plain}"
    );
}

#[test]
fn systemd_252_gets_the_notify_fallback() {
    let out = generate_owned(&base(&["--systemd", "252"]));
    assert!(out.lines().any(|l| l == "Type=notify"));
    assert!(out.lines().any(|l| l == "ExecReload=kill -HUP $MAINPID"));
    assert!(out.contains("# exuvia-lint: allow exec-reload-kill\nExecReload="));
    for newer in ["ReloadSignal=", "notify-reload"] {
        assert!(
            !out.contains(newer),
            "{newer} must not appear for 252:\n{out}"
        );
    }
    let explained = generate_owned(&base(&["--systemd", "252", "--explain"]));
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
        let out = generate_owned(&base(&[
            "--systemd",
            version,
            "--reload-client",
            "/usr/bin/exuvia",
            "--control-arg=--ctl",
            "--",
            "--port",
            "8080",
        ]));
        assert!(
            out.lines()
                .any(|l| l
                    == "ExecReload=/usr/bin/exuvia reload --wait --control /run/app/control.sock"),
            "{out}"
        );
        assert!(
            out.lines()
                .any(|l| l == "ExecStart=/usr/bin/app --port 8080 --ctl /run/app/control.sock"),
            "{out}"
        );
        assert!(out.lines().any(|l| l == "RuntimeDirectory=app"), "{out}");
        assert!(!out.contains("kill -HUP"), "{out}");
    }
    // Default output never depends on the exuvia binary.
    let plain = generate_owned(&base(&[]));
    assert!(!plain.contains("control.sock") && !plain.contains("RuntimeDirectory="));
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
            for client in [false, true] {
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
                if client {
                    args.extend(["--reload-client".to_string(), "/usr/bin/exuvia".to_string()]);
                }
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
        tricky.contains(r#"ExecStart = "/usr/bin/app \"a $\${b}\" \"\\\"q\\\"\"";"#),
        "{tricky}"
    );
}

#[test]
fn bad_input_is_one_clear_line_and_writes_nothing() {
    let cases: &[(&[&str], &str)] = &[
        (&["--name", "app", "--exec", "app"], "not absolute"),
        (
            &["--name", "my app", "--exec", "/usr/bin/app"],
            "invalid unit name",
        ),
        (
            &["--name", "app@", "--exec", "/usr/bin/app"],
            "template units",
        ),
        (
            &[
                "--name",
                "app",
                "--exec",
                "/usr/bin/app",
                "--listen",
                "web=tcp:localhost",
            ],
            "does not parse",
        ),
        (
            &[
                "--name",
                "app",
                "--exec",
                "/usr/bin/app",
                "--listen",
                "tcp:80",
            ],
            "does not parse",
        ),
        (
            &[
                "--name",
                "app",
                "--exec",
                "/usr/bin/app",
                "--listen",
                "a=tcp:80",
                "--listen",
                "a=tcp:81",
            ],
            "used twice",
        ),
        (
            &[
                "--name",
                "app",
                "--exec",
                "/usr/bin/app",
                "--listen",
                "a=unix:relative.sock",
            ],
            "does not parse",
        ),
        (
            &[
                "--name",
                "app",
                "--exec",
                "/usr/bin/app",
                "--profile",
                "compat",
                "--listen",
                "h=tcp:443",
                "--private-users",
                "true",
            ],
            "conflicts with self-binding port 443",
        ),
        (
            &[
                "--name",
                "app",
                "--exec",
                "/usr/bin/app",
                "--profile",
                "paranoid",
            ],
            "unknown profile",
        ),
        (
            &[
                "--name",
                "app",
                "--exec",
                "/usr/bin/app",
                "--systemd",
                "230",
            ],
            "too old",
        ),
        (
            &["--name", "app", "--exec", "/usr/bin/app", "--drain", "ten"],
            "does not parse",
        ),
        (
            &[
                "--name",
                "app",
                "--exec",
                "/usr/bin/app",
                "--reload-client",
                "exuvia",
            ],
            "not absolute",
        ),
        (&["--exec", "/usr/bin/app"], "missing unit name"),
    ];
    for (args, want) in cases {
        let tmp = TempDir::new("bad");
        let out_dir = tmp.path().join("out");
        let mut full = vec!["unit", "--out", out_dir.to_str().expect("utf-8")];
        full.extend(*args);
        let o = exuvia(&full);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?} should fail: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: not one line: {err}"
        );
        assert!(err.contains(want), "{args:?}: {err:?} lacks {want:?}");
        assert!(!out_dir.exists(), "{args:?} wrote something");
    }
}

#[test]
fn refuses_to_overwrite_without_force_and_stdout_writes_nothing() {
    let tmp = TempDir::new("force");
    let args = ["unit", "--config", SPEC, "--out", tmp.s()];
    assert!(exuvia(&args).status.success());
    fs::write(tmp.path().join("exuvia-echo.service"), "local edit\n").expect("write");
    let o = exuvia(&args);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(
        fs::read_to_string(tmp.path().join("exuvia-echo.service")).expect("read"),
        "local edit\n"
    );
    let mut forced = args.to_vec();
    forced.push("--force");
    assert!(exuvia(&forced).status.success());
    assert!(
        fs::read_to_string(tmp.path().join("exuvia-echo.service"))
            .expect("read")
            .contains("Type=notify-reload")
    );
    let leftovers: Vec<_> = fs::read_dir(tmp.path())
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");

    let empty = TempDir::new("stdout");
    let o = exuvia(&["unit", "--config", SPEC, "--stdout", "--out", empty.s()]);
    assert!(o.status.success() && stdout(&o).contains("[Socket]"));
    assert!(unit_files(empty.path()).is_empty());
}

/// The rootfs of a systemd whose analyzer to use, or None (skip) when not configured locally.
fn systemd_root() -> Option<String> {
    match std::env::var("EXUVIA_SYSTEMD_ROOT") {
        Ok(r) if !r.is_empty() => Some(r),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "CI=true but EXUVIA_SYSTEMD_ROOT is unset: set it to the output of tests/systemd/rootfs.sh trixie"
            )
        }
        _ => {
            eprintln!(
                "skipped: EXUVIA_SYSTEMD_ROOT is unset (point it at a systemd 257 rootfs, e.g. tests/systemd/rootfs.sh trixie)"
            );
            None
        }
    }
}

fn exposure(o: &Output) -> f64 {
    let text = stdout(o);
    let line = text
        .lines()
        .find(|l| l.contains(": exposure "))
        .unwrap_or_else(|| panic!("no exposure in {text:?} / {}", stderr(o)));
    line.split(": exposure ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("exposure number")
}

#[test]
fn analyzer_accepts_checked_in_units_within_budget() {
    let Some(root) = systemd_root() else { return };
    // Same-named units from two directories in one run: each is staged separately.
    let cases: [(&[&str], &str); 2] = [
        (
            &[
                "units/exuvia-echo.service",
                "units/systemd-252/exuvia-echo.service",
            ],
            "1.1",
        ),
        (&["units/isolated/exuvia-echo.service"], "0.2"),
    ];
    for (services, max) in cases {
        let mut args = vec!["verify", "--root", &root, "--max-exposure", max];
        args.extend(services);
        let o = exuvia(&args);
        assert!(
            o.status.success(),
            "verify {services:?}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        let scored = stdout(&o)
            .lines()
            .filter(|l| l.contains("(systemd 257") && l.ends_with(" ok"))
            .count();
        assert_eq!(
            scored,
            services.len(),
            "expected one 257 score per unit: {}",
            stdout(&o)
        );
    }
}

#[test]
fn analyzer_scores_each_profile() {
    let Some(root) = systemd_root() else { return };
    let cases = [
        ("strict", "web=tcp:0.0.0.0:8080", 1.1),
        ("isolated", "web=tcp:0.0.0.0:8080", 0.2),
        ("compat", "web=tcp:0.0.0.0:8080", 1.1),
        ("compat", "web=tcp:0.0.0.0:443", 1.4),
    ];
    for (profile, listen, budget) in cases {
        let tmp = TempDir::new("score");
        let o = exuvia(&[
            "unit",
            "--name",
            "app",
            "--exec",
            "/usr/bin/app",
            "--profile",
            profile,
            "--listen",
            listen,
            "--out",
            tmp.s(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let service = tmp.path().join("app.service");
        let o = exuvia(&["verify", "--root", &root, service.to_str().expect("utf-8")]);
        assert!(
            o.status.success(),
            "{profile}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        let score = exposure(&o);
        eprintln!("measured: profile {profile} ({listen}) exposure {score}");
        assert!(
            score <= budget + 1e-9,
            "{profile} ({listen}) scored {score} > {budget}"
        );
    }
}

#[test]
fn verify_fails_on_warnings_and_on_exposure() {
    let Some(root) = systemd_root() else { return };
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/units");
    // Unknown key: systemd-analyze verify exits 0, exuvia verify must not.
    let o = exuvia(&[
        "verify",
        "--root",
        &root,
        fixtures.join("sozu-like.service").to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Unknown key 'ExecReloadPre'"),
        "{}",
        stderr(&o)
    );
    // An unhardened unit is far above the budget.
    let o = exuvia(&[
        "verify",
        "--root",
        &root,
        "--max-exposure",
        "1.1",
        fixtures.join("naive.service").to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        exposure(&o) > 9.0 && stdout(&o).contains("FAIL"),
        "{}",
        stdout(&o)
    );
}

/// A unit under review can name any path: verify --root must never create, change or remove
/// a file outside its own staging directory — not through `..`, not through a symlink in the
/// root that leads out of it, and not a file that exists inside the root.
#[test]
fn verify_root_touches_no_file_the_unit_names() {
    use std::os::unix::fs::PermissionsExt;
    let Some(root) = systemd_root() else { return };
    let host = TempDir::new("verify-victims");
    let victim = host.path().join("shadow");
    fs::write(&victim, "secret\n").expect("write victim");
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).expect("chmod");
    let through_link = host.path().join("dir");
    fs::create_dir(&through_link).expect("mkdir");
    fs::write(through_link.join("bin"), "data\n").expect("write");
    // Inside the root: a symlink out of it, and a plain non-executable file.
    let inside =
        TempDir(Path::new(&root).join(format!("tmp/exuvia-victims-{}", std::process::id())));
    let _ = fs::remove_dir_all(inside.path());
    fs::create_dir(inside.path()).expect("mkdir in root");
    std::os::unix::fs::symlink(&through_link, inside.path().join("link")).expect("symlink");
    let plain = inside.path().join("plain");
    fs::write(&plain, "data\n").expect("write");
    let in_root = |p: &Path| format!("/{}", p.strip_prefix(&root).expect("in root").display());

    let dots = "/..".repeat(24);
    let cases = [
        (format!("{dots}{}", victim.display()), false),
        (format!("{}/link/bin", in_root(inside.path())), true),
        (in_root(&plain), true),
    ];
    for (exec, clean) in cases {
        let units = TempDir::new("verify-hostile");
        let unit = units.path().join("hostile.service");
        fs::write(
            &unit,
            format!("[Unit]\nDescription=hostile\n\n[Service]\nExecStart={exec}\n"),
        )
        .expect("write unit");
        let o = exuvia(&["verify", "--root", &root, unit.to_str().expect("utf-8")]);
        eprintln!("ExecStart={exec}: {:?}\n{}", o.status, stderr(&o));
        if !clean {
            assert_eq!(o.status.code(), Some(1), "{exec}: {}", stderr(&o));
            assert!(stderr(&o).contains("'..'"), "{}", stderr(&o));
        }
        assert_eq!(
            fs::read_to_string(&victim).ok().as_deref(),
            Some("secret\n")
        );
        let mode = fs::metadata(&victim)
            .expect("victim kept")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "victim's mode kept");
        assert_eq!(
            fs::read_to_string(through_link.join("bin")).ok().as_deref(),
            Some("data\n")
        );
        assert_eq!(fs::read_to_string(&plain).ok().as_deref(), Some("data\n"));
        let mode = fs::metadata(&plain)
            .expect("file in root kept")
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0, "not made executable");
    }
    let staging: Vec<_> = fs::read_dir(Path::new(&root).join("tmp"))
        .expect("list root tmp")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("exuvia-verify-")
        })
        .collect();
    assert!(staging.is_empty(), "staging directories left in the root");
}
