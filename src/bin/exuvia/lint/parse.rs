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

pub fn parse(text: &str) -> UnitText {
    let mut out = UnitText::default();
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((no, raw)) = lines.next() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('#') || line.starts_with(';') {
            if let Some(rule) = line
                .trim_start_matches(['#', ';'])
                .trim()
                .strip_prefix("exuvia-lint: allow ")
            {
                out.allows
                    .push((no, rule.split_whitespace().next().unwrap_or("").to_string()));
            }
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
        // Join continuation lines: a trailing backslash continues on the next line.
        let mut logical = line.to_string();
        while logical.ends_with('\\') {
            logical.pop();
            logical.push(' ');
            match next_content_line(&mut lines) {
                Some(next) => logical.push_str(next.trim()),
                None => break,
            }
        }
        let Some((key, value)) = logical.split_once('=') else {
            out.errors.push((
                no,
                format!("line is neither a section, a comment nor Key=Value: {line:?}"),
            ));
            continue;
        };
        let entry = Entry {
            key: key.trim().to_string(),
            value: value.trim().to_string(),
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

/// systemd skips comment lines inside a continuation.
fn next_content_line<'a>(lines: &mut impl Iterator<Item = (usize, &'a str)>) -> Option<&'a str> {
    lines.map(|(_, l)| l).find(|l| {
        let t = l.trim_start();
        !(t.starts_with('#') || t.starts_with(';'))
    })
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
        assert_eq!(exec.value, "/bin/a  --flag");
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
}
