//! The dashboard's pages: campaigns (with pause, resume and cancel), lists, deliverability and
//! compliance. Each reads aggregate counts from `store::reports` and `store::daily_counts` and
//! hands the view its figures ready to show; campaign actions go through the campaigns service,
//! as the API's do.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::{Html, Redirect};
use templates::admin::{self as view, DayChart, Series};
use time::OffsetDateTime;

use super::{Admin, html};
use crate::config::MailTransportConfig;
use crate::delivery::RelayState;
use crate::edge::{AppError, AppState};
use crate::store::daily_counts::{self, Counter};
use crate::store::entities::campaign::CampaignStatus;
use crate::store::entities::consent_event::ConsentKind;
use crate::store::entities::suppression::SuppressionReason;
use crate::store::{self, campaigns, policies, reports};

/// How many campaigns the page shows, newest first.
const CAMPAIGNS_SHOWN: u64 = 50;
/// The days the charts cover, today included.
const CHART_DAYS: i64 = 90;
/// The window a sending campaign's pace is measured over.
const PACE_WINDOW: time::Duration = time::Duration::minutes(1);

fn session(admin: &Admin) -> view::Session<'_> {
    view::Session {
        key_name: &admin.key_name,
        csrf: &admin.csrf,
    }
}

/// `2027-03-01 09:30 UTC`
fn when(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{} {:02}:{:02} UTC",
        daily_counts::day_of(t),
        t.hour(),
        t.minute()
    )
}

/// A span of time in words: `40 seconds`, `12 minutes`, `3 hours 5 minutes`, `2 days`.
fn span(d: time::Duration) -> String {
    let s = d.whole_seconds().max(0);
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match s {
        0..60 => plural(s, "second"),
        60..3600 => plural(s / 60, "minute"),
        3600..86_400 if (s % 3600) / 60 == 0 => plural(s / 3600, "hour"),
        3600..86_400 => format!(
            "{} {}",
            plural(s / 3600, "hour"),
            plural((s % 3600) / 60, "minute")
        ),
        _ => plural(s / 86_400, "day"),
    }
}

/// `2027-03-01 09:30 UTC, 12 minutes ago`
fn ago(t: OffsetDateTime, now: OffsetDateTime) -> String {
    format!("{}, {} ago", when(t), span(now - t))
}

/// The days of the charts, oldest first, and the instant the first one starts.
fn chart_days(now: OffsetDateTime) -> (Vec<String>, OffsetDateTime) {
    let today = now.to_offset(time::UtcOffset::UTC).date();
    let first = today - time::Duration::days(CHART_DAYS - 1);
    let days = (0..CHART_DAYS)
        .map(|i| daily_counts::day_of((first + time::Duration::days(i)).midnight().assume_utc()))
        .collect();
    (days, first.midnight().assume_utc())
}

/// One value per day of `days` from `(day, n)` pairs.
fn per_day<'a>(days: &[String], counts: impl IntoIterator<Item = (&'a str, i64)>) -> Vec<i64> {
    let index: HashMap<&str, usize> = days.iter().enumerate().map(|(i, d)| (d.as_str(), i)).collect();
    let mut values = vec![0; days.len()];
    for (day, n) in counts {
        if let Some(&i) = index.get(day) {
            values[i] += n;
        }
    }
    values
}

// ---------------------------------------------------------------------------------------------
// Campaigns
// ---------------------------------------------------------------------------------------------

