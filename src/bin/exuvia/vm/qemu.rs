//! Guests as qemu VMs (`--vm`): a real kernel, a real boot and shutdown, udev, and PID 1
//! without a container manager around it.
//!
//! The rootfs (with a kernel) becomes a raw ext4 image once (`mke2fs -d`: no loop device, no
//! mount), cached next to it; each boot uses `snapshot=on`, so the image never changes. The
//! kernel and initrd boot directly. Everything a run needs is on the kernel command line:
//! the payload is a second small ext4 disk mounted by `systemd.mount-extra=`, the driver is
//! started by `systemd.run=` and powers the VM off when it ends, the serial console is the
//! log. KVM only when /dev/kvm is writable and the CPU has vmx or svm (a /dev/kvm from a
//! software nested hypervisor cannot boot a stock kernel); otherwise TCG, ~10x slower.
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

use super::cleanup::TempDir;
use super::host::{self, Interrupt};
use super::payload::MOUNT;

/// The cached boot files of one kernel rootfs.
pub struct Image {
    dir: PathBuf,
}

/// qemu, from bookworm-backports on a bookworm host (qemu 10 boots faster, and bookworm's 7.2
/// would replace a backports qemu-utils), with private apt lists so the host's sources and
/// packages (systemd!) stay as they are; from the host's own sources elsewhere.
pub fn ensure_qemu(cache: &Path, intr: &Interrupt) -> Result<(), String> {
    host::ensure_tools(&[("mke2fs", "e2fsprogs")], intr)?;
    if host::which("qemu-system-x86_64").is_some() {
        return Ok(());
    }
    if std::env::consts::ARCH != "x86_64" {
        return Err("--vm boots x86-64 guests only; use the container runner (drop --vm)".into());
    }
    let bookworm = fs::read_to_string("/etc/os-release")
        .is_ok_and(|s| s.lines().any(|l| l == "VERSION_CODENAME=bookworm"));
    if !bookworm {
        return host::apt_install(&["qemu-system-x86", "qemu-utils"], &[], intr);
    }
    let dir = cache.join("apt-backports");
    fs::create_dir_all(dir.join("lists/partial"))
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let kr = "/usr/share/keyrings/debian-archive-keyring.gpg";
    let m = "http://deb.debian.org/debian";
    let sources = format!(
        "deb [signed-by={kr}] {m} bookworm main\ndeb [signed-by={kr}] {m} bookworm-updates main\n\
         deb [signed-by={kr}] http://deb.debian.org/debian-security bookworm-security main\n\
         deb [signed-by={kr}] {m} bookworm-backports main\n"
    );
    fs::write(dir.join("sources.list"), sources)
        .map_err(|e| format!("cannot write apt sources: {e}"))?;
    let opts: Vec<String> = [
        format!("Dir::Etc::SourceList={}/sources.list", dir.display()),
        "Dir::Etc::SourceParts=/nonexistent".into(),
        format!("Dir::State::Lists={}/lists", dir.display()),
    ]
    .into_iter()
    .flat_map(|o| ["-o".to_owned(), o])
    .collect();
    let mut upd = Command::new("apt-get");
    upd.args(["-q", "-o", "DPkg::Lock::Timeout=300"])
        .args(&opts)
        .arg("update");
    let out = host::run(&mut upd, Duration::from_secs(600), intr)?;
    if !out.ok() {
        return Err(format!(
            "cannot reach the Debian mirror for qemu: {}",
            out.why(2)
        ));
    }
    // pkg/release picks backports for these packages only; never -t bookworm-backports.
    let pkgs = [
        "qemu-system-x86",
        "qemu-system-common",
        "qemu-system-data",
        "seabios",
        "qemu-utils",
    ]
    .map(|p| format!("{p}/bookworm-backports"));
    let refs: Vec<&str> = pkgs.iter().map(String::as_str).collect();
    host::apt_install(&refs, &opts, intr)
}

