//! sea-orm entities, one per table. Queries live beside them in `store/`, not in handlers.
//!
//! Statuses, kinds and reasons are enums stored as the same strings as ever (`string_value`).
//! Code above the store uses them by these names (`as_str`, `Display` and `FromStr` give the
//! stored string), never through sea-orm.

/// `Display` and `FromStr` for a stored enum, through its `as_str` (the string the column
/// holds).
macro_rules! stored_string {
    ($t:ty) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $t {
            type Err = super::UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                <Self as sea_orm::Iterable>::iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| super::UnknownValue(s.to_owned()))
            }
        }
    };
}
pub(crate) use stored_string;

pub mod address_change;
pub mod api_key;
pub mod breach_notice;
pub mod campaign;
pub mod campaign_recipient;
pub mod consent_event;
pub mod list;
pub mod outbox;
pub mod policy_version;
pub mod signing_key;
pub mod subscriber;
pub mod subscription;
pub mod suppression;
pub mod test_recipient;

/// A string that is none of a stored enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not one of the known values")]
pub struct UnknownValue(pub String);

#[cfg(test)]
mod tests {
    use sea_orm::ActiveEnum;

    /// Every variant's `as_str` is what the database holds, what JSON shows, and what parses
    /// back to it.
    fn agree<T>()
    where
        T: ActiveEnum<Value = String> + Copy + PartialEq + std::fmt::Debug + serde::Serialize,
        T: std::fmt::Display + std::str::FromStr,
        T::Err: std::fmt::Debug,
    {
        for v in T::iter() {
            let stored = v.to_value();
            assert_eq!(v.to_string(), stored, "{v:?}");
            assert_eq!(
                serde_json::to_value(v).unwrap(),
                serde_json::json!(stored),
                "{v:?}"
            );
            assert_eq!(stored.parse::<T>().ok(), Some(v), "{v:?}");
        }
        assert!("no such value".parse::<T>().is_err());
    }

    fn values<T: ActiveEnum<Value = String>>() -> Vec<String> {
        T::iter().map(|v| v.to_value()).collect()
    }

    /// The strings rows already hold: a change here needs a migration of the data.
    #[test]
    fn stored_strings_are_those_of_the_schema() {
        use super::*;
        let pinned: [(Vec<String>, &[&str]); 7] = [
            (
                values::<subscription::SubscriptionStatus>(),
                &["pending", "confirmed", "unsubscribed"],
            ),
            (
                values::<outbox::OutboxKind>(),
                &[
                    "test_message",
                    "confirmation",
                    "export_link",
                    "address_change",
                    "policy_notice",
                    "breach_notice",
                    "campaign_test",
                ],
            ),
            (
                values::<outbox::OutboxStatus>(),
                &["queued", "sending", "sent", "failed", "cancelled"],
            ),
            (
                values::<campaign::CampaignStatus>(),
                &["draft", "scheduled", "sending", "paused", "sent", "cancelled"],
            ),
            (
                // `sending` is gone since migration 000011: blocks hold the leases.
                values::<campaign_recipient::RecipientStatus>(),
                &["queued", "sent", "failed", "skipped", "cancelled"],
            ),
            (
                values::<consent_event::ConsentKind>(),
                &[
                    "signup",
                    "confirm",
                    "unsubscribe",
                    "resubscribe",
                    "import",
                    "api_add",
                    "agree",
                    "address_change",
                ],
            ),
            (
                values::<suppression::SuppressionReason>(),
                &["hard_bounce", "complaint", "erased", "unsubscribed", "manual"],
            ),
        ];
        for (values, expected) in pinned {
            assert_eq!(values, expected);
        }
    }

    #[test]
    fn stored_strings_agree_with_as_str_and_serde() {
        agree::<super::subscription::SubscriptionStatus>();
        agree::<super::outbox::OutboxKind>();
        agree::<super::outbox::OutboxStatus>();
        agree::<super::campaign::CampaignStatus>();
        agree::<super::campaign_recipient::RecipientStatus>();
        agree::<super::consent_event::ConsentKind>();
        agree::<super::suppression::SuppressionReason>();
    }
}
