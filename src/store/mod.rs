//! The database: connection set-up for SQLite and PostgreSQL, migrations, and the queries the
//! rest of the code needs. Nothing outside `store/` writes SQL.

pub mod api_keys;
pub mod batch;
pub mod campaigns;
pub mod daily_counts;
pub mod entities;
pub mod keys;
pub mod lists;
pub mod outbox;
pub mod policies;
pub mod queue;
pub mod reports;
pub mod retention;
pub mod scrub;
pub mod signups;
pub mod spent_tokens;
pub mod subscriptions;
pub mod suppressions;
pub mod trouble;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait, Value,
};

pub type Db = DatabaseConnection;

/// A transaction that writes (see [`begin_write`]).
pub type Tx = DatabaseTransaction;

/// What a query can fail with. The store's callers see this name only; which driver is behind
/// it stays in the store.
pub type Error = DbErr;

/// The longest a request waits for a database connection before it is answered 503.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the pool. SQLite gets WAL (readers never wait for the writer), a busy timeout
/// (writers queue instead of failing) and foreign keys.
pub async fn connect(url: &str) -> Result<Db, DbErr> {
    connect_with(url, 8, Duration::from_secs(30)).await
}

/// A connection of its own for SQLite's checkpoints (`scrub`), with a short busy timeout: a
/// checkpoint that empties the log holds the write lock while it waits for readers, and with
/// the pool's 30 s it could hold every signup for as long. It gives up after a few
/// milliseconds instead and tries again later.
pub(crate) async fn connect_checkpointer(url: &str) -> Result<Db, DbErr> {
    connect_with(url, 1, Duration::from_millis(5)).await
}

/// A connection of its own for PostgreSQL's compaction (`scrub`): VACUUM FULL waits at most
/// two seconds for a table's lock, so that it never queues behind a long reader while every
/// request queues behind it; it tries again later.
pub(crate) async fn connect_compactor(url: &str) -> Result<Db, DbErr> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .max_connections(1)
        .min_connections(0)
        .map_sqlx_postgres_opts(|o| o.options([("lock_timeout", "2s")]));
    Database::connect(opts).await
}

