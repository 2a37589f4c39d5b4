//! The pid file each generation rewrites when it becomes the one accepting (for tools that
//! signal the service by pid, and for systemd's `PIDFile=` in units that still use it).

use std::io;
use std::path::Path;

/// Writes this process's pid to `path` atomically (temp file + rename in the same
/// directory), so a reader never sees a half-written number; on failure (read-only or full
/// file system) the temp file is removed and the old pid file is left as it was.
pub(crate) fn write(path: &Path) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("pid file path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = std::fs::write(&tmp, format!("{}\n", std::process::id()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_atomically_and_cleans_up_on_failure() {
        let dir = std::env::temp_dir().join(format!("exuvia-pidfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("svc.pid");
        super::write(&p).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("{}\n", std::process::id())
        );
        // The target is a directory: rename fails, nothing is left behind.
        let bad = dir.join("sub");
        std::fs::create_dir(&bad).unwrap();
        std::fs::write(bad.join("x"), "").unwrap();
        assert!(super::write(&bad).is_err());
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
