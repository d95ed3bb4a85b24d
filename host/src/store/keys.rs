//! API keys: generated from the OS's CSPRNG, shown once, stored only as a
//! hash, compared in constant time.
//!
//! A key is `nbk_` followed by 32 random bytes in hex (256 bits). With that
//! much entropy a plain sha256 is enough to store it: there is nothing to
//! brute-force, so a slow password hash would only cost latency on every
//! request. The comparison of hashes is constant-time all the same, so that
//! response times say nothing about how much of a guess matched.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of every key (lets secret scanners and humans recognise one).
pub const KEY_PREFIX: &str = "nbk_";

/// A freshly generated API key. Its `Debug` is redacted: the secret is only
/// ever read through [`ApiKey::reveal`], to be printed once.
pub struct ApiKey(String);

impl ApiKey {
    /// A new random key.
    pub fn generate() -> Result<Self, String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| format!("no OS randomness: {e}"))?;
        Ok(Self(format!("{KEY_PREFIX}{}", hex::encode(bytes))))
    }

    /// The secret itself.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// Its stored form.
    pub fn hash(&self) -> String {
        hash_key(&self.0)
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The stored form of a key: lowercase hex sha256 of its text.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Whether two stored hashes are equal, in time that does not depend on
/// where they differ.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_hash_stably() {
        let a = ApiKey::generate().unwrap();
        let b = ApiKey::generate().unwrap();
        assert_ne!(a.reveal(), b.reveal());
        assert!(a.reveal().starts_with(KEY_PREFIX));
        assert_eq!(a.reveal().len(), KEY_PREFIX.len() + 64);
        assert!(hashes_equal(&a.hash(), &hash_key(a.reveal())));
        assert!(!hashes_equal(&a.hash(), &b.hash()));
        assert!(!format!("{a:?}").contains(a.reveal()));
    }
}
