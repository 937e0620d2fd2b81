//! The database: connection set-up for SQLite and PostgreSQL, migrations, and the queries the
//! rest of the code needs. Nothing outside `store/` writes SQL.

pub mod api_keys;
pub mod batch;
pub mod campaigns;
pub mod entities;
pub mod keys;
pub mod lists;
pub mod outbox;
pub mod policies;
pub mod queue;
pub mod retention;
pub mod signups;
pub mod spent_tokens;
pub mod subscriptions;
pub mod suppressions;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

pub type Db = DatabaseConnection;

/// A transaction that writes (see [`begin_write`]).
pub type Tx = DatabaseTransaction;

/// What a query can fail with. The store's callers see this name only; which driver is behind
/// it stays in the store.
pub type Error = DbErr;

/// Opens the pool. SQLite gets WAL (readers never wait for the writer), a busy timeout
/// (writers queue instead of failing) and foreign keys.
pub async fn connect(url: &str) -> Result<Db, DbErr> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30));
    if url.starts_with("sqlite:") {
        opts.max_connections(8)
            .min_connections(1)
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(30))
                    .foreign_keys(true)
                    // Erased data is overwritten on disk, not left in free pages (GD-3).
                    .pragma("secure_delete", "ON")
                    // Checkpoints run in the background (`checkpoints`); this is the backstop
                    // should that stop (200 MB of WAL; the default is 4 MB).
                    .pragma("wal_autocheckpoint", "50000")
            });
    } else {
        opts.max_connections(16)
            .min_connections(1)
            .map_sqlx_postgres_opts(|o| o.statement_cache_capacity(1000));
    }
    Database::connect(opts).await
}

/// Applies every pending migration (idempotent; safe to run from several instances at once on
/// PostgreSQL because sea-orm-migration runs each migration in a transaction).
pub async fn migrate(db: &Db) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// Starts a transaction that will write. On SQLite it takes the write lock at BEGIN
/// (`BEGIN IMMEDIATE`), so two writers queue on the busy timeout instead of one failing when it
/// upgrades a read lock.
pub async fn begin_write(db: &Db) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// Turns at the database's write lock for one process's background writers (the delivery
/// workers' claims, outcome records and finished-campaign marks), on SQLite only.
///
/// SQLite has one writer at a time, and a writer that finds the lock taken sleeps in its busy
/// handler, 1, 2, 5, 10, 15, 20 … ms between tries, with no queue: while the outcome recorder
/// wrote every few milliseconds, the claimer could miss the lock again and again and the relay
/// sessions ran dry.
/// Here they wait in order and wake as soon as the one before is done. The request path (the
/// signup writer, the API) takes no turn, so it meets at most one background writer at the
/// lock and keeps its priority. On PostgreSQL writers of different rows do not exclude each
/// other: no turns.
pub struct BackgroundWrites(Option<tokio::sync::Mutex<()>>);

impl BackgroundWrites {
    pub fn for_db(db: &Db) -> Self {
        BackgroundWrites((!is_postgres(db)).then(|| tokio::sync::Mutex::new(())))
    }

    /// Waits for this process's turn to write (at once on PostgreSQL); the turn ends when the
    /// guard is dropped.
    pub async fn turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.0 {
            Some(lock) => Some(lock.lock().await),
            None => None,
        }
    }
}

/// Copies the SQLite write-ahead log back into the database now and then, off the writers' path.
///
/// SQLite's automatic checkpoint runs inside the commit that crosses 1,000 pages of WAL,
/// fsyncs included, so every few hundred signups one batch (and everyone waiting for it)
/// stalled, which was the tail of the signup latency. A
/// PASSIVE checkpoint never blocks writers or readers; it copies what no reader still needs.
/// Does nothing on PostgreSQL.
pub async fn checkpoints(db: Db, mut stop: tokio::sync::watch::Receiver<bool>) {
    if is_postgres(&db) {
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = db.execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)").await {
            tracing::warn!(error = %e, "WAL checkpoint failed; trying again shortly");
        }
    }
}

pub async fn ping(db: &Db) -> Result<(), DbErr> {
    db.execute_unprepared("SELECT 1").await.map(|_| ())
}

pub fn is_postgres(db: &impl ConnectionTrait) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}

pub fn now() -> time::OffsetDateTime {
    // Microsecond precision: what PostgreSQL stores, so values read back compare equal.
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}

/// [`now`] and the same instant in epoch milliseconds, from one reading of the clock. A
/// timestamp and a millisecond field written beside it must agree: the confirmation rule
/// compares a subscription's `pending_since_ms` with its confirmation's `created_at`, and two
/// readings that fell on either side of a millisecond made a repeat signup look newer than
/// the confirmation that covers it, which then went out again (a CI run caught it, OI-9).
pub fn now_and_ms() -> (time::OffsetDateTime, i64) {
    let now = now();
    (now, (now.unix_timestamp_nanos() / 1_000_000) as i64)
}

