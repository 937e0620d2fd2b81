//! The outbox and the mail pipeline end to end: command -> outbox -> worker -> SMTP sink.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Spawn, Stage, TestApp, WAIT, dkim_check, free_port, header_values, spawn, spawn_app};
use letterhead::delivery::Payload;
use letterhead::domain::EmailAddress;
use letterhead::store::{self, outbox, outbox::NewOutboxMessage};

/// Writes the operator's test message to `to` into the outbox (waking no worker).
async fn enqueue_test_message(db: &impl sea_orm::ConnectionTrait, to: &str) {
    let payload = Payload::TestMessage;
    outbox::enqueue(
        db,
        NewOutboxMessage {
            kind: payload.kind(),
            subscriber_id: None,
            recipient: to.into(),
            payload: serde_json::to_value(&payload).unwrap(),
            dedupe_key: None,
        },
    )
    .await
    .unwrap();
}

/// Queues the test message to `to` and wakes the app's outbox worker.
async fn queue_test_message(app: &TestApp, to: &str) {
    enqueue_test_message(&app.state.db, to).await;
    app.delivery.wakeups.outbox.notify_one();
}

/// A test message to `recipient` that a worker named "dead-worker" claimed, its lease running
/// until `lease_until_ms`; queued and claimed in one transaction, so that the app's own worker
/// cannot take it first.
async fn claimed_by_a_dead_worker(app: &TestApp, recipient: &str, lease_until_ms: i64) {
    let tx = store::begin_write(&app.state.db).await.unwrap();
    enqueue_test_message(&tx, recipient).await;
    let claimed = outbox::claim(&tx, "dead-worker", store::now_ms(), lease_until_ms, 1)
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|m| m.recipient.as_str()).collect::<Vec<_>>(),
        [recipient]
    );
    tx.commit().await.unwrap();
}

