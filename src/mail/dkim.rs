//! DKIM signing (RFC 6376) with mail-auth on aws-lc-rs: rsa-sha256 (or ed25519-sha256),
//! relaxed/relaxed, no `l=`. lettre's own signer uses the pure-Rust `rsa` crate and signs about
//! 6x slower, which would cap the whole mailer.

use mail_auth::common::crypto::{
    Algorithm, Ed25519Key, HashContext, HashImpl, HashOutput, RsaKey, Sha256, SigningKey,
};
use mail_auth::common::headers::{HeaderWriter, Writable, Writer};
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};

use crate::config::DkimKey;
use crate::config::dkim_key::{parse_ed25519, parse_rsa};

/// Headers covered by the signature (DK-3). Listing a header once more than it occurs
/// "over-signs" it (DK-5): a copy added in transit then breaks the signature. Headers a
/// message lacks are signed as absent, so no one can add them later either.
const SIGNED_HEADERS: &[&str] = &[
    "From",
    "From",
    "Subject",
    "Subject",
    "Date",
    "To",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Reply-To",
    "Sender",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Unsubscribe-Post",
];

/// A signing key lent for one message whose body hash is already taken. mail-auth's relaxed
/// body canonicalization visits the body a byte at a time and writes each byte on its own, a
/// cost next to the RSA signature itself; [`relaxed_body`] does the same work a line at a time.
struct PrecomputedBody<'k, K> {
    key: &'k K,
    body_hash: HashOutput,
}

impl<K: SigningKey> SigningKey for PrecomputedBody<'_, K> {
    type Hasher = K::Hasher;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.key.sign(input)
    }

    /// mail-auth asks for one hash: the body's.
    fn hash(&self, _canonical_body: impl Writable) -> HashOutput {
        self.body_hash.clone()
    }

    fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }
}

/// The body of a formatted message: what follows the first empty line.
fn body_of(message: &[u8]) -> &[u8] {
    memchr::memmem::find(message, b"\r\n\r\n").map_or(&[][..], |at| &message[at + 4..])
}

/// Writes the body's relaxed canonical form (RFC 6376, 3.4.4) to `out`, the hasher itself when
/// signing (the canonical form is never held whole): whitespace at the end of each line
/// removed, every other run of spaces and tabs reduced to one space, empty lines at the end
/// removed, and each remaining line ended with CRLF (an empty body stays empty).
///
/// A line of nothing but whitespace is an empty line, so at the end of the body it goes too;
/// mail-auth's own canonicalization keeps it (dkimpy and the RFC do not). Our bodies never end
/// that way (the last line is a MIME boundary), and both give the same bytes for everything
/// else, which the unit tests check.
fn relaxed_body(body: &[u8], out: &mut impl Writer) {
    let mut empty_lines = 0;
    let mut rest = body;
    loop {
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(at) => (&rest[..at], Some(&rest[at + 1..])),
            None => (rest, None),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let end = line.iter().rposition(|&b| b != b' ' && b != b'\t');
        if let Some(end) = end {
            for _ in 0..empty_lines {
                out.write(b"\r\n");
            }
            empty_lines = 0;
            push_reduced(&line[..=end], out);
            out.write(b"\r\n");
        } else {
            empty_lines += 1; // kept only if something follows
        }
        match next {
            Some(next) => rest = next,
            None => return,
        }
    }
}

/// Writes a line without whitespace at its end, each run of spaces and tabs as one space.
/// Most lines have neither tabs nor two spaces in a row and are written whole.
fn push_reduced(line: &[u8], out: &mut impl Writer) {
    let clean = memchr::memchr(b'\t', line).is_none()
        && !memchr::memchr_iter(b' ', line).any(|at| line.get(at + 1) == Some(&b' '));
    if clean {
        out.write(line);
        return;
    }
    // Words as they are, each gap before one (leading whitespace too) as one space.
    let mut gap_before = matches!(line.first(), Some(b' ' | b'\t'));
    for word in line.split(|&b| b == b' ' || b == b'\t').filter(|w| !w.is_empty()) {
        if gap_before {
            out.write(b" ");
        }
        out.write(word);
        gap_before = true;
    }
}

/// The SHA-256 of the body's relaxed canonical form.
fn body_hash<K: SigningKey>(message: &[u8]) -> HashOutput {
    let mut hasher = <K::Hasher as HashImpl>::hasher();
    relaxed_body(body_of(message), &mut hasher);
    hasher.complete()
}

enum Key {
    Rsa(RsaKey<Sha256>),
    Ed25519(Ed25519Key),
}

/// The header with the `b=` value running straight into its closing `;`. mail-auth folds
/// after any character that fills a line, the value's last one too, and then writes the `;`
/// on a line of its own; but it signed the header with an empty `b=` and nothing between it
/// and the `;`. A verifier that deletes only the value's characters (dkimpy: RFC 6376 lets
/// whitespace inside the value be ignored) keeps that fold and fails the signature; one that
/// also deletes the whitespace around the value (RFC 6376, 3.7; mail-auth) passes. Without the
/// fold both read what was signed. The line grows by one character, far below 998 (MF-5).
fn without_fold_after_b(mut header: String) -> String {
    if header.ends_with("\r\n\t;\r\n") {
        header.truncate(header.len() - "\r\n\t;\r\n".len());
        header.push_str(";\r\n");
    }
    header
}

/// Signs formatted messages for one domain and selector.
pub struct Signer {
    key: Key,
    domain: String,
    selector: String,
}

