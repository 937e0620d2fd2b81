//! Campaigns and their recipients.

use std::collections::HashMap;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, Set, Statement,
};

use super::entities::campaign::CampaignStatus;
use super::entities::campaign_recipient::RecipientStatus;
use super::entities::suppression::SuppressionReason;
use super::entities::{campaign, list, test_recipient};
pub use super::queue::Outcome;
use super::{Db, begin_write};

pub async fn insert(
    db: &impl ConnectionTrait,
    model: campaign::ActiveModel,
    list_ids: &[i64],
) -> Result<campaign::Model, DbErr> {
    let c = model.insert(db).await?;
    set_lists(db, c.id, list_ids).await?;
    Ok(c)
}

pub async fn set_lists(db: &impl ConnectionTrait, campaign_id: i64, list_ids: &[i64]) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        "DELETE FROM campaign_lists WHERE campaign_id = $1",
        [campaign_id.into()],
    ))
    .await?;
    for list_id in list_ids {
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            "INSERT INTO campaign_lists (campaign_id, list_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            [campaign_id.into(), (*list_id).into()],
        ))
        .await?;
    }
    Ok(())
}

pub async fn get(db: &impl ConnectionTrait, id: i64) -> Result<Option<campaign::Model>, DbErr> {
    campaign::Entity::find_by_id(id).one(db).await
}

pub async fn all(db: &impl ConnectionTrait) -> Result<Vec<campaign::Model>, DbErr> {
    campaign::Entity::find()
        .order_by_desc(campaign::Column::Id)
        .all(db)
        .await
}

pub async fn lists_of(db: &impl ConnectionTrait, campaign_id: i64) -> Result<Vec<list::Model>, DbErr> {
    #[derive(FromQueryResult)]
    struct Id {
        list_id: i64,
    }
    let ids: Vec<i64> = Id::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT list_id FROM campaign_lists WHERE campaign_id = $1",
        [campaign_id.into()],
    ))
    .all(db)
    .await?
    .into_iter()
    .map(|i| i.list_id)
    .collect();
    list::Entity::find()
        .filter(list::Column::Id.is_in(ids))
        .order_by_asc(list::Column::Id)
        .all(db)
        .await
}

/// Moves a campaign from one of `from` to `to`; false when it was in none of them. A reason
/// delivery gave for a pause goes with the pause.
pub async fn transition(
    db: &impl ConnectionTrait,
    id: i64,
    from: &[CampaignStatus],
    to: CampaignStatus,
) -> Result<bool, DbErr> {
    let mut q = campaign::Entity::update_many()
        .col_expr(campaign::Column::Status, Expr::value(to))
        .col_expr(
            campaign::Column::PausedReason,
            Expr::value(Option::<String>::None),
        )
        .col_expr(campaign::Column::UpdatedAt, super::now().into());
    if to == CampaignStatus::Sending {
        q = q.col_expr(campaign::Column::StartedAt, super::now().into());
    }
    if matches!(to, CampaignStatus::Sent | CampaignStatus::Cancelled) {
        q = q.col_expr(campaign::Column::FinishedAt, super::now().into());
    }
    let res = q
        .filter(campaign::Column::Id.eq(id))
        .filter(campaign::Column::Status.is_in(from.iter().copied()))
        .exec(db)
        .await?;
    Ok(res.rows_affected > 0)
}

/// Pauses a campaign that is sending, because of `reason` (delivery's, not the operator's);
/// false when it was not sending (paused already, or ended).
pub async fn pause_because(db: &impl ConnectionTrait, id: i64, reason: &str) -> Result<bool, DbErr> {
    let res = campaign::Entity::update_many()
        .col_expr(campaign::Column::Status, Expr::value(CampaignStatus::Paused))
        .col_expr(campaign::Column::PausedReason, Expr::value(reason))
        .col_expr(campaign::Column::UpdatedAt, super::now().into())
        .filter(campaign::Column::Id.eq(id))
        .filter(campaign::Column::Status.eq(CampaignStatus::Sending))
        .exec(db)
        .await?;
    Ok(res.rows_affected > 0)
}

#[derive(FromQueryResult)]
struct Bounds {
    lo: Option<i64>,
    hi: Option<i64>,
}

#[derive(FromQueryResult)]
struct Last {
    id: Option<i64>,
}

