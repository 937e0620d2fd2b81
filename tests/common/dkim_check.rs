//! DKIM verification for tests: mail-auth's verifier (a separate code path from its signer:
//! it parses the received bytes and the DKIM-Signature header) with the test key served from
//! a resolver cache instead of DNS.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt};

use super::{DKIM_DOMAIN, DKIM_SELECTOR, fixture};

struct StaticTxt(Mutex<HashMap<Box<str>, Txt>>);

impl ResolverCache<Box<str>, Txt> for StaticTxt {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().get(name).cloned()
    }
    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().remove(name)
    }
    fn insert(&self, key: Box<str>, value: Txt, _valid_until: std::time::Instant) {
        self.0.lock().unwrap().insert(key, value);
    }
}

/// The outcome of each DKIM signature in `raw`, checked against the test public key.
pub async fn verify(raw: &[u8]) -> Vec<DkimResult> {
    let public = std::fs::read_to_string(fixture("dkim-test-rsa2048.pub.b64")).unwrap();
    let record = format!("v=DKIM1; k=rsa; p={}", public.trim());
    let key = DomainKey::parse(record.as_bytes()).expect("test DKIM record parses");
    let mut map = HashMap::new();
    let name = format!("{DKIM_SELECTOR}._domainkey.{DKIM_DOMAIN}.");
    map.insert(name.clone().into_boxed_str(), Txt::DomainKey(Arc::new(key)));
    let cache = StaticTxt(Mutex::new(map));
    let resolver = MessageAuthenticator::new(
        mail_auth::hickory_resolver::config::ResolverConfig::default(),
        mail_auth::hickory_resolver::config::ResolverOpts::default(),
    )
    .unwrap();
    let message = AuthenticatedMessage::parse(raw).expect("message parses");
    resolver
        .verify_dkim(Parameters::new(&message).with_txt_cache(&cache))
        .await
        .into_iter()
        .map(|o| o.result().clone())
        .collect()
}

pub async fn passes(raw: &[u8]) -> bool {
    let results = verify(raw).await;
    !results.is_empty()
        && results.iter().all(|r| *r == DkimResult::Pass)
        && b_value_ends_the_tag(raw)
        && dkimpy_passes(raw).unwrap_or(true)
}

/// dkimpy's verdict (the verifier of the compliance suite, a separate implementation), or
/// None where Python or dkimpy is missing: `cargo test` on a fresh machine checks with
/// mail-auth alone. CI installs dkimpy and sets `LETTERHEAD_REQUIRE_DKIMPY=1`, so there a
/// missing dkimpy fails instead of being skipped.
pub fn dkimpy_passes(raw: &[u8]) -> Option<bool> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    const SCRIPT: &str = r#"
import sys
try:
    import dkim
except ImportError:
    sys.exit(3)
record = ("v=DKIM1; k=rsa; p=" + sys.argv[1]).encode()
sys.exit(0 if dkim.verify(sys.stdin.buffer.read(), dnsfunc=lambda name, timeout=5: record) else 1)
"#;
    let required = std::env::var("LETTERHEAD_REQUIRE_DKIMPY").as_deref() == Ok("1");
    let public = std::fs::read_to_string(fixture("dkim-test-rsa2048.pub.b64")).unwrap();
    let child = Command::new("python3")
        .args(["-c", SCRIPT, public.trim()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn();
    let Ok(mut child) = child else {
        assert!(!required, "python3 is needed to verify with dkimpy");
        return None;
    };
    child.stdin.take().unwrap().write_all(raw).unwrap();
    match child.wait().unwrap().code() {
        Some(0) => Some(true),
        Some(1) => Some(false),
        _ => {
            assert!(!required, "dkimpy is not installed (pip install dkimpy)");
            None
        }
    }
}

/// Whether the signature's `b=` value runs up to its `;` (or the header's end) with no folding
/// after its last character. A verifier rebuilds the signed header by deleting the value;
/// mail-auth also deletes the whitespace around it, dkimpy (the compliance suite's verifier)
/// deletes only the value's own characters and the whitespace inside it, so a fold between
/// the value and `;` stays in what it hashes and the signature fails there.
pub fn b_value_ends_the_tag(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let header: String = text
        .split("\r\n")
        .skip_while(|l| !l.starts_with("DKIM-Signature:"))
        .enumerate()
        .take_while(|(i, l)| *i == 0 || l.starts_with([' ', '\t']))
        .map(|(_, l)| format!("{l}\r\n"))
        .collect();
    let Some(start) = header.find("; b=").map(|at| at + 4) else {
        return false;
    };
    let value = &header[start..];
    let end = value.find(';').unwrap_or(value.len());
    let last = value[..end].trim_end_matches([' ', '\t', '\r', '\n']).len();
    // Only the header's own final CRLF may follow the value when it has no `;`.
    value[last..end].is_empty() || (end == value.len() && &value[last..] == "\r\n")
}

/// The names of the headers the DKIM signature in `raw` covers (its `h=` tag), lowercased and
/// in order; a name signed twice (over-signed) appears twice.
pub fn signed_headers(raw: &str) -> Vec<String> {
    let signature = super::header_values(raw, "DKIM-Signature")
        .first()
        .expect("a DKIM-Signature header")
        .replace([' ', '\t'], "")
        .to_ascii_lowercase();
    let h = signature
        .split(";h=")
        .nth(1)
        .expect("an h= tag")
        .split(';')
        .next()
        .unwrap();
    h.split(':').map(str::to_owned).collect()
}
