//! How Nix reads the generated module, written independently of the renderer so the two can
//! be compared: `#` comments run to the end of the line; a double-quoted string ends at the
//! first unescaped `"`, where `\` escapes the next character (`\n`, `\r`, `\t` are control
//! characters) and an unescaped `${` would evaluate code. The module must be exactly
//! `{ systemd.COLLECTION."NAME" = { attr = value; … SET = { attr = value; … }; }; … }` with
//! every value a string or a list of strings.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Str(String),
    Punct(char),
}

fn lex(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            c if c.is_whitespace() => {}
            '"' => out.push(Token::Str(string(&mut chars)?)),
            '{' | '}' | '[' | ']' | '=' | ';' | '.' => out.push(Token::Punct(c)),
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut id = c.to_string();
                while let Some(&n) = chars.peek() {
                    if n.is_ascii_alphanumeric() || n == '_' || n == '-' || n == '\'' {
                        id.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Token::Ident(id));
            }
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    Ok(out)
}

fn string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<String, String> {
    let mut s = String::new();
    loop {
        match chars.next().ok_or("unterminated string")? {
            '"' => return Ok(s),
            '\\' => s.push(match chars.next().ok_or("unterminated string")? {
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                other => other,
            }),
            // `$${` is literal text; `${` starts an interpolation.
            '$' if chars.peek() == Some(&'$') => {
                chars.next();
                s.push_str("$$");
            }
            '$' if chars.peek() == Some(&'{') => return Err("interpolation ${ in a string".into()),
            c => s.push(c),
        }
    }
}

/// One unit of the module: `systemd.COLLECTION."NAME"`, its attributes by name (top level and
/// inside nested sets, where `SET.attr` names a nested one) and their string values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NixUnit {
    pub collection: String,
    pub name: String,
    pub attrs: BTreeMap<String, Vec<String>>,
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn next(&mut self) -> Result<Token, String> {
        let t = self.tokens.get(self.pos).cloned().ok_or("unexpected end")?;
        self.pos += 1;
        Ok(t)
    }

    fn punct(&mut self, p: char) -> Result<(), String> {
        match self.next()? {
            Token::Punct(c) if c == p => Ok(()),
            other => Err(format!("expected {p:?}, found {other:?}")),
        }
    }

    fn peek_punct(&self, p: char) -> bool {
        self.tokens.get(self.pos) == Some(&Token::Punct(p))
    }

    fn value(&mut self) -> Result<Vec<String>, String> {
        match self.next()? {
            Token::Str(s) => Ok(vec![s]),
            Token::Punct('[') => {
                let mut items = Vec::new();
                while !self.peek_punct(']') {
                    match self.next()? {
                        Token::Str(s) => items.push(s),
                        other => return Err(format!("list item {other:?}")),
                    }
                }
                self.pos += 1;
                Ok(items)
            }
            other => Err(format!("value {other:?}")),
        }
    }

    /// `{ name = value; name = { … }; … }` into `attrs` under `prefix`.
    fn set(
        &mut self,
        prefix: &str,
        attrs: &mut BTreeMap<String, Vec<String>>,
    ) -> Result<(), String> {
        self.punct('{')?;
        while !self.peek_punct('}') {
            let Token::Ident(name) = self.next()? else {
                return Err("attribute name expected".into());
            };
            self.punct('=')?;
            let full = format!("{prefix}{name}");
            if self.peek_punct('{') {
                self.set(&format!("{full}."), attrs)?;
            } else {
                let v = self.value()?;
                if attrs.insert(full.clone(), v).is_some() {
                    return Err(format!("attribute {full} given twice"));
                }
            }
            self.punct(';')?;
        }
        self.pos += 1;
        Ok(())
    }
}

/// Reads the generated module; `Err` where Nix would read something else or fail.
pub fn parse(text: &str) -> Result<Vec<NixUnit>, String> {
    let mut p = Parser {
        tokens: lex(text)?,
        pos: 0,
    };
    p.punct('{')?;
    let mut units = Vec::new();
    while !p.peek_punct('}') {
        if p.next()? != Token::Ident("systemd".into()) {
            return Err("expected systemd.".into());
        }
        p.punct('.')?;
        let Token::Ident(collection) = p.next()? else {
            return Err("expected a collection".into());
        };
        p.punct('.')?;
        let Token::Str(name) = p.next()? else {
            return Err("expected a quoted unit name".into());
        };
        p.punct('=')?;
        let mut attrs = BTreeMap::new();
        p.set("", &mut attrs)?;
        p.punct(';')?;
        units.push(NixUnit {
            collection,
            name,
            attrs,
        });
    }
    p.pos += 1;
    if p.pos != p.tokens.len() {
        return Err("text after the module".into());
    }
    Ok(units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_module() {
        let u = parse(
            "# c\n{\n  systemd.services.\"a\" = {\n    description = \"x \\\"y\\\" \\${z} $${w}\";\n    serviceConfig = {\n      K = [ \"1\" \"2\" ];\n    };\n  };\n}\n",
        )
        .unwrap();
        assert_eq!(u[0].attrs["description"], ["x \"y\" ${z} $${w}"]);
        assert_eq!(u[0].attrs["serviceConfig.K"], ["1", "2"]);
        assert!(parse("{ systemd.services.\"a\" = { d = \"${x}\"; }; }").is_err());
    }
}
