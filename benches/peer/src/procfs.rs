//! Everything the driver observes from outside the servers, through /proc, identically for
//! every contender: which fds of a process still hold the listening socket, its RSS and fd
//! count, and the processes below the driver (it is their subreaper, as systemd would be).
use std::collections::HashSet;
use std::fs;
use std::time::Duration;

/// Inodes of the TCP sockets in LISTEN state on `port` (IPv4), asked through sock_diag
/// netlink with a LISTEN-only state filter. /proc/net/tcp would do, but it lists every
/// TIME_WAIT socket the load leaves behind (tens of thousands): reading it takes ~200 ms of
/// kernel time, which would perturb the very upgrade being measured.
pub fn listen_inodes(port: u16) -> HashSet<u64> {
    listen_inodes_diag(port).unwrap_or_default()
}

fn listen_inodes_diag(port: u16) -> std::io::Result<HashSet<u64>> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const TCP_LISTEN: u32 = 10;
    // SAFETY: plain socket(2); the fd is owned right below.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // nlmsghdr (16 bytes) + inet_diag_req_v2 (56 bytes), native endian except the port.
    let mut req = [0u8; 72];
    req[0..4].copy_from_slice(&72u32.to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    req[6..8].copy_from_slice(&flags.to_ne_bytes());
    req[16] = libc::AF_INET as u8;
    req[17] = libc::IPPROTO_TCP as u8;
    req[20..24].copy_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    // SAFETY: sends our initialised buffer; a zeroed sockaddr_nl addresses the kernel.
    let sent = unsafe {
        let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
        kernel.nl_family = libc::AF_NETLINK as u16;
        libc::sendto(
            fd.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = HashSet::new();
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..10_000 {
        // SAFETY: recv writes at most buf.len() bytes into buf.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let data = &buf[..n as usize];
        let mut off = 0;
        while off + 16 <= data.len() {
            let len =
                u32::from_ne_bytes(data[off..off + 4].try_into().unwrap_or_default()) as usize;
            let kind = u16::from_ne_bytes(data[off + 4..off + 6].try_into().unwrap_or_default());
            if len < 16 || off + len > data.len() {
                return Ok(out);
            }
            match kind as i32 {
                libc::NLMSG_DONE | libc::NLMSG_ERROR => return Ok(out),
                _ => {
                    // inet_diag_msg: family, state, timer, retrans, then the socket id whose
                    // first field is the source port (big endian); the inode is at offset 68.
                    let m = &data[off + 16..off + len];
                    if m.len() >= 72 && u16::from_be_bytes([m[4], m[5]]) == port {
                        out.insert(u32::from_ne_bytes([m[68], m[69], m[70], m[71]]) as u64);
                    }
                }
            }
            off += (len + 3) & !3;
        }
    }
    Ok(out)
}

fn socket_inode(pid: i32, fd: &str) -> Option<u64> {
    let link = fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let s = link.to_str()?;
    s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// The fds of `pid` that refer to one of `inodes`, as (fd, inode).
pub fn fds_holding(pid: i32, inodes: &HashSet<u64>) -> Vec<(String, u64)> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| {
            let fd = e.file_name().to_string_lossy().into_owned();
            let ino = socket_inode(pid, &fd)?;
            inodes.contains(&ino).then_some((fd, ino))
        })
        .collect()
}

/// True while any of `held` still refers to the same socket (one readlink per fd, so it can
/// be polled at a sub-millisecond interval).
pub fn still_holds(pid: i32, held: &[(String, u64)]) -> bool {
    held.iter()
        .any(|(fd, ino)| socket_inode(pid, fd) == Some(*ino))
        // An exiting process's fds are unreadable before they are closed (see `gone`).
        || (state(pid) == Some('Z') && !gone(pid))
}

pub fn fd_count(pid: i32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

fn status_field(pid: i32, key: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

pub fn rss_kib(pid: i32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

/// The private part of RSS: heap, stacks, anonymous mappings (not the shared code pages).
pub fn rss_anon_kib(pid: i32) -> Option<u64> {
    status_field(pid, "RssAnon:")
}

/// Process state letter from /proc/PID/stat (R, S, Z, …), None once reaped.
pub fn state(pid: i32) -> Option<char> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; the state follows the last ')'.
    text.rsplit_once(')')?.1.trim_start().chars().next()
}

/// True once the whole process has exited. A killed process's leader thread can be a zombie
/// while its other threads still exit and hold the fd table (and the listening socket), so a
/// zombie counts as gone only when it has no thread left but the leader.
/// CPU time of the whole process (all threads, user + system), in clock ticks.
pub fn cpu_ticks(pid: i32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    // After the command name: state is field 3, utime 14, stime 15 (proc(5)).
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

pub fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

pub fn gone(pid: i32) -> bool {
    match state(pid) {
        None | Some('X') => true,
        Some('Z') => threads(pid) <= 1,
        Some(_) => false,
    }
}

fn threads(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

fn children(pid: i32, all_threads: bool) -> Vec<i32> {
    let tids: Vec<String> = if all_threads {
        match fs::read_dir(format!("/proc/{pid}/task")) {
            Ok(d) => d
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => return Vec::new(),
        }
    } else {
        vec![pid.to_string()]
    };
    let mut out = Vec::new();
    for tid in tids {
        if let Ok(text) = fs::read_to_string(format!("/proc/{pid}/task/{tid}/children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    out
}

/// Processes below the driver: (live, zombie). The driver spawns from its main thread and is
/// a subreaper, whose orphans go to its main thread, so only that thread's children file is
/// read for it (its load threads have none); server processes are walked thread by thread
/// because ecdysis spawns from a helper thread.
pub fn descendants() -> (Vec<i32>, usize) {
    let me = std::process::id() as i32;
    let mut todo = children(me, false);
    let (mut live, mut zombies) = (Vec::new(), 0);
    let mut seen = HashSet::new();
    while let Some(p) = todo.pop() {
        if !seen.insert(p) || seen.len() > 10_000 {
            continue;
        }
        match state(p) {
            Some('Z') | Some('X') => zombies += 1,
            Some(_) => {
                live.push(p);
                todo.extend(children(p, true));
            }
            None => {}
        }
    }
    (live, zombies)
}

/// Reaps every exited child of the driver (orphans included) until `stop` is set.
pub fn reaper(stop: &std::sync::atomic::AtomicBool) {
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid only writes the status integer we pass.
            let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if r <= 0 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub fn signal(pid: i32, sig: i32) {
    if pid > 1 {
        // SAFETY: kill has no memory effects; pid is one the driver started or that descends from one.
        unsafe { libc::kill(pid, sig) };
    }
}