async fn connect_with(url: &str, sqlite_connections: u32, busy_timeout: Duration) -> Result<Db, DbErr> {
    let mut opts = ConnectOptions::new(url.to_owned());
    // A request that needs the database waits at most ACQUIRE_TIMEOUT for a connection, then
    // answers 503: while PostgreSQL is unreachable the pool keeps trying to connect, and no
    // request should hang on it.
    opts.sqlx_logging(false)
        .connect_timeout(ACQUIRE_TIMEOUT)
        .acquire_timeout(ACQUIRE_TIMEOUT);
    if url.starts_with("sqlite:") {
        opts.max_connections(sqlite_connections)
            .min_connections(1)
            .map_sqlx_sqlite_opts(move |o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(busy_timeout)
                    .foreign_keys(true)
                    // Deleted data is overwritten in the database file, not left in free
                    // pages (GD-3); `scrub` empties the write-ahead log after erasures.
                    .pragma("secure_delete", "ON")
                    // Checkpoints run in the background (`scrub::Scrubber::run`); this is the
                    // backstop should that stop (200 MB of WAL; the default is 4 MB).
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
    let _waiting = WaitingWriter::new();
    begin_immediate(db).await
}

/// [`begin_write`] for bulk work (a CSV import's next chunk): on SQLite it first lets the
/// writers of requests that are waiting for the lock go, for up to [`BULK_YIELDS_AT_MOST`]. A
/// request's writer waits in SQLite's busy handler, which sleeps between tries; without this
/// the import, ready with its next chunk the moment it commits, took the lock again and again
/// while a signup slept.
pub async fn begin_bulk_write(db: &Db) -> Result<DatabaseTransaction, DbErr> {
    if !is_postgres(db) {
        let deadline = tokio::time::Instant::now() + BULK_YIELDS_AT_MOST;
        while WAITING_WRITERS.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    begin_immediate(db).await
}

/// The longest a bulk writer waits for request writers before each of its transactions, so
/// that a steady stream of signups cannot stop an import.
const BULK_YIELDS_AT_MOST: Duration = Duration::from_millis(100);

/// Writers of this process waiting in [`begin_write`] for the write lock.
static WAITING_WRITERS: AtomicUsize = AtomicUsize::new(0);

/// Counts a writer as waiting until it has its transaction (or gives up, or is dropped).
struct WaitingWriter;

impl WaitingWriter {
    fn new() -> Self {
        WAITING_WRITERS.fetch_add(1, Ordering::Relaxed);
        WaitingWriter
    }
}

impl Drop for WaitingWriter {
    fn drop(&mut self) {
        WAITING_WRITERS.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn begin_immediate(db: &Db) -> Result<DatabaseTransaction, DbErr> {
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

/// How busy the connection pool is: connections lent out now, idle ones, and the most it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

/// The pool's state now (no query; read from the pool itself).
pub fn pool_state(db: &Db) -> Option<PoolState> {
    use sea_orm::DatabaseConnectionType as Pool;
    let (open, idle, max) = match &db.inner {
        Pool::SqlxPostgresPoolConnection(_) => {
            let pool = db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle(), pool.options().get_max_connections())
        }
        Pool::SqlxSqlitePoolConnection(_) => {
            let pool = db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle(), pool.options().get_max_connections())
        }
        _ => return None,
    };
    let idle = u32::try_from(idle).unwrap_or(u32::MAX);
    Some(PoolState {
        in_use: open.saturating_sub(idle),
        idle,
        max,
    })
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

/// Whether the database cannot be used just now (unreachable, refusing connections, out of
/// disk, read-only, locked past the busy timeout), as opposed to a statement that is wrong:
/// the first is a 503 and a reason for the workers to back off, the second a bug.
pub fn is_unavailable(err: &DbErr) -> bool {
    use sea_orm::sqlx::Error;
    is_connection_lost(err)
        || match sqlx_error(err) {
            Some(Error::Tls(_) | Error::PoolTimedOut | Error::PoolClosed | Error::WorkerCrashed) => true,
            Some(Error::Database(e)) => e.code().is_some_and(|code| unavailable_code(&code)),
            _ => false,
        }
}

/// Whether the database could not be reached or a connection to it broke: no answer from it
/// at all (the first kind of [`is_unavailable`]).
pub(crate) fn is_connection_lost(err: &DbErr) -> bool {
    matches!(err, DbErr::ConnectionAcquire(_) | DbErr::Conn(_))
        || matches!(sqlx_error(err), Some(sea_orm::sqlx::Error::Io(_)))
}

/// The driver's error behind a failed statement.
fn sqlx_error(err: &DbErr) -> Option<&sea_orm::sqlx::Error> {
    use sea_orm::RuntimeErr::SqlxError;
    match err {
        DbErr::Exec(SqlxError(e)) | DbErr::Query(SqlxError(e)) => Some(e),
        _ => None,
    }
}

/// PostgreSQL SQLSTATEs and SQLite result codes that mean "not now" rather than "wrong".
fn unavailable_code(code: &str) -> bool {
    // PostgreSQL: 08 connection exception, 53 insufficient resources (disk full, out of
    // memory, too many connections), 57P01..03 shutting down or not accepting connections yet,
    // 25006 a read-only transaction (a standby).
    if code.starts_with("08") || code.starts_with("53") || code.starts_with("57P") || code == "25006" {
        return true;
    }
    // SQLite (extended codes keep the primary one in the low byte): BUSY past the busy timeout,
    // READONLY, IOERR, FULL, CANTOPEN.
    code.parse::<i32>()
        .is_ok_and(|c| matches!(c & 0xff, 5 | 8 | 10 | 13 | 14))
}

/// A write that proves the database takes writes now (`/healthz`): a full disk or a read-only
/// file still answers reads.
pub async fn check_writes(db: &Db) -> Result<(), DbErr> {
    db.execute_raw(sea_orm::Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE liveness SET checked_at_ms = $1 WHERE id = 1",
        [now_ms().into()],
    ))
    .await
    .map(|_| ())
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

/// `rows` rows of `cols` parameters numbered from `$first`: `($3, $4), ($5, $6)` for (3, 2, 2).
fn values_list_from(first: usize, rows: usize, cols: usize) -> String {
    let mut out = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..cols {
            if c > 0 {
                out.push_str(", ");
            }
            out.push('$');
            out.push_str(&(first + r * cols + c).to_string());
        }
        out.push(')');
    }
    out
}

/// A subquery `(…) AS v` over the rows of one JSON parameter `$param` (an array of arrays, see
/// [`json_rows_value`]), with columns `column1`, `column2`, … of the given PostgreSQL types.
///
/// A list of any length is then the same statement text, which each pooled connection prepares
/// once (sqlx caches statements per connection, PostgreSQL a plan per backend); a statement
/// with one parameter per row would be a new statement for every row count. For lookups and
/// updates; inserts of many rows use [`values_list`].
pub(crate) fn json_rows(backend: DbBackend, param: usize, pg_types: &[&str]) -> String {
    let columns: Vec<String> = pg_types
        .iter()
        .enumerate()
        .map(|(i, pg_type)| match backend {
            DbBackend::Postgres => format!("(e->>{i})::{pg_type} AS column{}", i + 1),
            _ => format!("json_extract(value, '$[{i}]') AS column{}", i + 1),
        })
        .collect();
    let source = match backend {
        DbBackend::Postgres => format!("json_array_elements(${param}::json) AS e"),
        _ => format!("json_each(${param})"),
    };
    format!("(SELECT {} FROM {source}) AS v", columns.join(", "))
}

/// The parameter [`json_rows`] reads: rows as a JSON array of arrays.
pub(crate) fn json_rows_value<R: serde::Serialize>(rows: &[R]) -> Value {
    serde_json::to_string(rows).expect("rows serialize").into()
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
    fn json_rows_is_one_statement_for_any_number_of_rows() {
        use sea_orm::DatabaseBackend::{Postgres, Sqlite};
        assert_eq!(
            super::json_rows(Postgres, 2, &["bigint", "text"]),
            "(SELECT (e->>0)::bigint AS column1, (e->>1)::text AS column2 \
             FROM json_array_elements($2::json) AS e) AS v"
        );
        assert_eq!(
            super::json_rows(Sqlite, 1, &["bigint"]),
            "(SELECT json_extract(value, '$[0]') AS column1 FROM json_each($1)) AS v"
        );
        let rows: Vec<(i64, &str)> = vec![(1, "a"), (2, "b\"c")];
        assert_eq!(
            super::json_rows_value(&rows),
            sea_orm::Value::from(r#"[[1,"a"],[2,"b\"c"]]"#)
        );
    }

    #[test]
    fn values_list_numbers_parameters_row_by_row() {
        use sea_orm::DatabaseBackend::{Postgres, Sqlite};
        assert_eq!(super::values_list(Postgres, 2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(super::values_list(Postgres, 1, 1), "($1)");
        assert_eq!(super::values_list(Sqlite, 2, 2), "(?, ?), (?, ?)");
        assert_eq!(super::values_list_from(3, 2, 2), "($3, $4), ($5, $6)");
    }
}
