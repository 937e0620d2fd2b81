//! Campaigns: drafts checked when written (subject exact, CS-2; sender on our domain, CS-1;
//! templates that compile), started by snapshotting the audience in the database, paused,
//! resumed, cancelled, scheduled, and test-sent to the team.

mod content;

pub use content::{Content, RecipientFields, Source};

use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set};

use crate::app::AppState;
use crate::delivery::Payload;
use crate::domain::{EmailAddress, HeaderText};
use crate::store::entities::{campaign, list, test_recipient};
use crate::store::outbox::NewOutboxMessage;
use crate::store::{self, begin_write, campaigns as db, lists};
use crate::web::FieldError;

/// A campaign ready to render: what the worker keeps per campaign.
pub struct Prepared {
    pub subject: HeaderText,
    pub from: Option<EmailAddress>,
    pub content: Content,
    pub lists: Vec<list::Model>,
}

pub fn source_of(c: &campaign::Model) -> Source {
    match &c.markdown {
        Some(md) => Source::Markdown(md.clone()),
        None => Source::HtmlAndText {
            html: c.html.clone().unwrap_or_default(),
            text: c.text.clone().unwrap_or_default(),
        },
    }
}

pub async fn prepare(state: &AppState, id: i64) -> Result<Prepared, PrepareError> {
    let c = db::get(&state.db, id).await?.ok_or(PrepareError::Gone)?;
    let lists = db::lists_of(&state.db, id).await?;
    let sample = lists.first().map(|l| l.name.as_str()).unwrap_or("");
    Ok(Prepared {
        subject: HeaderText::parse(&c.subject).map_err(|e| PrepareError::Invalid(e.to_string()))?,
        from: c
            .from_address
            .as_deref()
            .map(EmailAddress::parse)
            .transpose()
            .map_err(|e| PrepareError::Invalid(e.to_string()))?,
        content: Content::compile(&source_of(&c), sample).map_err(PrepareError::Invalid)?,
        lists,
    })
}

/// Why a campaign could not be prepared: the API answers a database failure as a server
/// error, not as a problem with the campaign.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("the campaign is gone")]
    Gone,
    /// The stored campaign does not compile or render (subject, sender, template).
    #[error("{0}")]
    Invalid(String),
}

/// What the API accepts for a campaign.
#[derive(Debug, Default, Clone, serde::Deserialize, utoipa::ToSchema)]
pub struct CampaignInput {
    pub subject: Option<String>,
    pub lists: Option<Vec<String>>,
    pub markdown: Option<String>,
    pub html: Option<String>,
    pub text: Option<String>,
    pub from: Option<String>,
    pub send_at: Option<String>,
}

pub struct ValidCampaign {
    pub subject: HeaderText,
    pub lists: Vec<list::Model>,
    pub source: Source,
    pub from: Option<EmailAddress>,
    pub send_at: Option<time::OffsetDateTime>,
}