/// CS-1, CS-4, MF-1, MF-2, MF-3, MF-9, MF-10, DK-1, DK-3, DK-4, DK-5, GY-1, GY-7: a message the
/// command line queues arrives from the operator's domain with the headers and parts the
/// policy promises, DKIM-signed so that an added header or a changed body breaks the signature.
#[tokio::test]
async fn a_queued_transactional_message_arrives_stamped_and_dkim_signed() {
    let app = spawn_app().await;
    // A command (a separate process) writes the outbox row; the app's worker delivers it.
    app.run_cli(&["send-test", "--to", "reader@example.org"]);
    let msgs = app.sink.wait_for(1, WAIT).await;
    let m = &msgs[0];
    let raw = m.text();

    // Envelope and headers on the operator's domain, organisation as display name (CS-1, GY-7).
    assert_eq!(m.mail_from, "notices@example.com");
    assert_eq!(m.rcpt_to, vec!["reader@example.org".to_string()]);
    let from = header_values(&raw, "From");
    assert_eq!(
        from,
        vec!["\"Example Newsletter Ltd\" <notices@example.com>".to_string()]
    );
    assert_eq!(header_values(&raw, "To"), vec!["reader@example.org".to_string()]);
    assert_eq!(header_values(&raw, "Reply-To").len(), 1);
    assert!(header_values(&raw, "Reply-To")[0].ends_with("@example.com>"));
    // MF-1..3: one Date, one Message-ID on our domain.
    assert_eq!(header_values(&raw, "Date").len(), 1);
    let mid = header_values(&raw, "Message-ID");
    assert_eq!(mid.len(), 1);
    assert!(
        mid[0].starts_with('<') && mid[0].ends_with("@example.com>"),
        "{mid:?}"
    );
    assert_eq!(header_values(&raw, "MIME-Version"), vec!["1.0".to_string()]);
    // Transactional: no list headers.
    assert!(header_values(&raw, "List-Unsubscribe").is_empty());

    // MF-10 and CS-4: text part first, the postal address in both parts.
    let parsed = mail_parser::MessageParser::default().parse(&m.data).unwrap();
    let text = parsed.body_text(0).unwrap();
    let html = parsed.body_html(0).unwrap();
    assert!(raw.find("Content-Type: text/plain").unwrap() < raw.find("Content-Type: text/html").unwrap());
    for part in [&text, &html] {
        assert!(
            part.contains("1 Example Street"),
            "postal address missing in {part}"
        );
        assert!(part.contains("12345 Example City"));
        assert!(part.contains("privacy@example.com"));
        assert!(part.contains("Example Newsletter Ltd"));
    }

    // DK-1, DK-4: a valid relaxed/relaxed rsa-sha256 signature with no l= tag.
    let sig = header_values(&raw, "DKIM-Signature");
    assert_eq!(sig.len(), 1);
    let sig = sig[0].replace([' ', '\t'], "");
    assert!(
        sig.contains("a=rsa-sha256") && sig.contains("c=relaxed/relaxed") && sig.contains("d=example.com")
    );
    assert!(!sig.contains(";l="));
    // DK-3 and DK-5: the essential headers are signed, From and Subject twice (over-signed).
    let signed = dkim_check::signed_headers(&raw);
    for name in [
        "from",
        "subject",
        "date",
        "to",
        "message-id",
        "mime-version",
        "content-type",
    ] {
        assert!(signed.iter().any(|n| n == name), "{name} not signed: {signed:?}");
    }
    assert!(signed.iter().filter(|n| **n == "from").count() >= 2);
    assert!(signed.iter().filter(|n| **n == "subject").count() >= 2);
    assert!(
        dkim_check::passes(&m.data).await,
        "DKIM must verify: {:?}",
        dkim_check::verify(&m.data).await
    );

    // DK-5: a second From added in transit breaks the signature.
    let mut forged = b"From: \"Someone Else\" <attacker@evil.example>\r\n".to_vec();
    forged.extend_from_slice(&m.data);
    assert!(
        !dkim_check::passes(&forged).await,
        "an added From must break the signature"
    );
    // And so does any change to the body.
    let tampered = raw.replacen("1 Example Street", "9 Other Street", 1);
    assert!(!dkim_check::passes(tampered.as_bytes()).await);

    // MF-5, MF-6: CRLF only, no NUL, no line over 998 octets.
    assert!(!m.data.contains(&0));
    for line in m.data.split(|b| *b == b'\n') {
        assert!(line.len() <= 1000);
    }
    assert!(!raw.replace("\r\n", "").contains('\n'), "bare LF in message");

    // The row is recorded as sent with the Message-ID that went out.
    app.wait_until(
        "SELECT COUNT(*) FROM outbox WHERE status = 'sent' AND message_id IS NOT NULL",
        1,
        WAIT,
    )
    .await;
}

/// A 4xx is retried with backoff and then delivered once.
#[tokio::test]
async fn a_temporary_451_is_retried_until_accepted() {
    let app = spawn_app().await;
    app.sink
        .reply(Stage::Rcpt, "greylisted@example.org", 451, Some(2));
    queue_test_message(&app, "greylisted@example.org").await;
    let msgs = app.sink.wait_for(1, WAIT).await;
    assert_eq!(msgs.len(), 1);
    app.wait_until(
        "SELECT COUNT(*) FROM outbox WHERE status = 'sent' AND attempts = 3",
        1,
        WAIT,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.sink.messages().len(), 1, "delivered exactly once");
}

/// A relay that offers PIPELINING gets MAIL, RCPT and DATA in one write; one that does not
/// gets them one at a time. Both receive every message, and a refused recipient in a pipeline
/// does not disturb the next message.
#[tokio::test]
async fn commands_are_pipelined_only_when_the_relay_offers_it() {
    let app = spawn_app().await;
    app.sink.reply(Stage::Rcpt, "refused@example.org", 550, Some(1));
    for to in ["one@example.org", "refused@example.org", "two@example.org"] {
        queue_test_message(&app, to).await;
    }
    let msgs = app.sink.wait_for(2, WAIT).await;
    let mut got: Vec<_> = msgs.iter().map(|m| m.rcpt_to.join(",")).collect();
    got.sort();
    assert_eq!(got, ["one@example.org", "two@example.org"]);
    assert!(
        app.sink.pipelined_transactions() >= 2,
        "the relay offered PIPELINING"
    );

    let plain = spawn_app().await;
    plain.sink.without_pipelining();
    queue_test_message(&plain, "three@example.org").await;
    let msgs = plain.sink.wait_for(1, WAIT).await;
    assert_eq!(msgs[0].rcpt_to, ["three@example.org"]);
    assert_eq!(
        plain.sink.pipelined_transactions(),
        0,
        "no PIPELINING offered, none used"
    );
}

