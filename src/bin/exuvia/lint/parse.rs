//! A small reader for unit-file syntax (systemd.syntax(7)): sections, `Key=Value` entries,
//! `#`/`;` comments, backslash continuation lines (comment lines inside a continuation are
//! skipped, as systemd does) and repeated keys kept in order. No maintained Rust crate does
//! this (the INI crates neither continue lines nor keep repeated keys); semantics beyond syntax
//! are left to `systemd-analyze`.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// 1-based line where the entry starts.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub line: usize,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, Default)]
pub struct UnitText {
    pub sections: Vec<Section>,
    /// `# exuvia-lint: allow RULE` comments: (line, rule).
    pub allows: Vec<(usize, String)>,
    /// Lines that are not syntax: (line, message).
    pub errors: Vec<(usize, String)>,
}

impl UnitText {
    pub fn section<'a, 'k>(
        &'a self,
        name: &'k str,
    ) -> impl Iterator<Item = &'a Section> + use<'a, 'k> {
        self.sections.iter().filter(move |s| s.name == name)
    }

    /// All entries of `key` in section `section`, in file order (drop-in style repeats included).
    pub fn entries<'a, 'k>(
        &'a self,
        section: &'k str,
        key: &'k str,
    ) -> impl Iterator<Item = &'a Entry> + use<'a, 'k> {
        self.section(section)
            .flat_map(|s| s.entries.iter())
            .filter(move |e| e.key == key)
    }

    /// The effective value of a single-valued key: the last assignment wins, as in systemd.
    pub fn last(&self, section: &str, key: &str) -> Option<&Entry> {
        self.entries(section, key).last()
    }
}

/// What systemd strips around lines, keys and values (its `WHITESPACE`): not all of Unicode's
/// whitespace, so `\u{a0}KillMode=` is an unknown key to systemd and must be one to us.
const WHITESPACE: &[char] = &[' ', '\t', '\n', '\r'];

