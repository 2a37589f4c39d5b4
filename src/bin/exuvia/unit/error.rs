//! The one error type of spec validation: a single actionable line, returned before anything
//! is written. Its own module so that every part of the spec (listeners, names, deadlines) can
//! use it without importing the spec that imports them.
use std::fmt;

/// A one-line, actionable input error. Nothing has been written when one is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn err<T>(msg: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError(msg.into()))
}