/// GY-6 on a reused session: the relay's refusal is the outcome, whichever session carried
/// it. (It was taken for the failure of a session gone stale while idle, and the message went
/// again at once on a new connection, where this refusal, scripted once, let it through.)
#[tokio::test]
async fn a_refusal_on_a_reused_session_is_final() {
    let app = spawn_app().await;
    app.sink.reply(Stage::Rcpt, "refused@example.org", 550, Some(1));
    queue_test_message(&app, "one@example.org").await;
    // Recorded as sent only after its session went back to the idle ones.
    app.wait_until("SELECT COUNT(*) FROM outbox WHERE status = 'sent'", 1, WAIT)
        .await;
    queue_test_message(&app, "refused@example.org").await;
    app.wait_until(
        "SELECT COUNT(*) FROM outbox WHERE status = 'failed' AND attempts = 1",
        1,
        WAIT,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.sink.most_sessions_at_once(), 1, "one session, used twice");
    assert_eq!(
        app.sink.rcpt_commands(),
        2,
        "the refused recipient was asked for once"
    );
    let got: Vec<_> = app.sink.messages().iter().map(|m| m.rcpt_to.join(",")).collect();
    assert_eq!(got, ["one@example.org"]);
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM suppressions WHERE reason = 'hard_bounce'")
            .await,
        1,
        "the refused mailbox is suppressed"
    );
}

/// A session the relay closed while it idled is replaced by a new one at once: the message
/// goes on it without spending a second attempt or pausing delivery.
#[tokio::test]
async fn a_session_the_relay_closed_while_idle_is_replaced_at_once() {
    let app = spawn_app().await;
    app.sink.close_after_each_message();
    queue_test_message(&app, "one@example.org").await;
    app.wait_until("SELECT COUNT(*) FROM outbox WHERE status = 'sent'", 1, WAIT)
        .await;
    queue_test_message(&app, "two@example.org").await;
    app.wait_until(
        "SELECT COUNT(*) FROM outbox WHERE status = 'sent' AND attempts = 1",
        2,
        WAIT,
    )
    .await;
    assert_eq!(app.sink.sessions(), 2, "the closed session, then a new one");
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM daily_counts WHERE counter IN ('retried', 'deferred')")
            .await,
        0,
        "neither retried nor put off"
    );
    assert_eq!(app.state.relay.state(), letterhead::delivery::RelayState::Sending);
}

/// DELIVERY_CONCURRENCY caps the sessions with the relay for the whole process: the outbox
/// worker and any other sender (here: direct sends, as the campaign worker makes) share them.
#[tokio::test]
async fn all_senders_share_the_relay_sessions_the_concurrency_allows() {
    let app = spawn(Spawn {
        overrides: vec![("DELIVERY_CONCURRENCY", "2".into())],
        ..Default::default()
    })
    .await;
    app.sink.delay_data(40);
    for i in 0..8 {
        queue_test_message(&app, &format!("queued{i}@example.org")).await;
    }
    let direct = (0..6).map(|i| {
        let delivery = app.delivery.clone();
        async move {
            let composed = letterhead::mail::ComposedMessage {
                to: EmailAddress::parse(&format!("direct{i}@example.org")).unwrap(),
                to_name: None,
                subject: letterhead::domain::HeaderText::parse("Direct").unwrap(),
                html: templates::email::paragraphs("Hello"),
                text: "Hello".into(),
                reason: "A test.".into(),
                class: letterhead::mail::MailClass::Transactional {
                    preferences_url: None,
                },
            };
            let stamped = delivery.stamp.stamp(composed).unwrap();
            delivery.transport.send(&stamped).await.unwrap();
        }
    });
    futures::future::join_all(direct).await;
    app.sink.wait_for(14, WAIT).await;
    assert_eq!(
        app.sink.most_sessions_at_once(),
        2,
        "two sessions, used and never exceeded"
    );
}

