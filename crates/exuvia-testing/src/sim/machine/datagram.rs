//! What one notify datagram does to the unit: systemd's reading of each field (who may send
//! it, `MAINPID=`, `MONOTONIC_USEC=`, the state fields, fds and the rest), with the rule
//! checks that go with each. The transitions it triggers are in `mod.rs`.

use std::os::fd::OwnedFd;
use std::time::Duration;

use super::{FUTURE_SLACK, Inner, StartFailure, Timer};
use crate::sim::proto::{self, FLAG_FIELDS, Fields, Message, Rule, monotonic_now};
use crate::sim::socket::Received;
use crate::sim::types::{NotifyAccess, ReloadInitiator, ReloadResult, State};
use crate::sim::unit::{pidfd_pid, proc_stat};

impl Inner {
    pub(crate) fn on_datagram(&mut self, rx: Received) {
        let text = String::from_utf8_lossy(&rx.data).into_owned();
        let authorized = self.authorized(rx.pid);
        self.messages.push(Message {
            datagram: text.clone(),
            sender_pid: rx.pid,
            sender_uid: rx.uid,
            at: monotonic_now(),
            fds: rx.fds.len(),
            authorized,
        });
        let ev = Some((text.as_str(), rx.pid));
        if rx.truncated {
            self.violate(
                Rule::MalformedDatagram,
                ev,
                "truncated (longer than 4096 bytes or too many fds)",
            );
            return;
        }
        let fields = match proto::parse(&rx.data) {
            Ok(f) => f,
            Err(why) => return self.violate(Rule::MalformedDatagram, ev, why),
        };
        // systemd answers BARRIER=1 in the manager itself, before looking for a unit or
        // checking NotifyAccess= (manager_process_barrier_fd): anyone may ask, and the
        // datagram must carry nothing else. Dropping its fd is the acknowledgement.
        if fields.flag("BARRIER") {
            if fields.pairs.len() != 1 || rx.fds.len() != 1 {
                let detail = format!(
                    "{} field(s), {} fd(s): systemd ignores everything else in it",
                    fields.pairs.len(),
                    rx.fds.len()
                );
                self.violate(Rule::MalformedField, ev, detail);
            }
            return;
        }
        if !authorized {
            let detail = format!(
                "NotifyAccess={:?}, main pid {:?}, sender {}",
                self.notify_access, self.main_pid, rx.pid
            );
            self.violate(Rule::Unauthorized, ev, detail);
            if fields.flag("STOPPING") {
                self.violate(Rule::StoppingFromNonMain, ev, "");
            }
            return;
        }
        self.lint(&fields, ev);
        // MAINPIDFD=1 (v257): the main process is named by the sole fd, a pidfd; it wins over
        // MAINPID=.
        let by_pidfd = match (fields.flag("MAINPIDFD"), rx.fds.as_slice()) {
            (true, [fd]) => match pidfd_pid(fd) {
                Some(pid) => Some(pid.to_string()),
                None => {
                    self.violate(
                        Rule::MalformedField,
                        ev,
                        "MAINPIDFD=1 fd is not a live pidfd",
                    );
                    None
                }
            },
            (true, _) => {
                let n = rx.fds.len();
                self.violate(
                    Rule::MalformedField,
                    ev,
                    format!("MAINPIDFD=1 with {n} fds"),
                );
                None
            }
            (false, _) => None,
        };
        if let Some(v) = by_pidfd.as_deref().or(fields.get("MAINPID")) {
            if matches!(
                self.state,
                State::Start
                    | State::Running
                    | State::ReloadSignal
                    | State::ReloadNotify
                    | State::Stopping
            ) {
                self.main_pid_field(v, rx.uid, ev);
            }
        }
        // Before the state fields so a completing READY=1 records its own datagram's STATUS=.
        if let Some(s) = fields.get("STATUS") {
            self.status = Some(s.to_owned());
        }
        self.state_fields(&fields, ev);
        self.other_fields(&fields, rx.fds, ev);
    }

