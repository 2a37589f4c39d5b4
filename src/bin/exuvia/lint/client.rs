//! The synchronous reload clients `exuvia lint` recognises in `ExecReload=` (docs/units.md,
//! "Reload"): the service binary started as `exuvia-reload` through systemd's `@` prefix
//! (`@/usr/bin/app exuvia-reload --wait --control …`), a link named `exuvia-reload`, and the
//! `exuvia reload --wait` CLI. Both talk to the control socket and exit non-zero when the
//! upgrade fails, so `systemctl reload` reports it; misspelt forms fail every reload.
use super::finding::{Finding, finding};
use super::parse::UnitText;
use crate::unit::timespan::{Dialect, parse_us};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The service's own binary as `exuvia-reload`.
    SelfBinary,
    /// `exuvia reload`.
    Cli,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client<'a> {
    pub form: Form,
    args: Vec<&'a str>,
}

impl Client<'_> {
    /// What `exuvia-reload` would refuse as a usage error: it takes exactly `--wait`,
    /// `--control PATH` and `--timeout SECS` (no `--flag=value`); the CLI also takes `=`.
    fn usage_error(&self) -> Option<String> {
        let mut args = self.args.iter();
        while let Some(a) = args.next() {
            let (flag, value) = match a.split_once('=') {
                Some((f, v)) if self.form == Form::Cli => (f, Some(v)),
                _ => (*a, None),
            };
            match flag {
                "--wait" if value.is_none() => {}
                "--control" | "--timeout" => {
                    let Some(v) = value.or_else(|| args.next().copied()) else {
                        return Some(format!("{flag} has no value"));
                    };
                    let positive = v.parse::<f64>().is_ok_and(|t| t > 0.0 && t.is_finite());
                    if flag == "--timeout" && !positive {
                        return Some(format!("--timeout {v} is not a positive number of seconds"));
                    }
                }
                _ => return Some(format!("it does not understand {a:?}")),
            }
        }
        let missing: Vec<&str> = ["--wait", "--control"]
            .into_iter()
            .filter(|f| !self.has(f))
            .collect();
        (!missing.is_empty()).then(|| format!("it lacks {}", missing.join(" and ")))
    }

    fn has(&self, flag: &str) -> bool {
        self.args
            .iter()
            .any(|a| *a == flag || a.starts_with(&format!("{flag}=")))
    }

    fn value(&self, flag: &str) -> Option<&str> {
        let eq = format!("{flag}=");
        self.args
            .iter()
            .enumerate()
            .find_map(|(i, a)| match a.strip_prefix(&eq) {
                Some(v) => Some(v),
                None if *a == flag => self.args.get(i + 1).copied(),
                None => None,
            })
    }

    /// `--timeout SECS` in microseconds (seconds, fractions allowed), if given and valid.
    pub fn timeout_us(&self) -> Option<u64> {
        let v = self.value("--timeout")?;
        if !v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return None;
        }
        parse_us(&format!("{v}s"), Dialect::Systemd).ok().flatten()
    }
}

/// What an `ExecReload=` command line is, as far as reload clients go.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload<'a> {
    Client(Client<'a>),
    /// `/usr/bin/app exuvia-reload …` without `@`: argv[0] stays the binary's path.
    MissingAt,
    Other,
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

pub fn classify(cmd: &str) -> Reload<'_> {
    let mut words = cmd.split_whitespace();
    let Some(first) = words.next() else {
        return Reload::Other;
    };
    let bin = first.trim_start_matches(['-', '@', ':', '+', '!', '|']);
    let at = first[..first.len() - bin.len()].contains('@');
    let rest: Vec<&str> = words.collect();
    let (form, args) = match rest.split_first() {
        Some((argv0, args)) if at && file_name(argv0) == "exuvia-reload" => {
            (Form::SelfBinary, args)
        }
        Some((argv1, _)) if !at && *argv1 == "exuvia-reload" => return Reload::MissingAt,
        _ if !at && file_name(bin) == "exuvia-reload" => (Form::SelfBinary, rest.as_slice()),
        Some((&"reload", args)) if !at && file_name(bin) == "exuvia" => (Form::Cli, args),
        _ => return Reload::Other,
    };
    Reload::Client(Client {
        form,
        args: args.to_vec(),
    })
}

/// The synchronous client of the unit's last `ExecReload=`, if it has one.
pub fn of(unit: &UnitText) -> Option<(usize, Client<'_>)> {
    unit.entries("Service", "ExecReload")
        .filter_map(|e| match classify(&e.value) {
            Reload::Client(c) => Some((e.line, c)),
            _ => None,
        })
        .last()
}

/// Reload client command lines that fail every reload.
pub fn check(unit: &UnitText, out: &mut Vec<Finding>) {
    for e in unit.entries("Service", "ExecReload") {
        match classify(&e.value) {
            Reload::MissingAt => out.push(finding(e.line, "reload-client", "exuvia-reload is passed as the first argument, not as argv[0]: the library does not recognise it, and the service's own argument parsing runs instead (it may start a second server)", "prefix the command with '@' so systemd sets argv[0]: ExecReload=@/usr/bin/APP exuvia-reload --wait --control /run/APP/control.sock")),
            Reload::Client(c) => {
                if let Some(why) = c.usage_error() {
                    out.push(finding(e.line, "reload-client", format!("the reload client exits with a usage error, so every systemctl reload fails: {why}"), "write exactly --wait --control /run/APP/control.sock [--timeout SECS], as exuvia unit does"));
                }
            }
            Reload::Other => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_are_recognised() {
        let own =
            "@/usr/bin/app exuvia-reload --wait --control /run/app/control.sock --timeout 7.5";
        let Reload::Client(c) = classify(own) else {
            panic!("{own}")
        };
        assert_eq!(c.form, Form::SelfBinary);
        assert_eq!(c.timeout_us(), Some(7_500_000));
        assert!(c.has("--wait") && c.has("--control"));
        let Reload::Client(c) =
            classify("-/usr/local/bin/exuvia reload --wait --control=/run/a.sock")
        else {
            panic!("cli")
        };
        assert_eq!((c.form, c.timeout_us()), (Form::Cli, None));
        assert!(c.has("--control"));
        assert_eq!(c.usage_error(), None);
        let usage = |cmd| match classify(cmd) {
            Reload::Client(c) => c.usage_error(),
            other => panic!("{cmd}: {other:?}"),
        };
        assert_eq!(
            usage("@/a exuvia-reload --wait --control /x --timeout 1.5"),
            None
        );
        for bad in [
            "@/a exuvia-reload --wait --control=/x",
            "@/a exuvia-reload --wait --control /x --timeout 0",
            "@/a exuvia-reload --wait --control /x --verbose",
            "@/a exuvia-reload --wait --control",
            "/usr/bin/exuvia reload --control /x",
        ] {
            assert!(usage(bad).is_some(), "{bad}");
        }
        assert!(matches!(
            classify("/usr/lib/app/exuvia-reload --wait --control /x"),
            Reload::Client(Client {
                form: Form::SelfBinary,
                ..
            })
        ));
        assert_eq!(
            classify("/usr/bin/app exuvia-reload --wait"),
            Reload::MissingAt
        );
        for other in [
            "kill -HUP $MAINPID",
            "@/bin/kill kill -HUP $MAINPID",
            "/usr/bin/app check-config",
            "",
        ] {
            assert_eq!(classify(other), Reload::Other, "{other}");
        }
    }
}
