//! Defects the fuzz targets found that are not fixed yet, each reported with its reproducer
//! in tests/fuzz_regressions.rs. A target steps around an open defect here, so it can go on
//! looking for new ones; delete the entry (and un-ignore its regression test) once it is fixed.

/// src/channel.rs: a `failed` reason is cut to 500 characters *before* control characters are
/// escaped, so one made of control characters decodes to up to 5000 characters, which
/// `encode` cuts again (the round trip changes the message).
pub fn channel_reason_grows(data: &[u8]) -> bool {
    let Some(reason) = data.strip_prefix(b"failed ") else {
        return false;
    };
    let escaped: usize = String::from_utf8_lossy(reason)
        .chars()
        .take(500)
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().count()
            } else {
                1
            }
        })
        .sum();
    escaped > 500
}

/// src/bin/exuvia/lint/parse.rs: systemd also ends a line at a lone `\r` and at NUL; the
/// linter reads them as part of the line, so a directive after one is invisible to it.
pub fn lint_line_ends(text: &str) -> bool {
    text.contains('\0') || text.replace("\r\n", "\n").contains('\r')
}

/// src/bin/exuvia/lint/keys-*.txt: the key tables were extracted with a pattern without
/// digits, so `BindIPv6Only=` (which `exuvia unit` writes for a bare port or `[::]`) is an
/// "unknown key" to the linter.
pub fn lint_misses_key(message: &str) -> bool {
    message.contains("unknown key BindIPv6Only=")
}

/// src/bin/exuvia/lint/parse.rs: the linter continues a line that ends in a backslash after
/// trimming it, systemd one that ends in an odd run of backslashes as written: `Key=a\\\\`
/// (an escaped backslash) or a backslash followed by a blank makes the linter swallow the next
/// line, which systemd reads as a directive of its own. And the linter tells section headers
/// apart before it joins lines, systemd after: a header continued from, or onto, another line
/// is read differently.
pub fn lint_continuation(text: &str) -> bool {
    let comment = |l: &str| l.trim_start().starts_with(['#', ';']);
    let lint = |l: &str| {
        let t = l.trim();
        !t.starts_with(['#', ';', '[']) && t.ends_with('\\')
    };
    let systemd = |l: &str| !comment(l) && crate::systemd_ini::continues(l);
    let lines = crate::systemd_ini::lines(text);
    lines.iter().enumerate().any(|(i, l)| {
        let next = lines[i + 1..].iter().find(|n| !comment(n));
        lint(l) != systemd(l)
            || (systemd(l)
                && (l.trim_start().starts_with('[')
                    || next.is_some_and(|n| n.trim_start().starts_with('['))))
    })
}

/// src/bin/exuvia/lint/parse.rs: the linter trims with `str::trim` (all Unicode whitespace:
/// vertical tab, form feed, no-break space, …), systemd only spaces, tabs, CR and LF: for it
/// `\u{a0}KillMode=process` is an unknown key and `Type=notify-reload\u{b}` an invalid value.
pub fn lint_unicode_whitespace(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_whitespace() && !matches!(c, ' ' | '\t' | '\n' | '\r'))
}

/// crates/exuvia-testing/src/sim/proto.rs: systemd splits a notify datagram into fields at
/// `\n` *and* `\r`; the simulator only at `\n`, so `READY=1\r\n` is not READY=1 to it.
pub fn notify_carriage_return(data: &[u8]) -> bool {
    data.contains(&b'\r')
}
