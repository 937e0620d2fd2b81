//! Trouble a background task has with the database (or another dependency), told once: a
//! warning when it starts or its error changes, a line when it ends, and silence while the same
//! error repeats. Workers retry every few seconds through an outage; the log should say what
//! happened, not every retry.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// When a write of this process last failed because the database could not be used (0: never).
static LAST_UNAVAILABLE_MS: AtomicI64 = AtomicI64::new(0);

/// A write failed because the database cannot be used just now (see `store::is_unavailable`).
pub fn note_unavailable() {
    LAST_UNAVAILABLE_MS.store(super::now_ms(), Ordering::Relaxed);
}

/// Whether a write failed that way within `window`. A full disk still takes a small write into
/// the room a refused larger one left in SQLite's log, so `/healthz` cannot prove writes work
/// with its own write alone: it also reports what the other writes met.
pub fn unavailable_within(window: Duration) -> bool {
    let last = LAST_UNAVAILABLE_MS.load(Ordering::Relaxed);
    last != 0 && super::now_ms() - last < i64::try_from(window.as_millis()).unwrap_or(i64::MAX)
}

pub struct Trouble {
    what: &'static str,
    last: Mutex<Option<String>>,
}

impl Trouble {
    /// `what`: the task, as the log names it ("claiming outbox rows").
    pub const fn new(what: &'static str) -> Self {
        Trouble {
            what,
            last: Mutex::new(None),
        }
    }

    /// The task failed; logged only if it worked before or failed differently. A lost
    /// connection is one trouble however each retry's socket reports it (reset by peer, end of
    /// file, refused).
    pub fn failed(&self, error: &super::Error) {
        if super::is_unavailable(error) {
            note_unavailable();
        }
        let error_text = error.to_string();
        let kind = if super::is_connection_lost(error) {
            "no connection to the database".to_owned()
        } else {
            error_text.clone()
        };
        self.failed_as(kind, error_text);
    }

    /// [`Trouble::failed`], for an error already turned into text.
    pub fn failed_with(&self, error: String) {
        self.failed_as(error.clone(), error);
    }

    /// Logs `error` unless the task is already failing with the same `kind` of error.
    fn failed_as(&self, kind: String, error: String) {
        let mut last = self.last.lock().expect("trouble lock");
        if last.as_deref() != Some(kind.as_str()) {
            tracing::warn!(task = self.what, error = %error, "failing; retrying quietly until it works");
            *last = Some(kind);
        }
    }

    /// The task worked; logged if it had been failing.
    pub fn ok(&self) {
        if self.last.lock().expect("trouble lock").take().is_some() {
            tracing::info!(task = self.what, "works again");
        }
    }

    pub fn is_failing(&self) -> bool {
        self.last.lock().expect("trouble lock").is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::Trouble;

    #[test]
    fn a_repeated_error_is_one_state() {
        let t = Trouble::new("test");
        assert!(!t.is_failing());
        let down = sea_orm::DbErr::Custom("down".into());
        t.failed(&down);
        t.failed(&down);
        assert!(t.is_failing());
        t.ok();
        assert!(!t.is_failing());
    }

    #[test]
    fn a_lost_connection_is_one_state_however_the_socket_says_it() {
        let t = Trouble::new("test");
        let lost = |kind, text| {
            sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(
                sea_orm::sqlx::Error::Io(std::io::Error::new(kind, text)),
            )))
        };
        t.failed(&lost(
            std::io::ErrorKind::ConnectionReset,
            "Connection reset by peer",
        ));
        assert_eq!(
            t.last.lock().unwrap().as_deref(),
            Some("no connection to the database")
        );
        t.failed(&lost(std::io::ErrorKind::UnexpectedEof, "unexpected end of file"));
        assert_eq!(
            t.last.lock().unwrap().as_deref(),
            Some("no connection to the database")
        );
        // An answer from the database is another trouble, with its own text.
        t.failed(&sea_orm::DbErr::Custom("disk full".into()));
        assert_eq!(t.last.lock().unwrap().as_deref(), Some("Custom Error: disk full"));
    }
}