/// The physical lines of `text`, split where systemd's line reader splits them: a line ends at
/// `\n`, `\r` or NUL, and a run of them in which no kind repeats and nothing follows a NUL is one
/// line end (`\r\n`, `\n\r`, `\r\n\0`); `\n\n` is an empty line.
pub fn physical_lines(text: &str) -> Vec<&str> {
    fn kind(b: u8) -> u8 {
        match b {
            b'\0' => 1,
            b'\n' => 2,
            b'\r' => 4,
            _ => 0,
        }
    }
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        let mut seen = kind(bytes[i]);
        if seen == 0 {
            i += 1;
            continue;
        }
        // Line ends are ASCII, so these indices are char boundaries.
        out.push(&text[start..i]);
        i += 1;
        while seen & 1 == 0 && i < bytes.len() {
            let k = kind(bytes[i]);
            if k == 0 || seen & k != 0 {
                break;
            }
            seen |= k;
            i += 1;
        }
        start = i;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// Whether systemd continues this line on the next: it ends in an odd run of backslashes, as
/// written (a backslash followed by a blank, or an escaped backslash, does not continue).
fn continues(line: &str) -> bool {
    line.bytes().rev().take_while(|b| *b == b'\\').count() % 2 == 1
}

fn is_comment(line: &str) -> bool {
    line.trim_start_matches(WHITESPACE).starts_with(['#', ';'])
}

/// Reads `text` as systemd's unit parser does: comment lines are skipped (inside a
/// continuation too), continuation lines are joined first, and only the joined line is told
/// apart as a section header, an assignment or neither.
pub fn parse(text: &str) -> UnitText {
    let mut out = UnitText::default();
    let mut lines = physical_lines(text)
        .into_iter()
        .enumerate()
        .map(|(i, l)| (i + 1, l));
    while let Some((no, raw)) = lines.next() {
        if is_comment(raw) {
            allow(&mut out, no, raw);
            continue;
        }
        let mut logical = raw.to_string();
        while continues(&logical) {
            logical.pop();
            logical.push(' ');
            let Some((_, next)) = lines.find(|(no, l)| {
                let comment = is_comment(l);
                if comment {
                    allow(&mut out, *no, l);
                }
                !comment
            }) else {
                break;
            };
            logical.push_str(next);
        }
        let line = logical.trim_matches(WHITESPACE);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            match rest.strip_suffix(']') {
                Some(name) if !name.is_empty() && !name.contains(['[', ']']) => {
                    out.sections.push(Section {
                        name: name.to_string(),
                        line: no,
                        entries: Vec::new(),
                    });
                }
                _ => out
                    .errors
                    .push((no, format!("malformed section header {line:?}"))),
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            out.errors.push((
                no,
                format!("line is neither a section, a comment nor Key=Value: {line:?}"),
            ));
            continue;
        };
        let entry = Entry {
            key: key.trim_matches(WHITESPACE).to_string(),
            value: value.trim_matches(WHITESPACE).to_string(),
            line: no,
        };
        match out.sections.last_mut() {
            Some(s) => s.entries.push(entry),
            None => out.errors.push((
                no,
                format!("assignment {:?} before any [Section] header", entry.key),
            )),
        }
    }
    out
}

/// Collects a `# exuvia-lint: allow RULE` comment.
fn allow(out: &mut UnitText, no: usize, comment: &str) {
    if let Some(rule) = comment
        .trim_start_matches(WHITESPACE)
        .trim_start_matches(['#', ';'])
        .trim_matches(WHITESPACE)
        .strip_prefix("exuvia-lint: allow ")
    {
        out.allows
            .push((no, rule.split_whitespace().next().unwrap_or("").to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_continuations_comments_repeats() {
        let u = parse(
            "# top\n[Unit]\nDescription = x\n\n[Service]\nExecStart=/bin/a \\\n# skipped\n  --flag\nSystemCallFilter=@system-service\nSystemCallFilter=~@privileged\n; comment\n",
        );
        assert_eq!(u.sections.len(), 2);
        assert_eq!(
            u.last("Unit", "Description").map(|e| e.value.as_str()),
            Some("x")
        );
        let exec = u.last("Service", "ExecStart").unwrap();
        // systemd keeps the next line's indentation; the backslash becomes a space.
        assert_eq!(exec.value, "/bin/a    --flag");
        assert_eq!(exec.line, 6);
        assert_eq!(u.entries("Service", "SystemCallFilter").count(), 2);
        assert!(u.errors.is_empty());
    }

    #[test]
    fn garbage_and_orphans_are_errors() {
        let u = parse("Foo=bar\n[Unit\n[Unit]\njust words\n");
        assert_eq!(
            u.errors.iter().map(|e| e.0).collect::<Vec<_>>(),
            vec![1, 2, 4]
        );
    }

    #[test]
    fn allow_comments_are_collected() {
        let u = parse(
            "[Service]\n# exuvia-lint: allow exec-reload-kill (why)\nExecReload=kill -HUP $MAINPID\n",
        );
        assert_eq!(u.allows, vec![(2, "exec-reload-kill".to_string())]);
    }

    #[test]
    fn lines_end_where_systemd_ends_them() {
        assert_eq!(
            physical_lines("a\nb\rc\0d\r\ne\n\rf\n\ng\r\rh\0\ni\r\n\0j\n"),
            ["a", "b", "c", "d", "e", "f", "", "g", "", "h", "", "i", "j"]
        );
        assert_eq!(physical_lines("x"), ["x"]);
        assert!(physical_lines("").is_empty());
        let u = parse("[Service]\rKillMode=process\0Type=notify\n");
        let keys: Vec<(&str, usize)> = u.sections[0]
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.line))
            .collect();
        assert_eq!(keys, [("KillMode", 2), ("Type", 3)]);
    }

    fn pairs(u: &UnitText) -> Vec<(&str, &str)> {
        u.sections[0]
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect()
    }

    #[test]
    fn only_an_odd_run_of_backslashes_as_written_continues() {
        let u = parse("[Service]\nA=a\\\\\nB=b\\ \nC=c\\\\\\\nD=d\n");
        assert_eq!(
            pairs(&u),
            [("A", "a\\\\"), ("B", "b\\"), ("C", "c\\\\ D=d")]
        );
    }

    #[test]
    fn headers_are_told_apart_after_joining() {
        // A line continued onto `[Unit]` takes it into its value; a header continued onto the
        // next line is one header, joined.
        let u = parse("[Service]\nA=x\\\n[Unit]\n[Uni\\\nt]\n");
        assert_eq!(u.sections.len(), 2, "{u:?}");
        assert_eq!(u.sections[1].name, "Uni t");
        assert_eq!(u.sections[0].entries[0].value, "x [Unit]");
    }

    #[test]
    fn only_systemd_whitespace_is_trimmed() {
        let u = parse("[Service]\n\u{a0}KillMode=process\u{b}\n\tType = notify \r\n");
        assert_eq!(
            pairs(&u),
            [("\u{a0}KillMode", "process\u{b}"), ("Type", "notify")]
        );
    }
}