pub async fn validate(
    state: &AppState,
    input: CampaignInput,
) -> Result<Result<ValidCampaign, Vec<FieldError>>, DbErr> {
    let mut errors = Vec::new();
    let mut err = |field: &str, message: String| {
        errors.push(FieldError {
            field: field.into(),
            message,
        })
    };
    let subject = HeaderText::parse(input.subject.as_deref().unwrap_or(""))
        .map_err(|e| err("subject", format!("the subject {e}")))
        .ok();
    let mut chosen = Vec::new();
    match input.lists.as_deref() {
        None | Some([]) => err("lists", "name at least one list".into()),
        Some(slugs) => {
            for slug in slugs {
                match lists::by_slug(&state.db, slug).await? {
                    Some(l) => chosen.push(l),
                    None => err("lists", format!("there is no list {slug:?}")),
                }
            }
        }
    }
    let source = match (input.markdown, input.html, input.text) {
        (Some(md), None, None) if !md.trim().is_empty() => Some(Source::Markdown(md)),
        (None, Some(html), Some(text)) if !html.trim().is_empty() && !text.trim().is_empty() => {
            Some(Source::HtmlAndText { html, text })
        }
        _ => {
            err("markdown", "give either markdown, or html and text".into());
            None
        }
    };
    // CS-1, GY-5: a sender on our own domain or nothing.
    let from = match input.from.as_deref() {
        None => None,
        Some(f) => match EmailAddress::parse(f) {
            Ok(a) if state.stamp.is_sender_domain(a.domain()) => Some(a),
            Ok(a) => {
                err(
                    "from",
                    format!("must be on the sending domain, not {}", a.domain()),
                );
                None
            }
            Err(e) => {
                err("from", format!("the address {e}"));
                None
            }
        },
    };
    let send_at = match input.send_at.as_deref() {
        None => None,
        Some(t) => time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map_err(|_| err("send_at", "must be an RFC 3339 date-time".into()))
            .ok(),
    };
    if let Some(source) = &source
        && let Err(e) = Content::compile(source, chosen.first().map(|l| l.name.as_str()).unwrap_or(""))
    {
        err("markdown", format!("the template does not work: {e}"));
    }
    Ok(match (subject, source) {
        (Some(subject), Some(source)) if errors.is_empty() => Ok(ValidCampaign {
            subject,
            lists: chosen,
            source,
            from,
            send_at,
        }),
        _ => Err(errors),
    })
}

fn content_columns(source: &Source) -> (Option<String>, Option<String>, Option<String>) {
    match source {
        Source::Markdown(md) => (Some(md.clone()), None, None),
        Source::HtmlAndText { html, text } => (None, Some(html.clone()), Some(text.clone())),
    }
}

pub async fn create(state: &AppState, v: ValidCampaign) -> Result<campaign::Model, DbErr> {
    let (markdown, html, text) = content_columns(&v.source);
    let mut model = db::new_campaign(
        v.subject.as_str().to_owned(),
        v.from.map(|f| f.to_string()),
        markdown,
        html,
        text,
    );
    model.send_at = Set(v.send_at);
    let ids: Vec<i64> = v.lists.iter().map(|l| l.id).collect();
    let tx = begin_write(&state.db).await?;
    let c = db::insert(&tx, model, &ids).await?;
    tx.commit().await?;
    Ok(c)
}

/// Replaces a draft's content; false when the campaign is no longer a draft.
pub async fn update(state: &AppState, id: i64, v: ValidCampaign) -> Result<bool, DbErr> {
    let (markdown, html, text) = content_columns(&v.source);
    let tx = begin_write(&state.db).await?;
    let Some(c) = db::get(&tx, id).await? else {
        return Ok(false);
    };
    if c.status != "draft" {
        return Ok(false);
    }
    let mut m: campaign::ActiveModel = c.into();
    m.subject = Set(v.subject.as_str().to_owned());
    m.from_address = Set(v.from.map(|f| f.to_string()));
    m.markdown = Set(markdown);
    m.html = Set(html);
    m.text = Set(text);
    m.send_at = Set(v.send_at);
    m.updated_at = Set(store::now());
    m.update(&tx).await?;
    db::set_lists(&tx, id, &v.lists.iter().map(|l| l.id).collect::<Vec<_>>()).await?;
    tx.commit().await?;
    Ok(true)
}

pub async fn delete_draft(state: &AppState, id: i64) -> Result<bool, DbErr> {
    let res = campaign::Entity::delete_many()
        .filter(campaign::Column::Id.eq(id))
        .filter(campaign::Column::Status.eq("draft"))
        .exec(&state.db)
        .await?;
    Ok(res.rows_affected > 0)
}

/// From this many recipients a snapshot refreshes the table's statistics (PostgreSQL).
const FRESH_STATISTICS_FROM: i64 = 10_000;