    fn lint(&mut self, fields: &Fields, ev: Option<(&str, u32)>) {
        for line in &fields.bad_lines {
            self.violate(
                Rule::MalformedField,
                ev,
                format!("line without '=': {line:?}"),
            );
        }
        for (k, v) in &fields.pairs {
            if FLAG_FIELDS.contains(&k.as_str()) && v != "1" {
                self.violate(
                    Rule::MalformedField,
                    ev,
                    format!("{k}={v}: only {k}=1 means anything"),
                );
            }
        }
    }

    fn main_pid_field(&mut self, value: &str, sender_uid: u32, ev: Option<(&str, u32)>) {
        let Some(pid) = value.parse::<u32>().ok().filter(|&p| p > 1) else {
            return self.violate(Rule::MalformedField, ev, format!("MAINPID={value}"));
        };
        if self.main_pid == Some(pid) {
            return;
        }
        let Some(st) = proc_stat(pid).filter(|s| !s.zombie) else {
            return self.violate(Rule::MainPidDead, ev, format!("pid {pid}"));
        };
        if !self.unit.is_member(pid) {
            // systemd would accept this from a root sender. We refuse regardless: tests often
            // run as root, and adopting a stranger (perhaps the test process itself) as main
            // would hide the bug and let `stop` signal it.
            let detail = format!("pid {pid} (sender uid {sender_uid}); refused");
            return self.violate(Rule::MainPidNotMember, ev, detail);
        }
        if st.ppid != self.unit.self_pid() {
            let detail = format!(
                "pid {pid}'s parent is {}, not the manager ({}): systemd would log \
                 \"Supervising process {pid} which is not our child\"",
                st.ppid,
                self.unit.self_pid()
            );
            self.violate(Rule::AlienMainPid, ev, detail);
        }
        self.main_pid = Some(pid);
    }

    fn monotonic_ok(&mut self, fields: &Fields, ev: Option<(&str, u32)>) -> bool {
        let reloading = fields.flag("RELOADING");
        let Some(raw) = fields.get("MONOTONIC_USEC") else {
            if reloading {
                self.violate(Rule::ReloadingWithoutMonotonicUsec, ev, "");
            }
            return false;
        };
        if !reloading {
            self.violate(Rule::MonotonicUsecWithoutReloading, ev, "");
        }
        let Ok(usec) = raw.parse::<u64>() else {
            self.violate(Rule::BadMonotonicUsec, ev, format!("unparseable: {raw:?}"));
            return false;
        };
        let stamp = Duration::from_micros(usec);
        let now = monotonic_now();
        if stamp > now + FUTURE_SLACK {
            let detail = format!(
                "{usec} is {:.1}s ahead of CLOCK_MONOTONIC ({}): CLOCK_REALTIME?",
                (stamp - now).as_secs_f64(),
                now.as_micros()
            );
            self.violate(Rule::BadMonotonicUsec, ev, detail);
            return false;
        }
        if reloading && self.state == State::ReloadSignal && stamp < self.reload_begin {
            let detail = format!(
                "{usec} < {} (the reload signal was sent {:.3}s later)",
                self.reload_begin.as_micros(),
                (self.reload_begin - stamp).as_secs_f64()
            );
            self.violate(Rule::StaleMonotonicUsec, ev, detail);
            return false;
        }
        true
    }

