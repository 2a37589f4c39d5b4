//! A structure-aware way into `exuvia unit`: an input starting with [`MARKER`] is not TOML
//! text but choices from which a well-formed spec file is built, so that nearly every run gets
//! past the TOML parser to the checks and the renderer, with values made of the parts that
//! break unit files (a trailing backslash, `%`, `$`, quotes, control characters, `..`, the
//! edges of every number range) attached to plausible ones. Inputs without the marker are
//! spec files as written (the seeds are real ones), which keeps the real syntax covered.

use arbitrary::{Result, Unstructured};
use toml::{Table, Value};

/// First byte of a structured input (never the first byte of a spec file in UTF-8).
pub const MARKER: u8 = 0xfe;

/// Bits that break unit lines, quoting, specifiers, paths and names.
const TWISTS: &[&str] = &[
    "\\",
    "\\\\",
    "%",
    "%n",
    "%%",
    "$",
    "$$",
    "${X}",
    "\"",
    "'",
    " ",
    "\t",
    "\n",
    "\r",
    "\0",
    "\u{b}",
    "\u{85}",
    "\u{a0}",
    "\u{2028}",
    ";",
    "//",
    "/.",
    "/..",
    "/../",
    ".",
    "..",
    "@",
    ":",
    "=",
    "#",
    "[",
    "]",
    "-",
    "+",
    "!",
    "é",
    "\u{1F600}",
];
const NAMES: &[&str] = &[
    "myapp",
    "exuvia-echo",
    "a",
    "api_v2",
    "x.y",
    "-a",
    ".a",
    "a@b",
];
const PATHS: &[&str] = &[
    "/usr/bin/myapp",
    "/usr/local/bin/exuvia-echo",
    "/opt/app/bin/app",
    "/",
    "/proc/self/exe",
    "relative/bin",
    "/usr/bin/exuvia",
];
const NUMBERS: &[u64] = &[
    0,
    1,
    5,
    59,
    60,
    999,
    1000,
    86_400,
    86_400_000,
    86_400_001,
    4_294_967_295,
    18_446_744_073_709_551,
    9_223_372_036_854_775_807,
    u64::MAX,
];
const UNITS: &[&str] = &["", "s", "ms", "us", "min", "m", "h", "sec", "d", "x", " s"];
const LISTENS: &[&str] = &[
    "tcp:8080",
    "tcp:080",
    "tcp:0",
    "tcp:65536",
    "tcp:127.0.0.1:80",
    "tcp:0.0.0.0:80",
    "tcp:[::]:80",
    "tcp:[::1]:443",
    "udp:53",
    "udp:[::]:53",
    "unix:/run/app/api.sock",
    "unix:/run//app/api.sock",
    "unix:/run/./a.sock",
    "unix:/run/..",
    "unix:@app",
    "unix:@",
    "unix:relative.sock",
    "sctp:80",
];

/// A string built from a plausible base and a few twists, or raw arbitrary text.
fn text(u: &mut Unstructured, bases: &[&str]) -> Result<String> {
    if u.ratio(1, 8)? {
        return u.arbitrary();
    }
    let mut s = u.choose(bases)?.to_string();
    for _ in 0..u.int_in_range(0..=3)? {
        let twist = *u.choose(TWISTS)?;
        match u.int_in_range(0..=3)? {
            0 => s.insert_str(0, twist),
            1 => {
                let at = u.int_in_range(0..=s.len())?;
                if s.is_char_boundary(at) {
                    s.insert_str(at, twist);
                }
            }
            2 => s = s.repeat(u.int_in_range(1..=40)?),
            _ => s.push_str(twist),
        }
    }
    Ok(s)
}

fn number(u: &mut Unstructured) -> Result<u64> {
    if u.ratio(1, 4)? {
        u.arbitrary()
    } else {
        Ok(*u.choose(NUMBERS)?)
    }
}

fn duration(u: &mut Unstructured) -> Result<Value> {
    let n = number(u)?;
    Ok(match u.int_in_range(0..=2)? {
        0 => Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)),
        1 => Value::String(format!("{n}{}", u.choose(UNITS)?)),
        _ => Value::String(format!(
            "{n}{} {}{}",
            u.choose(UNITS)?,
            number(u)?,
            u.choose(UNITS)?
        )),
    })
}

fn list(u: &mut Unstructured, bases: &[&str], max: usize) -> Result<Value> {
    let n = u.int_in_range(0..=max)?;
    Ok(Value::Array(
        (0..n)
            .map(|_| text(u, bases).map(Value::String))
            .collect::<Result<_>>()?,
    ))
}

