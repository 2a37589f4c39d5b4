//! Is the service binary something the guest can run? Checked on the host before anything is
//! built or booted, so a wrong file costs one line instead of a failed boot.
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// ELF `e_machine` values of the architectures Debian ships, by Rust's `ARCH` name.
const MACHINES: [(&str, u16, &str); 9] = [
    ("x86_64", 62, "x86-64"),
    ("x86", 3, "i386"),
    ("aarch64", 183, "ARM aarch64"),
    ("arm", 40, "ARM"),
    ("riscv64", 243, "RISC-V"),
    ("powerpc64", 21, "PowerPC64"),
    ("s390x", 22, "IBM S/390"),
    ("loongarch64", 258, "LoongArch"),
    ("mips64", 8, "MIPS"),
];

fn machine_name(m: u16) -> String {
    MACHINES.iter().find(|(_, n, _)| *n == m).map_or_else(
        || format!("ELF machine {m}"),
        |(_, _, name)| (*name).to_owned(),
    )
}

/// `Ok` for an executable ELF file of this host's architecture or an executable script.
pub fn check(path: &Path, what: &str) -> Result<(), String> {
    let p = path.display();
    let meta = fs::metadata(path).map_err(|e| format!("{what} {p}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{what} {p} is not a regular file"));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{what} {p} is not executable (chmod +x {p})"));
    }
    let mut head = [0u8; 20];
    let n = fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| format!("cannot read {what} {p}: {e}"))?;
    let head = &head[..n];
    if head.starts_with(b"#!") {
        return Ok(());
    }
    // Two fixed-offset header fields (ELF spec, "ELF Header") are all this needs; an ELF
    // parsing crate would be the CLI's largest dependency for them.
    if n < 20 || !head.starts_with(b"\x7fELF") {
        return Err(format!(
            "{what} {p} is neither an ELF executable nor a script starting with #!"
        ));
    }
    let machine = match head[5] {
        2 => u16::from_be_bytes([head[18], head[19]]),
        _ => u16::from_le_bytes([head[18], head[19]]),
    };
    let arch = std::env::consts::ARCH;
    match MACHINES.iter().find(|(a, _, _)| *a == arch) {
        Some((_, want, name)) if *want != machine => Err(format!(
            "{what} {p} is built for {}, but the guest runs {name}: build it for {arch} (e.g. cargo build --target {arch}-unknown-linux-gnu)",
            machine_name(machine)
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(name: &str, bytes: &[u8], mode: u32) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("exuvia-binary-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn elf(machine: u16) -> Vec<u8> {
        let mut h = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0".to_vec();
        h.extend_from_slice(&machine.to_le_bytes());
        h.extend_from_slice(&[0; 44]);
        h
    }

    #[test]
    fn accepts_own_arch_and_scripts() {
        check(&std::env::current_exe().unwrap(), "binary").unwrap();
        check(&file("script", b"#!/bin/sh\nexit 0\n", 0o755), "binary").unwrap();
    }

    #[test]
    fn rejects_other_arch_text_and_mode() {
        let other = if std::env::consts::ARCH == "aarch64" {
            62
        } else {
            183
        };
        let e = check(&file("arm", &elf(other), 0o755), "binary").unwrap_err();
        assert!(e.contains("is built for"), "{e}");
        let e = check(
            &file("text", b"hello world, not a program", 0o755),
            "binary",
        )
        .unwrap_err();
        assert!(e.contains("neither an ELF"), "{e}");
        let e = check(&file("noexec", b"#!/bin/sh\n", 0o644), "binary").unwrap_err();
        assert!(e.contains("not executable"), "{e}");
    }
}