/// Snapshots the audience: every confirmed subscriber of the campaign's lists, once, minus
/// suppressed addresses, in blocks of at most [`BLOCK_ROWS`] recipients for the workers to
/// lease. Set-based, in chunks of subscriber ids so no statement grows with the audience.
/// Returns the number of recipients.
///
/// Plain inserts: each chunk groups by subscriber and the chunks do not overlap, and the
/// caller's move out of draft or scheduled makes this run once per campaign; the unique index
/// would only refuse what cannot happen (`ON CONFLICT` cost 14 % of a 1M snapshot).
pub async fn snapshot_audience(
    db: &impl ConnectionTrait,
    campaign_id: i64,
    now_ms: i64,
) -> Result<i64, DbErr> {
    const CHUNK: i64 = 50_000;
    let backend = db.get_database_backend();
    let b = Bounds::find_by_statement(Statement::from_string(
        backend,
        "SELECT MIN(id) AS lo, MAX(id) AS hi FROM subscribers",
    ))
    .one(db)
    .await?;
    let (Some(lo), Some(hi)) = b.map(|b| (b.lo, b.hi)).unwrap_or((None, None)) else {
        return Ok(0);
    };
    let (mut start, mut n) = (lo, 0);
    while start <= hi {
        // The chunk's rows take ids above every id before them (the ids come from a sequence),
        // so its blocks are read back by the primary key.
        let before = Last::find_by_statement(Statement::from_string(
            backend,
            "SELECT MAX(id) AS id FROM campaign_recipients",
        ))
        .one(db)
        .await?
        .and_then(|last| last.id)
        .unwrap_or(0);
        let inserted = db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                "INSERT INTO campaign_recipients (campaign_id, subscriber_id, list_id, status, attempts, next_attempt_at_ms) \
                 SELECT $1, x.subscriber_id, MIN(x.list_id), 'queued', 0, $2 \
                 FROM subscriptions x JOIN subscribers s ON s.id = x.subscriber_id \
                 WHERE x.subscriber_id >= $3 AND x.subscriber_id < $4 AND x.status = 'confirmed' \
                 AND x.list_id IN (SELECT list_id FROM campaign_lists WHERE campaign_id = $1) \
                 AND NOT EXISTS (SELECT 1 FROM suppressions sp WHERE sp.address_hmac = s.address_hmac) \
                 GROUP BY x.subscriber_id",
                [campaign_id.into(), now_ms.into(), start.into(), (start + CHUNK).into()],
            ))
            .await?
            .rows_affected();
        if inserted > 0 {
            // `+campaign_id` keeps SQLite on the primary key (see `queue::queued_in_block`).
            db.execute_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "INSERT INTO campaign_blocks (campaign_id, first_id, last_id, next_attempt_at_ms) \
                     SELECT $1, MIN(id), MAX(id), $2 FROM campaign_recipients \
                     WHERE id > $3 AND +campaign_id = $1 GROUP BY id / {BLOCK_ROWS}"
                ),
                [campaign_id.into(), now_ms.into(), before.into()],
            ))
            .await?;
        }
        n += inserted;
        start += CHUNK;
    }
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    campaign::Entity::update_many()
        .col_expr(campaign::Column::Recipients, n.into())
        .filter(campaign::Column::Id.eq(campaign_id))
        .exec(db)
        .await?;
    Ok(n)
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Progress {
    pub queued: i64,
    pub sent: i64,
    pub failed: i64,
    pub skipped: i64,
    pub cancelled: i64,
    /// Why recipients were skipped, with counts (unsubscribed, suppressed, held ...).
    pub skipped_reasons: std::collections::BTreeMap<String, i64>,
}

pub async fn progress(db: &impl ConnectionTrait, campaign_id: i64) -> Result<Progress, DbErr> {
    #[derive(FromQueryResult)]
    struct Row {
        status: RecipientStatus,
        n: i64,
    }
    let rows = Row::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT status, COUNT(*) AS n FROM campaign_recipients WHERE campaign_id = $1 GROUP BY status",
        [campaign_id.into()],
    ))
    .all(db)
    .await?;
    let mut p = Progress::default();
    for r in rows {
        match r.status {
            RecipientStatus::Queued => p.queued += r.n,
            RecipientStatus::Sent => p.sent = r.n,
            RecipientStatus::Failed => p.failed = r.n,
            RecipientStatus::Skipped => p.skipped = r.n,
            RecipientStatus::Cancelled => p.cancelled = r.n,
        }
    }
    #[derive(FromQueryResult)]
    struct Reason {
        reason: Option<String>,
        n: i64,
    }
    let reasons = Reason::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT last_error AS reason, COUNT(*) AS n FROM campaign_recipients \
         WHERE campaign_id = $1 AND status = 'skipped' GROUP BY last_error",
        [campaign_id.into()],
    ))
    .all(db)
    .await?;
    p.skipped_reasons = reasons
        .into_iter()
        .map(|r| (r.reason.unwrap_or_default(), r.n))
        .collect();
    Ok(p)
}

