//! Per-day counters (`daily_counts`) for what leaves no row to count afterwards: delivery
//! outcomes (a deferred row goes back to the queue, a failed one keeps no time) and what
//! retention deleted. A counter names a UTC day and what happened, never a person.

use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Statement, Value};

/// What a counter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counter {
    /// Accepted by the relay.
    Sent,
    /// Refused for now (a 4xx) or not sent because of an error on the way: tried again later,
    /// the attempt counted.
    Retried,
    /// Put back without spending an attempt: the relay could not be reached, a campaign was
    /// paused, a recipient's details changed.
    Deferred,
    /// Given up: refused for good (a 5xx), or out of attempts.
    Failed,
    /// Retention: signups never confirmed.
    RetentionUnconfirmed,
    /// Retention: names given at a signup and never confirmed.
    RetentionUnconfirmedNames,
    /// Retention: people who only ever had unconfirmed signups.
    RetentionNeverConfirmed,
    /// Retention: consent evidence whose IP address and user agent were blanked.
    RetentionAbuseData,
    /// Retention: people who had left every list.
    RetentionLeavers,
    /// Retention: people whose address bounced or drew a complaint.
    RetentionBounced,
}

impl Counter {
    pub const ALL: [Counter; 10] = [
        Counter::Sent,
        Counter::Retried,
        Counter::Deferred,
        Counter::Failed,
        Counter::RetentionUnconfirmed,
        Counter::RetentionUnconfirmedNames,
        Counter::RetentionNeverConfirmed,
        Counter::RetentionAbuseData,
        Counter::RetentionLeavers,
        Counter::RetentionBounced,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Counter::Sent => "sent",
            Counter::Retried => "retried",
            Counter::Deferred => "deferred",
            Counter::Failed => "failed",
            Counter::RetentionUnconfirmed => "retention_unconfirmed",
            Counter::RetentionUnconfirmedNames => "retention_unconfirmed_names",
            Counter::RetentionNeverConfirmed => "retention_never_confirmed",
            Counter::RetentionAbuseData => "retention_abuse_data",
            Counter::RetentionLeavers => "retention_leavers",
            Counter::RetentionBounced => "retention_bounced",
        }
    }

    fn parse(s: &str) -> Option<Counter> {
        Counter::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// A UTC day as the table keys it: `YYYY-MM-DD`.
pub fn day_of(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// On PostgreSQL, the part of a `WITH` statement that adds the rows of `cte` to `counter` for
/// day `day` (a parameter, see [`day_of`]), stamped `at` (a parameter): a statement that
/// writes rows counts them itself instead of a second round trip. Nothing is added for none.
pub fn counting(cte: &str, counter: Counter, day: &str, at: &str) -> String {
    format!(
        "INSERT INTO daily_counts (day, counter, n, last_at) SELECT {day}, '{}', COUNT(*), {at} FROM {cte} \
         HAVING COUNT(*) > 0 \
         ON CONFLICT (day, counter) DO UPDATE SET n = daily_counts.n + excluded.n, last_at = excluded.last_at",
        counter.as_str()
    )
}

/// Adds to today's counters (zeros are left out): one statement, whatever the count.
pub async fn add(db: &impl ConnectionTrait, counts: &[(Counter, u64)]) -> Result<(), DbErr> {
    let mut tally: Vec<(Counter, u64)> = Vec::with_capacity(counts.len());
    for &(counter, n) in counts {
        match tally.iter_mut().find(|(c, _)| *c == counter) {
            Some((_, total)) => *total += n,
            None => tally.push((counter, n)),
        }
    }
    // One row per counter: PostgreSQL refuses an upsert that meets one row twice.
    tally.retain(|(_, n)| *n > 0);
    if tally.is_empty() {
        return Ok(());
    }
    let now = super::now();
    let day = day_of(now);
    let backend = db.get_database_backend();
    let sql = format!(
        "INSERT INTO daily_counts (day, counter, n, last_at) VALUES {} \
         ON CONFLICT (day, counter) DO UPDATE SET n = daily_counts.n + excluded.n, last_at = excluded.last_at",
        super::values_list(backend, tally.len(), 4)
    );
    let mut values: Vec<Value> = Vec::with_capacity(tally.len() * 4);
    for (counter, n) in tally {
        values.extend([
            day.clone().into(),
            counter.as_str().into(),
            i64::try_from(n).unwrap_or(i64::MAX).into(),
            now.into(),
        ]);
    }
    db.execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    Ok(())
}

/// One counter on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayCount {
    pub day: String,
    pub counter: Counter,
    pub n: i64,
}

/// Every counter from `first_day` (`YYYY-MM-DD`) on.
pub async fn since(db: &impl ConnectionTrait, first_day: &str) -> Result<Vec<DayCount>, DbErr> {
    #[derive(FromQueryResult)]
    struct Row {
        day: String,
        counter: String,
        n: i64,
    }
    let rows = Row::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT day, counter, n FROM daily_counts WHERE day >= $1 ORDER BY day",
        [first_day.into()],
    ))
    .all(db)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some(DayCount {
                counter: Counter::parse(&r.counter)?,
                day: r.day,
                n: r.n,
            })
        })
        .collect())
}

/// A counter over every day kept: its sum and when it last moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Total {
    pub counter: Counter,
    pub n: i64,
    pub last_at: time::OffsetDateTime,
}

pub async fn totals(db: &impl ConnectionTrait) -> Result<Vec<Total>, DbErr> {
    #[derive(FromQueryResult)]
    struct Row {
        counter: String,
        n: i64,
        last_at: time::OffsetDateTime,
    }
    let rows = Row::find_by_statement(Statement::from_string(
        db.get_database_backend(),
        "SELECT counter, CAST(SUM(n) AS BIGINT) AS n, MAX(last_at) AS last_at FROM daily_counts GROUP BY counter",
    ))
    .all(db)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some(Total {
                counter: Counter::parse(&r.counter)?,
                n: r.n,
                last_at: r.last_at,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_is_the_utc_date() {
        let t = time::macros::datetime!(2027-03-01 00:30 +02:00);
        assert_eq!(day_of(t), "2027-02-28");
        assert_eq!(
            day_of(time::macros::datetime!(2027-12-31 23:59 UTC)),
            "2027-12-31"
        );
    }

    #[test]
    fn counters_read_back_as_written() {
        for c in Counter::ALL {
            assert_eq!(Counter::parse(c.as_str()), Some(c));
        }
        assert_eq!(Counter::parse("something_newer"), None);
    }
}
