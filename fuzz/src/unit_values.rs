//! What systemd accepts as the value of each directive `exuvia unit` writes, and what the
//! value must say about the spec it came from. Each check is a rule of systemd's own parser for
//! that setting (an executable path must be absolute and normalized, a size must fit 64 bits, a
//! unit name at most 255 bytes, …) or a promise of the generator (a deadline never shorter than
//! the one asked for, no specifier or environment expansion the user did not write).

use crate::exec_line;
use crate::systemd_ini::resolve_specifiers;

/// Longest file name component and path systemd accepts.
const NAME_MAX: usize = 255;
const PATH_MAX: usize = 4096;
/// `sun_path` holds 108 bytes, the terminating NUL included.
const SUN_PATH_MAX: usize = 107;

fn fail(key: &str, value: &str, why: impl std::fmt::Display) -> ! {
    panic!("{key}={value:?}: {why}")
}

/// How strictly [`absolute_path`] reads a path.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PathRule {
    /// An executable: systemd simplifies `//`, `.` and `..`, but a trailing slash (the root
    /// included) names a directory, a fatal error.
    Executable,
    /// A file or socket: no `..` (systemd drops a non-normalized `EnvironmentFile=`, and the
    /// spec promises no traversal).
    NoTraversal,
}

/// An absolute path within the kernel's limits, read by `rule`.
pub fn absolute_path(path: &str, rule: PathRule) -> Result<(), String> {
    let rest = path.strip_prefix('/').ok_or("not absolute")?;
    if path.len() >= PATH_MAX {
        return Err("longer than PATH_MAX".into());
    }
    if path.chars().any(char::is_control) {
        return Err("control character".into());
    }
    if rule == PathRule::Executable && path.ends_with('/') {
        return Err("names a directory".into());
    }
    for c in rest.split('/') {
        if rule == PathRule::NoTraversal && c == ".." {
            return Err(format!("component {c:?}"));
        }
        if c.len() > NAME_MAX {
            return Err(format!("component of {} bytes", c.len()));
        }
    }
    Ok(())
}

/// `a/b/c`: no empty, `.` or `..` component, each at most NAME_MAX bytes.
pub fn relative_components(path: &str) -> Result<(), String> {
    if path.chars().any(char::is_control) {
        return Err("control character".into());
    }
    for c in path.split('/') {
        if c.is_empty() || c == "." || c == ".." {
            return Err(format!("component {c:?}"));
        }
        if c.len() > NAME_MAX {
            return Err(format!("component of {} bytes", c.len()));
        }
    }
    Ok(())
}

/// A unit name systemd loads: `NAME.socket`/`NAME.service`, at most 255 bytes, made of
/// letters, digits and `:-_.\`, not starting with a dot or dash.
pub fn unit_name(name: &str) -> Result<(), String> {
    let stem = name
        .strip_suffix(".service")
        .or_else(|| name.strip_suffix(".socket"))
        .ok_or("no .service/.socket suffix")?;
    if name.len() > NAME_MAX {
        return Err(format!("{} bytes (at most {NAME_MAX})", name.len()));
    }
    if stem.is_empty()
        || stem.starts_with(['.', '-'])
        || !stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":-_.\\".contains(c))
    {
        return Err("invalid characters".into());
    }
    Ok(())
}

/// A time span as systemd parses it, in µs; `None` when systemd would not accept it.
pub fn timespan_us(text: &str) -> Option<u128> {
    if text.trim() == "infinity" {
        return Some(u128::from(u64::MAX));
    }
    let mut total: u128 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u128 = rest[..digits].parse().ok()?;
        rest = rest[digits..].trim_start();
        let unit = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let per: u128 = match &rest[..unit] {
            "us" | "usec" => 1,
            "ms" | "msec" => 1_000,
            "" | "s" | "sec" | "second" | "seconds" => 1_000_000,
            "m" | "min" | "minute" | "minutes" => 60_000_000,
            "h" | "hr" | "hour" | "hours" => 3_600_000_000,
            "d" | "day" | "days" => 86_400_000_000,
            _ => return None,
        };
        rest = rest[unit..].trim_start();
        total = total.checked_add(n.checked_mul(per)?)?;
    }
    // systemd keeps spans in a 64-bit µs count; a longer one does not parse.
    (total < u128::from(u64::MAX)).then_some(total)
}

/// Bytes of a size with an optional base-1024 suffix; `None` when systemd's parser refuses it.
pub fn size_bytes(text: &str) -> Option<u128> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let n: u128 = text[..split].parse().ok()?;
    let shift = match &text[split..] {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        "P" => 50,
        "E" => 60,
        _ => return None,
    };
    let bytes = n.checked_mul(1u128 << shift)?;
    (bytes <= u128::from(u64::MAX)).then_some(bytes)
}

/// The spec's own numbers, as the checks need them.
pub struct Asked<'a> {
    pub exec: &'a str,
    pub args: &'a [String],
    /// The `exuvia` CLI as reload client, if that is the client.
    pub reload_client: Option<&'a str>,
    /// `ExecReloadPost=` commands.
    pub reload_post: &'a [Vec<String>],
    /// The readiness deadline.
    pub startup_ms: u64,
    /// The later of the drain deadlines.
    pub drain_ms: u64,
    pub tasks: u32,
    /// Memory of one generation as given (`256M`).
    pub memory: Option<String>,
}

