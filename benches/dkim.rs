//! DKIM signing throughput of the stamp: how many 8 KB messages one core stamps and signs per
//! second with RSA-2048. Run with `cargo bench --bench dkim` and compare with
//! `openssl speed -seconds 5 rsa2048` (the "sign/s" column) on the same machine.

use std::time::{Duration, Instant};

use letterhead::config::{Config, Settings};
use letterhead::domain::{EmailAddress, HeaderText};
use letterhead::mail::{ComposedMessage, ListHeaders, MailClass, Stamp};

fn stamp(dkim: bool) -> Stamp {
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/dkim-test-rsa2048.pem"
    );
    let mut pairs = vec![
        ("ORG_NAME", "Example Newsletter Ltd"),
        ("ORG_POSTAL_ADDRESS", "1 Example Street, 12345 Example City"),
        ("ORG_CONTACT_EMAIL", "privacy@example.com"),
        ("MAIL_FROM", "news@example.com"),
    ];
    if dkim {
        pairs.extend([
            ("DKIM_DOMAIN", "example.com"),
            ("DKIM_SELECTOR", "bench"),
            ("DKIM_PRIVATE_KEY", key),
        ]);
    }
    Stamp::new(&Config::from_settings(&Settings::from_pairs(pairs)).unwrap())
}

fn message() -> ComposedMessage {
    // About 8 KB on the wire once laid out in both parts.
    let text = "Newsletter paragraph with enough words to make a realistic body. ".repeat(50);
    ComposedMessage {
        to: EmailAddress::parse("reader@example.org").unwrap(),
        to_name: None,
        subject: HeaderText::parse("This week's news").unwrap(),
        html: templates::email::paragraphs(&text),
        text,
        reason: "You receive this because you subscribed to Weekly News.".into(),
        class: MailClass::Marketing {
            list: ListHeaders {
                slug: "weekly".into(),
                unsubscribe_url: "https://news.example.com/unsubscribe/token".parse().unwrap(),
                preferences_url: "https://news.example.com/preferences/token".parse().unwrap(),
            },
            from: None,
        },
    }
}

fn measure(label: &str, stamp: &Stamp) -> f64 {
    let size = stamp.stamp(message()).unwrap().bytes().len();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(5) {
        std::hint::black_box(stamp.stamp(message()).unwrap());
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    println!("{label}: {rate:.0} messages/s on one core ({size} bytes per message)");
    rate
}

fn main() {
    let unsigned = measure("stamp without DKIM", &stamp(false));
    let signed = measure("stamp + DKIM rsa-sha256 (2048)", &stamp(true));
    let per_signature_us = 1e6 / signed - 1e6 / unsigned;
    println!(
        "DKIM signing alone: {:.0} signatures/s ({per_signature_us:.0} µs each)",
        1e6 / per_signature_us
    );
}