/// GY-6: a 5xx at RCPT fails the message, suppresses the address, and later mail to it is
/// not even attempted.
#[tokio::test]
async fn a_permanent_550_suppresses_the_address() {
    let app = spawn_app().await;
    app.sink.reply(Stage::Rcpt, "gone@example.org", 550, None);
    queue_test_message(&app, "gone@example.org").await;
    app.wait_until(
        "SELECT COUNT(*) FROM outbox WHERE status = 'failed' AND attempts = 1",
        1,
        WAIT,
    )
    .await;
    app.wait_until(
        "SELECT COUNT(*) FROM suppressions WHERE reason = 'hard_bounce'",
        1,
        WAIT,
    )
    .await;
    // The suppression holds a keyed hash, not the address (GD-4).
    let hash = app
        .state
        .address_hasher
        .hash(&EmailAddress::parse("GONE@example.org").unwrap());
    let n = app
        .query_i64(&format!(
            "SELECT COUNT(*) FROM suppressions WHERE address_hmac = '{}'",
            hash.as_str()
        ))
        .await;
    assert_eq!(n, 1);

    queue_test_message(&app, "gone@example.org").await;
    queue_test_message(&app, "fine@example.org").await;
    app.sink.wait_for(1, WAIT).await;
    app.wait_until(
        "SELECT COUNT(*) FROM outbox WHERE status = 'cancelled' AND last_error = 'suppressed'",
        1,
        WAIT,
    )
    .await;
    let to: Vec<String> = app
        .sink
        .messages()
        .iter()
        .flat_map(|m| m.rcpt_to.clone())
        .collect();
    assert_eq!(to, vec!["fine@example.org".to_string()]);
}

/// A 5xx after the data of a transactional email (content refused) is about the relay, not
/// the recipient: delivery pauses as for a relay that refuses the session, the message waits
/// its turn without spending an attempt, nobody is suppressed, and the rest of the outbox goes
/// on once the pause ends.
#[tokio::test]
async fn a_refused_content_of_an_outbox_message_pauses_delivery_without_suppression() {
    let app = spawn_app().await;
    app.sink.reply(Stage::Data, "picky@example.org", 554, Some(1));
    queue_test_message(&app, "picky@example.org").await;
    app.wait_until(
        "SELECT COUNT(*) FROM outbox WHERE status = 'queued' AND attempts = 0 AND last_error LIKE '554%'",
        1,
        WAIT,
    )
    .await;
    assert!(matches!(
        app.state.relay.state(),
        letterhead::delivery::RelayState::Paused { reason, .. } if reason.contains("554 scripted reply")
    ));
    queue_test_message(&app, "fine@example.org").await;
    let msgs = app.sink.wait_for(1, WAIT).await;
    assert_eq!(msgs[0].rcpt_to, ["fine@example.org"]);
    assert_eq!(app.query_i64("SELECT COUNT(*) FROM suppressions").await, 0);
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM outbox WHERE status = 'failed'")
            .await,
        0
    );
}

/// A row whose worker died (lease expired) is claimed again and sent; a row whose lease is
/// still running is left alone.
#[tokio::test]
async fn an_expired_lease_is_taken_over_and_a_live_one_is_not() {
    let app = spawn_app().await;
    let now_ms = store::now_ms();
    // The live lease first: a claim takes the oldest due row, and an expired lease is due.
    claimed_by_a_dead_worker(&app, "inflight@example.org", now_ms + 600_000).await;
    claimed_by_a_dead_worker(&app, "orphan@example.org", now_ms - 1_000).await;
    app.delivery.wakeups.outbox.notify_one();
    let msgs = app.sink.wait_for(1, WAIT).await;
    assert_eq!(msgs[0].rcpt_to, vec!["orphan@example.org".to_string()]);
    app.wait_until(
        "SELECT COUNT(*) FROM outbox WHERE recipient = 'orphan@example.org' AND status = 'sent' AND attempts = 2",
        1,
        WAIT,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.sink.messages().len(), 1, "the live lease was respected");
    assert_eq!(
        app.query_i64(
            "SELECT COUNT(*) FROM outbox WHERE recipient = 'inflight@example.org' AND status = 'sending'"
        )
        .await,
        1
    );
}