/// The people on a campaign's lists now: confirmed, and signed up but not yet confirmed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AudienceNow {
    pub confirmed: i64,
    pub unconfirmed: i64,
}

pub async fn audience_now(db: &impl ConnectionTrait, campaign_id: i64) -> Result<AudienceNow, DbErr> {
    #[derive(FromQueryResult)]
    struct Row {
        confirmed: i64,
        unconfirmed: i64,
    }
    let row = Row::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT COUNT(DISTINCT CASE WHEN x.status = 'confirmed' THEN x.subscriber_id END) AS confirmed, \
                COUNT(DISTINCT CASE WHEN x.status = 'pending' THEN x.subscriber_id END) AS unconfirmed \
         FROM subscriptions x \
         WHERE x.list_id IN (SELECT list_id FROM campaign_lists WHERE campaign_id = $1)",
        [campaign_id.into()],
    ))
    .one(db)
    .await?;
    Ok(row.map_or_else(AudienceNow::default, |r| AudienceNow {
        confirmed: r.confirmed,
        unconfirmed: r.unconfirmed,
    }))
}

/// Cancels what is left of a campaign's audience, and its blocks with it.
pub async fn cancel_remaining(db: &impl ConnectionTrait, campaign_id: i64) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let res = db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            "UPDATE campaign_recipients SET status = 'cancelled' WHERE campaign_id = $1 AND status = 'queued'",
            [campaign_id.into()],
        ))
        .await?;
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        "DELETE FROM campaign_blocks WHERE campaign_id = $1",
        [campaign_id.into()],
    ))
    .await?;
    Ok(res.rows_affected())
}

/// Marks campaigns whose every recipient is done as sent: no block of theirs is left (a
/// block goes once none of its rows is queued).
pub async fn finish_done(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    let res = db
        .execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "UPDATE campaigns SET status = 'sent', finished_at = $1, updated_at = $1 WHERE status = 'sending' \
             AND NOT EXISTS (SELECT 1 FROM campaign_blocks b WHERE b.campaign_id = campaigns.id)",
            [super::now().into()],
        ))
        .await?;
    Ok(res.rows_affected())
}

/// Scheduled campaigns whose time has come.
pub async fn due_scheduled(db: &impl ConnectionTrait, now: time::OffsetDateTime) -> Result<Vec<i64>, DbErr> {
    Ok(campaign::Entity::find()
        .filter(campaign::Column::Status.eq(CampaignStatus::Scheduled))
        .all(db)
        .await?
        .into_iter()
        .filter(|c| c.send_at.is_some_and(|t| t <= now))
        .map(|c| c.id)
        .collect())
}

/// Recipient ids per block of an audience: the unit a worker leases. A claim, a renewal and
/// a close cost about one statement per block, spread over this many recipients; two workers
/// share a campaign of a few thousand.
pub const BLOCK_ROWS: i64 = 256;

#[derive(Debug, Clone, FromQueryResult)]
pub struct ClaimedRecipient {
    pub id: i64,
    /// The block whose lease covers the row.
    pub block_id: i64,
    pub campaign_id: i64,
    pub subscriber_id: Option<i64>,
    pub list_id: i64,
    /// Including this one.
    pub attempts: i32,
}

#[derive(FromQueryResult)]
struct ClaimedBlock {
    id: i64,
    campaign_id: i64,
    first_id: i64,
    last_id: i64,
}