/// Checks one rendered directive.
pub fn check(key: &str, value: &str, asked: &Asked<'_>) {
    let ok = |r: Result<(), String>| r.unwrap_or_else(|why| fail(key, value, why));
    if key.starts_with("Exec") {
        return exec(key, value, asked);
    }
    let resolved = resolve_specifiers(value).unwrap_or_else(|why| fail(key, value, why));
    if resolved.chars().any(char::is_control) {
        fail(key, value, "control character");
    }
    match key {
        "TimeoutStartSec" | "TimeoutStopSec" => {
            let us = timespan_us(value).unwrap_or_else(|| fail(key, value, "not a time span"));
            let asked_ms = if key == "TimeoutStartSec" {
                asked.startup_ms
            } else {
                asked.drain_ms
            };
            if us < u128::from(asked_ms) * 1000 {
                fail(
                    key,
                    value,
                    format!("shorter than the {asked_ms} ms asked for"),
                );
            }
        }
        "TasksMax" => {
            let n: u64 = value
                .parse()
                .unwrap_or_else(|_| fail(key, value, "not a number"));
            if n < u64::from(asked.tasks) {
                fail(
                    key,
                    value,
                    format!("below the {} tasks asked for", asked.tasks),
                );
            }
        }
        "MemoryHigh" => {
            let got =
                size_bytes(value).unwrap_or_else(|| fail(key, value, "not a size systemd parses"));
            let want = asked.memory.as_deref().and_then(size_bytes);
            match want {
                Some(w) if got >= w => {}
                _ => fail(
                    key,
                    value,
                    format!("not at least the {:?} asked for", asked.memory),
                ),
            }
        }
        "LimitNOFILE" => {
            if value != "infinity" && value.parse::<u64>().map_or(true, |n| n == 0) {
                fail(key, value, "not a positive limit");
            }
        }
        "ListenStream" | "ListenDatagram" => ok(listen_address(&resolved)),
        "FileDescriptorName" => {
            if resolved.is_empty()
                || resolved.len() > NAME_MAX
                || !resolved.bytes().all(|b| b.is_ascii_graphic() && b != b':')
            {
                fail(key, value, "not a valid fd name");
            }
        }
        "Sockets" | "Service" => resolved.split_whitespace().for_each(|n| ok(unit_name(n))),
        "StateDirectory" | "RuntimeDirectory" => ok(relative_components(&resolved)),
        "EnvironmentFile" => ok(absolute_path(
            resolved.strip_prefix('-').unwrap_or(&resolved),
            PathRule::NoTraversal,
        )),
        "User" | "Group"
            if resolved.is_empty()
                || resolved == "."
                || resolved == ".."
                || resolved.starts_with('-')
                || resolved.len() > NAME_MAX
                || resolved.contains(|c: char| c == ':' || c == '/' || c.is_whitespace()) =>
        {
            fail(key, value, "not a user/group name systemd accepts")
        }
        _ => {}
    }
}

fn exec(key: &str, value: &str, asked: &Asked<'_>) {
    let cmd = exec_line::parse(value).unwrap_or_else(|why| fail(key, value, why));
    // `kill -HUP $MAINPID` is the one expansion the generator means (the reload fallback).
    let meant = cmd.words.len() == 3 && cmd.words[0] == "kill" && cmd.words[2] == "$MAINPID";
    if meant {
        return;
    }
    if !cmd.expanded.is_empty() {
        fail(
            key,
            value,
            format!(
                "expands {:?} from the environment",
                cmd.words[cmd.expanded[0]]
            ),
        );
    }
    if cmd.prefixes.contains(['-', ':', '+', '!']) {
        fail(key, value, format!("prefix {:?}", cmd.prefixes));
    }
    if let Err(why) = absolute_path(&cmd.words[0], PathRule::Executable) {
        fail(key, value, format!("executable {:?}: {why}", cmd.words[0]));
    }
    // With `@`, the second word is argv[0] and the arguments follow it.
    let args = &cmd.words[if cmd.prefixes.contains('@') { 2 } else { 1 }.min(cmd.words.len())..];
    match key {
        "ExecStart" if cmd.words[0] != asked.exec || !args.starts_with(asked.args) => fail(
            key,
            value,
            format!(
                "runs {:?}, not {:?} {:?}",
                cmd.words, asked.exec, asked.args
            ),
        ),
        "ExecReloadPost" if !asked.reload_post.iter().any(|c| *c == cmd.words) => fail(
            key,
            value,
            format!("runs {:?}, none of {:?}", cmd.words, asked.reload_post),
        ),
        "ExecReload"
            if Some(cmd.words[0].as_str()) != asked.reload_client && cmd.words[0] != asked.exec =>
        {
            fail(
                key,
                value,
                format!(
                    "runs {:?}, neither the service nor its reload client",
                    cmd.words[0]
                ),
            )
        }
        _ => {}
    }
}

/// A `ListenStream=`/`ListenDatagram=` address systemd binds: an absolute socket path or an
/// abstract name that fits `sun_path`, a port, or an IP address with a port.
fn listen_address(addr: &str) -> Result<(), String> {
    if addr.starts_with('/') {
        if addr.len() > SUN_PATH_MAX {
            return Err("socket path longer than sun_path".into());
        }
        return absolute_path(addr, PathRule::NoTraversal);
    }
    if let Some(name) = addr.strip_prefix('@') {
        return if name.is_empty() || addr.len() > SUN_PATH_MAX {
            Err("abstract name empty or longer than sun_path".into())
        } else {
            Ok(())
        };
    }
    let port = match addr.parse::<u16>() {
        Ok(p) => p,
        Err(_) => addr
            .parse::<std::net::SocketAddr>()
            .map_err(|_| "neither a port nor ADDRESS:PORT".to_string())?
            .port(),
    };
    if port == 0 {
        return Err("port 0".into());
    }
    Ok(())
}