/// Two service instances on one database share the outbox and never send a row twice.
#[tokio::test]
async fn two_instances_share_the_outbox_without_duplicates() {
    let first = spawn_app().await;
    let second = first.another_instance().await;
    first.sink.delay_data(5);
    const N: usize = 150;
    for i in 0..N {
        queue_test_message(&first, &format!("reader{i}@example.org")).await;
    }
    second.delivery.wakeups.outbox.notify_one();
    let msgs = first.sink.wait_for(N, Duration::from_secs(60)).await;
    first
        .wait_until(
            "SELECT COUNT(*) FROM outbox WHERE status = 'sent'",
            N as i64,
            WAIT,
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let msgs_after = first.sink.messages();
    assert_eq!(msgs_after.len(), N, "no message sent twice");
    let recipients: HashSet<String> = msgs.iter().flat_map(|m| m.rcpt_to.clone()).collect();
    assert_eq!(recipients.len(), N);
    // MF-3: every message has its own Message-ID.
    let ids: HashSet<String> = msgs_after
        .iter()
        .map(|m| header_values(&m.text(), "Message-ID")[0].clone())
        .collect();
    assert_eq!(ids.len(), N);
    let recorded = first
        .query_i64("SELECT COUNT(DISTINCT message_id) FROM outbox")
        .await;
    assert_eq!(recorded, N as i64);
    second.stop().await;
    first.stop().await;
}

/// Queues a message for a relay that cannot be reached and waits until its first try was
/// deferred without spending an attempt on the outage; nothing has failed.
async fn queue_while_the_relay_is_down(app: &TestApp, to: &str) {
    queue_test_message(app, to).await;
    app.wait_until(
        "SELECT COUNT(*) FROM outbox WHERE status = 'queued' AND last_error IS NOT NULL AND attempts = 0",
        1,
        WAIT,
    )
    .await;
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM outbox WHERE status = 'failed'")
            .await,
        0
    );
}

/// A relay that is down: the message waits and is delivered when the relay is back.
#[tokio::test]
async fn a_relay_that_is_down_delays_delivery_and_loses_nothing() {
    let port = free_port(); // nothing listens there yet
    let app = spawn(Spawn {
        overrides: vec![("MAIL_TRANSPORT", format!("smtp://127.0.0.1:{port}"))],
        ..Default::default()
    })
    .await;
    queue_while_the_relay_is_down(&app, "patient@example.org").await;
    // The relay comes back on its address: the retry delivers without anyone's help.
    let relay = common::SmtpSink::start_on(port).await;
    let msgs = relay.wait_for(1, WAIT).await;
    assert_eq!(msgs[0].rcpt_to, vec!["patient@example.org".to_string()]);
}

/// The same over implicit TLS (`smtps://`): an unreachable relay is an outage, not a failure
/// of the message, whichever SMTP transport meets it.
#[tokio::test]
async fn a_relay_that_is_down_over_implicit_tls_spends_no_attempts() {
    let port = free_port(); // nothing listens there yet
    let app = spawn(Spawn {
        overrides: vec![("MAIL_TRANSPORT", format!("smtps://127.0.0.1:{port}"))],
        ..Default::default()
    })
    .await;
    queue_while_the_relay_is_down(&app, "patient@example.org").await;
}