/// The claim of blocks: takes up to `$4` due blocks of campaigns being sent, oldest first, for
/// owner `$1` with a lease until `$2` (due: `next_attempt_at_ms <= $3`).
pub fn claim_sql(postgres: bool) -> String {
    let (sending, lock) = if postgres {
        ("campaign_id", "FOR UPDATE SKIP LOCKED")
    } else {
        // The unary `+` keeps SQLite from choosing the campaign_id index, which without
        // statistics it prefers, and then sorting every due block of the campaign.
        ("+campaign_id", "")
    };
    format!(
        "UPDATE campaign_blocks SET lease_owner = $1, next_attempt_at_ms = $2 \
         WHERE id IN (SELECT id FROM campaign_blocks WHERE next_attempt_at_ms <= $3 \
         AND {sending} IN (SELECT id FROM campaigns WHERE status = 'sending') \
         ORDER BY next_attempt_at_ms, id LIMIT $4 {lock}) \
         RETURNING id, campaign_id, first_id, last_id"
    )
}

/// The due rows of block `$1`: campaign `$4`'s recipients with ids `$2..=$3`, due at `$5`.
/// (`+campaign_id` keeps SQLite on the primary key, see `queue::queued_in_block`.)
pub const BLOCK_ROWS_SQL: &str = "SELECT id, CAST($1 AS BIGINT) AS block_id, campaign_id, subscriber_id, list_id, \
     attempts + 1 AS attempts FROM campaign_recipients WHERE id BETWEEN $2 AND $3 \
     AND +campaign_id = $4 AND status = 'queued' AND next_attempt_at_ms <= $5 ORDER BY id";

/// Claims due blocks of campaigns being sent, enough for about `limit` rows (at least one
/// block), for `owner` until `lease_until_ms`, and returns their due rows. Also returns the
/// blocks claimed: one may have no row due (recorded meanwhile by a worker that had lost it),
/// and is then the caller's to close.
pub async fn claim(
    db: &impl ConnectionTrait,
    owner: &str,
    now_ms: i64,
    lease_until_ms: i64,
    limit: u32,
) -> Result<(Vec<i64>, Vec<ClaimedRecipient>), DbErr> {
    let backend = db.get_database_backend();
    let blocks = ClaimedBlock::find_by_statement(Statement::from_sql_and_values(
        backend,
        claim_sql(super::is_postgres(db)),
        [
            owner.into(),
            lease_until_ms.into(),
            now_ms.into(),
            (i64::from(limit) / BLOCK_ROWS).max(1).into(),
        ],
    ))
    .all(db)
    .await?;
    let mut rows = Vec::new();
    for block in &blocks {
        rows.extend(
            ClaimedRecipient::find_by_statement(Statement::from_sql_and_values(
                backend,
                BLOCK_ROWS_SQL,
                [
                    block.id.into(),
                    block.first_id.into(),
                    block.last_id.into(),
                    block.campaign_id.into(),
                    now_ms.into(),
                ],
            ))
            .all(db)
            .await?,
        );
    }
    Ok((blocks.into_iter().map(|b| b.id).collect(), rows))
}

/// Everything the last check before a send needs, read in one query (CS-7): the person, a list
/// of the campaign they are still confirmed on, and any suppression of their address.
#[derive(Debug, Clone, FromQueryResult)]
pub struct SendCheck {
    pub email: String,
    pub name: Option<String>,
    pub uuid: uuid::Uuid,
    /// The row's list if they are still confirmed on it, else another of the campaign's lists
    /// they are confirmed on (they left the one they were queued under); `None`: on none.
    pub confirmed_on: Option<i64>,
    pub suppression: Option<SuppressionReason>,
    /// Consent events given under the material policy version asked about (0 if none).
    pub fresh_consents: i64,
    /// The campaign's status now (paused or cancelled since the row was claimed?).
    pub campaign_status: Option<CampaignStatus>,
}

/// A recipient row to check: who, for which list, in which campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CheckFor {
    pub subscriber_id: i64,
    pub list_id: i64,
    pub campaign_id: i64,
}

#[derive(FromQueryResult)]
struct CheckedRow {
    subscriber_id: i64,
    list_id: i64,
    campaign_id: i64,
    #[sea_orm(nested)]
    check: SendCheck,
}

