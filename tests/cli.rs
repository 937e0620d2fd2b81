//! The command line as an operator meets it: every argument explained in `--help`, and
//! commands that print their results (not log lines, not colour codes).

use std::process::{Command, Output};

fn letterhead(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_letterhead"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/lh.db?mode=rwc", dir.display()),
        )
        .env("MAIL_TRANSPORT", format!("file://{}/outbox", dir.display()))
        .env("ORG_NAME", "Example Ltd")
        .env("ORG_POSTAL_ADDRESS", "1 Example Street, 12345 Example City")
        .env("ORG_CONTACT_EMAIL", "privacy@example.com")
        .env("MAIL_FROM", "news@example.com")
        .env("DEFAULT_LIST", "weekly:The Weekly")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The subcommands a help page lists under "Commands:".
fn subcommands(help: &str) -> Vec<String> {
    help.split("\nCommands:\n")
        .nth(1)
        .map(|rest| {
            rest.lines()
                .take_while(|l| l.starts_with("  "))
                .filter_map(|l| l.split_whitespace().next())
                .filter(|name| *name != "help")
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Entries under "Arguments:" and "Options:" that have no text after their name.
fn unexplained(help: &str) -> Vec<String> {
    let mut missing = Vec::new();
    let mut in_section = false;
    let lines: Vec<&str> = help.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with(' ') {
            in_section = matches!(*line, "Arguments:" | "Options:");
            continue;
        }
        let entry = line.trim_start();
        let is_entry = in_section
            && line.len() - entry.len() <= 6
            && (entry.starts_with('-') || entry.starts_with('<') || entry.starts_with('['));
        if !is_entry {
            continue;
        }
        // The text follows on the same line after a gap, or on the next, deeper-indented line.
        let same_line = entry.split_once("  ").is_some_and(|(_, t)| !t.trim().is_empty());
        let next_line = lines
            .get(i + 1)
            .is_some_and(|n| n.len() - n.trim_start().len() > line.len() - entry.len() + 4);
        if !same_line && !next_line {
            missing.push(entry.to_owned());
        }
    }
    missing
}

#[test]
fn every_command_and_argument_has_a_help_text() {
    let dir = tempfile::tempdir().unwrap();
    let mut pending = vec![Vec::<String>::new()];
    let mut seen = 0;
    while let Some(path) = pending.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = letterhead(dir.path(), &args);
        assert!(out.status.success(), "{args:?}");
        let help = text(&out.stdout);
        let missing = unexplained(&help);
        assert!(
            missing.is_empty(),
            "letterhead {path:?}: no help for {missing:?}\n{help}"
        );
        for sub in subcommands(&help) {
            let mut next = path.clone();
            next.push(sub);
            pending.push(next);
        }
        seen += 1;
    }
    assert!(seen >= 14, "walked {seen} help pages");
}

#[test]
fn commands_print_results_not_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = letterhead(dir.path(), args);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?} logs nothing on success");
        assert!(!stdout.contains('\x1b'), "{args:?}: no colour codes: {stdout:?}");
        stdout
    };
    assert_eq!(run(&["migrate"]), "migrations applied\n");
    let created = run(&["api-key", "create", "--name", "newsletter desk"]);
    assert!(created.starts_with("API key 1 created"), "{created}");
    let listed = run(&["api-key", "list"]);
    let mut rows = listed.lines();
    assert_eq!(
        rows.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["ID", "STATE", "STARTS", "WITH", "CREATED", "NAME"]
    );
    let row = rows.next().unwrap();
    assert!(row.starts_with("1") && row.contains("active") && row.ends_with("newsletter desk"));
    assert!(row.contains(" UTC "), "a readable time: {row}");
    let dry = run(&["retention", "run", "--dry-run"]);
    assert!(dry.starts_with("would delete: 0 unconfirmed"), "{dry}");
    let published = run(&[
        "policy",
        "publish",
        "--version",
        "2099-01",
        "--effective-at",
        "2099-01-01T00:00:00Z",
        "--summary",
        "Our first policy.",
        "--url",
        "https://example.com/privacy",
    ]);
    assert_eq!(
        published,
        "published version 2099-01; 0 notices queued (the service sends them)\n"
    );
    let left = run(&["unsubscribe", "reader@example.org"]);
    assert_eq!(left, "opt-out recorded; it takes effect at once\n");
}
