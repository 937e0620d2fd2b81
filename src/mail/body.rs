//! Transfer encoding of the text and HTML parts.
//!
//! lettre's `Body::new` scans a part to choose its encoding, then inserts each `\r` of the CRLF
//! line endings one by one (a shift of the rest of the string per line) before encoding: about
//! half of the CPU a campaign message cost us outside the network (measured with perf: 24 µs of
//! the 51 µs spent on a 20 KB message's bodies). Our parts are text we rendered, so the choice
//! is simple: quoted-printable, which leaves mostly-ASCII text readable and keeps every line
//! under 76 characters whatever the template produced, or base64 when most bytes would need
//! escaping (text in a non-Latin script).

use lettre::message::Body;
use lettre::message::header::ContentTransferEncoding;

/// `text` as a transfer-encoded body with CRLF line endings.
pub fn encode(text: &str) -> Body {
    let crlf = with_crlf(text);
    if mostly_printable_ascii(crlf.as_bytes()) {
        Body::dangerous_pre_encoded(
            quoted_printable::encode(crlf.as_bytes()),
            ContentTransferEncoding::QuotedPrintable,
        )
    } else {
        // base64 accepts any body; should that ever change, let lettre choose.
        Body::new_with_encoding(crlf, ContentTransferEncoding::Base64)
            .unwrap_or_else(|raw| Body::new(String::from_utf8_lossy(&raw).into_owned()))
    }
}

/// Line endings as CRLF, in one pass (a lone `\r` stays as it is; quoted-printable escapes it).
fn with_crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        out.push_str(line);
        if lines.peek().is_some() {
            out.push_str(if line.ends_with('\r') { "\n" } else { "\r\n" });
        }
    }
    out
}

/// Whether quoted-printable stays compact: at most a third of the bytes need an escape (the
/// same rule lettre applies).
fn mostly_printable_ascii(bytes: &[u8]) -> bool {
    let escaped = bytes
        .iter()
        .filter(|&&b| !matches!(b, b'\t' | b'\r' | b'\n' | b' '..=b'~'))
        .count();
    escaped <= bytes.len() / 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(body: &Body) -> String {
        let bytes = match body.encoding() {
            ContentTransferEncoding::QuotedPrintable => {
                quoted_printable::decode(body.as_ref(), quoted_printable::ParseMode::Strict).unwrap()
            }
            ContentTransferEncoding::Base64 => {
                use base64::Engine;
                let joined: Vec<u8> = body
                    .as_ref()
                    .iter()
                    .copied()
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect();
                base64::engine::general_purpose::STANDARD.decode(joined).unwrap()
            }
            other => panic!("unexpected encoding {other:?}"),
        };
        String::from_utf8(bytes).unwrap()
    }

    fn assert_wire_safe(body: &Body) {
        let wire = std::str::from_utf8(body.as_ref()).expect("ASCII on the wire");
        assert!(wire.is_ascii());
        for line in wire.split("\r\n") {
            assert!(line.len() <= 76, "line of {}: {line:?}", line.len());
            assert!(
                !line.contains('\n') && !line.contains('\r'),
                "bare line break in {line:?}"
            );
        }
    }

    #[test]
    fn text_round_trips_with_crlf_line_endings_and_short_lines() {
        let long = "word ".repeat(200);
        for text in [
            "Hello Zoë,\n\nthis week in our newsletter: Ünïcödé — 日本語 ✓\n",
            "a = b\nend with spaces   \ttab\t\nlast",
            long.as_str(),
            "already\r\ncrlf\r\nmixed\nends\n",
            "\nleading and trailing newline\n",
            "a lone \r carriage return",
            "",
        ] {
            let body = encode(text);
            assert_eq!(
                body.encoding(),
                ContentTransferEncoding::QuotedPrintable,
                "{text:?}"
            );
            assert_wire_safe(&body);
            assert_eq!(decoded(&body), with_crlf(text), "{text:?}");
        }
        assert_eq!(with_crlf("a\nb\r\nc\n"), "a\r\nb\r\nc\r\n");
    }

    #[test]
    fn mostly_non_latin_text_goes_as_base64() {
        let text = "日本語のニュースレターです。\n".repeat(30);
        let body = encode(&text);
        assert_eq!(body.encoding(), ContentTransferEncoding::Base64);
        assert_wire_safe(&body);
        assert_eq!(decoded(&body), with_crlf(&text));
    }
}