/// The checks for many recipient rows in one query per chunk, in the order asked; `None` for a
/// person who no longer exists. `material`: the material policy version in force (version,
/// effective date), whose consent is counted in `fresh_consents`; without one nothing is
/// counted (0).
pub async fn send_checks(
    db: &impl ConnectionTrait,
    rows: &[CheckFor],
    material: Option<(&str, time::OffsetDateTime)>,
) -> Result<Vec<Option<SendCheck>>, DbErr> {
    // Nearly always no material change is in force, and then no one's consents are counted
    // (an index scan of consent_events per recipient).
    let (fresh_consents, params): (&str, Vec<sea_orm::Value>) = match material {
        Some((version, since)) => (
            "(SELECT COUNT(*) FROM consent_events c WHERE c.subscriber_id = s.id AND \
               ((c.kind = 'agree' AND c.policy_version = $1) \
                OR (c.kind IN ('confirm', 'api_add', 'import', 'resubscribe') AND c.occurred_at >= $2)))",
            vec![version.into(), since.into()],
        ),
        None => ("CAST(0 AS BIGINT)", Vec::new()),
    };
    let mut found: HashMap<CheckFor, SendCheck> = HashMap::with_capacity(rows.len());
    for chunk in rows.chunks(super::ROWS_PER_STATEMENT) {
        // A repeated row is looked up again and lands on the same key.
        let rows_param = params.len() + 1;
        let v = super::json_rows(
            db.get_database_backend(),
            rows_param,
            &["bigint", "bigint", "bigint"],
        );
        let sql = format!(
            "SELECT v.column1 AS subscriber_id, v.column2 AS list_id, v.column3 AS campaign_id, \
               s.email, s.name, s.uuid, \
               COALESCE( \
                 (SELECT x.list_id FROM subscriptions x \
                  WHERE x.subscriber_id = s.id AND x.list_id = v.column2 AND x.status = 'confirmed'), \
                 (SELECT MIN(x.list_id) FROM subscriptions x \
                  JOIN campaign_lists cl ON cl.list_id = x.list_id AND cl.campaign_id = v.column3 \
                  WHERE x.subscriber_id = s.id AND x.status = 'confirmed')) AS confirmed_on, \
               (SELECT cp.status FROM campaigns cp WHERE cp.id = v.column3) AS campaign_status, \
               (SELECT sp.reason FROM suppressions sp WHERE sp.address_hmac = s.address_hmac) AS suppression, \
               {fresh_consents} AS fresh_consents \
             FROM {v} JOIN subscribers s ON s.id = v.column1"
        );
        let rows: Vec<[i64; 3]> = chunk
            .iter()
            .map(|r| [r.subscriber_id, r.list_id, r.campaign_id])
            .collect();
        let mut all = params.clone();
        all.push(super::json_rows_value(&rows));
        let stmt = Statement::from_sql_and_values(db.get_database_backend(), sql, all);
        for row in CheckedRow::find_by_statement(stmt).all(db).await? {
            let key = CheckFor {
                subscriber_id: row.subscriber_id,
                list_id: row.list_id,
                campaign_id: row.campaign_id,
            };
            found.insert(key, row.check);
        }
    }
    Ok(rows.iter().map(|r| found.get(r).cloned()).collect())
}

/// A draft's content as written: a subject, an optional sender, and markdown or HTML and text.
pub struct Draft {
    pub subject: String,
    pub from: Option<String>,
    pub markdown: Option<String>,
    pub html: Option<String>,
    pub text: Option<String>,
    pub send_at: Option<time::OffsetDateTime>,
    pub list_ids: Vec<i64>,
}

/// Creates a draft with its lists.
pub async fn create(db: &Db, draft: Draft) -> Result<campaign::Model, DbErr> {
    let tx = begin_write(db).await?;
    let c = campaign::ActiveModel {
        subject: Set(draft.subject),
        from_address: Set(draft.from),
        markdown: Set(draft.markdown),
        html: Set(draft.html),
        text: Set(draft.text),
        send_at: Set(draft.send_at),
        status: Set(CampaignStatus::Draft),
        recipients: Set(0),
        created_at: Set(super::now()),
        updated_at: Set(super::now()),
        ..Default::default()
    }
    .insert(&tx)
    .await?;
    set_lists(&tx, c.id, &draft.list_ids).await?;
    tx.commit().await?;
    Ok(c)
}

/// Replaces a draft's content; false when the campaign is no longer a draft.
pub async fn update_draft(db: &Db, id: i64, draft: Draft) -> Result<bool, DbErr> {
    let tx = begin_write(db).await?;
    let Some(c) = get(&tx, id).await? else {
        return Ok(false);
    };
    if c.status != CampaignStatus::Draft {
        return Ok(false);
    }
    let mut m: campaign::ActiveModel = c.into();
    m.subject = Set(draft.subject);
    m.from_address = Set(draft.from);
    m.markdown = Set(draft.markdown);
    m.html = Set(draft.html);
    m.text = Set(draft.text);
    m.send_at = Set(draft.send_at);
    m.updated_at = Set(super::now());
    m.update(&tx).await?;
    set_lists(&tx, id, &draft.list_ids).await?;
    tx.commit().await?;
    Ok(true)
}

