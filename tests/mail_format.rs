//! What the stamp produces, checked by parsing the bytes that would go on the wire:
//! identity, list headers, encoding of non-ASCII text, line limits, DKIM coverage.

mod common;

use common::{base_settings, config_from, dkim_check, header_values};
use letterhead::domain::{DisplayName, EmailAddress, HeaderText};
use letterhead::mail::{ComposedMessage, ListHeaders, MailClass, Stamp, StampError};
use mail_parser::MessageParser;

fn stamp() -> Stamp {
    Stamp::new(&config_from(&base_settings("sqlite::memory:", 2525)))
}

fn marketing(subject: &str, name: Option<&str>, from: Option<&str>) -> ComposedMessage {
    let text = format!(
        "Hello!\n\n{}",
        "A long line of newsletter text without any break. ".repeat(40)
    );
    ComposedMessage {
        to: EmailAddress::parse("zoe@example.org").unwrap(),
        to_name: name.map(|n| DisplayName::parse(n).unwrap()),
        subject: HeaderText::parse(subject).unwrap(),
        html: templates::email::paragraphs(&text),
        text,
        reason: "You receive this because you subscribed to Weekly News.".into(),
        class: MailClass::Marketing {
            list: ListHeaders {
                slug: "weekly".into(),
                unsubscribe_url: "https://news.example.com/unsubscribe/abc.def.ghi"
                    .parse()
                    .unwrap(),
                preferences_url: "https://news.example.com/preferences/xyz".parse().unwrap(),
            },
            from: from.map(|f| EmailAddress::parse(f).unwrap()),
        },
    }
}

/// MF-8: non-ASCII subjects and names are encoded-words that decode exactly; CS-2: the subject
/// is exactly what was written.
#[tokio::test]
async fn mf8_non_ascii_subject_and_name_decode_exactly() {
    let subject = "Ünïcödé — 日本語 ✓ and a rather long subject line that must be folded somewhere";
    let signed = stamp()
        .stamp(marketing(subject, Some("Zoë Ångström, \"the reader\""), None))
        .unwrap();
    let parsed = MessageParser::default().parse(signed.bytes()).unwrap();
    assert_eq!(parsed.subject(), Some(subject));
    let to = parsed.to().unwrap().first().unwrap();
    assert_eq!(to.name(), Some("Zoë Ångström, \"the reader\""));
    assert_eq!(to.address(), Some("zoe@example.org"));
    let raw = String::from_utf8(signed.bytes().to_vec()).unwrap();
    let head = raw.split("\r\n\r\n").next().unwrap();
    assert!(
        head.is_ascii(),
        "headers are 7-bit, non-ASCII only as encoded-words"
    );
    // MF-7: a long encoded subject is folded: continuation lines start with white space and no
    // header line runs past 78 characters.
    let subject_lines: Vec<&str> = head
        .split("\r\n")
        .skip_while(|l| !l.starts_with("Subject:"))
        .take_while(|l| l.starts_with("Subject:") || l.starts_with(' ') || l.starts_with('\t'))
        .collect();
    assert!(
        subject_lines.len() > 1,
        "the subject is folded: {subject_lines:?}"
    );
    assert!(subject_lines.iter().all(|l| l.len() <= 78), "{subject_lines:?}");
    assert!(dkim_check::passes(signed.bytes()).await);
}

