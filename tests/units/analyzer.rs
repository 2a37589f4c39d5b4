//! systemd's own analyzer on the units (EXUVIA_SYSTEMD_ROOT), and `exuvia verify`.
use super::*;

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
