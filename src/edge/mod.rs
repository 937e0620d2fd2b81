//! What both HTTP edges share: the state handlers get, errors as pages or problem bodies, who
//! is asking, rate limits, and the verification of link tokens.

pub mod client_ip;
pub mod error;
pub mod json;
pub mod rate_limit;
pub mod schemas;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;

pub use error::{AppError, FieldError};
use rate_limit::{FailureLimiter, IpLimiter, KeyedLimiter};
pub use templates::pages::WayOn;

use crate::config::Config;
use crate::domain::AddressHasher;
use crate::services::campaigns::Campaigns;
use crate::services::leaving::Leaving;
use crate::services::notices::Notices;
use crate::services::signup::Signups;
use crate::services::subscribers::Subscribers;
use crate::store::Db;
use crate::store::keys::{self, KeyPurpose};
use crate::store::lists::PublicLists;
use crate::store::scrub::Scrubber;
use crate::tokens::{Keyring, Links, PurposeClaims, SharedKeyring, TokenError};

/// Per-client limits, one per class of endpoint.
pub struct Limits {
    pub public: Arc<IpLimiter>,
    pub signup: Arc<IpLimiter>,
    pub one_click: Arc<IpLimiter>,
    pub api: Arc<KeyedLimiter<i64>>,
    /// Health checks per IP: monitors poll often, sometimes from behind one NAT.
    pub health: Arc<IpLimiter>,
    /// Requests with a missing or unknown API key per IP.
    pub api_key_failures: Arc<FailureLimiter>,
}

/// Health checks one IP may make per minute.
const HEALTH_PER_MINUTE: u32 = 600;

impl Limits {
    pub fn new(cfg: &crate::config::RateLimits) -> Self {
        Limits {
            public: KeyedLimiter::per_minute(cfg.public_per_minute),
            signup: KeyedLimiter::per_minute(cfg.signup_per_minute),
            one_click: KeyedLimiter::per_minute(cfg.unsubscribe_per_minute),
            api: KeyedLimiter::per_minute(cfg.api_per_minute),
            health: KeyedLimiter::per_minute(HEALTH_PER_MINUTE),
            api_key_failures: FailureLimiter::per_minute(cfg.api_key_failures_per_minute),
        }
    }

    /// Drops state for clients back to full allowance (memory stays bounded).
    pub fn prune(&self) {
        self.public.prune();
        self.signup.prune();
        self.one_click.prune();
        self.api.prune();
        self.health.prune();
        self.api_key_failures.prune();
    }
}

/// What every handler gets, behind one `Arc`: the services, and what the edges read directly.
pub struct App {
    pub config: Config,
    pub db: Db,
    pub tokens: TokenVerifier,
    pub links: Links,
    pub address_hasher: AddressHasher,
    pub limits: Limits,
    /// The lists the signup form offers, cached briefly.
    pub public_lists: PublicLists,
    pub signup: Signups,
    pub leaving: Leaving,
    pub subscribers: Subscribers,
    pub notices: Notices,
    pub campaigns: Campaigns,
    /// Wipes what erasures, address changes and retention leave on disk, off the request path.
    pub scrubber: Arc<Scrubber>,
    /// Whether delivery is sending or waits for the relay (the workers' own view).
    pub relay: Arc<crate::delivery::Relay>,
}

pub type AppState = Arc<App>;

impl App {
    /// Verifies a link token of the purpose `T` stands for (see [`TokenVerifier::verify`]).
    pub async fn verify_token<T: PurposeClaims>(&self, token: &str) -> Result<T, TokenError> {
        self.tokens.verify(&self.db, token).await
    }

    /// The keys links are signed and verified with now.
    pub fn keyring(&self) -> Arc<Keyring> {
        self.tokens.keyring.current()
    }

    pub fn site(&self) -> templates::pages::SiteIdentity<'_> {
        templates::pages::SiteIdentity {
            org_name: self.config.identity.org_name.as_str(),
            postal_address: &self.config.identity.postal_address,
            contact_email: self.config.identity.contact_email.as_str(),
            logo_url: self.config.brand.logo_url.as_ref().map(url::Url::as_str),
            accent_color: self.config.brand.accent_color.as_deref(),
        }
    }
}

/// Verifies link tokens against the shared keyring. A key id we do not know may be a key
/// another instance just rotated in: the keys are then reloaded from the database (at most
/// every few seconds) and the token tried once more. The service also reloads them every
/// [`KEY_REFRESH_EVERY`], so that a key retired anywhere stops verifying everywhere within that
/// time. Keys from `TOKEN_KEYS` are never reloaded.
pub struct TokenVerifier {
    keyring: SharedKeyring,
    from_database: bool,
    last_reload: Mutex<Option<Instant>>,
}

/// How often a running service rereads the link-signing keys (rotations and retirements made
/// by `letterhead keys` or another instance).
pub const KEY_REFRESH_EVERY: Duration = Duration::from_secs(30);

impl TokenVerifier {
    pub fn new(keyring: SharedKeyring, from_database: bool) -> Self {
        TokenVerifier {
            keyring,
            from_database,
            last_reload: Mutex::new(None),
        }
    }

    /// Verifies a token of the purpose `T` stands for and gives its typed claims.
    pub async fn verify<T: PurposeClaims>(&self, db: &Db, token: &str) -> Result<T, TokenError> {
        match self.keyring.current().verify::<T>(token) {
            Err(TokenError::UnknownKey) if self.from_database && self.reload_soon(db).await => {
                self.keyring.current().verify::<T>(token)
            }
            other => other,
        }
    }

    /// Reloads unless a reload happened in the last few seconds (an unknown key id is cheap to
    /// send; it must not make every request read the database).
    async fn reload_soon(&self, db: &Db) -> bool {
        {
            let mut last = self.last_reload.lock().expect("reload lock");
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
                return false;
            }
            *last = Some(Instant::now());
        }
        self.reload(db).await
    }

    /// Rereads the keys and the retired key ids from the database. Returns whether it did.
    pub async fn reload(&self, db: &Db) -> bool {
        if !self.from_database {
            return false;
        }
        let loaded = async {
            Ok::<_, crate::store::Error>((
                keys::load(db, KeyPurpose::Token).await?,
                keys::retired(db, KeyPurpose::Token).await?,
            ))
        };
        match loaded.await {
            Ok((k, retired)) if !k.is_empty() => {
                self.keyring.replace(Keyring::new(&k).with_retired(retired));
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(error = %e, "reloading token keys failed");
                false
            }
        }
    }
}

/// A link token that did not verify: a 4xx page (or problem), never a 5xx (TK-1..4). The page
/// says what to do instead (`way_on`), since the link came from an email.
pub fn token_rejected(err: TokenError, way_on: WayOn) -> AppError {
    let e = match err {
        TokenError::Expired => AppError::new(
            StatusCode::GONE,
            "This link has expired",
            "Links in our emails work only for a limited time, and this one is past it.",
        ),
        TokenError::RetiredKey => AppError::new(
            StatusCode::GONE,
            "This link no longer works",
            "To keep your data safe we withdrew the key this link was signed with. The same link in \
             any email we send from now on works.",
        ),
        TokenError::Invalid | TokenError::UnknownKey | TokenError::WrongPurpose => AppError::new(
            StatusCode::BAD_REQUEST,
            "This link is not valid",
            "The link may have been cut off or changed on its way. Please use the link exactly as it arrived.",
        ),
    };
    e.with_way_on(way_on)
}
