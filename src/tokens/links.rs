//! The links a recipient gets: one-click unsubscribe for a list (RFC 8058; the URI alone names
//! the recipient and the list, LU-4), the preference page, and the single-purpose links of
//! confirmations and data-rights emails. Each carries a signed token with opaque ids only
//! (TK-6); unsubscribe and preference links keep working for months and across key rotation
//! (CS-8).

use std::time::Duration;

use url::Url;

use super::{Purpose, SharedKeyring};

/// How long a preference link works (at least the 60 days of CS-8).
pub const MANAGE_TTL: Duration = Duration::from_secs(180 * 86_400);
/// How long an export download link works.
pub const EXPORT_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long the agreement link of a material policy change works.
pub const AGREE_TTL: Duration = Duration::from_secs(365 * 86_400);
/// How long an address-change confirmation works.
pub const ADDRESS_CHANGE_TTL: Duration = Duration::from_secs(48 * 3600);

/// Issues signed links under `PUBLIC_URL` with the keyring's current signing key.
#[derive(Clone)]
pub struct Links {
    keyring: SharedKeyring,
    base: Url,
}

impl Links {
    pub fn new(keyring: SharedKeyring, base: Url) -> Self {
        Links { keyring, base }
    }

    /// A page under `PUBLIC_URL` (no token).
    pub fn page(&self, path: &str) -> Url {
        self.base
            .join(path)
            .expect("PUBLIC_URL joins with a relative path")
    }

    fn signed(
        &self,
        path: &str,
        purpose: Purpose,
        sub: &str,
        aux: Option<&str>,
        ttl: Option<Duration>,
    ) -> Url {
        let token = self.keyring.current().issue(purpose, sub, aux, ttl);
        self.page(&format!("{path}/{token}"))
    }

    /// Never expires: an unsubscribe link must work whenever the email is read.
    pub fn unsubscribe(&self, subscriber: uuid::Uuid, list_id: i64) -> Url {
        let list = list_id.to_string();
        self.signed(
            "unsubscribe",
            Purpose::Unsubscribe,
            &subscriber.to_string(),
            Some(&list),
            None,
        )
    }

    pub fn preferences(&self, subscriber: uuid::Uuid) -> Url {
        self.signed(
            "preferences",
            Purpose::Manage,
            &subscriber.to_string(),
            None,
            Some(MANAGE_TTL),
        )
    }

    pub fn export(&self, subscriber: uuid::Uuid) -> Url {
        self.signed(
            "export",
            Purpose::Export,
            &subscriber.to_string(),
            None,
            Some(EXPORT_TTL),
        )
    }

    /// Agreement to a material policy version.
    pub fn agree(&self, subscriber: uuid::Uuid, policy_id: i64) -> Url {
        let policy = policy_id.to_string();
        self.signed(
            "agree",
            Purpose::Agree,
            &subscriber.to_string(),
            Some(&policy),
            Some(AGREE_TTL),
        )
    }

    pub fn address_change(&self, change: uuid::Uuid) -> Url {
        self.signed(
            "change-address",
            Purpose::ChangeAddress,
            &change.to_string(),
            None,
            Some(ADDRESS_CHANGE_TTL),
        )
    }

    /// Confirms what the subscriber has pending at `issued_ms` (OI-10), for `ttl` (OI-5).
    pub fn confirm(&self, subscriber: uuid::Uuid, issued_ms: i64, ttl: Duration) -> Url {
        let issued = issued_ms.to_string();
        self.signed(
            "confirm",
            Purpose::Confirm,
            &subscriber.to_string(),
            Some(&issued),
            Some(ttl),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::{
        AgreeClaims, ChangeAddressClaims, ConfirmClaims, ExportClaims, Keyring, ManageClaims, PurposeClaims,
        UnsubscribeClaims,
    };

    fn links() -> (Links, SharedKeyring) {
        let ring = SharedKeyring::new(Keyring::new(&[(
            "k1".to_owned(),
            "a-secret-of-at-least-thirty-two-bytes".to_owned(),
        )]));
        let base = Url::parse("https://news.example.org/").unwrap();
        (Links::new(ring.clone(), base), ring)
    }

    /// The typed claims of the token at the end of a link's path.
    fn claims<T: PurposeClaims>(ring: &SharedKeyring, link: &Url) -> T {
        let token = link.path().rsplit('/').next().unwrap();
        ring.current().verify::<T>(token).unwrap()
    }

    /// Every link verifies as its purpose's claims, with the ids it was issued for.
    #[test]
    fn each_link_verifies_into_its_typed_claims() {
        let (links, ring) = links();
        let who = uuid::Uuid::new_v4();
        let c: ConfirmClaims = claims(&ring, &links.confirm(who, 1_700_000_000_123, MANAGE_TTL));
        assert_eq!((c.subscriber, c.issued_ms), (who, 1_700_000_000_123));
        let u: UnsubscribeClaims = claims(&ring, &links.unsubscribe(who, 42));
        assert_eq!(
            u,
            UnsubscribeClaims {
                subscriber: who,
                list_id: 42
            }
        );
        let m: ManageClaims = claims(&ring, &links.preferences(who));
        assert_eq!(m.subscriber, who);
        let e: ExportClaims = claims(&ring, &links.export(who));
        assert_eq!(e.subscriber, who);
        let a: AgreeClaims = claims(&ring, &links.agree(who, 9));
        assert_eq!(
            a,
            AgreeClaims {
                subscriber: who,
                policy_id: 9
            }
        );
        let change = uuid::Uuid::new_v4();
        let x: ChangeAddressClaims = claims(&ring, &links.address_change(change));
        assert_eq!(x.change, change);
        assert_ne!(c.jti, e.jti, "each token has its own id");
    }
}
