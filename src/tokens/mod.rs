//! Signed tokens for links in emails (RFC 8725): HS256 only, a `kid` naming the key, a purpose
//! that binds a token to one use, opaque ids only (no address, no name).
//!
//! The first key signs; every key verifies, so links survive a rotation (CS-8). Anything
//! unexpected — another algorithm, `none`, an unknown or odd `kid`, a changed byte, another
//! purpose, an id that is not one — is a [`TokenError`], which the web layer answers with a
//! 4xx, never a 5xx.
//!
//! On the wire every token carries the same [`Claims`], its ids as strings; verification gives
//! the claims of one purpose with typed ids ([`ConfirmClaims`], [`UnsubscribeClaims`], …).

mod links;

pub use links::Links;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Confirm,
    Unsubscribe,
    Manage,
    Export,
    ChangeAddress,
    Agree,
    /// A dashboard session (a cookie, never a link).
    AdminSession,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the link is not valid")]
    Invalid,
    #[error("the link was signed with a key we do not know")]
    UnknownKey,
    #[error("the link was signed with a key that was retired")]
    RetiredKey,
    #[error("the link is meant for something else")]
    WrongPurpose,
    #[error("the link has expired")]
    Expired,
}

/// What a token says, as it travels (the JSON claim names are the wire format: links already
/// sent must keep verifying).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub pur: Purpose,
    /// An opaque id (a subscriber's UUID, a request's id): never personal data (TK-6).
    pub sub: String,
    /// An opaque second id, when the purpose needs one (a list, a pending request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux: Option<String>,
    /// A unique id, so single-use tokens can be spent once (TK-7).
    pub jti: String,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
}

/// The claims of one purpose, with typed ids: what a verified token gives its handler.
pub trait PurposeClaims: Sized {
    const PURPOSE: Purpose;

    /// The typed view of verified claims of [`Self::PURPOSE`]; an id that does not parse is
    /// [`TokenError::Invalid`].
    fn from_claims(claims: Claims) -> Result<Self, TokenError>;
}

fn uuid_of(id: &str) -> Result<uuid::Uuid, TokenError> {
    uuid::Uuid::parse_str(id).map_err(|_| TokenError::Invalid)
}

fn number_of(id: &str) -> Result<i64, TokenError> {
    id.parse().map_err(|_| TokenError::Invalid)
}

/// The second id a purpose needs.
fn aux_of(claims: &Claims) -> Result<&str, TokenError> {
    claims.aux.as_deref().ok_or(TokenError::Invalid)
}

/// A confirmation link (OI-4): confirms what the subscriber had pending when it was issued
/// (OI-10). Single use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmClaims {
    pub subscriber: uuid::Uuid,
    /// When the link was issued, in epoch milliseconds (`aux`; a link without it counts from
    /// its `iat`).
    pub issued_ms: i64,
    pub jti: String,
}

impl PurposeClaims for ConfirmClaims {
    const PURPOSE: Purpose = Purpose::Confirm;

    fn from_claims(c: Claims) -> Result<Self, TokenError> {
        let issued_ms = match c.aux.as_deref() {
            Some(aux) => number_of(aux)?,
            None => c.iat.saturating_mul(1000),
        };
        Ok(ConfirmClaims {
            subscriber: uuid_of(&c.sub)?,
            issued_ms,
            jti: c.jti,
        })
    }
}

/// A one-click unsubscribe link: the person and the list (LU-4). Never expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsubscribeClaims {
    pub subscriber: uuid::Uuid,
    pub list_id: i64,
}

impl PurposeClaims for UnsubscribeClaims {
    const PURPOSE: Purpose = Purpose::Unsubscribe;

    fn from_claims(c: Claims) -> Result<Self, TokenError> {
        Ok(UnsubscribeClaims {
            subscriber: uuid_of(&c.sub)?,
            list_id: number_of(aux_of(&c)?)?,
        })
    }
}

/// A preference page link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManageClaims {
    pub subscriber: uuid::Uuid,
}

impl PurposeClaims for ManageClaims {
    const PURPOSE: Purpose = Purpose::Manage;