pub(super) async fn campaigns(
    State(state): State<AppState>,
    Extension(admin): Extension<Admin>,
) -> Result<Html<String>, AppError> {
    let now = store::now();
    let shown = reports::recent_campaigns(&state.db, CAMPAIGNS_SHOWN).await?;
    let ids: Vec<i64> = shown.iter().map(|c| c.id).collect();
    let counts = reports::recipient_counts(&state.db, &ids, now - PACE_WINDOW).await?;
    let mut list_names = reports::campaign_list_names(&state.db, &ids).await?;
    let rows: Vec<view::CampaignRow<'_>> = shown
        .iter()
        .map(|c| {
            let n = counts.get(&c.id).copied().unwrap_or_default();
            let pace = (c.status == CampaignStatus::Sending).then(|| {
                let per_minute = n.sent_recently;
                view::Pace {
                    per_minute,
                    time_left: (per_minute > 0 && n.queued > 0).then(|| {
                        // Rounded up: "about 1 minute" rather than "0 seconds" near the end.
                        let minutes = (n.queued + per_minute - 1) / per_minute;
                        span(time::Duration::minutes(minutes))
                    }),
                }
            });
            let when = match c.status {
                CampaignStatus::Draft => format!("draft, written {}", when(c.created_at)),
                CampaignStatus::Scheduled => match c.send_at {
                    Some(t) => format!("scheduled for {}", when(t)),
                    None => "scheduled".to_owned(),
                },
                CampaignStatus::Sending | CampaignStatus::Paused => {
                    let started = match c.started_at {
                        Some(t) => format!("started {}", when(t)),
                        None => "started".to_owned(),
                    };
                    match &c.paused_reason {
                        Some(reason) => format!("{started}; paused: {reason}"),
                        None => started,
                    }
                }
                CampaignStatus::Sent | CampaignStatus::Cancelled => match c.finished_at {
                    Some(t) => format!("{} {}", c.status, when(t)),
                    None => c.status.to_string(),
                },
            };
            view::CampaignRow {
                id: c.id,
                subject: &c.subject,
                status: c.status.as_str(),
                lists: list_names.remove(&c.id).unwrap_or_default().join(", "),
                when,
                recipients: c.recipients,
                queued: n.queued,
                sent: n.sent,
                failed: n.failed,
                skipped: n.skipped,
                cancelled: n.cancelled,
                pace,
                can_pause: c.status == CampaignStatus::Sending,
                can_resume: c.status == CampaignStatus::Paused,
                can_cancel: matches!(
                    c.status,
                    CampaignStatus::Draft
                        | CampaignStatus::Scheduled
                        | CampaignStatus::Sending
                        | CampaignStatus::Paused
                ),
            }
        })
        .collect();
    let more = shown.len() as u64 == CAMPAIGNS_SHOWN;
    Ok(html(view::campaigns(
        &state.site(),
        &session(&admin),
        &rows,
        more,
    )))
}

/// `POST /admin/campaigns/{id}/{pause|resume|cancel}`: the same transitions as the API's, then
/// back to the campaigns.
pub(super) async fn campaign_action(
    State(state): State<AppState>,
    Extension(admin): Extension<Admin>,
    Path((id, action)): Path<(i64, String)>,
) -> Result<Redirect, AppError> {
    let c = campaigns::get(&state.db, id)
        .await?
        .ok_or_else(AppError::not_found)?;
    let (done, verb) = match action.as_str() {
        "pause" => (state.campaigns.pause(id).await?, "paused"),
        "resume" => (state.campaigns.resume(id).await?, "resumed"),
        "cancel" => (state.campaigns.cancel(id).await?, "cancelled"),
        _ => return Err(AppError::not_found()),
    };
    if !done {
        return Err(AppError::conflict(format!(
            "A campaign that is {} cannot be {verb}.",
            c.status
        )));
    }
    tracing::info!(
        campaign = id,
        key = admin.key_id,
        action = verb,
        "campaign changed from the dashboard"
    );
    Ok(Redirect::to(&format!("/admin/campaigns#c{id}")))
}

// ---------------------------------------------------------------------------------------------
// Lists
// ---------------------------------------------------------------------------------------------

const LIST_SERIES: [(ConsentKind, &str); 3] = [
    (ConsentKind::Signup, "Signups"),
    (ConsentKind::Confirm, "Confirmations"),
    (ConsentKind::Unsubscribe, "Unsubscribes"),
];

pub(super) async fn lists(
    State(state): State<AppState>,
    Extension(admin): Extension<Admin>,
) -> Result<Html<String>, AppError> {
    let (days, since) = chart_days(store::now());
    let lists = reports::list_counts(&state.db).await?;
    let events = reports::consent_by_day(&state.db, since).await?;
    let chart_ids: Vec<String> = lists.iter().map(|l| format!("chart-{}", l.slug)).collect();
    let rows: Vec<view::ListRow<'_>> = lists
        .iter()
        .zip(&chart_ids)
        .map(|(l, chart_id)| view::ListRow {
            slug: &l.slug,
            name: &l.name,
            confirmed: l.confirmed,
            pending: l.pending,
            unsubscribed: l.unsubscribed,
            chart: DayChart {
                id: chart_id,
                title: "Signups, confirmations and unsubscribes per day",
                days: &days,
                series: LIST_SERIES
                    .iter()
                    .map(|(kind, name)| Series {
                        name,
                        values: per_day(
                            &days,
                            events
                                .iter()
                                .filter(|e| e.list_id == Some(l.id) && e.kind == *kind)
                                .map(|e| (e.day.as_str(), e.n)),
                        ),
                    })
                    .collect(),
            },
        })
        .collect();
    Ok(html(view::lists(&state.site(), &session(&admin), &rows)))
}