impl Signer {
    pub fn new(key: &DkimKey, domain: &str, selector: &str) -> Self {
        // The key was parsed successfully when the configuration was read.
        let key = match parse_rsa(key.pem()).ok().flatten() {
            Some(k) => Key::Rsa(k),
            None => Key::Ed25519(parse_ed25519(key.pem()).expect("checked at start-up")),
        };
        Self {
            key,
            domain: domain.to_owned(),
            selector: selector.to_owned(),
        }
    }

    /// The `DKIM-Signature: ...\r\n` header line(s) for this message.
    pub fn sign(&self, message: &[u8]) -> Result<String, String> {
        let started = std::time::Instant::now();
        let signature = match &self.key {
            Key::Rsa(key) => self.signer(key, message).sign(message),
            Key::Ed25519(key) => self.signer(key, message).sign(message),
        }
        .map_err(|e| format!("DKIM signing failed: {e}"))?;
        metrics::histogram!("letterhead_dkim_sign_duration_seconds").record(started.elapsed());
        Ok(without_fold_after_b(signature.to_header()))
    }

    /// mail-auth's signer for this message (a few small allocations; the key is lent).
    fn signer<'k, K: SigningKey>(
        &self,
        key: &'k K,
        message: &[u8],
    ) -> DkimSigner<PrecomputedBody<'k, K>, Done> {
        let body_hash = body_hash::<K>(message);
        DkimSigner::from_key(PrecomputedBody { key, body_hash })
            .domain(self.domain.as_str())
            .selector(self.selector.as_str())
            .headers(SIGNED_HEADERS.iter().copied())
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use mail_auth::common::crypto::{HashContext, HashImpl, Sha256};
    use mail_auth::common::headers::HeaderWriter;
    use mail_auth::dkim::Canonicalization;
    use mail_auth::dkim::canonicalize::BodyHasher;

    use super::{Key, relaxed_body};

    fn ours(body: &str) -> String {
        let mut out = Vec::new();
        relaxed_body(body.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn relaxed_body_follows_rfc_6376() {
        // The RFC's example (3.4.5), and the edges.
        assert_eq!(ours(" C \r\nD \t E\r\n\r\n\r\n"), " C\r\nD E\r\n");
        assert_eq!(ours(""), "");
        assert_eq!(ours("\r\n\r\n"), "");
        assert_eq!(ours("no newline at the end"), "no newline at the end\r\n");
        assert_eq!(ours("a\r\n\r\n\r\nb\r\n"), "a\r\n\r\n\r\nb\r\n");
        assert_eq!(ours("a\r\n \t \r\nb"), "a\r\n\r\nb\r\n");
        assert_eq!(ours("a\r\n   \r\n"), "a\r\n");
        assert_eq!(ours("\tx\t\ty  \r\n"), " x y\r\n");
        assert_eq!(
            ours("  two leading\r\n one leading\r\n"),
            " two leading\r\n one leading\r\n"
        );
    }

    /// DK-1: a signature that verifies with every verifier, dkimpy included.
    #[test]
    fn the_b_value_is_never_folded_from_its_semicolon() {
        use super::{DkimKey, Signer};
        let pem = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/dkim-test-rsa2048.pem"
        ));
        let signer = Signer::new(&DkimKey::from_pem(pem).unwrap(), "example.com", "t");
        // The headers of a campaign message: with them mail-auth ends the signature with a
        // fold before the `;` (checked below), which verifies with mail-auth and not dkimpy.
        let message = "From: \"Bench Ltd\" <news@example.com>\r\nReply-To: <privacy@example.com>\r\n\
            To: Zoe <zoe@example.org>\r\nSubject: Plain subject\r\nMessage-ID: <a@example.com>\r\n\
            Date: Tue, 01 Dec 2026 15:23:46 +0000\r\nList-Id: <weekly.list-id.example.com>\r\n\
            List-Unsubscribe: <https://example.com/u/x>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\
            MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n";
        let header = signer.sign(message.as_bytes()).unwrap();
        assert!(!header.contains("\t;"), "{header}");
        let value = &header[header.find("; b=").unwrap() + 4..];
        assert!(
            value
                .trim_end_matches(";\r\n")
                .ends_with(|c: char| c.is_ascii_alphanumeric() || "+/=".contains(c))
        );

        // mail-auth's own header for it has the fold (the case the function is for).
        let Key::Rsa(key) = &signer.key else {
            panic!("an RSA key")
        };
        let raw = signer
            .signer(key, message.as_bytes())
            .sign(message.as_bytes())
            .unwrap()
            .to_header();
        assert!(raw.ends_with("\r\n\t;\r\n"), "{raw}");
    }

    #[test]
    fn relaxed_body_hashes_like_mail_auth() {
        let bodies = [
            "Hello,\r\n\r\nthis is  a\tbody with =C3=BC quoted-printable=\r\n soft breaks.\r\n",
            " leading\r\n\ttab\r\n\r\n\r\nafter empty lines\r\n\r\n",
            "--boundary\r\nContent-Type: text/plain\r\n\r\nx  \r\n--boundary--\r\n",
            "",
            "one line, no newline",
            "a\r\n\r\n",
        ];
        for body in bodies {
            let mut reference = BodyHasher::new(Sha256::hasher(), Canonicalization::Relaxed, 0);
            reference.write(body.as_bytes());
            let (hasher, _) = reference.finish();
            let mut ours_hasher = Sha256::hasher();
            let mut canonical = Vec::new();
            relaxed_body(body.as_bytes(), &mut canonical);
            mail_auth::common::headers::Writer::write(&mut ours_hasher, &canonical);
            assert_eq!(
                hasher.complete().as_ref(),
                ours_hasher.complete().as_ref(),
                "{body:?}"
            );
        }
    }
}