/// Starts sending now: snapshots the audience and hands it to the workers. None when the
/// campaign was not a draft or scheduled.
pub async fn start(state: &AppState, id: i64) -> Result<Option<i64>, DbErr> {
    let started = std::time::Instant::now();
    let tx = begin_write(&state.db).await?;
    if !db::transition(&tx, id, &["draft", "scheduled"], "sending").await? {
        return Ok(None);
    }
    let n = db::snapshot_audience(&tx, id, store::now_ms()).await?;
    tx.commit().await?;
    if n >= FRESH_STATISTICS_FROM && store::is_postgres(&state.db) {
        // A bulk load: until autovacuum gets to it, PostgreSQL would plan the workers' claims
        // on the table's old size and sort every due row per claim (380 ms at 1M recipients
        // instead of under 1 ms), so the statistics are refreshed now, as after any bulk load.
        // The claim joins the campaigns that are sending: a table too small for autovacuum to
        // ever analyze, and without statistics the join looks selective enough to sort.
        if let Err(e) = state
            .db
            .execute_unprepared("ANALYZE campaigns, campaign_recipients")
            .await
        {
            tracing::warn!(error = %e, "refreshing the audience statistics failed");
        }
    }
    tracing::info!(
        campaign = id,
        recipients = n,
        snapshot_ms = started.elapsed().as_millis() as u64,
        "campaign started"
    );
    if n == 0 {
        db::finish_done(&state.db).await?;
    }
    state.campaign_wakeup.notify_waiters();
    Ok(Some(n))
}

/// Starts scheduled campaigns whose time has come (any instance may; the transition decides).
pub async fn start_due(state: &AppState) -> Result<(), DbErr> {
    for id in db::due_scheduled(&state.db, store::now()).await? {
        start(state, id).await?;
    }
    Ok(())
}

pub async fn schedule(state: &AppState, id: i64, at: time::OffsetDateTime) -> Result<bool, DbErr> {
    let tx = begin_write(&state.db).await?;
    let Some(c) = db::get(&tx, id).await? else {
        return Ok(false);
    };
    if !matches!(c.status.as_str(), "draft" | "scheduled") {
        return Ok(false);
    }
    let mut m: campaign::ActiveModel = c.into();
    m.send_at = Set(Some(at));
    m.status = Set("scheduled".into());
    m.updated_at = Set(store::now());
    m.update(&tx).await?;
    tx.commit().await?;
    Ok(true)
}

pub async fn pause(state: &AppState, id: i64) -> Result<bool, DbErr> {
    db::transition(&state.db, id, &["sending"], "paused").await
}

pub async fn resume(state: &AppState, id: i64) -> Result<bool, DbErr> {
    let ok = db::transition(&state.db, id, &["paused"], "sending").await?;
    state.campaign_wakeup.notify_waiters();
    Ok(ok)
}

pub async fn cancel(state: &AppState, id: i64) -> Result<bool, DbErr> {
    let tx = begin_write(&state.db).await?;
    if !db::transition(&tx, id, &["draft", "scheduled", "sending", "paused"], "cancelled").await? {
        return Ok(false);
    }
    db::cancel_remaining(&tx, id).await?;
    tx.commit().await?;
    Ok(true)
}

/// Test sends go only to addresses the operator marked as team test recipients.
pub async fn is_test_recipient(state: &AppState, email: &EmailAddress) -> Result<bool, DbErr> {
    Ok(test_recipient::Entity::find()
        .filter(test_recipient::Column::Email.eq(email.normalized()))
        .one(&state.db)
        .await?
        .is_some())
}

pub async fn add_test_recipient(state: &AppState, email: &EmailAddress) -> Result<(), DbErr> {
    let res = test_recipient::ActiveModel {
        email: Set(email.normalized()),
        created_at: Set(store::now()),
        ..Default::default()
    }
    .insert(&state.db)
    .await;
    match res {
        Err(e) if !store::is_unique_violation(&e) => Err(e),
        _ => Ok(()),
    }
}

pub async fn queue_test_send(state: &AppState, id: i64, to: &[EmailAddress]) -> Result<(), DbErr> {
    for address in to {
        let payload = Payload::CampaignTest { campaign_id: id };
        store::outbox::enqueue(
            &state.db,
            NewOutboxMessage {
                kind: payload.kind(),
                subscriber_id: None,
                recipient: address.to_string(),
                payload: serde_json::to_value(&payload).expect("payload serializes"),
                dedupe_key: None,
            },
        )
        .await?;
    }
    state.outbox_wakeup.notify_one();
    Ok(())
}
