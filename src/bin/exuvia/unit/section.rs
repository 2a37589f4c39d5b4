//! The units as data: sections of directives, each carrying why it is there and the first
//! systemd version that understands it. Rendering (ini or NixOS) only walks this model, so the
//! `--explain` text, the version gate and the output formats cannot drift apart.
//!
//! Every value enters a unit through [`SectionBuilder::add`], which is therefore the one place
//! that refuses what a unit line cannot carry (docs/units.md, "Values that cannot be written"):
//! a control character would start a new line (and with it a new directive), a trailing
//! backslash joins the next line into the value, and surrounding whitespace is stripped by
//! systemd. Both output formats go through it, because the NixOS module becomes unit lines too.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    Service,
    Socket,
}

#[derive(Debug, Clone)]
pub struct Directive {
    pub key: &'static str,
    pub value: String,
    /// First systemd version that knows this key/value; 0 = older than any supported target.
    pub since: u32,
    pub why: String,
    /// A lint rule this directive trips on purpose; emitted as `# exuvia-lint: allow RULE`.
    pub lint_allow: Option<&'static str>,
}

impl Directive {
    pub fn since_text(&self) -> String {
        if self.since == 0 {
            "any systemd".to_string()
        } else {
            format!("systemd >= {}", self.since)
        }
    }
}

/// A directive left out because the target systemd does not know it (shown by `--explain`).
#[derive(Debug, Clone)]
pub struct Omitted {
    pub key: &'static str,
    pub value: String,
    pub since: u32,
}

#[derive(Debug, Clone)]
pub struct Section {
    pub name: &'static str,
    pub directives: Vec<Directive>,
    pub omitted: Vec<Omitted>,
}

#[derive(Debug, Clone)]
pub struct UnitFile {
    pub file_name: String,
    pub kind: UnitKind,
    pub sections: Vec<Section>,
}

impl UnitFile {
    pub fn unit_name(&self) -> &str {
        self.file_name
            .rsplit_once('.')
            .map_or(&self.file_name, |(n, _)| n)
    }
}

/// A value no unit line can carry; nothing has been written when one is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError(pub String);

/// Longest `Key=value` line exuvia writes. systemd reads lines up to 1 MiB; anything near that
/// is a mistake, and a bound keeps every rendered file small.
pub const MAX_LINE: usize = 64 * 1024;

/// Why `value` cannot follow `key=` on a unit line, if it cannot.
pub fn check_value(key: &str, value: &str) -> Result<(), ValueError> {
    let problem = if value.chars().any(char::is_control) {
        "contains a control character (newline, tab, …): it would end the line and start a new directive"
    } else if value.ends_with('\\') {
        "ends with a backslash: systemd would join the next line into it, and this setting has no escape for it"
    } else if value.trim() != value {
        "starts or ends with whitespace, which systemd strips"
    } else if key.len() + 1 + value.len() > MAX_LINE {
        "is longer than exuvia writes on one line (64 KiB)"
    } else {
        return Ok(());
    };
    let shown: String = value.chars().take(80).collect();
    Err(ValueError(format!(
        "the value for {key}= ({shown:?}) {problem}; change it in the spec"
    )))
}

/// Collects one section's directives, dropping those the target version does not know, and
/// refusing values a unit line cannot carry (the first such error is kept for `build`).
pub struct SectionBuilder {
    target: u32,
    section: Section,
    error: Option<ValueError>,
}

impl SectionBuilder {
    pub fn new(name: &'static str, target: u32) -> Self {
        Self {
            target,
            section: Section {
                name,
                directives: Vec::new(),
                omitted: Vec::new(),
            },
            error: None,
        }
    }

    pub fn add(
        &mut self,
        key: &'static str,
        value: impl Into<String>,
        since: u32,
        why: impl Into<String>,
    ) -> &mut Self {
        let value = value.into();
        if let Err(e) = check_value(key, &value) {
            self.error.get_or_insert(e);
        }
        if since > self.target {
            self.section.omitted.push(Omitted { key, value, since });
        } else {
            self.section.directives.push(Directive {
                key,
                value,
                since,
                why: why.into(),
                lint_allow: None,
            });
        }
        self
    }

    pub fn allow_lint(&mut self, rule: &'static str) -> &mut Self {
        if let Some(d) = self.section.directives.last_mut() {
            d.lint_allow = Some(rule);
        }
        self
    }

    pub fn build(self) -> Result<Section, ValueError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.section),
        }
    }
}

/// Escape one word for `ExecStart=`-style command lines: `%` starts a specifier, `$` an
/// environment expansion, and whitespace, quotes, backslashes or a lone `;` need quoting.
/// A quoted word ends in `"`, so a backslash at its end cannot continue the line.
pub fn exec_word(word: &str) -> String {
    let escaped = word.replace('%', "%%").replace('$', "$$");
    let needs_quotes = escaped.is_empty()
        || escaped == ";"
        || escaped.contains(|c: char| c.is_whitespace() || "\"'\\".contains(c));
    if !needs_quotes {
        return escaped;
    }
    format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Escape a plain value (paths, descriptions): only specifiers are special there.
pub fn plain(value: &str) -> String {
    value.replace('%', "%%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_words_are_escaped() {
        assert_eq!(exec_word("/usr/bin/x"), "/usr/bin/x");
        assert_eq!(exec_word("a b"), "\"a b\"");
        assert_eq!(exec_word("100%"), "100%%");
        assert_eq!(exec_word("$HOME"), "$$HOME");
        assert_eq!(exec_word("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(exec_word(";"), "\";\"");
        assert_eq!(exec_word(""), "\"\"");
        assert_eq!(exec_word("dir\\"), "\"dir\\\\\"");
    }

    #[test]
    fn values_a_line_cannot_carry_are_refused() {
        for bad in [
            "a\nb",
            "a\rb",
            "a\0",
            "tab\there",
            "x\\",
            "\\",
            " x",
            "x ",
            "x\u{85}",
        ] {
            assert!(check_value("Description", bad).is_err(), "{bad:?}");
        }
        for good in ["", "a b", "x\\\\y", "100%%", "@abstract", "\"q\""] {
            assert_eq!(check_value("Description", good), Ok(()), "{good:?}");
        }
        assert!(check_value("X", &"a".repeat(MAX_LINE)).is_err());
        let mut s = SectionBuilder::new("Unit", 257);
        s.add("Description", "ok", 0, "").add("After", "x\\", 0, "");
        let err = s.build().expect_err("the bad value is kept");
        assert!(
            err.0.contains("After=") && err.0.contains("backslash"),
            "{}",
            err.0
        );
        // A directive the target does not know is still checked: the spec must not depend
        // on the target for what it may contain.
        let mut s = SectionBuilder::new("Service", 252);
        s.add("ExecReloadPost", "a\nb", 259, "");
        assert!(s.build().is_err());
    }
}
