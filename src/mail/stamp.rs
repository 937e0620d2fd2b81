//! The stamp: the one step every outgoing email passes. It adds what the law and the mailbox
//! providers require and what no caller may forget or fake: From/Reply-To of the sender identity
//! (CS-1), a unique Message-ID on the sender's domain and a Date (MF-1..3), the list headers of
//! marketing mail (LU-1, LU-8, LU-10), the footer with legal name, postal address, contact and
//! the way out in both parts (CS-4, CS-5), and the DKIM signature (DK-1..5).
//!
//! [`StampedMessage`] has private fields and no constructor outside this module, so the
//! transport can only ever be handed stamped mail.

use lettre::address::Envelope;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};

use super::dkim::Signer;
use super::message::{ComposedMessage, MailClass};
use crate::config::Config;
use crate::domain::EmailAddress;

#[derive(Debug, thiserror::Error)]
pub enum StampError {
    #[error("the sender {0} is not on a configured sending domain")]
    ForeignSender(String),
    #[error("the list slug {0:?} cannot make a List-Id")]
    BadListSlug(String),
    #[error("the message could not be built: {0}")]
    Build(String),
    #[error("{0}")]
    Dkim(String),
}

/// A message ready for the wire: stamped, signed, with its envelope.
pub struct StampedMessage {
    envelope: Envelope,
    bytes: Vec<u8>,
    message_id: String,
}

impl StampedMessage {
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// Without angle brackets.
    pub fn message_id(&self) -> &str {
        &self.message_id
    }
}

impl std::fmt::Debug for StampedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "StampedMessage({}, {} bytes)",
            self.message_id,
            self.bytes.len()
        )
    }
}

pub struct Stamp {
    org_name: String,
    postal_address: String,
    contact_email: EmailAddress,
    mail_from: EmailAddress,
    notice_from: EmailAddress,
    sender_domains: Vec<String>,
    signer: Option<Signer>,
}

impl Stamp {
    pub fn new(config: &Config) -> Self {
        Self {
            org_name: config.identity.org_name.as_str().to_owned(),
            postal_address: config.identity.postal_address.clone(),
            contact_email: config.identity.contact_email.clone(),
            mail_from: config.mail_from.clone(),
            notice_from: config.notice_from.clone(),
            sender_domains: config.sender_domains().into_iter().map(str::to_owned).collect(),
            signer: config
                .dkim
                .as_ref()
                .map(|d| Signer::new(&d.key, &d.domain, &d.selector)),
        }
    }

    pub fn is_sender_domain(&self, domain: &str) -> bool {
        self.sender_domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    pub fn stamp(&self, msg: ComposedMessage) -> Result<StampedMessage, StampError> {
        let from = match &msg.class {
            MailClass::Transactional { .. } => self.notice_from.clone(),
            MailClass::Marketing { from: Some(from), .. } => from.clone(),
            MailClass::Marketing { from: None, .. } => self.mail_from.clone(),
        };
        if !self.is_sender_domain(from.domain()) {
            return Err(StampError::ForeignSender(from.domain().to_owned()));
        }
        // Replies go to the published contact address when it is on our own domain (CS-1);
        // otherwise to the sender itself.
        let reply_to = if self.is_sender_domain(self.contact_email.domain()) {
            self.contact_email.clone()
        } else {
            from.clone()
        };
        let message_id = format!("{}@{}", uuid::Uuid::new_v4().simple(), from.domain());

        let (unsubscribe_url, preferences_url) = match &msg.class {
            MailClass::Transactional { preferences_url } => (None, preferences_url.as_ref()),
            MailClass::Marketing { list, .. } => (Some(&list.unsubscribe_url), Some(&list.preferences_url)),
        };
        let footer = templates::email::Footer {
            org_name: &self.org_name,
            postal_address: &self.postal_address,
            contact_email: self.contact_email.as_str(),
            reason: &msg.reason,
            unsubscribe_url: unsubscribe_url.map(|u| u.as_str()),
            preferences_url: preferences_url.map(|u| u.as_str()),
        };
        let html = templates::email::html_part(msg.subject.as_str(), &msg.html, &footer).into_string();
        let text = templates::email::text_part(&msg.text, &footer);

        let envelope = Envelope::new(Some(from.to_lettre()), vec![msg.to.to_lettre()])
            .map_err(|e| StampError::Build(e.to_string()))?;
        // Given its envelope, lettre does not parse the From and To headers back to make one.
        let mut builder = lettre::Message::builder()
            .envelope(envelope.clone())
            .from(Mailbox::new(Some(self.org_name.clone()), from.to_lettre()))
            .reply_to(Mailbox::new(Some(self.org_name.clone()), reply_to.to_lettre()))
            .to(Mailbox::new(
                msg.to_name.as_ref().map(|n| n.as_str().to_owned()),
                msg.to.to_lettre(),
            ))
            .raw_header(subject_header(&msg.subject))
            .message_id(Some(format!("<{message_id}>")))
            .date_now();

        if let MailClass::Marketing { list, .. } = &msg.class {
            let slug_ok = !list.slug.is_empty()
                && list.slug.len() <= 64
                && list
                    .slug
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !slug_ok {
                return Err(StampError::BadListSlug(list.slug.clone()));
            }
            // Our own URLs (url::Url is always percent-encoded ASCII without spaces or CR/LF).
            builder = builder
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Id"),
                    format!("<{}.list-id.{}>", list.slug, from.domain()),
                ))
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe"),
                    format!("<{}>", list.unsubscribe_url),
                ))
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                    "List-Unsubscribe=One-Click".to_owned(),
                ));
        }

        let message = builder
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(super::body::encode(&text)),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(super::body::encode(&html)),
                    ),
            )
            .map_err(|e| StampError::Build(e.to_string()))?;

        let mut bytes = message.formatted();
        if let Some(signer) = &self.signer {
            let header = signer.sign(&bytes).map_err(StampError::Dkim)?;
            let mut signed = Vec::with_capacity(header.len() + bytes.len());
            signed.extend_from_slice(header.as_bytes());
            signed.append(&mut bytes);
            bytes = signed;
        }
        Ok(StampedMessage {
            envelope,
            bytes,
            message_id,
        })
    }
}