    fn from_claims(c: Claims) -> Result<Self, TokenError> {
        Ok(ManageClaims {
            subscriber: uuid_of(&c.sub)?,
        })
    }
}

/// A data export download (GD-1). Single use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportClaims {
    pub subscriber: uuid::Uuid,
    pub jti: String,
}

impl PurposeClaims for ExportClaims {
    const PURPOSE: Purpose = Purpose::Export;

    fn from_claims(c: Claims) -> Result<Self, TokenError> {
        Ok(ExportClaims {
            subscriber: uuid_of(&c.sub)?,
            jti: c.jti,
        })
    }
}

/// Agreement to a material policy version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgreeClaims {
    pub subscriber: uuid::Uuid,
    pub policy_id: i64,
}

impl PurposeClaims for AgreeClaims {
    const PURPOSE: Purpose = Purpose::Agree;

    fn from_claims(c: Claims) -> Result<Self, TokenError> {
        Ok(AgreeClaims {
            subscriber: uuid_of(&c.sub)?,
            policy_id: number_of(aux_of(&c)?)?,
        })
    }
}

/// The confirmation of a new address (GD-2): the pending change, never the address (TK-6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeAddressClaims {
    pub change: uuid::Uuid,
    pub jti: String,
}

impl PurposeClaims for ChangeAddressClaims {
    const PURPOSE: Purpose = Purpose::ChangeAddress;

    fn from_claims(c: Claims) -> Result<Self, TokenError> {
        Ok(ChangeAddressClaims {
            change: uuid_of(&c.sub)?,
            jti: c.jti,
        })
    }
}

/// A dashboard session, opened by signing in with an API key: the key (checked on every
/// request, so revoking it ends the session) and the session's own id (`jti`), which signing
/// out spends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSessionClaims {
    pub key_id: i64,
    pub session: String,
}

impl PurposeClaims for AdminSessionClaims {
    const PURPOSE: Purpose = Purpose::AdminSession;

    fn from_claims(c: Claims) -> Result<Self, TokenError> {
        // A session always ends: a token without an expiry is not one we issued.
        if c.exp.is_none() {
            return Err(TokenError::Invalid);
        }
        Ok(AdminSessionClaims {
            key_id: number_of(&c.sub)?,
            session: c.jti,
        })
    }
}

pub struct Keyring {
    signing_kid: String,
    signing_key: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
    /// Keys withdrawn (`letterhead keys retire`): named, so their links get a page of their own.
    retired: HashSet<String>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Keyring(signing kid {}, {} verifying keys)",
            self.signing_kid,
            self.verifying.len()
        )
    }
}

/// The keyring in use, shared by whatever issues and verifies links; replaced as a whole when
/// another instance rotates the keys.
#[derive(Clone, Debug)]
pub struct SharedKeyring(Arc<RwLock<Arc<Keyring>>>);

impl SharedKeyring {
    pub fn new(keyring: Keyring) -> Self {
        SharedKeyring(Arc::new(RwLock::new(Arc::new(keyring))))
    }

    pub fn current(&self) -> Arc<Keyring> {
        self.0.read().expect("keyring lock").clone()
    }

    pub fn replace(&self, keyring: Keyring) {
        *self.0.write().expect("keyring lock") = Arc::new(keyring);
    }
}

const MAX_TOKEN_LEN: usize = 2048;

impl Keyring {
    /// `keys` newest first: the first signs, all verify. Panics only on an empty list, which
    /// the configuration and the key store never produce.
    pub fn new(keys: &[(String, String)]) -> Self {
        let (kid, secret) = keys.first().expect("at least one token key");
        Self {
            signing_kid: kid.clone(),
            signing_key: EncodingKey::from_secret(secret.as_bytes()),
            verifying: keys
                .iter()
                .map(|(k, s)| (k.clone(), DecodingKey::from_secret(s.as_bytes())))
                .collect(),
            retired: HashSet::new(),
        }
    }

    /// The same keyring, knowing these key ids as retired.
    pub fn with_retired(mut self, retired: impl IntoIterator<Item = String>) -> Self {
        self.retired = retired.into_iter().collect();
        self
    }