/// The spec file and flags chosen by `u`.
pub fn generate(u: &mut Unstructured) -> Result<(String, Vec<String>)> {
    let mut t = Table::new();
    macro_rules! maybe {
        ($key:expr, $value:expr) => {
            if u.ratio(2, 3)? {
                t.insert($key.to_string(), $value);
            }
        };
    }
    // The name and the executable are required: mostly present, so runs reach the renderer.
    if u.ratio(15, 16)? {
        t.insert("name".into(), Value::String(text(u, NAMES)?));
    }
    if u.ratio(15, 16)? {
        t.insert("exec".into(), Value::String(text(u, PATHS)?));
    }
    maybe!(
        "description",
        Value::String(text(u, &["My app", "100% up", "say \"hi\""])?)
    );
    maybe!(
        "args",
        list(u, &["--config", "/etc/app.toml", "a b", "$HOME", "-"], 4)?
    );
    if u.ratio(1, 3)? {
        t.insert(
            "user".into(),
            Value::String(text(u, &["app", ".", "..", "root", "1000"])?),
        );
        t.insert("dynamic_user".into(), Value::Boolean(false));
        maybe!("group", Value::String(text(u, &["app", "nogroup"])?));
    }
    maybe!(
        "environment_file",
        Value::String(text(u, &["/etc/app/env", "-/etc/app/env"])?)
    );
    maybe!(
        "state_directories",
        list(u, &["app", "app/cache", "a/../b"], 3)?
    );
    maybe!("runtime_directories", list(u, &["app", "app/run"], 3)?);
    maybe!("drain", duration(u)?);
    if u.ratio(1, 4)? {
        t.insert("drain_soft".into(), duration(u)?);
    }
    maybe!("startup", duration(u)?);
    maybe!(
        "systemd",
        Value::Integer(*u.choose(&[238, 239, 252, 253, 254, 257, 258, 259, 262, 999, 1000])?)
    );
    maybe!(
        "profile",
        Value::String(text(u, &["strict", "isolated", "compat", "self-bind"])?)
    );
    maybe!(
        "reload_client",
        Value::String(text(u, &["self", "none", "/usr/bin/exuvia"])?)
    );
    maybe!("control_arg", Value::String(text(u, &["--control", "-c"])?));
    if u.ratio(1, 4)? {
        let cmds = (0..u.int_in_range(0..=2)?)
            .map(|_| list(u, &["/usr/bin/true", "arg", "%h"], 3))
            .collect::<Result<_>>()?;
        t.insert("reload_post".into(), Value::Array(cmds));
    }
    maybe!(
        "tasks",
        Value::Integer(i64::from(u32::try_from(number(u)?).unwrap_or(u32::MAX)))
    );
    maybe!(
        "memory",
        Value::String(format!(
            "{}{}",
            number(u)?,
            u.choose(&["", "K", "M", "G", "T", "P", "MM"])?
        ))
    );
    maybe!(
        "nofile",
        Value::Integer(i64::try_from(number(u)?).unwrap_or(i64::MAX))
    );
    for flag in ["jit", "full_proc", "private_users"] {
        if u.ratio(1, 4)? {
            t.insert(flag.into(), Value::Boolean(u.arbitrary()?));
        }
    }
    let listeners = (0..u.int_in_range(0..=3)?)
        .map(|_| {
            let mut l = Table::new();
            l.insert(
                "name".into(),
                Value::String(text(u, &["http", "api", "admin", "a"])?),
            );
            l.insert("listen".into(), Value::String(text(u, LISTENS)?));
            Ok(Value::Table(l))
        })
        .collect::<Result<Vec<_>>>()?;
    if !listeners.is_empty() {
        t.insert("listener".into(), Value::Array(listeners));
    }
    let mut flags = Vec::new();
    if u.ratio(1, 4)? {
        for _ in 0..u.int_in_range(1..=3)? {
            let (flag, value) = match u.int_in_range(0..=4)? {
                0 => (
                    "--listen",
                    format!("{}={}", text(u, &["http"])?, text(u, LISTENS)?),
                ),
                1 => (
                    "--memory",
                    format!("{}{}", number(u)?, u.choose(&["", "M", "G"])?),
                ),
                2 => ("--drain", format!("{}{}", number(u)?, u.choose(UNITS)?)),
                3 => ("--state-dir", text(u, &["app", "a/b"])?),
                _ => ("--description", text(u, &["x"])?),
            };
            flags.push(flag.to_string());
            flags.push(value);
        }
    }
    let toml = toml::to_string(&t).map_err(|_| arbitrary::Error::IncorrectFormat)?;
    Ok((toml, flags))
}
