//! `ListSlug`: a list's stable name in URLs, forms and the `List-Id` header.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListSlug(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 1-64 lower-case letters, digits or '-', starting with a letter or digit")]
pub struct ListSlugError;

impl ListSlug {
    pub fn parse(input: &str) -> Result<Self, ListSlugError> {
        let s = input;
        let ok = !s.is_empty()
            && s.len() <= 64
            && !s.starts_with('-')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ListSlugError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ListSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_lower_case_words() {
        assert!(ListSlug::parse("weekly-news-2").is_ok());
        for bad in ["", "Weekly", "a b", "-x", "x\r\n", &"a".repeat(65), "ä"] {
            assert!(ListSlug::parse(bad).is_err(), "{bad:?}");
        }
    }
}
