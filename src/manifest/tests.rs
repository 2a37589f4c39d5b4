use super::*;

/// What every release wrote, byte for byte (tests/golden/handover/): a release must keep
/// reading each format from `OLDEST_READABLE` on, and keep writing the current one unchanged.
const GOLDEN_V1: &str = include_str!("../../tests/golden/handover/v1-manifest.txt");
const GOLDEN_V2: &str = include_str!("../../tests/golden/handover/v2-manifest.txt");

fn sample(version: u32) -> Manifest {
    Manifest {
        version,
        generation: 4,
        draining: vec![Ancestor {
            pid: 1200,
            start_time: 83417,
        }],
        entries: vec![
            Entry {
                name: "echo".into(),
                kind: FdKind::Tcp,
            },
            Entry {
                name: "api.sock".into(),
                kind: FdKind::Unix,
            },
        ],
        state_len: Some(17),
        signal_trigger_us: Some(123_456_789),
        counters: Vec::new(),
        skipped: Vec::new(),
    }
}

#[test]
fn golden_manifests_of_every_format_parse() {
    assert_eq!(Manifest::parse(GOLDEN_V1).unwrap(), sample(1));
    assert_eq!(Manifest::parse(GOLDEN_V2).unwrap(), sample(2));
}

#[test]
fn this_build_writes_the_golden_current_format() {
    assert_eq!(sample(2).encode(), GOLDEN_V2);
    assert_eq!(Manifest::parse(&sample(2).encode()).unwrap(), sample(2));
}

#[test]
fn unknown_extensions_are_skipped_only_when_marked_and_only_from_format_2() {
    let m = Manifest::parse("exuvia-handover 2\ngeneration 2\n?future thing=3\nend\n").unwrap();
    assert_eq!(m.skipped, ["future thing=3"]);
    let m = Manifest::parse("exuvia-handover 2\ngeneration 2\n?counters upgrades_started=3\nend\n")
        .unwrap();
    assert_eq!(m.counters, [("upgrades_started".to_string(), 3)]);
    assert!(Manifest::parse("exuvia-handover 2\ngeneration 2\n?counters x=y\nend\n").is_err());
    let e = Manifest::parse("exuvia-handover 1\ngeneration 2\n?counters x\nend\n").unwrap_err();
    assert!(e.to_string().contains("line 3"), "{e}");
    let e = Manifest::parse("exuvia-handover 2\ngeneration 2\ncounters x\nend\n").unwrap_err();
    assert!(e.to_string().contains("unknown"), "{e}");
}

#[test]
fn rejects_garbage_with_clear_errors() {
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        ("hello world\n", "not an exuvia handover manifest"),
        ("exuvia-handover 99\nend\n", "format 99"),
        ("exuvia-handover 0\nend\n", "format 0"),
        ("exuvia-handover 2\ngeneration 2\n", "truncated"),
        ("exuvia-handover 2\nend\n", "generation"),
        ("exuvia-handover 2\ngeneration 1\nend\n", "line 2"),
        (
            "exuvia-handover 2\ngeneration 2\nfd tcp a\nfd udp a\nend\n",
            "duplicate",
        ),
        ("exuvia-handover 2\ngeneration 2\nfd sctp a\nend\n", "KIND"),
        ("exuvia-handover 2\ngeneration 2\nfd 3 tcp a\nend\n", "KIND"),
        (
            "exuvia-handover 2\ngeneration 2\nfd tcp a:b\nend\n",
            "invalid fd name",
        ),
        (
            "exuvia-handover 2\ngeneration 2\nfd tcp a extra\nend\n",
            "trailing",
        ),
        (
            "exuvia-handover 2\ngeneration 2\nstate 999999999999\nend\n",
            "too large",
        ),
        ("exuvia-handover 2\ngeneration 2\nend\nmore\n", "after"),
        (
            "exuvia-handover 2\ngeneration 2\ngeneration 3\nend\n",
            "repeated",
        ),
        ("exuvia-handover 2\ngeneration 2\nbogus\nend\n", "unknown"),
        ("exuvia-handover 2\ngeneration 2\n?\nend\n", "extension"),
        // Format 1 names fds by number; only the layout's numbers are accepted.
        ("exuvia-handover 1\ngeneration 2\nfd 4 tcp a\nend\n", "fd 3"),
        (
            "exuvia-handover 1\ngeneration 2\nfd 3 tcp a\nfd 9 tcp b\nend\n",
            "fd 4",
        ),
        ("exuvia-handover 1\ngeneration 2\nfd tcp a\nend\n", "fd 3"),
    ];
    for (input, want) in cases {
        let err = Manifest::parse(input).expect_err(input).to_string();
        assert!(
            err.contains(want),
            "{input:?}: error {err:?} should mention {want:?}"
        );
    }
}

#[test]
fn both_formats_carry_as_many_fds_as_format_1_did() {
    for version in [1, 2] {
        let mut text = format!("exuvia-handover {version}\ngeneration 2\n");
        for i in 0..MAX_ENTRIES {
            let number = if version == 1 {
                format!("{} ", 3 + i)
            } else {
                String::new()
            };
            text.push_str(&format!("fd {number}fd n{i}\n"));
        }
        let full = format!("{text}end\n");
        let m = Manifest::parse(&full).unwrap_or_else(|e| panic!("format {version}: {e}"));
        assert_eq!(
            Manifest::parse(&m.encode()),
            Ok(Manifest { version: 2, ..m })
        );
        let number = if version == 1 {
            format!("{} ", 3 + MAX_ENTRIES)
        } else {
            String::new()
        };
        let over = format!("{text}fd {number}fd over\nend\n");
        assert!(
            Manifest::parse(&over)
                .unwrap_err()
                .to_string()
                .contains("too many"),
            "format {version}"
        );
    }
}

#[test]
fn names() {
    assert!(valid_name("echo"));
    assert!(valid_name("a.b-c_d"));
    for bad in ["", "a b", "a:b", "é", &"x".repeat(256)] {
        assert!(!valid_name(bad), "{bad:?}");
    }
}