/// The Subject header, encoded as lettre encodes it except that a word which looks like an
/// RFC 2047 encoded-word (`=?us-ascii?Q?...?=`) is encoded too: sent as is, mail clients
/// would decode what the marketer typed instead of showing it.
fn subject_header(subject: &crate::domain::HeaderText) -> HeaderValue {
    let mut encoded = String::new();
    // Writing to a String does not fail.
    let _ = encode_subject(subject.as_str(), &mut encoded);
    HeaderValue::dangerous_new_pre_encoded(
        HeaderName::new_from_ascii_str("Subject"),
        subject.as_str().to_owned(),
        encoded,
    )
}

fn encode_subject(subject: &str, out: &mut String) -> std::fmt::Result {
    use email_encoding::headers::writer::EmailWriter;
    use std::fmt::Write;
    let literal = |word: &str| !word.contains("=?") && word.bytes().all(|b| (32..127).contains(&b));
    let mut writer = EmailWriter::new(out, "Subject: ".len(), 0, false);
    // Words to encode, kept together so that one encoded-word holds them and their spaces.
    let mut pending = String::new();
    for word in subject.split_inclusive(' ') {
        if literal(word.trim_end_matches(' ')) {
            flush_encoded(&mut pending, &mut writer)?;
            writer.folding().write_str(word)?;
        } else {
            pending.push_str(word);
        }
    }
    flush_encoded(&mut pending, &mut writer)
}

fn flush_encoded(
    pending: &mut String,
    writer: &mut email_encoding::headers::writer::EmailWriter<'_>,
) -> std::fmt::Result {
    if pending.is_empty() {
        return Ok(());
    }
    let words = pending.trim_end_matches(' ');
    email_encoding::headers::rfc2047::encode(words, writer)?;
    for _ in 0..pending.len() - words.len() {
        writer.space();
    }
    pending.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::encode_subject;

    fn decoded(encoded: &str) -> String {
        let raw = format!("Subject: {encoded}\r\n\r\nbody");
        mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .and_then(|m| m.subject().map(str::to_owned))
            .unwrap_or_default()
    }

    #[test]
    fn a_typed_encoded_word_is_encoded_so_clients_show_it_as_typed() {
        for subject in [
            "=?us-ascii?Q?Free_money?=",
            "News =?utf-8?B?SGk=?= and more",
            "Grüße aus Köln, with a long tail of words that makes the header fold over the line limit",
        ] {
            let mut out = String::new();
            encode_subject(subject, &mut out).unwrap();
            assert_eq!(decoded(&out), subject, "{out}");
            assert!(out.lines().all(|l| l.len() <= 78), "{out}");
        }
        let mut plain = String::new();
        encode_subject("This week in letters", &mut plain).unwrap();
        assert_eq!(plain, "This week in letters", "plain words stay as they are");
    }
}