pub fn now_ms() -> i64 {
    now_and_ms().1
}

/// True when the error is a unique-constraint violation (an idempotent repeat, or a 409).
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}

/// The `VALUES` list of a multi-row statement whose only parameters these are: `($1, $2),
/// ($3, $4)` for two rows of two. Batches write many rows in one statement instead of one
/// round trip per row.
///
/// SQLite gets anonymous `?` instead: it keeps numbered parameters as names and looks each one
/// up by a scan when binding and parsing, quadratic in the parameter count, which showed in the
/// signup benchmark's profile for the multi-row statements of a batch.
pub(crate) fn values_list(backend: DbBackend, rows: usize, cols: usize) -> String {
    if backend == DbBackend::Postgres {
        return values_list_from(1, rows, cols);
    }
    let row = format!("({})", vec!["?"; cols].join(", "));
    vec![row; rows].join(", ")
}

/// `n` parameters for an `IN (…)` list that are the statement's only ones (see
/// [`values_list`]).
pub(crate) fn in_list(backend: DbBackend, n: usize) -> String {
    if backend == DbBackend::Postgres {
        params(1, n)
    } else {
        vec!["?"; n].join(", ")
    }
}

/// [`values_list`] numbered from `$first` (after parameters the statement has before it).
pub(crate) fn values_list_from(first: usize, rows: usize, cols: usize) -> String {
    let mut out = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        push_params(&mut out, first + r * cols, cols);
        out.push(')');
    }
    out
}

/// `n` numbered parameters from `$first`, for an `IN (…)` list: `$2, $3, $4` for (2, 3).
pub(crate) fn params(first: usize, n: usize) -> String {
    let mut out = String::with_capacity(n * 5);
    push_params(&mut out, first, n);
    out
}

fn push_params(out: &mut String, first: usize, n: usize) {
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('$');
        out.push_str(&(first + i).to_string());
    }
}

/// The rows of a multi-row lookup or update padded to a power of two, by repeating the last.
///
/// Each row count is its own statement text, which every pooled connection prepares and keeps
/// (sqlx caches up to 1,000 statements per connection, PostgreSQL a plan per backend). Send
/// checks and outcome records come in groups of any size up to the rows in flight, so a long
/// campaign would fill the caches with hundreds of shapes per connection and the resident set
/// would grow with the campaign. Padded, there are at most ten shapes per statement. Only for
/// statements that treat a repeated row as the same row again (a lookup joined on it, an
/// `UPDATE … FROM` it), never for inserts.
pub(crate) fn padded_to_shape<T: Clone>(rows: &[T]) -> std::borrow::Cow<'_, [T]> {
    let shape = rows.len().next_power_of_two();
    match rows.last() {
        Some(last) if shape > rows.len() => {
            let mut out = Vec::with_capacity(shape);
            out.extend_from_slice(rows);
            out.resize(shape, last.clone());
            std::borrow::Cow::Owned(out)
        }
        _ => std::borrow::Cow::Borrowed(rows),
    }
}

/// Rows per multi-row statement: well under SQLite's 32,766 and PostgreSQL's 65,535 bound
/// parameters for any of our tables.
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

#[cfg(test)]
mod tests {
    #[test]
    fn a_timestamp_and_its_milliseconds_agree() {
        for _ in 0..10_000 {
            let (now, ms) = super::now_and_ms();
            assert_eq!(now.unix_timestamp_nanos().div_euclid(1_000_000), i128::from(ms));
        }
    }

    #[test]
    fn rows_are_padded_to_a_power_of_two_with_the_last_repeated() {
        assert!(super::padded_to_shape::<i64>(&[]).is_empty());
        assert_eq!(&*super::padded_to_shape(&[7]), &[7]);
        assert_eq!(&*super::padded_to_shape(&[1, 2, 3]), &[1, 2, 3, 3]);
        assert_eq!(super::padded_to_shape(&[5; 64]).len(), 64);
        let shapes: std::collections::HashSet<usize> = (1..=500)
            .map(|n| super::padded_to_shape(&vec![0u8; n]).len())
            .collect();
        assert_eq!(shapes.len(), 10, "1, 2, 4 … 512");
    }

    #[test]
    fn values_list_numbers_parameters_row_by_row() {
        use sea_orm::DatabaseBackend::{Postgres, Sqlite};
        assert_eq!(super::values_list(Postgres, 2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(super::values_list(Postgres, 1, 1), "($1)");
        assert_eq!(super::values_list(Sqlite, 2, 2), "(?, ?), (?, ?)");
        assert_eq!(super::in_list(Postgres, 2), "$1, $2");
        assert_eq!(super::in_list(Sqlite, 3), "?, ?, ?");
        assert_eq!(super::values_list_from(3, 2, 2), "($3, $4), ($5, $6)");
        assert_eq!(super::params(2, 3), "$2, $3, $4");
    }
}