// ---------------------------------------------------------------------------------------------
// Deliverability
// ---------------------------------------------------------------------------------------------

/// Suppressions that say something about deliverability (an erasure or an opt-out does not).
const DELIVERABILITY_SUPPRESSIONS: [SuppressionReason; 3] = [
    SuppressionReason::HardBounce,
    SuppressionReason::Complaint,
    SuppressionReason::Manual,
];

fn suppression_label(reason: SuppressionReason) -> &'static str {
    match reason {
        SuppressionReason::HardBounce => "Bounced (mailbox refused)",
        SuppressionReason::Complaint => "Complained (marked as spam)",
        SuppressionReason::Manual => "Suppressed by hand",
        SuppressionReason::Erased => "Erased on request",
        SuppressionReason::Unsubscribed => "Left every list",
    }
}

/// Where mail goes, without credentials.
fn relay_target(config: &MailTransportConfig) -> String {
    match config {
        MailTransportConfig::Smtp { host, port, tls, .. } => {
            let tls = match tls {
                crate::config::SmtpTls::Opportunistic => "STARTTLS when offered",
                crate::config::SmtpTls::Required => "STARTTLS required",
                crate::config::SmtpTls::Implicit => "TLS",
            };
            format!("SMTP relay {host}:{port} ({tls})")
        }
        MailTransportConfig::File(dir) => format!(".eml files in {}", dir.display()),
    }
}

/// A message due for longer than this means delivery is behind.
const BEHIND_AFTER: time::Duration = time::Duration::minutes(1);

