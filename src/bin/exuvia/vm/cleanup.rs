//! Guards for what a run creates on the host besides processes: a cgroup per container and
//! scratch directories. Each is undone on drop, so every early return, error and interrupt
//! leaves the host as it was.
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A cgroup of our own for one container. nspawn puts the container at `<its cgroup>/payload`,
/// so two containers started from the same cgroup would share a tree and see, stop and kill
/// each other's services; one cgroup each also lets us end everything in it at once.
pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    pub fn create(name: &str) -> Result<Cgroup, String> {
        let root =
            super::host::cgroup2_root().ok_or("no cgroup v2 hierarchy under /sys/fs/cgroup")?;
        let path = root.join(name);
        fs::create_dir(&path)
            .map_err(|e| format!("cannot create the cgroup {}: {e}", path.display()))?;
        Ok(Cgroup { path })
    }

    fn procs(&self) -> usize {
        walk(&self.path)
            .iter()
            .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
            .map(|s| s.lines().filter(|l| !l.trim().is_empty()).count())
            .sum()
    }
}

/// The directory and every cgroup below it, deepest last.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(rd) = fs::read_dir(&out[i]) {
            let mut subs: Vec<PathBuf> = rd
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect();
            subs.sort();
            out.extend(subs);
        }
        i += 1;
    }
    out
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Everything in it was started by us (the container); cgroup.kill ends it at once
        // (Linux 5.14+), the walk below is the fallback for older kernels.
        if self.procs() > 0 {
            if fs::write(self.path.join("cgroup.kill"), "1").is_err() {
                for d in walk(&self.path) {
                    if let Ok(s) = fs::read_to_string(d.join("cgroup.procs")) {
                        for pid in s.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                    }
                }
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.procs() > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for d in walk(&self.path).iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
}

/// A scratch directory, removed with its contents on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Result<TempDir, String> {
        let base = std::env::temp_dir().join(format!("{prefix}.XXXXXX"));
        nix::unistd::mkdtemp(&base).map(TempDir).map_err(|e| {
            format!(
                "cannot create a scratch directory under {}: {e}",
                std::env::temp_dir().display()
            )
        })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        unmount_under(&self.0);
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Lazily unmounts whatever is still mounted under `dir` (deepest first): a build that was
/// killed may leave its chroot's /proc or /dev mounted, and deleting through those would
/// reach the host's.
pub fn unmount_under(dir: &Path) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let _ = std::process::Command::new("umount")
            .arg("--lazy")
            .arg(&p)
            .status();
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let n = u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?');
            out.push(n as char);
            i += 4;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_unescape() {
        assert_eq!(super::unescape(r"/a\040b"), "/a b");
        assert_eq!(super::unescape("/plain"), "/plain");
    }
}
