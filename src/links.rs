//! The links a recipient gets: one-click unsubscribe for a list (RFC 8058; the URI alone names
//! the recipient and the list, LU-4) and the preference page. Both carry signed tokens with
//! opaque ids only (TK-6) and keep working for months and across key rotation (CS-8).

use std::time::Duration;

use url::Url;

use crate::app::App;
use crate::tokens::Purpose;

/// How long a preference link works (at least the 60 days of CS-8).
pub const MANAGE_TTL: Duration = Duration::from_secs(180 * 86_400);
/// How long an export download link works.
pub const EXPORT_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long the agreement link of a material policy change works.
pub const AGREE_TTL: Duration = Duration::from_secs(365 * 86_400);
/// How long an address-change confirmation works.
pub const ADDRESS_CHANGE_TTL: Duration = Duration::from_secs(48 * 3600);

impl App {
    fn link(&self, path: &str) -> Url {
        self.config
            .public_url
            .join(path)
            .expect("PUBLIC_URL joins with a token path")
    }

    /// Never expires: an unsubscribe link must work whenever the email is read.
    pub fn unsubscribe_url(&self, subscriber: uuid::Uuid, list_id: i64) -> Url {
        let token = self.keyring().issue(
            Purpose::Unsubscribe,
            &subscriber.to_string(),
            Some(&list_id.to_string()),
            None,
        );
        self.link(&format!("unsubscribe/{token}"))
    }

    pub fn preferences_url(&self, subscriber: uuid::Uuid) -> Url {
        let token = self
            .keyring()
            .issue(Purpose::Manage, &subscriber.to_string(), None, Some(MANAGE_TTL));
        self.link(&format!("preferences/{token}"))
    }

    pub fn export_url(&self, subscriber: uuid::Uuid) -> Url {
        let token = self
            .keyring()
            .issue(Purpose::Export, &subscriber.to_string(), None, Some(EXPORT_TTL));
        self.link(&format!("export/{token}"))
    }

    /// Agreement to a material policy version (`aux` names the version's id).
    pub fn agree_url(&self, subscriber: uuid::Uuid, policy_id: i64) -> Url {
        let token = self.keyring().issue(
            Purpose::Agree,
            &subscriber.to_string(),
            Some(&policy_id.to_string()),
            Some(AGREE_TTL),
        );
        self.link(&format!("agree/{token}"))
    }

    pub fn address_change_url(&self, change: uuid::Uuid) -> Url {
        let token = self.keyring().issue(
            Purpose::ChangeAddress,
            &change.to_string(),
            None,
            Some(ADDRESS_CHANGE_TTL),
        );
        self.link(&format!("change-address/{token}"))
    }
}