pub(super) async fn deliverability(
    State(state): State<AppState>,
    Extension(admin): Extension<Admin>,
) -> Result<Html<String>, AppError> {
    let now = store::now();
    let (days, since) = chart_days(now);
    let counters = daily_counts::since(&state.db, &days[0]).await?;
    let totals = daily_counts::totals(&state.db).await?;
    let suppressed = reports::suppressions_by_day(&state.db, since).await?;
    let waiting = reports::waiting(&state.db, store::now_ms()).await?;
    let kept = reports::suppression_totals(&state.db).await?;

    let series = |counted: &[Counter]| {
        per_day(
            &days,
            counters
                .iter()
                .filter(|c| counted.contains(&c.counter))
                .map(|c| (c.day.as_str(), c.n)),
        )
    };
    let sent = DayChart {
        id: "chart-sent",
        title: "Sent per day",
        days: &days,
        series: vec![Series {
            name: "Sent",
            values: series(&[Counter::Sent]),
        }],
    };
    let trouble = DayChart {
        id: "chart-trouble",
        title: "Deferred, failed and suppressed per day",
        days: &days,
        series: vec![
            Series {
                name: "Deferred",
                values: series(&[Counter::Retried, Counter::Deferred]),
            },
            Series {
                name: "Failed",
                values: series(&[Counter::Failed]),
            },
            Series {
                name: "Suppressed",
                values: per_day(
                    &days,
                    suppressed
                        .iter()
                        .filter(|s| DELIVERABILITY_SUPPRESSIONS.contains(&s.reason))
                        .map(|s| (s.day.as_str(), s.n)),
                ),
            },
        ],
    };

    let last = |counted: &[Counter]| {
        totals
            .iter()
            .filter(|t| counted.contains(&t.counter))
            .map(|t| t.last_at)
            .max()
    };
    let last_sent = last(&[Counter::Sent]);
    let last_deferred = last(&[Counter::Retried, Counter::Deferred]);
    let last_failed = last(&[Counter::Failed]);
    let oldest_due = waiting
        .oldest_due_ms
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok());
    let (verdict, healthy) = match oldest_due {
        None => ("Up to date: nothing is waiting to be sent.".to_owned(), true),
        Some(t) if now - t < BEHIND_AFTER => (
            format!(
                "Sending: {} waiting, none for over a minute.",
                view::count(waiting.due)
            ),
            true,
        ),
        Some(t) => {
            let put_off_last = match (last_deferred, last_sent) {
                (Some(d), Some(s)) => d > s,
                (Some(_), None) => true,
                _ => false,
            };
            let why = if put_off_last {
                " The last message tried was put off: the relay may be unreachable or refusing for now."
            } else {
                ""
            };
            (
                format!(
                    "Behind: {} waiting, the oldest for {}.{why}",
                    view::count(waiting.due),
                    span(now - t)
                ),
                false,
            )
        }
    };
    // What this instance's workers know first hand comes first: a relay that fails them.
    let (verdict, healthy) = match state.relay.state() {
        RelayState::Sending => (verdict, healthy),
        RelayState::Paused { reason, since, .. } => (
            format!(
                "Paused for {}: {reason}. Delivery tries again by itself; nothing is lost or given up meanwhile.",
                span(now - since)
            ),
            false,
        ),
    };
    let relay = view::RelayView {
        target: relay_target(&state.config.mail_transport),
        verdict,
        healthy,
        last_sent: last_sent.map(|t| ago(t, now)),
        last_deferred: last_deferred.map(|t| ago(t, now)),
        last_failed: last_failed.map(|t| ago(t, now)),
        due: waiting.due,
        oldest_due: oldest_due.map(|t| ago(t, now)),
    };
    let suppressions = [
        SuppressionReason::HardBounce,
        SuppressionReason::Complaint,
        SuppressionReason::Manual,
        SuppressionReason::Unsubscribed,
        SuppressionReason::Erased,
    ]
    .into_iter()
    .map(|reason| {
        let n = kept.iter().find(|(r, _)| *r == reason).map_or(0, |(_, n)| *n);
        (suppression_label(reason), n)
    })
    .collect();
    let v = view::DeliverabilityView {
        relay,
        sent,
        trouble,
        suppressions,
    };
    Ok(html(view::deliverability(&state.site(), &session(&admin), &v)))
}

// ---------------------------------------------------------------------------------------------
// Compliance
// ---------------------------------------------------------------------------------------------

fn consent_label(kind: ConsentKind) -> &'static str {
    match kind {
        ConsentKind::Signup => "Signup (consent given on the form)",
        ConsentKind::Confirm => "Confirmation (the link in the email)",
        ConsentKind::Unsubscribe => "Unsubscribe",
        ConsentKind::Resubscribe => "Joined again on the preference page",
        ConsentKind::Import => "Imported with consent evidence",
        ConsentKind::ApiAdd => "Added through the API",
        ConsentKind::Agree => "Agreement to a material policy change",
        ConsentKind::AddressChange => "Change of address, confirmed",
    }
}

/// Consent events in the order of a subscription's life, as the page lists them.
const EVIDENCE_ORDER: [ConsentKind; 8] = [
    ConsentKind::Signup,
    ConsentKind::Confirm,
    ConsentKind::Import,
    ConsentKind::ApiAdd,
    ConsentKind::Resubscribe,
    ConsentKind::Agree,
    ConsentKind::AddressChange,
    ConsentKind::Unsubscribe,
];

const RETENTION_ROWS: [(Counter, &str); 6] = [
    (Counter::RetentionUnconfirmed, "Signups never confirmed"),
    (
        Counter::RetentionUnconfirmedNames,
        "Names given at a signup never confirmed",
    ),
    (
        Counter::RetentionNeverConfirmed,
        "People who never confirmed anything",
    ),
    (
        Counter::RetentionAbuseData,
        "IP addresses and user agents blanked in consent evidence",
    ),
    (Counter::RetentionLeavers, "People who had left every list"),
    (
        Counter::RetentionBounced,
        "People whose address bounced or complained",
    ),
];

fn reach(r: Option<&reports::Reach>) -> view::ReachView {
    let r = r.copied().unwrap_or_default();
    view::ReachView {
        sent: r.sent,
        due: r.due,
        failed: r.failed,
        cancelled: r.cancelled,
    }
}