/// LU-1, LU-8, LU-10, CS-5, MF-10, MF-11: one of each list header, RFC 2369 syntax, a stable
/// List-Id, the opt-out in both parts, charset declared, long lines encoded.
#[tokio::test]
async fn marketing_mail_carries_exactly_one_set_of_list_headers() {
    let signed = stamp()
        .stamp(marketing("Weekly news", Some("Zoë"), None))
        .unwrap();
    let raw = String::from_utf8(signed.bytes().to_vec()).unwrap();
    assert_eq!(
        header_values(&raw, "List-Unsubscribe"),
        vec!["<https://news.example.com/unsubscribe/abc.def.ghi>"]
    );
    assert_eq!(
        header_values(&raw, "List-Unsubscribe-Post"),
        vec!["List-Unsubscribe=One-Click"]
    );
    assert_eq!(
        header_values(&raw, "List-Id"),
        vec!["<weekly.list-id.example.com>"]
    );
    assert_eq!(
        header_values(&raw, "From"),
        vec!["\"Example Newsletter Ltd\" <news@example.com>"]
    );
    assert_eq!(signed.envelope().from().unwrap().to_string(), "news@example.com");

    let parsed = MessageParser::default().parse(signed.bytes()).unwrap();
    let text = parsed.body_text(0).unwrap();
    let html = parsed.body_html(0).unwrap();
    assert!(text.contains("Unsubscribe with one click: https://news.example.com/unsubscribe/abc.def.ghi"));
    assert!(html.contains("href=\"https://news.example.com/unsubscribe/abc.def.ghi\""));
    assert!(text.contains("https://news.example.com/preferences/xyz"));
    assert!(html.contains("1 Example Street") && text.contains("1 Example Street"));
    assert_eq!(raw.matches("charset=utf-8").count(), 2);
    for line in raw.split("\r\n") {
        assert!(line.len() <= 998, "line of {} octets", line.len());
    }

    // LU-2, DK-5: the list headers are signed and over-signed: a second copy breaks the signature.
    assert!(dkim_check::passes(signed.bytes()).await);
    let covered = dkim_check::signed_headers(&raw);
    for name in ["list-unsubscribe", "list-unsubscribe-post", "list-id"] {
        assert!(
            covered.iter().any(|n| n == name),
            "{name} not signed: {covered:?}"
        );
    }
    for added in [
        "List-Unsubscribe: <https://evil.example/unsub>\r\n",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        "Subject: Another subject\r\n",
    ] {
        let mut forged = added.as_bytes().to_vec();
        forged.extend_from_slice(signed.bytes());
        assert!(
            !dkim_check::passes(&forged).await,
            "adding {added:?} must break the signature"
        );
    }
}

/// CS-1, GY-7: transactional mail comes from NOTICE_FROM, marketing from MAIL_FROM or another
/// address on the configured domain; anything else is refused.
#[tokio::test]
async fn cs1_senders_stay_on_the_configured_domain() {
    let s = stamp();
    let signed = s
        .stamp(marketing("Hi", None, Some("editor@example.com")))
        .unwrap();
    assert!(String::from_utf8_lossy(signed.bytes()).contains("<editor@example.com>"));
    let foreign = s.stamp(marketing("Hi", None, Some("editor@elsewhere.example")));
    assert!(matches!(foreign, Err(StampError::ForeignSender(_))));

    let mut notice = marketing("Notice", None, None);
    notice.class = MailClass::Transactional {
        preferences_url: None,
    };
    let signed = s.stamp(notice).unwrap();
    let raw = String::from_utf8(signed.bytes().to_vec()).unwrap();
    assert_eq!(
        header_values(&raw, "From"),
        vec!["\"Example Newsletter Ltd\" <notices@example.com>"]
    );
    assert!(header_values(&raw, "List-Unsubscribe-Post").is_empty());
}

/// MF-3: every stamped message gets its own Message-ID.
#[test]
fn mf3_message_ids_are_unique() {
    let s = stamp();
    let ids: std::collections::HashSet<String> = (0..200)
        .map(|_| {
            s.stamp(marketing("Hi", None, None))
                .unwrap()
                .message_id()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 200);
    assert!(ids.iter().all(|id| id.ends_with("@example.com")));
}

/// Headers never carry raw user input: the types that reach a header refuse CR and LF.
#[test]
fn header_injection_cannot_be_composed() {
    assert!(EmailAddress::parse("victim@example.org\r\nBcc: everyone@example.org").is_err());
    assert!(DisplayName::parse("Zoë\r\nBcc: everyone@example.org").is_err());
    assert!(HeaderText::parse("Hello\r\nBcc: everyone@example.org").is_err());
    assert!(HeaderText::parse("Hello\nBcc: everyone@example.org").is_err());
}