/// Deletes a draft; false when the campaign is not a draft.
pub async fn delete_draft(db: &Db, id: i64) -> Result<bool, DbErr> {
    let res = campaign::Entity::delete_many()
        .filter(campaign::Column::Id.eq(id))
        .filter(campaign::Column::Status.eq(CampaignStatus::Draft))
        .exec(db)
        .await?;
    Ok(res.rows_affected > 0)
}

/// From this many recipients a snapshot refreshes the table's statistics (PostgreSQL).
const FRESH_STATISTICS_FROM: i64 = 10_000;

/// Starts sending now: snapshots the audience for the workers. `None` when the campaign was
/// not a draft or scheduled; else the number of recipients.
pub async fn start(db: &Db, id: i64) -> Result<Option<i64>, DbErr> {
    let started = std::time::Instant::now();
    let tx = begin_write(db).await?;
    if !transition(
        &tx,
        id,
        &[CampaignStatus::Draft, CampaignStatus::Scheduled],
        CampaignStatus::Sending,
    )
    .await?
    {
        return Ok(None);
    }
    let n = snapshot_audience(&tx, id, super::now_ms()).await?;
    tx.commit().await?;
    if n >= FRESH_STATISTICS_FROM && super::is_postgres(db) {
        // A bulk load: until autovacuum gets to it, PostgreSQL would plan the workers' reads
        // and records on the tables' old sizes (a scan where the primary key serves) and sort
        // every due block per claim. The claim joins the campaigns that are sending, a table
        // too small for autovacuum ever to analyze.
        if let Err(e) = db
            .execute_unprepared("ANALYZE campaigns, campaign_blocks, campaign_recipients")
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
        finish_done(db).await?;
    }
    Ok(Some(n))
}

/// Starts scheduled campaigns whose time has come (any instance may; the transition decides).
/// Returns how many started.
pub async fn start_due(db: &Db) -> Result<usize, DbErr> {
    let mut started = 0;
    for id in due_scheduled(db, super::now()).await? {
        if start(db, id).await?.is_some() {
            started += 1;
        }
    }
    Ok(started)
}

/// Schedules a draft (or moves a schedule); false when it is neither.
pub async fn schedule(db: &Db, id: i64, at: time::OffsetDateTime) -> Result<bool, DbErr> {
    let tx = begin_write(db).await?;
    let Some(c) = get(&tx, id).await? else {
        return Ok(false);
    };
    if !matches!(c.status, CampaignStatus::Draft | CampaignStatus::Scheduled) {
        return Ok(false);
    }
    let mut m: campaign::ActiveModel = c.into();
    m.send_at = Set(Some(at));
    m.status = Set(CampaignStatus::Scheduled);
    m.updated_at = Set(super::now());
    m.update(&tx).await?;
    tx.commit().await?;
    Ok(true)
}

/// Cancels the campaign and what it has not sent yet; false when it had ended.
pub async fn cancel(db: &Db, id: i64) -> Result<bool, DbErr> {
    let tx = begin_write(db).await?;
    let live = [
        CampaignStatus::Draft,
        CampaignStatus::Scheduled,
        CampaignStatus::Sending,
        CampaignStatus::Paused,
    ];
    if !transition(&tx, id, &live, CampaignStatus::Cancelled).await? {
        return Ok(false);
    }
    cancel_remaining(&tx, id).await?;
    tx.commit().await?;
    Ok(true)
}

/// Whether the operator marked this address (normalized) as a team test recipient.
pub async fn is_test_recipient(db: &Db, email_key: &str) -> Result<bool, DbErr> {
    Ok(test_recipient::Entity::find()
        .filter(test_recipient::Column::Email.eq(email_key))
        .one(db)
        .await?
        .is_some())
}

pub async fn add_test_recipient(db: &Db, email_key: &str) -> Result<(), DbErr> {
    let res = test_recipient::ActiveModel {
        email: Set(email_key.to_owned()),
        created_at: Set(super::now()),
        ..Default::default()
    }
    .insert(db)
    .await;
    match res {
        Err(e) if !super::is_unique_violation(&e) => Err(e),
        _ => Ok(()),
    }
}
