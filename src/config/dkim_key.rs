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

/// The DER encoding of the rsaEncryption algorithm id (1.2.840.113549.1.1.1), which a PKCS#8
/// RSA key names.
const RSA_ENCRYPTION_OID: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

pub(crate) fn parse_rsa(pem: &str) -> Result<Option<RsaKey<Sha256>>, String> {
    let der = parse_der(pem)?;
    let is_rsa = match &der {
        PrivateKeyDer::Pkcs1(_) => true,
        PrivateKeyDer::Pkcs8(k) => k
            .secret_pkcs8_der()
            .windows(RSA_ENCRYPTION_OID.len())
            .any(|w| w == RSA_ENCRYPTION_OID),
        _ => false,
    };
    match RsaKey::<Sha256>::from_key_der(der) {
        Ok(key) => Ok(Some(key)),
        // The crypto library refuses RSA keys under 2048 bits, which is also what DKIM needs.
        Err(_) if is_rsa => Err(
            "is an RSA key that cannot sign: it must have at least 2048 bits (make one with \
             openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048)"
                .into(),
        ),
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
