//! Transfer encoding of the text and HTML parts.
//!
//! lettre's `Body::new` scans a part to choose its encoding, then inserts each `\r` of the CRLF
//! line endings one by one (a shift of the rest of the string per line) before encoding, which
//! made it the largest cost of a campaign message outside the network. Our parts are text we
//! rendered, so the choice is simple: quoted-printable, which leaves mostly-ASCII text readable and keeps every line
//! under 76 characters whatever the template produced, or base64 when most bytes would need
//! escaping (text in a non-Latin script).
//!
//! The quoted-printable encoder is our own: one pass that turns line ends into CRLF as it goes,
//! copies runs of plain characters whole (checked sixteen bytes at a time, which the compiler
//! turns into vector instructions), and counts what needs escaping for the choice of encoding.
//! (The `quoted_printable` crate pushes byte by byte, which showed in a campaign's profile.)

use lettre::message::Body;
use lettre::message::header::ContentTransferEncoding;

/// `text` as a transfer-encoded body with CRLF line endings.
pub fn encode(text: &str) -> Body {
    let encoded = quoted_printable_crlf(text.as_bytes());
    if encoded.is_compact() {
        Body::dangerous_pre_encoded(encoded.bytes, ContentTransferEncoding::QuotedPrintable)
    } else {
        // base64 accepts any body; should that ever change, let lettre choose.
        let crlf = with_crlf(text);
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

/// Whether quoted-printable carries `b` as it is (RFC 2045, 6.7): printable ASCII but `=`, and
/// space and tab (which must not end a line; the encoder sees to that). Written without
/// branches so that a run of them is checked many bytes at a time.
#[inline(always)]
fn is_plain(b: u8) -> bool {
    (b.wrapping_sub(b' ') < 0x5F) & (b != b'=') | (b == b'\t')
}

/// How many bytes at the start of `bytes` are plain.
fn plain_prefix(bytes: &[u8]) -> usize {
    let mut at = 0;
    for block in bytes.chunks_exact(16) {
        let block: &[u8; 16] = block.try_into().expect("16 bytes");
        if !block.iter().fold(true, |plain, &b| plain & is_plain(b)) {
            break;
        }
        at += 16;
    }
    at + bytes[at..]
        .iter()
        .position(|&b| !is_plain(b))
        .unwrap_or(bytes.len() - at)
}

/// Characters on an encoded line before a soft line break's `=` (RFC 2045: at most 76 in all).
const LINE: usize = 75;

/// A quoted-printable body, with what the choice between it and base64 needs.
struct QuotedPrintable {
    bytes: Vec<u8>,
    /// Bytes of the text outside printable ASCII, tab, CR and LF.
    unprintable: usize,
    /// The text's length with its line ends as CRLF.
    crlf_len: usize,
}

impl QuotedPrintable {
    /// Whether quoted-printable stays compact: at most a third of the bytes (with CRLF line
    /// ends) need an escape (the rule lettre applies).
    fn is_compact(&self) -> bool {
        self.unprintable <= self.crlf_len / 3
    }
}

/// Appends `=XY`.
fn push_escape(b: u8, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
}

/// Ends a line of quoted-printable: a space or tab that would end it is escaped instead (a
/// transport may strip it). That escape may end the line at 76: no soft break follows it.
fn end_line(column: &mut usize, out: &mut Vec<u8>) {
    if *column > 0
        && let Some(&b @ (b' ' | b'\t')) = out.last()
    {
        out.pop();
        if *column + 2 > LINE + 1 {
            out.extend_from_slice(b"=\r\n");
        }
        push_escape(b, out);
    }
    *column = 0;
}

/// Quoted-printable of `text` with each line end (`\n` or `\r\n`) as a hard CRLF break, soft
/// breaks so that no encoded line is over 76 characters, and no escape split by a break.
fn quoted_printable_crlf(text: &[u8]) -> QuotedPrintable {
    let mut out = Vec::with_capacity(text.len() + text.len() / 16 + 16);
    let (mut unprintable, mut bare_lfs) = (0, 0);
    let mut column = 0;
    let mut rest = text;
    loop {
        // A run of plain bytes that fits on this line, copied whole.
        let window = &rest[..rest.len().min(LINE - column)];
        let run = plain_prefix(window);
        out.extend_from_slice(&window[..run]);
        column += run;
        rest = &rest[run..];
        let Some(&b) = rest.first() else {
            end_line(&mut column, &mut out);
            break;
        };
        match b {
            b'\n' => {
                bare_lfs += 1;
                end_line(&mut column, &mut out);
                out.extend_from_slice(b"\r\n");
                rest = &rest[1..];
            }
            b'\r' if rest.get(1) == Some(&b'\n') => {
                end_line(&mut column, &mut out);
                out.extend_from_slice(b"\r\n");
                rest = &rest[2..];
            }
            // The line is full and more of it follows.
            _ if is_plain(b) => {
                out.extend_from_slice(b"=\r\n");
                column = 0;
            }
            _ => {
                if !matches!(b, b'\t' | b'\r' | b' '..=b'~') {
                    unprintable += 1;
                }
                if column + 3 > LINE {
                    out.extend_from_slice(b"=\r\n");
                    column = 0;
                }
                push_escape(b, &mut out);
                column += 3;
                rest = &rest[1..];
            }
        }
    }
    QuotedPrintable {
        bytes: out,
        unprintable,
        crlf_len: text.len() + bare_lfs,
    }
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

    /// Lines of pseudo-random text from an alphabet of what goes wrong: spaces and tabs (also at
    /// line ends and before breaks), `=`, lone CRs, non-ASCII, long words, empty lines.
    #[test]
    fn generated_text_round_trips_with_no_line_over_76_and_no_whitespace_at_a_line_end() {
        const PIECES: [&str; 12] = [
            " ",
            "\t",
            "=",
            "\r",
            "\n",
            "\r\n",
            "ü",
            "—",
            "word",
            "a",
            ".",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for case in 0..2_000 {
            let mut text = String::new();
            for _ in 0..(case % 97) * 3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push_str(PIECES[(seed % PIECES.len() as u64) as usize]);
            }
            let encoded = quoted_printable_crlf(text.as_bytes()).bytes;
            let wire = std::str::from_utf8(&encoded).expect("ASCII");
            for line in wire.split("\r\n") {
                assert!(line.len() <= 76, "line of {} in {text:?}: {line:?}", line.len());
                assert!(
                    !line.ends_with([' ', '\t']),
                    "whitespace at a line end in {text:?}: {line:?}"
                );
                assert!(!line.contains(['\r', '\n']), "bare line break in {line:?}");
            }
            let back = quoted_printable::decode(&encoded, quoted_printable::ParseMode::Strict).unwrap();
            assert_eq!(String::from_utf8(back).unwrap(), with_crlf(&text), "{text:?}");
        }
    }

    #[test]
    fn lines_break_at_76_and_escapes_are_never_split() {
        let encoded = |t: &str| String::from_utf8(quoted_printable_crlf(t.as_bytes()).bytes).unwrap();
        let long = "x".repeat(80);
        assert_eq!(
            encoded(&long),
            format!("{}=\r\n{}", "x".repeat(75), "x".repeat(5))
        );
        // 74 characters, then an escape that does not fit: it moves to the next line whole.
        let text = format!("{}=y", "x".repeat(74));
        assert_eq!(encoded(&text), format!("{}=\r\n=3Dy", "x".repeat(74)));
        // A space at the very end is escaped; a line of 73 + `=20` is exactly 76 long.
        let text = format!("{} \nnext", "x".repeat(73));
        assert_eq!(encoded(&text), format!("{}=20\r\nnext", "x".repeat(73)));
        assert_eq!(encoded("tab\t\r\n"), "tab=09\r\n");
        assert_eq!(encoded(""), "");
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
