//! What `check` and `demo` show while they run, and how they notice Ctrl-C.
//!
//! A check can run for minutes, so it says where it is: a redrawn progress bar when stderr is
//! a terminal, plain periodic lines otherwise (CI logs). Ctrl-C must not leave the service
//! running — it lives in its own session, so the terminal's SIGINT never reaches it — hence
//! SIGINT and SIGTERM are blocked and read from a signalfd, and the run winds down normally
//! (stop the service, print what was measured) when one arrives.
use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use exuvia_testing::load::LoadHandle;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// Process-count sampling period: a handover can be over in milliseconds.
const SAMPLE: Duration = Duration::from_millis(10);
/// Redraw period on a terminal.
const TTY_TICK: Duration = Duration::from_millis(100);
/// Line period otherwise.
const PLAIN_EVERY: Duration = Duration::from_secs(2);
const BAR: usize = 24;

/// Progress display and interruption flag shared by the driver and the ticker thread.
pub struct Ui {
    label: String,
    tty: bool,
    quiet: bool,
    /// Serialises stderr writes; also held while the service's stdio is redirected.
    pub out: Mutex<()>,
    abort: AtomicBool,
    signals: Option<SignalFd>,
    reloads_done: AtomicU32,
    reloads_total: AtomicU32,
    peak: AtomicUsize,
    started: Mutex<Option<(Instant, Duration)>>,
}

impl Ui {
    /// Must be called before any thread is started, so every thread inherits the blocked
    /// signals and only the signalfd sees them.
    pub fn new(label: &str, quiet: bool) -> Ui {
        let mut set = SigSet::empty();
        set.add(Signal::SIGINT);
        set.add(Signal::SIGTERM);
        // Without the signalfd Ctrl-C still works, it just kills us the default way.
        let signals = set.thread_block().ok().and_then(|()| {
            SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).ok()
        });
        Ui {
            label: label.to_owned(),
            tty: std::io::stderr().is_terminal(),
            quiet,
            out: Mutex::new(()),
            abort: AtomicBool::new(false),
            signals,
            reloads_done: AtomicU32::new(0),
            reloads_total: AtomicU32::new(0),
            peak: AtomicUsize::new(0),
            started: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True once SIGINT/SIGTERM arrived.
    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// Sleeps up to `d`; returns false (early) if interrupted.
    pub fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if self.poll_signal(Duration::ZERO) {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(20)));
        }
    }

    /// Consumes pending signals (waiting up to `wait`); true if the run is interrupted.
    fn poll_signal(&self, wait: Duration) -> bool {
        if let Some(fd) = &self.signals {
            let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::from(ms)).is_ok_and(|n| n > 0) {
                while let Ok(Some(_)) = fd.read_signal() {
                    self.abort.store(true, Ordering::Relaxed);
                }
            }
        } else {
            std::thread::sleep(wait);
        }
        self.aborted()
    }

    /// The run's shape, for the bar.
    pub fn begin(&self, reloads: u32, expected: Duration) {
        self.reloads_total.store(reloads, Ordering::Relaxed);
        *self.started.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), expected));
    }

    pub fn reload_done(&self) {
        self.reloads_done.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a process count sample; returns the peak so far.
    pub fn sample_processes(&self, n: usize) -> usize {
        self.peak.fetch_max(n, Ordering::Relaxed).max(n)
    }

    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// A line that stays (reload results, phases).
    pub fn event(&self, msg: &str) {
        if self.quiet {
            return;
        }
        let _g = self.lock();
        let mut e = std::io::stderr().lock();
        let clear = if self.tty { "\r\x1b[K" } else { "" };
        let _ = writeln!(e, "{clear}{}: {msg}", self.label);
    }

    /// Runs until `done`: samples processes, redraws the bar, watches for signals.
    pub fn tick_loop(
        &self,
        load: &LoadHandle,
        processes: &(dyn Fn() -> Option<usize> + Sync),
        done: &AtomicBool,
    ) {
        let mut last_line = Instant::now();
        let mut last_draw = Instant::now();
        while !done.load(Ordering::Relaxed) {
            self.poll_signal(SAMPLE);
            let procs = processes().map(|n| self.sample_processes(n));
            if self.quiet || last_draw.elapsed() < TTY_TICK {
                continue;
            }
            last_draw = Instant::now();
            let p = load.progress();
            let (elapsed, frac) = match *self.started.lock().unwrap_or_else(|e| e.into_inner()) {
                Some((t, exp)) => {
                    let e = t.elapsed();
                    (
                        e,
                        (e.as_secs_f64() / exp.as_secs_f64().max(0.001)).min(0.99),
                    )
                }
                None => (Duration::ZERO, 0.0),
            };
            let retried = if p.retried > 0 {
                format!("  RETRIED {}", p.retried)
            } else {
                String::new()
            };
            let status = format!(
                "{:.1}s  reload {}/{}  ok {}  failed {}{retried}  processes {}",
                elapsed.as_secs_f64(),
                self.reloads_done.load(Ordering::Relaxed),
                self.reloads_total.load(Ordering::Relaxed),
                p.ok,
                p.failed,
                procs.map_or("?".into(), |n| n.to_string()),
            );
            let _g = self.lock();
            let mut e = std::io::stderr().lock();
            if self.tty {
                let fill = (frac * BAR as f64) as usize;
                let _ = write!(
                    e,
                    "\r\x1b[K{} [{}{}] {status}",
                    self.label,
                    "#".repeat(fill),
                    "-".repeat(BAR - fill)
                );
                let _ = e.flush();
            } else if last_line.elapsed() >= PLAIN_EVERY {
                last_line = Instant::now();
                let _ = writeln!(e, "{}: {status}", self.label);
            }
        }
        if self.tty && !self.quiet {
            let _g = self.lock();
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}