    /// STOPPING=1 > READY=1 > RELOADING=1, as in `service_notify_message_process_state`.
    fn state_fields(&mut self, fields: &Fields, ev: Option<(&str, u32)>) {
        let valid_mono = self.monotonic_ok(fields, ev);
        let reloading = fields.flag("RELOADING");
        let sender = ev.map(|(_, p)| p);
        if fields.flag("STOPPING") {
            if sender != self.main_pid {
                self.violate(
                    Rule::StoppingFromNonMain,
                    ev,
                    format!("main pid is {:?}", self.main_pid),
                );
            }
            if matches!(
                self.state,
                State::Running | State::ReloadSignal | State::ReloadNotify
            ) {
                self.finish_reload(ReloadResult::Stopped);
                self.state = State::Stopping;
                self.term_sent = false;
                self.timer = Some((monotonic_now() + self.cfg.stop_timeout, Timer::Kill));
            }
        } else if fields.flag("READY") {
            match self.state {
                State::Start => {
                    let bad = self.check_reload_handler(ev);
                    match bad {
                        Some(v) if self.cfg.fail_start_without_reload_handler => {
                            self.start_failure = Some(StartFailure::Protocol(v));
                            self.enter_stop(libc::SIGTERM, self.cfg.stop_timeout);
                        }
                        _ => {
                            self.state = State::Running;
                            self.timer = None;
                        }
                    }
                }
                State::ReloadNotify => self.complete_reload(ev),
                State::ReloadSignal if reloading && valid_mono => self.complete_reload(ev),
                State::ReloadSignal if !reloading => {
                    self.violate(Rule::ReadyWithoutReloading, ev, "");
                }
                _ => {}
            }
        } else if reloading {
            match self.state {
                State::ReloadSignal if valid_mono => self.state = State::ReloadNotify,
                State::Running => {
                    self.begin_reload(ReloadInitiator::Service, monotonic_now());
                    self.state = State::ReloadNotify;
                }
                _ => {}
            }
        }
    }

    fn other_fields(&mut self, fields: &Fields, fds: Vec<OwnedFd>, ev: Option<(&str, u32)>) {
        if let Some(v) = fields.get("NOTIFYACCESS") {
            match NotifyAccess::parse(v) {
                Some(a) => self.notify_access = a,
                None => self.violate(Rule::MalformedField, ev, format!("NOTIFYACCESS={v}")),
            }
        }
        if let Some(v) = fields.get("ERRNO") {
            match v.parse() {
                Ok(e) => self.errno = Some(e),
                Err(_) => self.violate(Rule::MalformedField, ev, format!("ERRNO={v}")),
            }
        }
        if let Some(v) = fields.get("EXTEND_TIMEOUT_USEC") {
            match v.parse::<u64>() {
                Ok(us) => {
                    let until = monotonic_now() + Duration::from_micros(us);
                    if let Some((at, _)) = self.timer.as_mut() {
                        *at = (*at).max(until);
                    }
                }
                Err(_) => {
                    self.violate(Rule::MalformedField, ev, format!("EXTEND_TIMEOUT_USEC={v}"))
                }
            }
        }
        if fields
            .pairs
            .iter()
            .any(|(k, v)| k == "WATCHDOG" && v == "1")
        {
            self.watchdog_pings += 1;
        }
        if let Some(v) = fields.get("MAINPIDFDID") {
            match v.parse() {
                Ok(id) => self.main_pidfd_id = Some(id),
                Err(_) => self.violate(Rule::MalformedField, ev, format!("MAINPIDFDID={v}")),
            }
        }
        if fds.is_empty() {
            return;
        }
        if fields.flag("FDSTORE") {
            let name = fields.get("FDNAME").unwrap_or("stored").to_owned();
            let room = self.cfg.fdstore_max.saturating_sub(self.fd_store.len());
            // Beyond FileDescriptorStoreMax= systemd closes the rest without telling anyone.
            self.fd_store
                .extend(fds.into_iter().take(room).map(|fd| (name.clone(), fd)));
        } else if !fields.flag("BARRIER") && !fields.flag("MAINPIDFD") {
            self.violate(
                Rule::UnexpectedFds,
                ev,
                format!("{} fd(s) closed", fds.len()),
            );
        }
        // Remaining fds drop here: closing a BARRIER=1 pipe is exactly the acknowledgement.
    }
}
