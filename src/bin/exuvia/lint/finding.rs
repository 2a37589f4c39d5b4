//! One finding of the linter: where, which rule, what is wrong and the fix. Its own file so
//! that the rules in `rules.rs`, `client.rs` and `deadlines.rs` share it without importing
//! each other.

/// A problem found in a unit, with the line (1-based), the rule name `# exuvia-lint: allow`
/// takes, and a fix the user can apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub line: usize,
    pub rule: &'static str,
    pub message: String,
    pub fix: String,
}

pub fn finding(
    line: usize,
    rule: &'static str,
    message: impl Into<String>,
    fix: impl Into<String>,
) -> Finding {
    Finding {
        line,
        rule,
        message: message.into(),
        fix: fix.into(),
    }
}
