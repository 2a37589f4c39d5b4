//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, never for tests or tools):
//! the two parsers of this crate that read what a service under test sends, each with the
//! property it must hold. A property that does not hold panics, which is what a fuzzer reports.

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::load::{FailureKind, Target};

/// The simulator's reading of a notify datagram: never panics; a datagram is dropped whole
/// exactly when systemd drops it (embedded NUL, not UTF-8); otherwise it is split into fields
/// where systemd splits it (at `\n` and at `\r`, empty fields skipped), and every field is
/// either one `KEY=value` pair (split at the first `=`) or kept as a bad line, in order; the
/// lookups answer like systemd's (first occurrence wins; a flag is set only by `KEY=1`).
pub fn notify(data: &[u8]) {
    let parsed = crate::sim::parse_notify(data);
    let text = match std::str::from_utf8(data) {
        Ok(t) if !data.contains(&0) => t,
        _ => {
            assert!(parsed.is_err(), "a datagram systemd drops was accepted");
            return;
        }
    };
    let fields = parsed.expect("a NUL-free UTF-8 datagram is accepted");
    let (mut pairs, mut bad) = (fields.pairs.iter(), fields.bad_lines.iter());
    for line in text.split(['\n', '\r']).filter(|l| !l.is_empty()) {
        match line.split_once('=') {
            Some((k, v)) => {
                let (pk, pv) = pairs.next().expect("one pair per KEY=value line");
                assert_eq!((pk.as_str(), pv.as_str()), (k, v));
                assert!(!pk.contains(['=', '\n', '\r']) && !pv.contains(['\n', '\r']));
            }
            None => assert_eq!(bad.next().map(String::as_str), Some(line)),
        }
    }
    assert!(
        pairs.next().is_none() && bad.next().is_none(),
        "fields from nowhere"
    );
    // Lookups are linear scans: checking a few keys keeps a run short on long datagrams.
    let mut first = std::collections::HashMap::new();
    let mut ones = std::collections::HashSet::new();
    for (k, v) in &fields.pairs {
        first.entry(k.as_str()).or_insert(v.as_str());
        if v == "1" {
            ones.insert(k.as_str());
        }
    }
    for (k, v) in first.iter().take(16) {
        assert_eq!(fields.get(k), Some(*v), "the first occurrence wins");
        assert_eq!(
            fields.flag(k),
            ones.contains(k),
            "a flag is set only by KEY=1"
        );
    }
}

/// Longest server answer [`http_responses`] takes: a socket buffer must hold it whole, since
/// nothing reads while it is written.
pub const MAX_HTTP_INPUT: usize = 64 * 1024;

/// One listener for every run, so a run costs a connect, not a bind; abstract, so nothing is
/// left in the file system when the fuzzer exits.
fn http_listener() -> &'static (UnixListener, Target) {
    use std::os::linux::net::SocketAddrExt;
    static L: OnceLock<(UnixListener, Target)> = OnceLock::new();
    L.get_or_init(|| {
        let name = format!("exuvia-fuzz-http-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name)
            .expect("an abstract socket name");
        let l = UnixListener::bind_addr(&addr).expect("bind the fuzz target's listener");
        // A path starting with NUL names an abstract socket (what the load client connects to).
        (l, Target::Unix(PathBuf::from(format!("\0{name}"))))
    })
}

/// The load client's HTTP/1.1 response reader, fed `data` as everything a server sent on one
/// keep-alive connection before closing it: never panics and always ends; every status it
/// reports is a three-digit code; it stops after a response that announces a close; and the
/// only ways it can fail are "wrong answer" and "closed before the full answer" (the bytes are
/// all there, so a timeout, reset or other error would be the reader's own fault).
pub fn http_responses(data: &[u8]) {
    if data.len() > MAX_HTTP_INPUT {
        return;
    }
    let (listener, target) = http_listener();
    let deadline = Instant::now() + Duration::from_secs(10);
    // A Unix connect completes into the listener's backlog, so this thread can accept, answer
    // and close before the reader's first read: no second thread, no scheduling in the loop.
    let (seen, failed) = crate::load::read_responses(target, deadline, || {
        let (mut server, _) = listener.accept().expect("accept the reader");
        server.write_all(data).expect("write the answer");
    });
    for (i, (status, close)) in seen.iter().enumerate() {
        assert!((100..1000).contains(status), "status {status}");
        assert!(!close || i + 1 == seen.len(), "read on after a close");
    }
    if let Some(e) = failed {
        assert!(
            matches!(
                e.kind,
                FailureKind::WrongAnswer | FailureKind::EofMidRequest
            ),
            "{:?}: {}",
            e.kind,
            e.msg
        );
    }
}
