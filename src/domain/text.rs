//! Short texts that end up in email headers or pages: names and subjects.
//!
//! Both refuse control characters (CR and LF above all), so they can never add a header line;
//! lettre then encodes any non-ASCII as RFC 2047 encoded-words.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {0} characters")]
    TooLong(usize),
    #[error("contains control characters")]
    Control,
}

fn check(input: &str, max_chars: usize) -> Result<String, TextError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(TextError::Empty);
    }
    if trimmed.chars().count() > max_chars {
        return Err(TextError::TooLong(max_chars));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(TextError::Control);
    }
    Ok(trimmed.to_owned())
}

/// A person's name as they gave it: trimmed, at most 200 characters, no control characters.
#[derive(Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(input: &str) -> Result<Self, TextError> {
        check(input, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DisplayName(***)")
    }
}

/// A single-line text bound for a header (a subject, an organisation name): kept exactly as
/// written (CS-2), but never with a control character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderText(String);

impl HeaderText {
    pub const MAX_CHARS: usize = 500;

    pub fn parse(input: &str) -> Result<Self, TextError> {
        if input.trim().is_empty() {
            return Err(TextError::Empty);
        }
        if input.chars().count() > Self::MAX_CHARS {
            return Err(TextError::TooLong(Self::MAX_CHARS));
        }
        if input.chars().any(char::is_control) {
            return Err(TextError::Control);
        }
        // Not trimmed: the subject is used exactly as written.
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HeaderText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_subjects_refuse_line_breaks() {
        assert_eq!(DisplayName::parse("Zoë\r\nBcc: x@y.z"), Err(TextError::Control));
        assert_eq!(HeaderText::parse("Hi\nBcc: x@y.z"), Err(TextError::Control));
        assert_eq!(DisplayName::parse("  Zoë  ").unwrap().as_str(), "Zoë");
        assert_eq!(
            HeaderText::parse(" Ünïcödé — 日本語 ✓").unwrap().as_str(),
            " Ünïcödé — 日本語 ✓"
        );
        assert!(DisplayName::parse(&"x".repeat(201)).is_err());
    }
}
