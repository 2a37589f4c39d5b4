//! Input the generator refuses: one clear line, exit 2, nothing written.
use super::*;
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
            "not a time span",
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
        (
            &["--name", &"n".repeat(90), "--exec", "/usr/bin/app"],
            "too long for the control socket",
        ),
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

/// A trailing backslash continues a unit line: `ListenStream=/run/app/api.sock\` would swallow
/// `FileDescriptorName=api`. Every value that can end in one is refused, in both formats.
#[test]
fn trailing_backslash_is_refused_for_every_value() {
    // (spec, what the error says): directories refuse '\\' anywhere, being list words.
    let cases = [
        (
            format!("{APP}description = {}\n", toml_str("my app\\")),
            "backslash",
        ),
        (
            format!("{APP}environment_file = {}\n", toml_str("/etc/app/env\\")),
            "backslash",
        ),
        (
            format!("{APP}environment_file = {}\n", toml_str("-/etc/app/env\\")),
            "backslash",
        ),
        (
            format!("{APP}state_directories = [{}]\n", toml_str("app\\")),
            "'\\'",
        ),
        (
            format!("{APP}runtime_directories = [{}]\n", toml_str("app\\")),
            "'\\'",
        ),
        (
            format!(
                "{APP}[[listener]]\nname = \"api\"\nlisten = {}\n",
                toml_str("unix:/run/app/api.sock\\")
            ),
            "backslash",
        ),
        (
            format!(
                "{APP}[[listener]]\nname = \"api\"\nlisten = {}\n",
                toml_str("unix:@app-api\\")
            ),
            "backslash",
        ),
    ];
    for (toml, want) in &cases {
        for format in ["unit", "nixos"] {
            let o = unit_from_toml(toml, &["--format", format]);
            assert_refused(&o, want, &format!("{toml} ({format})"));
        }
    }
    // An argument ending in a backslash is quoted, so its line ends in '"'.
    let o = unit_from_toml(&format!("{APP}args = [{}]\n", toml_str("C:\\dir\\")), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("ExecStart=/usr/bin/app \"C:\\\\dir\\\\\" --control"),
        "{}",
        stdout(&o)
    );
}

/// `drain = 9223372036854775807` used to render TimeoutStopSec=4999ms (a five-second SIGKILL).
#[test]
fn deadlines_are_bounded_and_never_wrap() {
    for (toml, want) in [
        ("drain = 9223372036854775807\n", "longer than 86400s"),
        ("startup = 18446744073709551\n", "longer than 86400s"),
        ("startup = \"18446744073709551615h\"\n", "too long"),
        ("drain = \"25h\"\n", "longer than 86400s"),
        ("startup = 0\n", "startup must be > 0"),
        ("drain_soft = \"20s\"\ndrain = \"10s\"\n", "drain_soft"),
        ("startup = \"1.5.5s\"\n", "not a time span"),
        ("startup = \"1500us\"\n", "whole number of milliseconds"),
    ] {
        assert_refused(&unit_from_toml(&format!("{APP}{toml}"), &[]), want, toml);
    }
    let o = unit_from_toml(
        &format!("{APP}drain = 86400\ndrain_soft = \"1min 30s\"\nstartup = \"2min\"\n"),
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for line in [
        "Environment=EXUVIA_READY_TIMEOUT=120s EXUVIA_DRAIN_SOFT=90s EXUVIA_DRAIN_HARD=86400s",
        "TimeoutStartSec=125s",
        "TimeoutStopSec=86405s",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line:?}:\n{out}");
    }
    // Without deadlines in the spec the unit states the library's defaults.
    let out = generate_owned(&base(&[]));
    for line in [
        "Environment=EXUVIA_READY_TIMEOUT=60s EXUVIA_DRAIN_SOFT=0s EXUVIA_DRAIN_HARD=30s",
        "TimeoutStartSec=65s",
        "TimeoutStopSec=35s",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line:?}:\n{out}");
    }
}

