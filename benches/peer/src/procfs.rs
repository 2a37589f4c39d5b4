//! Everything the driver observes from outside the servers, through /proc, identically for
//! every contender: which fds of a process still hold the listening socket, its RSS and fd
//! count, and the processes below the driver (it is their subreaper, as systemd would be).
use std::collections::HashSet;
use std::fs;
use std::time::Duration;

/// Inodes of the TCP sockets in LISTEN state on `port` (IPv4, /proc/net/tcp).
pub fn listen_inodes(port: u16) -> HashSet<u64> {
    let want = format!(":{port:04X}");
    let Ok(text) = fs::read_to_string("/proc/net/tcp") else {
        return HashSet::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            (f.len() > 9 && f[1].ends_with(&want) && f[3] == "0A")
                .then(|| f[9].parse().ok())
                .flatten()
        })
        .collect()
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
