//! The features, one module each, named as the pages and templates name them. A service takes
//! what it needs (a store handle, the address hasher, its own settings, the delivery wake-ups),
//! never the application state, and answers in its own types: outcome enums, and [`Error`] when
//! it cannot do what was asked. Only the edges turn those into status codes, pages and problem
//! bodies.

pub mod campaigns;
pub mod leaving;
pub mod notices;
pub mod signup;
pub mod subscribers;

use crate::domain::FieldError;
use crate::store;

/// What a service answers when it cannot do what was asked; the edges turn it into a status
/// code and a page or problem body.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Fields of the request that cannot be used, each with the reason.
    #[error("{} field(s) cannot be used", .0.len())]
    Invalid(Vec<FieldError>),
    /// The database failed, or refused a duplicate.
    #[error("database: {0}")]
    Store(#[from] store::Error),
}

impl Error {
    /// True when the database refused a duplicate (another request did the same first).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, Error::Store(e) if store::is_unique_violation(e))
    }
}

/// Splits items into rounds in which every address comes at most once: the n-th occurrence of
/// an address goes in the n-th round, in order. Multi-row statements then touch a person once
/// each, and each round sees what the one before wrote (signups and imports).
pub(crate) fn rounds_by_address<T>(
    items: impl IntoIterator<Item = T>,
    normalized_address: impl Fn(&T) -> String,
) -> Vec<Vec<T>> {
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut rounds: Vec<Vec<T>> = Vec::new();
    for item in items {
        let n = seen.entry(normalized_address(&item)).or_insert(0);
        if rounds.len() <= *n {
            rounds.push(Vec::new());
        }
        rounds[*n].push(item);
        *n += 1;
    }
    rounds
}
