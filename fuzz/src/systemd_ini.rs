//! How systemd's unit-file parser reads a text, written independently of the renderer so the
//! two can be compared: lines end at `\n`, `\r`, NUL or a run of distinct ones ([`lines`]);
//! blank lines and lines starting with `#` or `;` are comments (also inside a continuation); a
//! line ending in an unescaped backslash continues on the next one, the backslash becoming a
//! space; `[Name]` opens a section; anything else must be `Key=Value`, both sides stripped of
//! whitespace. A malformed section header makes the whole file fail to load; a line without
//! `=` or an assignment before any section is ignored with a warning.

/// One section as systemd sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub entries: Vec<(String, String)>,
}

/// What systemd read: the sections, and the lines it ignored with a warning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unit {
    pub sections: Vec<Section>,
    pub ignored: Vec<SyntaxError>,
}

/// A line systemd complains about (for a malformed section header: refuses the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub why: String,
}

const WHITESPACE: &[char] = &[' ', '\t', '\n', '\r'];

fn is_comment(line: &str) -> bool {
    line.trim_start_matches(WHITESPACE).starts_with(['#', ';'])
}

/// Whether the line ends in a backslash that is not itself escaped.
pub fn continues(line: &str) -> bool {
    let mut escaped = false;
    for c in line.chars() {
        escaped = !escaped && c == '\\';
    }
    escaped
}

/// The physical lines of `text`, split where systemd's line reader (`read_line_full`) splits
/// them: a line ends at the first `\n`, `\r` or NUL, and the end takes in the markers right
/// after it as long as none repeats and none follows a NUL (`\r\n`, `\n\r`, `\n\r\0` are one
/// end each; `\n\n` and `\r\r` two).
pub fn lines(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(end) = rest.find(['\n', '\r', '\0']) {
        out.push(&rest[..end]);
        let mut seen = String::new();
        let marker_len = rest[end..]
            .chars()
            .take_while(|c| {
                let take =
                    matches!(c, '\n' | '\r' | '\0') && !seen.contains(*c) && !seen.contains('\0');
                seen.push(*c);
                take
            })
            .count();
        rest = &rest[end + marker_len..];
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// Reads a unit file the way systemd does.
pub fn parse(text: &str) -> Result<Unit, SyntaxError> {
    let mut unit = Unit::default();
    let mut continuation: Option<(usize, String)> = None;
    for (i, raw) in lines(text).into_iter().enumerate() {
        let no = i + 1;
        if is_comment(raw) || (continuation.is_none() && raw.trim_matches(WHITESPACE).is_empty()) {
            continue;
        }
        if continues(raw) {
            let mut part = raw.to_string();
            part.pop();
            part.push(' ');
            match &mut continuation {
                Some((_, c)) => c.push_str(&part),
                None => continuation = Some((no, part)),
            }
            continue;
        }
        let (start, logical) = match continuation.take() {
            Some((start, mut c)) => {
                c.push_str(raw);
                (start, c)
            }
            None => (no, raw.to_string()),
        };
        line(&mut unit, start, &logical)?;
    }
    if let Some((start, logical)) = continuation {
        line(&mut unit, start, &logical)?;
    }
    Ok(unit)
}

fn line(unit: &mut Unit, no: usize, logical: &str) -> Result<(), SyntaxError> {
    let l = logical.trim_matches(WHITESPACE);
    let err = |why: &str| SyntaxError {
        line: no,
        why: format!("{why}: {l:?}"),
    };
    if l.is_empty() || l.starts_with(['#', ';']) {
        return Ok(());
    }
    if let Some(rest) = l.strip_prefix('[') {
        let name = rest
            .strip_suffix(']')
            .ok_or_else(|| err("invalid section header"))?;
        if name.is_empty() || name.contains(['[', ']']) {
            return Err(err("invalid section header"));
        }
        unit.sections.push(Section {
            name: name.to_string(),
            entries: Vec::new(),
        });
        return Ok(());
    }
    let Some((key, value)) = l.split_once('=') else {
        unit.ignored.push(err("missing '='"));
        return Ok(());
    };
    let Some(section) = unit.sections.last_mut() else {
        unit.ignored.push(err("assignment outside of a section"));
        return Ok(());
    };
    section.entries.push((
        key.trim_matches(WHITESPACE).to_string(),
        value.trim_matches(WHITESPACE).to_string(),
    ));
    Ok(())
}

/// What a value means once systemd has resolved its specifiers: `%%` is a `%`; any other
/// `%` would expand to something of the host's, which the generator never means to write.
pub fn resolve_specifiers(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            other => return Err(format!("live specifier %{}", other.unwrap_or(' '))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_comments_and_errors() {
        let s = parse("[A]\nK=v\\\n# c\nnext\nL = x \n").unwrap().sections;
        assert_eq!(
            s[0].entries,
            [("K".into(), "v next".into()), ("L".into(), "x".into())]
        );
        assert_eq!(
            parse("[A]\nK=v\\\\\nL=w\n").unwrap().sections[0]
                .entries
                .len(),
            2
        );
        assert_eq!(parse("[A]\nnot an assignment\n").unwrap().ignored.len(), 1);
        assert!(parse("[A\n").is_err());
        assert_eq!(lines("a\r\nb\rc\0d"), ["a", "b", "c", "d"]);
        assert_eq!(resolve_specifiers("100%%").unwrap(), "100%");
        assert!(resolve_specifiers("%n").is_err());
    }
}