/// `--memory` with more digits than u64 rendered MemoryHigh=0M; out-of-range values passed.
#[test]
fn memory_out_of_range_is_refused() {
    for (memory, want) in [
        ("99999999999999999999999M", "out of range"),
        ("8388608T", "out of range"),
        ("18446744073709551615", "out of range"),
        ("0", "must be > 0"),
        ("12MB", "does not parse"),
    ] {
        assert_refused(&app_unit(&["--memory", memory]), want, memory);
    }
    let out = generate_owned(&base(&["--memory", "4194303T"]));
    assert!(out.lines().any(|l| l == "MemoryHigh=8388606T"), "{out}");
    assert_refused(
        &app_unit(&["--nofile", "1073741817"]),
        "fs.nr_open",
        "nofile",
    );
}

/// Listener addresses are compared as the kernel binds them, and paths must say where they go.
#[test]
fn listener_clashes_and_paths_are_refused() {
    let listen = |ls: &[&str]| {
        let args: Vec<&str> = ls.iter().flat_map(|l| ["--listen", l]).collect();
        app_unit(&args)
    };
    for (a, b) in [
        ("web=tcp:80", "alt=tcp:080"),
        ("web=tcp:80", "alt=tcp:[::]:80"),
        ("web=tcp:0.0.0.0:80", "alt=tcp:127.0.0.1:80"),
        ("web=unix:/run/a.sock", "alt=unix:/run//a.sock"),
        ("web=udp:53", "alt=udp:[::]:53"),
    ] {
        let o = listen(&[a, b]);
        assert_refused(&o, "clash", &format!("{a} + {b}"));
        let err = stderr(&o);
        assert!(
            err.contains("web (") && err.contains("alt ("),
            "names both: {err}"
        );
    }
    let o = listen(&[
        "web=tcp:80",
        "dns=udp:80",
        "lo=tcp:[::1]:8080",
        "v4=tcp:127.0.0.1:8080",
    ]);
    assert!(o.status.success(), "distinct addresses: {}", stderr(&o));
    for (l, want) in [
        ("a=unix:/run/..", "does not parse"),
        ("a=unix:/run/../etc/x.sock", "does not parse"),
        ("a=unix:/run/", "does not parse"),
        ("a=tcp:[fe80::1%2]:80", "scoped"),
    ] {
        assert_refused(&listen(&[l]), want, l);
    }
    // What is written is the normalized address.
    let out = stdout(&listen(&["a=unix:/run//app/./a.sock"]));
    assert!(out.contains("ListenStream=/run/app/a.sock\n"), "{out}");
    let out = stdout(&listen(&["a=tcp:0080"]));
    assert!(out.contains("ListenStream=80\n"), "{out}");
    for exec in [
        "/",
        "/usr/bin/",
        "/usr/../bin/app",
        "/usr/bin/./app",
        "/usr//bin/app",
    ] {
        let o = exuvia(&["unit", "--stdout", "--name", "app", "--exec", exec]);
        assert_refused(&o, "exec path", exec);
    }
}

/// ExecReloadPost= only where systemd knows it (259+); older targets get a clear error.
#[test]
fn reload_post_needs_systemd_259() {
    let out = generate_owned(&base(&[
        "--systemd",
        "259",
        "--reload-post",
        "/usr/bin/logger -t app reloaded",
    ]));
    assert!(
        out.lines()
            .any(|l| l == "ExecReloadPost=/usr/bin/logger -t app reloaded"),
        "{out}"
    );
    for version in ["257", "252"] {
        let mut args = base(&["--systemd", version, "--reload-post", "/usr/bin/logger x"]);
        args.insert(0, "--stdout".into());
        args.insert(0, "unit".into());
        let o = exuvia(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_refused(&o, "ExecReloadPost= (systemd >= 259)", version);
    }
    let o = unit_from_toml(
        &format!(
            "{APP}systemd = 262\nreload_post = [[\"/usr/bin/touch\", \"/run/app/reloaded file\"]]\n"
        ),
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("ExecReloadPost=/usr/bin/touch \"/run/app/reloaded file\"\n"),
        "{}",
        stdout(&o)
    );
}
