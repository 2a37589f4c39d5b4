//! How systemd splits an `Exec*=` command line into the argument vector it executes, written
//! independently of the renderer so the two can be compared: specifiers are resolved first
//! (`%%` is `%`), then words are split at whitespace, where double or single quotes group and a
//! backslash starts a C escape (inside quotes too); a lone `;` would end the command. Finally
//! `$$` is a `$` and any other `$NAME`/`${NAME}` is expanded from the environment at exec time.

use crate::systemd_ini::resolve_specifiers;

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// `-`, `@`, `:`, `+`, `!` prefixes of the first word.
    pub prefixes: String,
    /// The words after the prefixes, `$$` already turned into `$`.
    pub words: Vec<String>,
    /// Words that would be expanded from the environment (they held a lone `$`).
    pub expanded: Vec<usize>,
}

fn cunescape_one(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<char, String> {
    let c = chars.next().ok_or("backslash at the end")?;
    Ok(match c {
        'a' => '\u{7}',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\u{b}',
        's' => ' ',
        '\\' | '"' | '\'' => c,
        // \x, \u, \U and octal escapes exist too; the renderer never writes them, so reading
        // one means a word was not escaped the way the renderer meant.
        other => return Err(format!("escape \\{other} the renderer never writes")),
    })
}

/// Splits `value` into words; `Err` where systemd would refuse the line.
pub fn parse(value: &str) -> Result<Command, String> {
    let text = resolve_specifiers(value)?;
    let mut words: Vec<String> = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let mut bare_semicolon = true;
        while let Some(c) = chars.next() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) if c == '\\' => word.push(cunescape_one(&mut chars)?),
                Some(_) => word.push(c),
                None if c.is_ascii_whitespace() => break,
                None if c == '"' || c == '\'' => {
                    quote = Some(c);
                    bare_semicolon = false;
                }
                None if c == '\\' => {
                    word.push(cunescape_one(&mut chars)?);
                    bare_semicolon = false;
                }
                None => word.push(c),
            }
        }
        if quote.is_some() {
            return Err("unterminated quote".into());
        }
        if bare_semicolon && word == ";" {
            return Err("a lone ';' starts a second command".into());
        }
        words.push(word);
    }
    let first = words.first_mut().ok_or("empty command line")?;
    let body = first.trim_start_matches(['-', '@', ':', '+', '!']);
    let prefixes = first[..first.len() - body.len()].to_string();
    *first = body.to_string();
    let mut expanded = Vec::new();
    for (i, w) in words.iter_mut().enumerate() {
        let (unescaped, live) = unescape_dollars(w);
        if live {
            expanded.push(i);
        }
        *w = unescaped;
    }
    Ok(Command {
        prefixes,
        words,
        expanded,
    })
}

/// `$$` → `$`; reports whether a lone `$` (an expansion) remains.
fn unescape_dollars(word: &str) -> (String, bool) {
    let mut out = String::with_capacity(word.len());
    let mut live = false;
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' {
            if chars.peek() == Some(&'$') {
                chars.next();
            } else {
                live = true;
            }
        }
        out.push(c);
    }
    (out, live)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_quotes_and_escapes() {
        let c = parse(r#"/bin/a "b c" 100%% $$HOME "q\"\\" x"#).unwrap();
        assert_eq!(c.words, ["/bin/a", "b c", "100%", "$HOME", "q\"\\", "x"]);
        assert!(c.expanded.is_empty());
        let c = parse("@/bin/a exuvia-reload kill $MAINPID").unwrap();
        assert_eq!(
            (c.prefixes.as_str(), c.expanded.as_slice()),
            ("@", &[3][..])
        );
        assert!(parse("/bin/a ; /bin/b").is_err());
        assert_eq!(parse(r#"/bin/a ";""#).unwrap().words[1], ";");
        assert!(parse("/bin/a \"open").is_err());
        assert!(parse("/bin/%n").is_err());
    }
}
