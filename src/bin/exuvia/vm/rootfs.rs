//! Debian root filesystems whose systemd boots as PID 1 in a container or VM, built once per
//! (suite, package list) by mmdebstrap and cached.
//!
//! Why a cache outside the project: a rootfs is ~200 MB and takes 15–60 s to build, CI
//! checkouts are fresh, and the machine (so /var/cache) is often kept. The cache directory is
//! `$EXUVIA_CACHE`, default `/var/cache/exuvia`; each entry is `rootfs-SUITE[-kernel]-KEY`,
//! KEY hashing the recipe version, the suite, the package list and extra apt sources, so a
//! different package list never reuses an entry. Builds hold a flock per entry and go
//! through a temporary directory renamed into place, so concurrent callers are safe and a
//! failed or interrupted build leaves nothing behind.
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

use super::host::{self, Interrupt};

/// Bumped when the recipe changes in a way the package list does not show.
const RECIPE_VERSION: &str = "1";
/// Bound on one mmdebstrap run (a cold build takes under a minute; mirrors can be slow).
const BUILD_TIMEOUT: Duration = Duration::from_secs(1200);
/// What PID 1, the in-guest driver (bash, ss, python3 for JSON) and the stand-ins need.
const BASE: [&str; 6] = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "procps",
    "python3",
];

/// A Debian suite and the systemd version it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suite {
    pub name: &'static str,
    /// The version asked for (for `262`: the newest, whatever sid has today).
    pub nominal: u32,
}

impl Suite {
    /// `252` bookworm, `254` bookworm-backports, `257` trixie, `258`+ sid (the newest); suite
    /// names are accepted as well.
    pub fn parse(token: &str) -> Result<Suite, String> {
        let t = token.trim();
        let s = |name, nominal| Ok(Suite { name, nominal });
        match t {
            "252" | "bookworm" => s("bookworm", 252),
            "254" | "bookworm-backports" => s("bookworm-backports", 254),
            "257" | "trixie" => s("trixie", 257),
            "sid" | "unstable" => s("sid", 262),
            _ => match t.parse::<u32>() {
                Ok(v) if (258..1000).contains(&v) => s("sid", v),
                _ => Err(format!(
                    "unknown systemd version or suite {t:?}: use 252 (bookworm), 254 (bookworm-backports), 257 (trixie) or 262 (sid, the newest)"
                )),
            },
        }
    }
}

/// The cache directory (`$EXUVIA_CACHE`, default /var/cache/exuvia).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("EXUVIA_CACHE")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/var/cache/exuvia"), PathBuf::from)
}

fn mirror() -> String {
    std::env::var("EXUVIA_DEBIAN_MIRROR")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "http://deb.debian.org/debian".into())
}

struct Recipe {
    /// The suite mmdebstrap installs.
    dist: &'static str,
    packages: Vec<String>,
    extra_sources: Vec<String>,
}

fn recipe(suite: &Suite, kernel: bool, extra: &[String]) -> Recipe {
    let mut r = Recipe {
        dist: suite.name,
        packages: BASE.iter().map(|p| p.to_string()).collect(),
        extra_sources: Vec::new(),
    };
    if suite.name == "bookworm-backports" {
        // Bookworm's userland with systemd 254 from backports.
        r.dist = "bookworm";
        r.extra_sources = vec![format!("deb {} bookworm-backports main", mirror())];
        r.packages = [
            "systemd",
            "systemd-sysv",
            "libsystemd0",
            "libudev1",
            "libsystemd-shared",
        ]
        .iter()
        .map(|p| format!("{p}/bookworm-backports"))
        .chain(["dbus", "iproute2", "procps", "python3"].map(String::from))
        .collect();
    }
    if kernel {
        // udev: a booted kernel's block devices only become .device units (for the payload
        // disk's systemd.mount-extra=) through udev.
        r.packages
            .extend(["udev", "linux-image-amd64"].map(String::from));
    }
    let mut extra: Vec<String> = extra.to_vec();
    extra.sort();
    extra.dedup();
    r.packages.extend(
        extra
            .into_iter()
            .filter(|p| !r.packages.contains(p))
            .collect::<Vec<_>>(),
    );
    r
}