/// Graceful shutdown lets the worker finish what it holds.
#[tokio::test]
async fn graceful_shutdown_finishes_sends_in_flight() {
    let app = spawn_app().await;
    app.sink.delay_data(700);
    queue_test_message(&app, "late@example.org").await;
    app.wait_until("SELECT COUNT(*) FROM outbox WHERE status = 'sending'", 1, WAIT)
        .await;
    // In flight, not only claimed: a claimed row not yet started is handed back instead.
    let deadline = std::time::Instant::now() + WAIT;
    while app.sink.mail_commands() == 0 {
        assert!(std::time::Instant::now() < deadline, "the send never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let db = app.db.clone();
    let sink = app.sink.clone();
    app.stop().await;
    assert_eq!(
        sink.messages().len(),
        1,
        "the in-flight message was completed before stopping"
    );
    let probe = letterhead::store::connect(&db.url).await.unwrap();
    use sea_orm::ConnectionTrait;
    let row = probe
        .query_one_raw(sea_orm::Statement::from_string(
            probe.get_database_backend(),
            "SELECT COUNT(*) FROM outbox WHERE status = 'sent'".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), 1);
}

/// `kill -9` of a serving process mid-delivery: a new instance finishes the outbox within 30 s,
/// once the dead worker's leases lapse; every message arrives, duplicates at most what was in
/// flight.
#[tokio::test]
async fn after_kill_9_a_restart_delivers_everything_with_bounded_duplicates() {
    // One SMTP session: a few rows in flight (8), and twice as many outcomes held by the
    // recorder (DeliveryConfig::in_flight), fewer than the messages, so the bound can fail.
    let app = spawn(Spawn {
        overrides: vec![("DELIVERY_CONCURRENCY", "1".into())],
        ..Default::default()
    })
    .await;
    // The first instance is the real binary; stop this test app's own worker from competing.
    let db = app.db.clone();
    let sink = app.sink.clone();
    let (mut cmd, _env) = app.cli();
    let unrecorded_at_most = app.state.config.delivery.unrecorded_at_most();
    app.stop().await;
    sink.delay_data(150);
    const N: usize = 40;
    {
        let probe = spawn(Spawn {
            overrides: vec![
                ("DELIVERY_POLL_MS", "600000".into()),
                ("DELIVERY_BATCH_SIZE", "1".into()),
            ],
            ..Spawn::sharing(db.clone(), sink.clone())
        })
        .await;
        for i in 0..N {
            enqueue_test_message(&probe.state.db, &format!("crash{i}@example.org")).await;
        }
        probe.abort();
    }
    let mut child = cmd
        .arg("serve")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .spawn()
        .unwrap();
    // Let it deliver some, then kill it without warning.
    let deadline = tokio::time::Instant::now() + WAIT;
    while sink.messages().len() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the binary delivered nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let delivered_before = sink.messages().len();
    assert!(delivered_before < N, "killed mid-delivery");

    let restarted = spawn(Spawn::sharing(db.clone(), sink.clone())).await;
    restarted
        .wait_until(
            "SELECT COUNT(*) FROM outbox WHERE status = 'sent'",
            N as i64,
            Duration::from_secs(30),
        )
        .await;
    let msgs = sink.messages();
    let unique: HashSet<String> = msgs.iter().flat_map(|m| m.rcpt_to.clone()).collect();
    assert_eq!(unique.len(), N, "every recipient got the message");
    let duplicates = msgs.len() - N;
    // Sent and unrecorded at the kill: at most the rows in flight and twice as many outcomes
    // held by the recorder (DeliveryConfig::in_flight).
    assert!(
        duplicates <= unrecorded_at_most,
        "{duplicates} duplicates (at most {unrecorded_at_most})"
    );
    restarted.stop().await;
}

/// GY-3: with `smtp+starttls://` the transport requires TLS: a relay that does not offer
/// STARTTLS gets nothing (the message waits), never a plain-text copy.
#[tokio::test]
async fn gy3_a_required_tls_transport_sends_nothing_in_clear() {
    let sink = common::SmtpSink::start().await;
    let app = spawn(Spawn {
        sink: Some(sink.clone()),
        overrides: vec![(
            "MAIL_TRANSPORT",
            format!("smtp+starttls://127.0.0.1:{}", sink.port),
        )],
        ..Default::default()
    })
    .await;
    queue_test_message(&app, "private@example.org").await;
    app.wait_until(
        "SELECT COUNT(*) FROM outbox WHERE status = 'queued' AND last_error LIKE '%STARTTLS%'",
        1,
        WAIT,
    )
    .await;
    assert!(sink.messages().is_empty(), "nothing may go out without TLS");
}
