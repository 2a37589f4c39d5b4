//! All-or-nothing output: every file is checked, then written to a temporary sibling and
//! renamed into place, so a refused or failed run leaves the directory as it was and a reader
//! (systemd, a package build) never sees a half-written unit.
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub fn write_all(
    dir: &Path,
    files: &[(String, String)],
    force: bool,
) -> Result<Vec<PathBuf>, String> {
    if !force {
        if let Some((name, _)) = files.iter().find(|(name, _)| dir.join(name).exists()) {
            return Err(format!(
                "{} already exists: pass --force to overwrite it (nothing was written)",
                dir.join(name).display()
            ));
        }
    }
    fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create output directory {}: {e}", dir.display()))?;
    let mut staged = Vec::new();
    let result = (|| {
        for (name, text) in files {
            let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
            staged.push(tmp.clone());
            let mut f = fs::File::create(&tmp)
                .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
            f.write_all(text.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        }
        let mut written = Vec::new();
        for ((name, _), tmp) in files.iter().zip(&staged) {
            let target = dir.join(name);
            fs::rename(tmp, &target)
                .map_err(|e| format!("cannot move {} into place: {e}", target.display()))?;
            written.push(target);
        }
        Ok(written)
    })();
    if result.is_err() {
        for tmp in &staged {
            let _ = fs::remove_file(tmp);
        }
    }
    result
}
