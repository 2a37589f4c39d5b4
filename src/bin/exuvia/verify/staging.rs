//! Staging units for the analyzer of another root (`--root`): one fresh directory under the
//! root's `tmp/`, the units and their siblings copied into it, and each `Exec*=` binary the
//! root lacks replaced by a placeholder in the *copy* — never a file the unit names.
use std::fs;
use std::path::{Path, PathBuf};

const UNIT_SUFFIXES: &[&str] = &["service", "socket", "target", "timer", "path", "mount"];

/// The one directory this run creates inside the root, removed (with everything in it) on
/// drop, whatever happened. Its name is fresh, so concurrent runs never meet.
pub(super) struct Staging {
    /// On the host.
    pub(super) dir: PathBuf,
    /// As the analyzer inside the chroot sees it.
    pub(super) inner: String,
    placeholders: usize,
}

impl Staging {
    pub(super) fn create(root: &Path) -> Result<Staging, String> {
        let hint = "(is --root a systemd root filesystem, and are you root?)";
        let root = fs::canonicalize(root)
            .map_err(|e| format!("cannot resolve {}: {e} {hint}", root.display()))?;
        let tmp = root.join("tmp");
        match fs::symlink_metadata(&tmp) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "{} is not a directory (a symlink is refused: it could lead out of the root)",
                    tmp.display()
                ));
            }
            Err(e) => return Err(format!("cannot use {}: {e} {hint}", tmp.display())),
        }
        let dir = fresh_dir(&tmp)
            .map_err(|e| format!("cannot create a directory in {}: {e} {hint}", tmp.display()))?;
        let staging = Staging {
            inner: format!(
                "/tmp/{}",
                dir.file_name().and_then(|n| n.to_str()).unwrap_or_default()
            ),
            dir,
            placeholders: 0,
        };
        // Belt and braces against a root whose tmp/ was swapped for a link meanwhile.
        let real = fs::canonicalize(&staging.dir)
            .map_err(|e| format!("cannot resolve {}: {e}", staging.dir.display()))?;
        if !real.starts_with(&root) {
            return Err(format!("{} leads out of the root", staging.dir.display()));
        }
        Ok(staging)
    }

    /// A fresh executable that exits 0, inside the staging directory: (host path, inner path).
    pub(super) fn placeholder(&mut self) -> Result<String, String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        self.placeholders += 1;
        let name = format!("exec-{}", self.placeholders);
        let host = self.dir.join(&name);
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(&host)
            .and_then(|mut f| f.write_all(b"#!/bin/sh\nexit 0\n"))
            .map_err(|e| format!("cannot create placeholder {}: {e}", host.display()))?;
        Ok(format!("{}/{name}", self.inner))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // remove_dir_all does not follow symlinks, and the directory is our own.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

pub(super) fn copy_with_siblings(path: &Path, dir: &Path) -> Result<(), String> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let siblings =
        fs::read_dir(parent).map_err(|e| format!("cannot list {}: {e}", parent.display()))?;
    for entry in siblings.flatten() {
        let p = entry.path();
        let is_unit = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| UNIT_SUFFIXES.contains(&e));
        if (is_unit && p.is_file()) || p == path {
            let target = dir.join(entry.file_name());
            fs::copy(&p, &target)
                .map_err(|e| format!("cannot copy {} into the root: {e}", p.display()))?;
        }
    }
    Ok(())
}

/// A new directory `exuvia-verify-…` in `parent`: mkdir(2) never follows a link at the last
/// component and fails on any existing name, so this creates and owns exactly one directory.
fn fresh_dir(parent: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut last = std::io::Error::other("no attempt");
    for attempt in 0..16u32 {
        let dir = parent.join(format!(
            "exuvia-verify-{}-{:08x}",
            std::process::id(),
            nanos.wrapping_add(attempt.wrapping_mul(0x9e37_79b9))
        ));
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// One unit file as given and as the analyzer sees it.
pub(super) struct Staged {
    pub(super) path: PathBuf,
    /// The path handed to the analyzer (inside the chroot with --root).
    pub(super) inner: String,
    /// The staged copy on the host, with --root.
    pub(super) copy: Option<PathBuf>,
    /// (placeholder as the analyzer sees it, the binary the unit names)
    pub(super) placeholders: Vec<(String, String)>,
}

impl Staged {
    /// An analyzer line in the user's terms: their path, their binaries.
    pub(super) fn user_words(&self, line: &str) -> String {
        let mut line = line.replace(self.inner.as_str(), &self.path.display().to_string());
        for (placeholder, bin) in &self.placeholders {
            line = line.replace(placeholder.as_str(), bin);
        }
        line
    }
}

/// No `.` or `..` component: systemd refuses such Exec paths, and exuvia will not look one up.
pub(super) fn is_normalized(word: &str) -> bool {
    !word.split('/').any(|c| c == "." || c == "..")
}

/// `text` with the command `word` of the `Exec*=` entry starting at 1-based `line` replaced by
/// `with` (prefix characters and arguments kept); None if the line does not hold it.
pub(super) fn point_exec_at(text: &str, line: usize, word: &str, with: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + with.len());
    let mut found = false;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let (key, value) = l.split_once('=')?;
            let at = value.find(word)?;
            out.push_str(key);
            out.push('=');
            out.push_str(&value[..at]);
            out.push_str(with);
            out.push_str(&value[at + word.len()..]);
            found = true;
        } else {
            out.push_str(l);
        }
    }
    found.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn staging_points_the_copy_at_a_placeholder() {
        let text =
            "[Service]\nExecStart=/usr/bin/app --x /usr/bin/app\nExecReload=-/usr/bin/app reload\n";
        assert_eq!(
            point_exec_at(text, 3, "/usr/bin/app", "/tmp/s/exec-1").as_deref(),
            Some(
                "[Service]\nExecStart=/usr/bin/app --x /usr/bin/app\nExecReload=-/tmp/s/exec-1 reload\n"
            )
        );
        assert_eq!(point_exec_at(text, 1, "/usr/bin/app", "/x"), None);
        assert!(is_normalized("/usr/bin/app") && is_normalized("app"));
        assert!(!is_normalized("/../../etc/shadow") && !is_normalized("/usr/./bin/x"));
    }

    #[test]
    fn staging_refuses_a_tmp_that_leads_out_of_the_root() {
        let base = std::env::temp_dir().join(format!("exuvia-verify-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let (root, outside) = (base.join("root"), base.join("outside"));
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("tmp")).unwrap();
        let err = Staging::create(&root)
            .err()
            .expect("a symlinked tmp is refused");
        assert!(err.contains("symlink"), "{err}");
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing written outside"
        );

        fs::remove_file(root.join("tmp")).unwrap();
        fs::create_dir(root.join("tmp")).unwrap();
        let dir = {
            let mut st = Staging::create(&root).unwrap();
            let p = st.placeholder().unwrap();
            assert!(p.starts_with(&st.inner) && st.inner.starts_with("/tmp/exuvia-verify-"));
            st.dir.clone()
        };
        assert!(!dir.exists(), "the staging directory is removed on drop");
        fs::remove_dir_all(&base).unwrap();
    }
}