pub(super) async fn compliance(
    State(state): State<AppState>,
    Extension(admin): Extension<Admin>,
) -> Result<Html<String>, AppError> {
    let (days, _) = chart_days(store::now());
    let versions = policies::all(&state.db).await?;
    let breaches = policies::breach_notices(&state.db, false).await?;
    let reached = reports::notice_reach(&state.db).await?;
    let evidence = reports::consent_evidence(&state.db).await?;
    let recent = daily_counts::since(&state.db, &days[0]).await?;
    let totals = daily_counts::totals(&state.db).await?;
    let kept = reports::suppression_totals(&state.db).await?;
    let suppressed = |reason| kept.iter().find(|(r, _)| *r == reason).map_or(0, |(_, n)| *n);

    let retention = RETENTION_ROWS
        .iter()
        .map(|(counter, what)| view::RetentionRow {
            id: counter.as_str(),
            what,
            last_90_days: recent.iter().filter(|c| c.counter == *counter).map(|c| c.n).sum(),
            all: totals.iter().filter(|t| t.counter == *counter).map(|t| t.n).sum(),
        })
        .collect();
    let last_retention = totals
        .iter()
        .filter(|t| RETENTION_ROWS.iter().any(|(c, _)| *c == t.counter))
        .map(|t| t.last_at)
        .max()
        .map(when);
    let mut by_kind = evidence.by_kind.clone();
    by_kind.sort_by_key(|(kind, _, _)| {
        EVIDENCE_ORDER
            .iter()
            .position(|k| k == kind)
            .unwrap_or(usize::MAX)
    });
    let r = &state.config.retention;
    let days_of = |d: std::time::Duration| d.as_secs() / 86_400;
    let v = view::ComplianceView {
        policies: versions
            .iter()
            .map(|p| view::PolicyRow {
                id: p.id,
                version: &p.version,
                effective: when(p.effective_at),
                published: when(p.published_at),
                material: p.material,
                reach: reach(reached.policies.get(&p.id)),
            })
            .collect(),
        breaches: breaches
            .iter()
            .map(|b| view::BreachRow {
                id: b.id,
                subject: &b.subject,
                published: when(b.published_at),
                withdrawn: b.withdrawn_at.map(when),
                affected: &b.affected,
                queued: i64::from(b.notified),
                reach: reach(reached.breaches.get(&b.id)),
            })
            .collect(),
        evidence: by_kind
            .iter()
            .map(|(kind, n, abuse)| (consent_label(*kind), *n, *abuse))
            .collect(),
        people_with_evidence: evidence.people,
        retention,
        last_retention,
        periods: vec![
            format!(
                "Signups never confirmed are deleted after {} days.",
                days_of(r.unconfirmed)
            ),
            format!(
                "IP addresses and user agents in consent evidence are blanked after {} days.",
                days_of(r.abuse_data)
            ),
            format!(
                "People who left every list, or whose address bounced, are deleted after {} days.",
                days_of(r.after_leaving)
            ),
        ],
        erased: suppressed(SuppressionReason::Erased),
        opted_out: suppressed(SuppressionReason::Unsubscribed),
    };
    Ok(html(view::compliance(&state.site(), &session(&admin), &v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_words() {
        assert_eq!(span(time::Duration::seconds(1)), "1 second");
        assert_eq!(span(time::Duration::seconds(59)), "59 seconds");
        assert_eq!(span(time::Duration::minutes(12)), "12 minutes");
        assert_eq!(span(time::Duration::hours(3)), "3 hours");
        assert_eq!(span(time::Duration::minutes(185)), "3 hours 5 minutes");
        assert_eq!(span(time::Duration::days(2)), "2 days");
    }

    #[test]
    fn the_charts_cover_ninety_days_up_to_today() {
        let now = time::macros::datetime!(2027-03-01 10:00 UTC);
        let (days, since) = chart_days(now);
        assert_eq!(days.len(), 90);
        assert_eq!(days.last().unwrap(), "2027-03-01");
        assert_eq!(days[0], "2026-12-02");
        assert_eq!(since, time::macros::datetime!(2026-12-02 00:00 UTC));
        assert_eq!(
            per_day(&days, [("2027-03-01", 2), ("2026-01-01", 5), ("2027-03-01", 1)])[89],
            3
        );
    }
}
