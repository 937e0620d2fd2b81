//! The DKIM private key setting: read and checked when the configuration is read, so a key
//! that cannot sign stops the service at start-up instead of failing every send.

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

/// A private key fit for DKIM, checked when the configuration is read. It keeps the PEM text
/// (the crypto key types cannot be cloned) and `Debug` never shows it.
#[derive(Clone)]
pub struct DkimKey {
    pem: String,
    is_rsa: bool,
}

impl std::fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_rsa {
            "DkimKey::Rsa(***)"
        } else {
            "DkimKey::Ed25519(***)"
        })
    }
}

fn parse_der(pem: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
        "is not a PEM private key (expected BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY)".to_string()
    })
}

pub(crate) fn parse_rsa(pem: &str) -> Result<Option<RsaKey<Sha256>>, String> {
    let der = parse_der(pem)?;
    let pkcs1 = matches!(der, PrivateKeyDer::Pkcs1(_));
    match RsaKey::<Sha256>::from_key_der(der) {
        Ok(key) => Ok(Some(key)),
        Err(e) if pkcs1 => Err(format!("is not a usable RSA key: {e}")),
        Err(_) => Ok(None),
    }
}

pub(crate) fn parse_ed25519(pem: &str) -> Result<Ed25519Key, String> {
    match parse_der(pem)? {
        PrivateKeyDer::Pkcs8(der) => Ed25519Key::from_pkcs8_maybe_unchecked_der(der.secret_pkcs8_der())
            .map_err(|_| "is neither an RSA nor an Ed25519 private key".to_string()),
        _ => Err("is neither an RSA nor an Ed25519 private key".to_string()),
    }
}

impl DkimKey {
    /// The key as PEM text, for the signer to load.
    pub(crate) fn pem(&self) -> &str {
        &self.pem
    }

    /// Reads an RSA (PKCS#1 or PKCS#8, at least 2048 bits, DK-2) or Ed25519 (PKCS#8) key.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        if let Some(key) = parse_rsa(pem)? {
            // The DER public key of a 2048-bit RSA key is about 270 bytes; 1024-bit about 140.
            if key.public_key().len() < 256 {
                return Err("is an RSA key shorter than 2048 bits".into());
            }
            return Ok(Self {
                pem: pem.to_owned(),
                is_rsa: true,
            });
        }
        parse_ed25519(pem)?;
        Ok(Self {
            pem: pem.to_owned(),
            is_rsa: false,
        })
    }
}