impl Image {
    /// Kernel, initrd and root image for `rootfs`, built once (its name is keyed already).
    pub fn ensure(cache: &Path, rootfs: &Path, intr: &Interrupt) -> Result<Image, String> {
        let base = rootfs
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("rootfs");
        let dir = cache.join(format!("vm-{base}"));
        let lock_path = cache.join(format!(".lock-vm-{base}"));
        let lock = File::create(&lock_path)
            .map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
        let _lock = Flock::lock(lock, FlockArg::LockExclusive)
            .map_err(|(_, e)| format!("cannot lock {}: {e}", lock_path.display()))?;
        if dir.join("root.img").is_file() {
            return Ok(Image { dir });
        }
        let boot = rootfs.join("boot");
        let mut kernels: Vec<String> = fs::read_dir(&boot)
            .map_err(|e| format!("cannot read {}: {e}", boot.display()))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("vmlinuz-"))
            .collect();
        kernels.sort();
        let kernel = kernels
            .pop()
            .ok_or_else(|| format!("no kernel in {}", boot.display()))?;
        let version = kernel.trim_start_matches("vmlinuz-");
        let tmp = TempDir::new("exuvia-vm-image")?;
        let cp = |from: PathBuf, to: &str| {
            fs::copy(&from, tmp.0.join(to))
                .map_err(|e| format!("cannot copy {}: {e}", from.display()))
        };
        cp(boot.join(&kernel), "vmlinuz")?;
        cp(boot.join(format!("initrd.img-{version}")), "initrd.img")?;
        let mut mk = Command::new("mke2fs");
        mk.args(["-q", "-t", "ext4", "-L", "root", "-d"])
            .arg(rootfs)
            .arg(tmp.0.join("root.img"))
            .arg("3G");
        let out = host::run(&mut mk, Duration::from_secs(300), intr)?;
        if !out.ok() {
            return Err(format!("cannot build the VM image: mke2fs: {}", out.why(2)));
        }
        // Same filesystem as the cache? Not necessarily (temp dir): copy into a sibling, rename.
        let staging = cache.join(format!(".vm-{base}.partial"));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging)
            .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
        for f in ["vmlinuz", "initrd.img", "root.img"] {
            if fs::rename(tmp.0.join(f), staging.join(f)).is_err() {
                let ok = Command::new("cp")
                    .arg("--sparse=always")
                    .arg(tmp.0.join(f))
                    .arg(staging.join(f))
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    let _ = fs::remove_dir_all(&staging);
                    return Err(format!("cannot copy the VM image into {}", cache.display()));
                }
            }
        }
        fs::rename(&staging, &dir)
            .map_err(|e| format!("cannot move the VM image into {}: {e}", dir.display()))?;
        Ok(Image { dir })
    }

    /// Boots once for `scenario`; the serial console goes to `log_path`.
    pub fn boot(
        &self,
        payload: &Path,
        scenario: &str,
        log_path: &Path,
        timeout: Duration,
        intr: &Interrupt,
    ) -> Result<Option<ExitStatus>, String> {
        let work = TempDir::new("exuvia-vm-disk")?;
        let disk = work.0.join("payload.img");
        // The payload holds the judge (tens of MB): size the disk after it.
        let du = Command::new("du").args(["-sm"]).arg(payload).output().ok();
        let mb = du
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(200);
        let mut mk = Command::new("mke2fs");
        mk.args(["-q", "-t", "ext4", "-L", "payload", "-d"])
            .arg(payload)
            .arg(&disk)
            .arg(format!("{}M", (mb * 2).max(64)));
        let out = host::run(&mut mk, Duration::from_secs(120), intr)?;
        if !out.ok() {
            return Err(format!(
                "cannot build the payload disk: mke2fs: {}",
                out.why(2)
            ));
        }
        let kvm = fs::OpenOptions::new().write(true).open("/dev/kvm").is_ok()
            && fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| {
                c.lines()
                    .filter(|l| l.starts_with("flags"))
                    .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
            });
        let append = [
            "root=/dev/vda rw console=ttyS0 quiet loglevel=3 systemd.show_status=error".to_owned(),
            format!("systemd.mount-extra=LABEL=payload:{MOUNT}:ext4:ro"),
            format!("systemd.run={MOUNT}/driver.sh"),
            "systemd.run_success_action=poweroff systemd.run_failure_action=poweroff".to_owned(),
            format!("systemd.setenv=SCENARIO={scenario}"),
        ]
        .join(" ");
        eprintln!(
            "exuvia vm: booting qemu ({})",
            if kvm { "KVM" } else { "TCG, no usable KVM" }
        );
        let log = File::create(log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let mut q = Command::new("qemu-system-x86_64");
        q.args(["-nodefaults", "-no-reboot", "-display", "none", "-M", "pc"])
            .args(["-accel", if kvm { "kvm" } else { "tcg" }]);
        if kvm {
            q.args(["-cpu", "host"]);
        }
        q.args(["-smp", "2", "-m", "1024", "-kernel"])
            .arg(self.dir.join("vmlinuz"))
            .arg("-initrd")
            .arg(self.dir.join("initrd.img"))
            .args(["-append", &append, "-drive"])
            .arg(format!(
                "file={},format=raw,if=virtio,snapshot=on",
                self.dir.join("root.img").display()
            ))
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=virtio,readonly=on",
                disk.display()
            ))
            // The console and qemu's own messages, in order, in one log.
            .args(["-serial", "stdio"]);
        let st = host::run_logged(&mut q, &log, timeout, intr)?;
        drop(work);
        Ok(st)
    }
}
