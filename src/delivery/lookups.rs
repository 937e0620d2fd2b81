//! The reads an outbox send makes right before it goes, grouped: concurrent sends share one
//! query each instead of one per message (see [`Batcher`]).

use super::Context;
use crate::domain::AddressHash;
use crate::store::batch::{Batcher, Grouping};
use crate::store::subscriptions::{self, PendingConfirmation};
use crate::store::suppressions::{self, SuppressionReason};

type Answer<T> = Result<T, String>;

pub struct Lookups {
    suppressions: Batcher<AddressHash, Answer<Option<SuppressionReason>>>,
    pending: Batcher<i64, Answer<Option<PendingConfirmation>>>,
}

impl Lookups {
    /// Starts the grouping tasks; they end when the `Lookups` is dropped.
    pub fn start(ctx: &Context) -> Self {
        let group = ctx.cfg.in_flight();
        let db = ctx.db.clone();
        let suppressions = Batcher::start(Grouping::up_to(group), move |hashes: Vec<AddressHash>| {
            let db = db.clone();
            async move {
                match suppressions::reasons(&db, &hashes).await {
                    Ok(found) => hashes
                        .iter()
                        .map(|h| Ok(found.get(h.as_str()).copied()))
                        .collect(),
                    Err(e) => hashes.iter().map(|_| Err(format!("database: {e}"))).collect(),
                }
            }
        });
        let db = ctx.db.clone();
        let pending = Batcher::start(Grouping::up_to(group), move |ids: Vec<i64>| {
            let db = db.clone();
            async move {
                match subscriptions::pending_confirmations(&db, &ids).await {
                    Ok(found) => ids.iter().map(|id| Ok(found.get(id).cloned())).collect(),
                    Err(e) => ids.iter().map(|_| Err(format!("database: {e}"))).collect(),
                }
            }
        });
        Lookups {
            suppressions,
            pending,
        }
    }

    /// Why the address is suppressed, if it is.
    pub async fn suppression(&self, hash: AddressHash) -> Answer<Option<SuppressionReason>> {
        self.suppressions.call(hash).await.unwrap_or_else(stopped)
    }

    /// What a confirmation email for this person covers now (see
    /// [`subscriptions::pending_confirmations`]).
    pub async fn pending_confirmation(&self, subscriber_id: i64) -> Answer<Option<PendingConfirmation>> {
        self.pending.call(subscriber_id).await.unwrap_or_else(stopped)
    }
}

fn stopped<T>() -> Answer<T> {
    Err("the delivery lookups have stopped".into())
}
