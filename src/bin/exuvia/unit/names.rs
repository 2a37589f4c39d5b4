//! The names and paths a spec may contain, checked the way systemd will read them: a unit name
//! becomes a file name (so it must not leave the output directory), an `Exec*=` path must be
//! normalized (systemd refuses `.` and `..`) and plain enough to need no quoting, and a
//! `StateDirectory=` entry is one word of a space-separated list.
use std::path::Path;

use super::error::{SpecError, err};

/// Longest file name component on Linux.
const NAME_MAX: usize = 255;
/// Longest path systemd accepts.
const PATH_MAX: usize = 4095;

pub fn check_unit_name(name: &str) -> Result<(), SpecError> {
    if name.contains('@') {
        return err(format!(
            "unit name {name:?}: template units (name@.service) are not supported; use a plain name such as myapp"
        ));
    }
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && !name.starts_with(['-', '.'])
        && !name.ends_with(".service");
    if ok {
        Ok(())
    } else {
        err(format!(
            "invalid unit name {name:?}: use 1-200 letters, digits, '_', '.', '-' without the .service suffix (e.g. my-app)"
        ))
    }
}

/// An absolute, normalized path: no `.`/`..` components, no `//`, no trailing `/`.
pub fn check_path(path: &str, what: &str) -> Result<(), SpecError> {
    if !path.starts_with('/') {
        return err(format!("{what} {path:?} is not an absolute path"));
    }
    let parts: Vec<&str> = path[1..].split('/').collect();
    if parts
        .iter()
        .any(|c| c.is_empty() || *c == "." || *c == "..")
    {
        return err(format!(
            "{what} {path:?} is not a normalized path (no '.', '..', '//' or trailing '/'): systemd refuses or rewrites it"
        ));
    }
    if path.len() > PATH_MAX || parts.iter().any(|c| c.len() > NAME_MAX) {
        return err(format!("{what} {path:?} is longer than a path may be"));
    }
    Ok(())
}

/// A binary for an `Exec*=` line: the upgrade re-execs exactly this path, so it must be the
/// install path, written without quoting or expansion.
pub fn check_command(path: &str, what: &str) -> Result<(), SpecError> {
    if !Path::new(path).is_absolute() {
        return err(format!(
            "{what} path {path:?} is not absolute: give the install path, e.g. /usr/bin/{path} (the upgrade re-execs exactly this path)"
        ));
    }
    if path.starts_with("/proc/") {
        return err(format!(
            "{what} path {path:?} points into /proc: after a package upgrade it names the deleted old binary; give the install path"
        ));
    }
    if path.contains(|c: char| c.is_whitespace() || c.is_control() || "\"'\\$".contains(c)) {
        return err(format!(
            "{what} path {path:?} contains whitespace, quotes, '\\', '$' or control characters: install the binary under a plain path"
        ));
    }
    if path == "/" {
        return err(format!("{what} path \"/\" is a directory, not a binary"));
    }
    check_path(path, &format!("{what} path"))
}

/// A `StateDirectory=`/`RuntimeDirectory=` entry: relative, one word of the list.
pub fn check_directory(d: &str, name: &str) -> Result<(), SpecError> {
    let ok = !d.is_empty()
        && !d.starts_with('/')
        && d.split('/')
            .all(|c| !(c.is_empty() || c == "." || c == "..") && c.len() <= NAME_MAX)
        && !d.contains(|c: char| c.is_whitespace() || c.is_control() || "\"'\\:".contains(c));
    if ok {
        Ok(())
    } else {
        err(format!(
            "directory {d:?} must be a relative name like {name} or {name}/sub, without spaces, quotes, '\\' or ':' (systemd puts it under /var/lib or /run)"
        ))
    }
}

/// A user or group name as systemd accepts it without a compatibility warning.
pub fn check_user(what: &str, v: &str) -> Result<(), SpecError> {
    let mut chars = v.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
        && v.len() <= 31;
    if ok {
        Ok(())
    } else {
        err(format!(
            "{what} {v:?} is not a valid user/group name: start with a letter or '_', then letters, digits, '_', '-' (at most 31)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        for ok in ["/usr/bin/app", "/opt/a-b_c.d/x", "/usr/bin/100%"] {
            assert_eq!(check_command(ok, "exec"), Ok(()), "{ok}");
        }
        for bad in [
            "/",
            "/usr/bin/",
            "app",
            "/usr/../bin/x",
            "/usr/./x",
            "/usr//x",
            "/proc/self/exe",
            "/a b",
            "/a\"b",
            "/a\\",
            "/a$b",
            "/a\nb",
        ] {
            assert!(check_command(bad, "exec").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn directories_and_users() {
        assert!(check_directory("app/sub", "app").is_ok());
        for bad in ["", "/abs", "a/../b", "a//b", "a b", "a:b", "a\\", "./a"] {
            assert!(check_directory(bad, "app").is_err(), "{bad:?}");
        }
        assert!(check_user("user", "_svc-1").is_ok());
        for bad in ["", "1abc", "-x", "a.b", "a b", &"a".repeat(32)] {
            assert!(check_user("user", bad).is_err(), "{bad:?}");
        }
    }
}
