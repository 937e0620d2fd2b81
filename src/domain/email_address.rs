//! `EmailAddress`: a syntactically valid, deliverable-looking mailbox address.
//!
//! The local part is limited to RFC 5321 dot-atom ASCII (we do not send SMTPUTF8), the domain
//! may be internationalized and is stored as IDNA ASCII (punycode). No CR, LF or other control
//! character can survive parsing, so an address can never inject a header.

use std::fmt;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress {
    /// `local@ascii-domain`, local part as given.
    address: String,
    at: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailAddressError {
    #[error("is empty")]
    Empty,
    #[error("is longer than 254 characters")]
    TooLong,
    #[error("must contain one @ between a name and a domain")]
    Shape,
    #[error("has a name part that is not allowed")]
    LocalPart,
    #[error("has a domain that is not valid")]
    Domain,
}

const LOCAL_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~.";

impl EmailAddress {
    pub fn parse(input: &str) -> Result<Self, EmailAddressError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(EmailAddressError::Empty);
        }
        if input.len() > 512 {
            return Err(EmailAddressError::TooLong);
        }
        let at = input.rfind('@').ok_or(EmailAddressError::Shape)?;
        let (local, domain) = (&input[..at], &input[at + 1..]);
        if local.is_empty() || domain.is_empty() {
            return Err(EmailAddressError::Shape);
        }
        if local.len() > 64
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
            || !local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || LOCAL_SPECIALS.contains(c))
        {
            return Err(EmailAddressError::LocalPart);
        }
        let domain = parse_domain(domain)?;
        let address = format!("{local}@{domain}");
        if address.len() > 254 {
            return Err(EmailAddressError::TooLong);
        }
        Ok(Self {
            at: local.len(),
            address,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.address
    }

    pub fn local_part(&self) -> &str {
        &self.address[..self.at]
    }

    /// The domain in lower-case IDNA ASCII form.
    pub fn domain(&self) -> &str {
        &self.address[self.at + 1..]
    }

    /// The key two spellings of one mailbox share: the whole address in lower case. Providers
    /// treat local parts case-insensitively in practice, and a subscriber must not be able to
    /// dodge an opt-out or a suppression by changing case.
    pub fn normalized(&self) -> String {
        self.address.to_ascii_lowercase()
    }

    /// The address as a page shows it to whoever typed it: the first character, an ellipsis
    /// and the domain (`a…@example.org`), so a shared screen does not give it away whole.
    pub fn masked(&self) -> String {
        let first = self.local_part().chars().next().unwrap_or('?');
        format!("{first}…@{}", self.domain())
    }

    pub fn to_lettre(&self) -> lettre::Address {
        // Both halves were checked above against a stricter grammar than lettre's.
        lettre::Address::new(self.local_part(), self.domain())
            .expect("EmailAddress is always a valid lettre address")
    }
}

fn parse_domain(domain: &str) -> Result<String, EmailAddressError> {
    if domain.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(EmailAddressError::Domain);
    }
    let ascii = idna::domain_to_ascii(domain).map_err(|_| EmailAddressError::Domain)?;
    if ascii.len() > 253 || !ascii.contains('.') {
        return Err(EmailAddressError::Domain);
    }
    for label in ascii.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(EmailAddressError::Domain);
        }
    }
    // A top-level domain is never all digits (that would be an IP address written loosely).
    if ascii
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(EmailAddressError::Domain);
    }
    Ok(ascii)
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

/// Addresses are personal data: `Debug` (and so logs) shows only the domain.
impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress(***@{})", self.domain())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_internationalized_addresses() {
        let a = EmailAddress::parse("  Zoe.Smith+news@Example.COM ").unwrap();
        assert_eq!(a.as_str(), "Zoe.Smith+news@example.com");
        assert_eq!(a.normalized(), "zoe.smith+news@example.com");
        let idn = EmailAddress::parse("info@bücher.de").unwrap();
        assert_eq!(idn.domain(), "xn--bcher-kva.de");
    }

    #[test]
    fn masked_keeps_the_first_character_and_the_domain() {
        let a = EmailAddress::parse("Zoe.Smith@Example.COM").unwrap();
        assert_eq!(a.masked(), "Z…@example.com");
        assert_eq!(
            EmailAddress::parse("x@example.org").unwrap().masked(),
            "x…@example.org"
        );
    }

    #[test]
    fn refuses_header_injection_and_malformed_input() {
        for bad in [
            "",
            "a",
            "a@b",
            "@example.com",
            "a@",
            "a\r\nBcc: x@example.com@example.com",
            "a@example.com\r\nBcc: victim@example.com",
            "a b@example.com",
            ".a@example.com",
            "a..b@example.com",
            "a@-example.com",
            "a@example..com",
            "a@1.2.3.4",
            "zoë@example.com",
            "\"quoted\"@example.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert_eq!(
            EmailAddress::parse(&long_local),
            Err(EmailAddressError::LocalPart)
        );
    }

    #[test]
    fn debug_output_hides_the_mailbox() {
        let a = EmailAddress::parse("secret.person@example.com").unwrap();
        assert!(!format!("{a:?}").contains("secret.person"));
    }
}