    pub fn issue(&self, pur: Purpose, sub: &str, aux: Option<&str>, ttl: Option<Duration>) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            pur,
            sub: sub.to_owned(),
            aux: aux.map(str::to_owned),
            jti: uuid::Uuid::new_v4().simple().to_string(),
            iat: now,
            exp: ttl.map(|t| now + i64::try_from(t.as_secs()).unwrap_or(i64::MAX / 2)),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.signing_kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.signing_key).expect("HS256 encoding cannot fail")
    }

    /// Verifies a token of the purpose `T` stands for and gives its typed claims.
    pub fn verify<T: PurposeClaims>(&self, token: &str) -> Result<T, TokenError> {
        T::from_claims(self.verify_claims(token, T::PURPOSE)?)
    }

    /// Verifies a token of purpose `expected` (signature, key, purpose, expiry) and gives its
    /// claims as they travel.
    pub fn verify_claims(&self, token: &str, expected: Purpose) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        // TK-1: one algorithm. A header naming any other is refused before any key is touched.
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        if self.retired.contains(&kid) {
            return Err(TokenError::RetiredKey);
        }
        let key = self.verifying.get(&kid).ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false; // checked below: unsubscribe tokens carry no exp
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|_| TokenError::Invalid)?;
        let claims = data.claims;
        if claims.pur != expected {
            return Err(TokenError::WrongPurpose);
        }
        if let Some(exp) = claims.exp
            && time::OffsetDateTime::now_utc().unix_timestamp() > exp
        {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(keys: &[(&str, &str)]) -> Keyring {
        Keyring::new(
            &keys
                .iter()
                .map(|(k, s)| (k.to_string(), s.to_string()))
                .collect::<Vec<_>>(),
        )
    }

    const SUBSCRIBER: &str = "0b7f6a3e-8a0c-4d5e-9f61-2c3b4d5e6f70";

    #[test]
    fn tk3_a_token_is_good_for_its_purpose_only() {
        let r = ring(&[("k1", "a-secret-of-at-least-thirty-two-bytes")]);
        let t = r.issue(Purpose::Unsubscribe, SUBSCRIBER, Some("7"), None);
        assert_eq!(
            r.verify::<UnsubscribeClaims>(&t),
            Ok(UnsubscribeClaims {
                subscriber: SUBSCRIBER.parse().unwrap(),
                list_id: 7
            })
        );
        assert_eq!(r.verify::<ConfirmClaims>(&t), Err(TokenError::WrongPurpose));
        assert_eq!(r.verify::<ManageClaims>(&t), Err(TokenError::WrongPurpose));
    }

    /// A signed token whose ids are not ids is refused like a forged one (a 4xx).
    #[test]
    fn ids_that_do_not_parse_are_invalid() {
        let r = ring(&[("k1", "a-secret-of-at-least-thirty-two-bytes")]);
        let ttl = Some(Duration::from_secs(60));
        let issue = |p, sub, aux| r.issue(p, sub, aux, ttl);
        for (purpose, sub, aux) in [
            (Purpose::Confirm, "not-a-uuid", Some("1")),
            (Purpose::Confirm, SUBSCRIBER, Some("soon")),
            (Purpose::Unsubscribe, "not-a-uuid", Some("1")),
            (Purpose::Unsubscribe, SUBSCRIBER, None),
            (Purpose::Unsubscribe, SUBSCRIBER, Some("list-1")),
            (Purpose::Manage, "", None),
            (Purpose::Export, "x", None),
            (Purpose::Agree, SUBSCRIBER, None),
            (Purpose::Agree, SUBSCRIBER, Some("1.5")),
            (Purpose::ChangeAddress, "x", None),
            (Purpose::AdminSession, "key-1", None),
        ] {
            let t = issue(purpose, sub, aux);
            assert!(r.verify_claims(&t, purpose).is_ok(), "{purpose:?} verifies");
            let typed = match purpose {
                Purpose::Confirm => r.verify::<ConfirmClaims>(&t).map(drop),
                Purpose::Unsubscribe => r.verify::<UnsubscribeClaims>(&t).map(drop),
                Purpose::Manage => r.verify::<ManageClaims>(&t).map(drop),
                Purpose::Export => r.verify::<ExportClaims>(&t).map(drop),
                Purpose::Agree => r.verify::<AgreeClaims>(&t).map(drop),
                Purpose::ChangeAddress => r.verify::<ChangeAddressClaims>(&t).map(drop),
                Purpose::AdminSession => r.verify::<AdminSessionClaims>(&t).map(drop),
            };
            assert_eq!(typed, Err(TokenError::Invalid), "{purpose:?} {sub:?} {aux:?}");
        }
    }

    /// A session token names its key and ends; one without an expiry is refused.
    #[test]
    fn an_admin_session_names_its_key_and_expires() {
        let r = ring(&[("k1", "a-secret-of-at-least-thirty-two-bytes")]);
        let t = r.issue(Purpose::AdminSession, "7", None, Some(Duration::from_secs(60)));
        let claims = r.verify::<AdminSessionClaims>(&t).unwrap();
        assert_eq!(claims.key_id, 7);
        assert_eq!(
            claims.session,
            r.verify_claims(&t, Purpose::AdminSession).unwrap().jti
        );
        let endless = r.issue(Purpose::AdminSession, "7", None, None);
        assert_eq!(r.verify::<AdminSessionClaims>(&endless), Err(TokenError::Invalid));
        assert_eq!(r.verify::<ManageClaims>(&t), Err(TokenError::WrongPurpose));
    }

    /// A confirmation link without its issue time counts from when it was signed.
    #[test]
    fn a_confirmation_without_aux_counts_from_its_iat() {
        let r = ring(&[("k1", "a-secret-of-at-least-thirty-two-bytes")]);
        let t = r.issue(Purpose::Confirm, SUBSCRIBER, None, Some(Duration::from_secs(60)));
        let raw = r.verify_claims(&t, Purpose::Confirm).unwrap();
        let typed = r.verify::<ConfirmClaims>(&t).unwrap();
        assert_eq!(typed.issued_ms, raw.iat * 1000);
        assert_eq!(typed.jti, raw.jti);
        let t = r.issue(
            Purpose::Confirm,
            SUBSCRIBER,
            Some("1234"),
            Some(Duration::from_secs(60)),
        );
        assert_eq!(r.verify::<ConfirmClaims>(&t).unwrap().issued_ms, 1234);
    }

    #[test]
    fn tk2_any_altered_byte_fails() {
        let r = ring(&[("k1", "a-secret-of-at-least-thirty-two-bytes")]);
        let t = r.issue(Purpose::Confirm, "id", None, Some(Duration::from_secs(60)));
        for i in 0..t.len() {
            let mut bytes = t.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).unwrap();
            if altered != t {
                assert!(
                    r.verify_claims(&altered, Purpose::Confirm).is_err(),
                    "byte {i} altered still verified"
                );
            }
        }
    }

    #[test]
    fn tk4_rotation_keeps_old_links_and_unknown_kids_fail() {
        let old = ring(&[("k1", "the-old-secret-of-thirty-two-bytes-x")]);
        let t = old.issue(Purpose::Unsubscribe, "id", None, None);
        let rotated = ring(&[
            ("k2", "the-new-secret-of-thirty-two-bytes-y"),
            ("k1", "the-old-secret-of-thirty-two-bytes-x"),
        ]);
        assert!(rotated.verify_claims(&t, Purpose::Unsubscribe).is_ok());
        let other = ring(&[("k9", "the-old-secret-of-thirty-two-bytes-x")]);
        assert_eq!(
            other.verify_claims(&t, Purpose::Unsubscribe),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn tk5_expired_tokens_fail() {
        let r = ring(&[("k1", "a-secret-of-at-least-thirty-two-bytes")]);
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let claims = Claims {
            pur: Purpose::Confirm,
            sub: "x".into(),
            aux: None,
            jti: "j".into(),
            iat: 0,
            exp: Some(1),
        };
        let t = jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(b"a-secret-of-at-least-thirty-two-bytes"),
        )
        .unwrap();
        assert_eq!(r.verify_claims(&t, Purpose::Confirm), Err(TokenError::Expired));
        assert_eq!(r.verify::<ConfirmClaims>(&t), Err(TokenError::Expired));
    }
}