/// Checks a `--package` argument: a Debian package name (optionally `/release`).
pub fn check_package(p: &str) -> Result<(), String> {
    let ok = !p.is_empty()
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-./".contains(c))
        && p.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid package name {p:?}: use a Debian package name such as nginx"
        ))
    }
}

/// The cache entry's name, as `rootfs-SUITE[-kernel]-KEY`.
fn entry_name(suite: &Suite, kernel: bool, r: &Recipe) -> String {
    let mut h = Sha256::new();
    for line in [RECIPE_VERSION, suite.name]
        .into_iter()
        .chain(r.packages.iter().map(String::as_str))
        .chain(r.extra_sources.iter().map(String::as_str))
    {
        h.update(line.as_bytes());
        h.update(b"\n");
    }
    let key: String = h
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "rootfs-{}{}-{key}",
        suite.name,
        if kernel { "-kernel" } else { "" }
    )
}

/// The cached rootfs for `suite` (+ `extra` packages, + a kernel for qemu), built if needed.
pub fn ensure(
    suite: &Suite,
    kernel: bool,
    extra: &[String],
    intr: &Interrupt,
) -> Result<PathBuf, String> {
    host::ensure_tools(
        &[
            ("mmdebstrap", "mmdebstrap"),
            ("gpg", "gpg"),
            ("systemd-nspawn", "systemd-container"),
            (
                "/usr/share/keyrings/debian-archive-keyring.gpg",
                "debian-archive-keyring",
            ),
        ],
        intr,
    )?;
    let r = recipe(suite, kernel, extra);
    let cache = cache_dir();
    fs::create_dir_all(&cache).map_err(|e| {
        format!(
            "cannot create the cache {}: {e} (set EXUVIA_CACHE)",
            cache.display()
        )
    })?;
    let name = entry_name(suite, kernel, &r);
    let dest = cache.join(&name);
    let lock_path = cache.join(format!(".lock-{}", name.trim_start_matches("rootfs-")));
    let lock = File::create(&lock_path)
        .map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    let _lock = Flock::lock(lock, FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("cannot lock {}: {e}", lock_path.display()))?;
    if dest.is_dir() {
        return Ok(dest);
    }
    let tmp = Building::new(&cache, &name)?;
    let t0 = Instant::now();
    eprintln!(
        "exuvia vm: building the {} rootfs ({}) in {}",
        suite.name,
        r.packages.join(","),
        cache.display()
    );
    let mut c = Command::new("mmdebstrap");
    c.args(["--variant=apt", "--mode=root", "--components=main"])
        .arg(format!("--include={}", r.packages.join(",")))
        .arg("--aptopt=Acquire::Retries \"3\"")
        // sid's Release has a 7-day Valid-Until; a mirror snapshot or a skewed clock must not
        // break the build (signatures are still checked).
        .arg("--aptopt=Acquire::Check-Valid-Until \"false\"")
        .arg("--dpkgopt=path-exclude=/usr/share/{doc,man,locale,info}/*")
        .arg("--dpkgopt=path-include=/usr/share/locale/locale.alias")
        .arg(r.dist)
        .arg(&tmp.0);
    if r.extra_sources.is_empty() {
        c.arg(mirror());
    } else {
        c.arg(format!("deb {} {} main", mirror(), r.dist))
            .args(&r.extra_sources);
    }
    let out = host::run(&mut c, BUILD_TIMEOUT, intr)?;
    if intr.hit() {
        return Err("interrupted while building the rootfs".into());
    }
    if !out.ok() {
        return Err(format!(
            "cannot build the {} rootfs from {}: {}; check the suite and the package names, and that the mirror is reachable (EXUVIA_DEBIAN_MIRROR)",
            suite.name,
            mirror(),
            apt_error(&out.stderr).unwrap_or_else(|| out.why(2))
        ));
    }
    // An initialised machine-id would be shared by every boot of this rootfs; empty means
    // "generate a transient one at boot".
    fs::write(tmp.0.join("etc/machine-id"), b"")
        .map_err(|e| format!("cannot reset machine-id: {e}"))?;
    let _ = fs::remove_file(tmp.0.join("var/lib/dbus/machine-id"));
    // Nothing in the guest may wait for a network or a getty, or start timers mid-test.
    let mask = host::run(
        Command::new("chroot").arg(&tmp.0).args([
            "systemctl",
            "mask",
            "-q",
            "console-getty.service",
            "getty@.service",
            "systemd-networkd-wait-online.service",
            "apt-daily.timer",
            "apt-daily-upgrade.timer",
            "dpkg-db-backup.timer",
            "e2scrub_all.timer",
            "fstrim.timer",
        ]),
        Duration::from_secs(60),
        intr,
    )?;
    if !mask.ok() {
        return Err(format!(
            "cannot prepare the rootfs (systemctl mask): {}",
            mask.why(2)
        ));
    }
    fs::rename(&tmp.0, &dest)
        .map_err(|e| format!("cannot move the rootfs into {}: {e}", dest.display()))?;
    tmp.forget();
    eprintln!(
        "exuvia vm: built {} in {:.1} s",
        dest.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(dest)
}

/// The most telling apt/mmdebstrap error line.
fn apt_error(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr.lines().map(str::trim).collect();
    let pick = |pat: &str| {
        lines
            .iter()
            .find(|l| l.contains(pat))
            .map(|l| l.to_string())
    };
    pick("Unable to locate package")
        .or_else(|| pick("Could not resolve"))
        .or_else(|| pick("Failed to fetch"))
        .or_else(|| pick("does not have a Release file"))
        .or_else(|| pick("E: "))
        .or_else(|| {
            lines
                .iter()
                .rev()
                .find(|l| l.starts_with("E:") || l.contains("error"))
                .map(|l| l.to_string())
        })
}

/// A build directory, removed (without crossing into anything still mounted in it) unless
/// the build succeeded.
struct Building(PathBuf, bool);

impl Building {
    fn new(cache: &Path, name: &str) -> Result<Building, String> {
        let tmpl = cache.join(format!(".build-{name}.XXXXXX"));
        nix::unistd::mkdtemp(&tmpl)
            .map(|p| Building(p, true))
            .map_err(|e| {
                format!(
                    "cannot create a build directory in {}: {e}",
                    cache.display()
                )
            })
    }

    fn forget(mut self) {
        self.1 = false;
    }
}

impl Drop for Building {
    fn drop(&mut self) {
        if !self.1 {
            return;
        }
        super::cleanup::unmount_under(&self.0);
        // --one-file-system: never into a mount (mmdebstrap's /proc, /dev) that survived.
        let _ = Command::new("rm")
            .args(["-rf", "--one-file-system", "--"])
            .arg(&self.0)
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_matches_the_shell_recipe() {
        // tests/systemd/rootfs.sh built this entry name for trixie; caches stay valid.
        let t = Suite::parse("257").unwrap();
        assert_eq!(
            entry_name(&t, false, &recipe(&t, false, &[])),
            "rootfs-trixie-f5babd111a42"
        );
    }

    #[test]
    fn versions_map_to_suites() {
        assert_eq!(Suite::parse("252").unwrap().name, "bookworm");
        assert_eq!(Suite::parse("254").unwrap().name, "bookworm-backports");
        assert_eq!(Suite::parse("trixie").unwrap().nominal, 257);
        assert_eq!(Suite::parse("262").unwrap().name, "sid");
        assert!(Suite::parse("251").is_err());
        assert!(Suite::parse("jessie").is_err());
    }

    #[test]
    fn packages_change_the_key() {
        let t = Suite::parse("trixie").unwrap();
        let a = entry_name(&t, false, &recipe(&t, false, &[]));
        let b = entry_name(&t, false, &recipe(&t, false, &["nginx".into()]));
        assert_ne!(a, b);
        assert!(check_package("nginx").is_ok());
        assert!(check_package("-rf").is_err());
        assert!(check_package("a b").is_err());
    }
}
