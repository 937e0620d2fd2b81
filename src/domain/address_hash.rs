//! The keyed hash of an address (HMAC-SHA256 with a server secret): how suppressions remember an
//! address without keeping it (GD-4). Without the key, the hash cannot be tested against a
//! list of guessed addresses, which a plain hash could.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::EmailAddress;

#[derive(Clone)]
pub struct AddressHasher {
    key: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressHash(String);

impl AddressHash {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AddressHasher {
    pub fn new(secret: &str) -> Self {
        Self {
            key: secret.as_bytes().to_vec(),
        }
    }

    pub fn hash(&self, address: &EmailAddress) -> AddressHash {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(address.normalized().as_bytes());
        AddressHash(hex::encode(mac.finalize().into_bytes()))
    }
}

impl std::fmt::Debug for AddressHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AddressHasher(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_mailbox_same_hash_whatever_the_case_and_key_matters() {
        let h = AddressHasher::new("secret-one");
        let a = EmailAddress::parse("Zoe@Example.com").unwrap();
        let b = EmailAddress::parse("zoe@example.com").unwrap();
        assert_eq!(h.hash(&a), h.hash(&b));
        assert_ne!(h.hash(&a), AddressHasher::new("secret-two").hash(&a));
        assert_eq!(h.hash(&a).as_str().len(), 64);
    }
}
