//! Signed tokens for links in emails (RFC 8725): HS256 only, a `kid` naming the key, a purpose
//! that binds a token to one use, opaque ids only (no address, no name).
//!
//! The first key signs; every key verifies, so links survive a rotation (CS-8). Anything
//! unexpected — another algorithm, `none`, an unknown or odd `kid`, a changed byte, another
//! purpose — is a [`TokenError`], which the web layer answers with a 4xx, never a 5xx.

mod links;

pub use links::Links;

use std::collections::HashMap;
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
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the link is not valid")]
    Invalid,
    #[error("the link was signed with a key we do not know")]
    UnknownKey,
    #[error("the link is meant for something else")]
    WrongPurpose,
    #[error("the link has expired")]
    Expired,
}

/// What a verified token says.
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

pub struct Keyring {
    signing_kid: String,
    signing_key: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
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
        }
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

    pub fn verify(&self, token: &str, expected: Purpose) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        // TK-1: one algorithm. A header naming any other is refused before any key is touched.
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.ok_or(TokenError::Invalid)?;
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

    #[test]
    fn tk3_a_token_is_good_for_its_purpose_only() {
        let r = ring(&[("k1", "a-secret-of-at-least-thirty-two-bytes")]);
        let t = r.issue(Purpose::Unsubscribe, "opaque-id", Some("list-1"), None);
        assert_eq!(
            r.verify(&t, Purpose::Unsubscribe).unwrap().aux.as_deref(),
            Some("list-1")
        );
        assert_eq!(r.verify(&t, Purpose::Confirm), Err(TokenError::WrongPurpose));
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
                    r.verify(&altered, Purpose::Confirm).is_err(),
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
        assert!(rotated.verify(&t, Purpose::Unsubscribe).is_ok());
        let other = ring(&[("k9", "the-old-secret-of-thirty-two-bytes-x")]);
        assert_eq!(
            other.verify(&t, Purpose::Unsubscribe),
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
        assert_eq!(r.verify(&t, Purpose::Confirm), Err(TokenError::Expired));
    }
}
