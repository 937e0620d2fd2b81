//! Start-up checks, driven through the real binary: one clear line naming the setting and a
//! non-zero exit code, never a panic (CS-1, CS-4, GY-1, GY-5).

mod common;

use std::io::Write;
use std::process::Command;

use common::fixture;

fn base() -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", "sqlite::memory:".into()),
        ("MAIL_TRANSPORT", "file:///tmp/letterhead-config-test".into()),
        ("ORG_NAME", "Example Ltd".into()),
        (
            "ORG_POSTAL_ADDRESS",
            "1 Example Street, 12345 Example City".into(),
        ),
        ("ORG_CONTACT_EMAIL", "privacy@example.com".into()),
        ("MAIL_FROM", "news@example.com".into()),
    ]
}

/// Runs `letterhead migrate` with exactly these settings; returns (exit code, stderr).
fn run(settings: &[(&str, String)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_letterhead"))
        .env_clear()
        .envs(settings.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(std::env::temp_dir())
        .arg("migrate")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn with(overrides: &[(&'static str, &str)], removed: &[&str]) -> Vec<(&'static str, String)> {
    let mut s = base();
    s.retain(|(k, _)| !removed.contains(k) && !overrides.iter().any(|(o, _)| o == k));
    s.extend(overrides.iter().map(|(k, v)| (*k, v.to_string())));
    s
}

fn assert_refused(settings: &[(&str, String)], setting: &str) {
    let (code, stderr) = run(settings);
    assert_eq!(code, 2, "exit code for {setting}: stderr {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(setting), "names {setting}: {stderr}");
    assert!(!stderr.contains("panicked"));
}

#[test]
fn a_valid_configuration_starts() {
    let (code, stderr) = run(&base());
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn cs4_start_without_a_postal_address_fails_with_one_line() {
    assert_refused(&with(&[], &["ORG_POSTAL_ADDRESS"]), "ORG_POSTAL_ADDRESS");
    assert_refused(&with(&[("ORG_POSTAL_ADDRESS", "   ")], &[]), "ORG_POSTAL_ADDRESS");
}

#[test]
fn cs1_missing_identity_settings_are_named() {
    for key in ["ORG_NAME", "ORG_CONTACT_EMAIL", "MAIL_FROM"] {
        assert_refused(&with(&[], &[key]), key);
    }
}

#[test]
fn gy5_free_mail_senders_are_refused() {
    assert_refused(&with(&[("MAIL_FROM", "news@gmail.com")], &[]), "MAIL_FROM");
    assert_refused(
        &with(&[("NOTICE_FROM", "alerts@outlook.com")], &[]),
        "NOTICE_FROM",
    );
}

#[test]
fn gy1_senders_must_match_the_dkim_domain() {
    let key = fixture("dkim-test-rsa2048.pem").display().to_string();
    let dkim = [
        ("DKIM_DOMAIN", "example.com"),
        ("DKIM_SELECTOR", "s1"),
        ("DKIM_PRIVATE_KEY", key.as_str()),
    ];
    let mut ok: Vec<(&'static str, &str)> = dkim.to_vec();
    assert_eq!(run(&with(&ok, &[])).0, 0);
    ok.push(("NOTICE_FROM", "alerts@other.example"));
    assert_refused(&with(&ok, &[]), "NOTICE_FROM");
}

/// DK-2: RSA keys shorter than 2048 bits, non-keys and unreadable paths are refused.
#[test]
fn unusable_dkim_keys_are_refused() {
    let short = fixture("dkim-test-rsa1024.pem").display().to_string();
    let not_a_key = fixture("dkim-test-rsa2048.pub.b64").display().to_string();
    for path in [short.as_str(), not_a_key.as_str(), "/nonexistent/key.pem"] {
        assert_refused(
            &with(
                &[
                    ("DKIM_DOMAIN", "example.com"),
                    ("DKIM_SELECTOR", "s1"),
                    ("DKIM_PRIVATE_KEY", path),
                ],
                &[],
            ),
            "DKIM_PRIVATE_KEY",
        );
    }
    assert_refused(&with(&[("DKIM_DOMAIN", "example.com")], &[]), "DKIM_SELECTOR");
}

#[test]
fn malformed_transport_database_and_token_keys_are_refused() {
    assert_refused(
        &with(&[("MAIL_TRANSPORT", "ftp://relay.example.com")], &[]),
        "MAIL_TRANSPORT",
    );
    assert_refused(
        &with(&[("DATABASE_URL", "mysql://localhost/x")], &[]),
        "DATABASE_URL",
    );
    assert_refused(&with(&[("TOKEN_KEYS", "k1:tooshort")], &[]), "TOKEN_KEYS");
    assert_refused(&with(&[("PUBLIC_URL", "not a url")], &[]), "PUBLIC_URL");
}

#[test]
fn errors_say_what_would_work() {
    let (_, stderr) = run(&with(&[("LISTEN_ADDR", "localhost:3000")], &[]));
    assert!(
        stderr.contains("LISTEN_ADDR must be an IP address and a port"),
        "{stderr}"
    );
    let short = fixture("dkim-test-rsa1024.pem").display().to_string();
    let dkim = [
        ("DKIM_DOMAIN", "example.com"),
        ("DKIM_SELECTOR", "s1"),
        ("DKIM_PRIVATE_KEY", short.as_str()),
    ];
    let (_, stderr) = run(&with(&dkim, &[]));
    assert!(stderr.contains("at least 2048 bits"), "{stderr}");
    assert!(!stderr.contains("neither"), "{stderr}");
}

/// The organisation's look: a logo by https (http only on this machine) and a #rrggbb colour;
/// anything else is one line that names the setting and says what would work.
#[test]
fn brand_settings_are_checked_at_start_up() {
    let good = [
        ("BRAND_LOGO_URL", "https://cdn.example.com/logo.png"),
        ("BRAND_ACCENT_COLOR", "#1F5FA8"),
    ];
    assert_eq!(run(&with(&good, &[])).0, 0);
    assert_eq!(
        run(&with(
            &[("BRAND_LOGO_URL", "http://127.0.0.1:8000/logo.png")],
            &[]
        ))
        .0,
        0
    );
    for bad in [
        "http://cdn.example.com/logo.png",
        "logo.png",
        "data:image/png;base64,AAAA",
    ] {
        assert_refused(&with(&[("BRAND_LOGO_URL", bad)], &[]), "BRAND_LOGO_URL");
    }
    let (_, stderr) = run(&with(
        &[("BRAND_LOGO_URL", "ftp://cdn.example.com/logo.png")],
        &[],
    ));
    assert!(stderr.contains("must be an https:// URL"), "{stderr}");
    for bad in ["red", "#12345", "1f5fa8", "#1f5fa8;}"] {
        assert_refused(&with(&[("BRAND_ACCENT_COLOR", bad)], &[]), "BRAND_ACCENT_COLOR");
    }
    let (_, stderr) = run(&with(&[("BRAND_ACCENT_COLOR", "blue")], &[]));
    assert!(stderr.contains("#rrggbb, such as #1f5fa8"), "{stderr}");
}

/// `BRAND_ACCENT_COLOR=#1f5fa8` unquoted in a .env file is a comment: the setting arrives
/// blank, and start-up says how to write it rather than drop the colour without a word.
#[test]
fn an_unquoted_colour_in_an_env_file_is_named() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    for (k, v) in base() {
        writeln!(file, "{k}=\"{v}\"").unwrap();
    }
    writeln!(file, "BRAND_ACCENT_COLOR=#1f5fa8").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_letterhead"))
        .env_clear()
        .current_dir(std::env::temp_dir())
        .arg("--env-file")
        .arg(file.path())
        .arg("migrate")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("BRAND_ACCENT_COLOR is blank") && stderr.contains("in quotes"),
        "{stderr}"
    );
    let quoted = std::fs::read_to_string(file.path())
        .unwrap()
        .replace("=#1f5fa8", "=\"#1f5fa8\"");
    std::fs::write(file.path(), quoted).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_letterhead"))
        .env_clear()
        .current_dir(std::env::temp_dir())
        .arg("--env-file")
        .arg(file.path())
        .arg("migrate")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A database that cannot be opened is one line that names the setting, once.
#[test]
fn an_unopenable_database_names_the_setting() {
    let (code, stderr) = run(&with(
        &[(
            "DATABASE_URL",
            "sqlite:///nonexistent/folder/letterhead.db?mode=rwc",
        )],
        &[],
    ));
    assert_ne!(code, 0);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert_eq!(stderr.matches("unable to open").count(), 1, "said once: {stderr}");
    assert!(!stderr.contains("panicked"));
}

#[test]
fn a_malformed_default_list_is_refused() {
    for bad in ["weekly", "Not A Slug:The Weekly", "weekly:", "weekly:   "] {
        assert_refused(&with(&[("DEFAULT_LIST", bad)], &[]), "DEFAULT_LIST");
    }
}

#[test]
fn the_demo_env_file_is_a_valid_configuration() {
    let out = Command::new(env!("CARGO_BIN_EXE_letterhead"))
        .env_clear()
        .env("DATABASE_URL", "sqlite::memory:")
        .env("MAIL_TRANSPORT", "file:///tmp/letterhead-config-test")
        .arg("--env-file")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example"))
        .arg("migrate")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `serve` says, in plain lines, where it listens, where the signup form is, which database it
/// uses and where mail goes.
#[test]
fn serve_says_where_everything_is() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let mut settings = with(
        &[("LISTEN_ADDR", "127.0.0.1:0")],
        &["DATABASE_URL", "MAIL_TRANSPORT"],
    );
    settings.push((
        "DATABASE_URL",
        format!("sqlite://{}/lh.db?mode=rwc", dir.path().display()),
    ));
    settings.push(("MAIL_TRANSPORT", format!("file://{}", outbox.display())));
    settings.push(("NO_COLOR", "1".into()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_letterhead"))
        .env_clear()
        .envs(settings.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir.path())
        .arg("serve")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        said.push_str(&line);
        said.push('\n');
        if line.contains("mail:") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(said.contains("listening on http://127.0.0.1:"), "{said}");
    assert!(
        said.contains("signup form: http://127.0.0.1:3000/subscribe"),
        "{said}"
    );
    assert!(said.contains("database: sqlite://"), "{said}");
    assert!(
        said.contains(&format!("mail: written as .eml files to {}", outbox.display())),
        "{said}"
    );
}
