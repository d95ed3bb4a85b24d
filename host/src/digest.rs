//! Content digests, used by every layer that names bytes by their hash
//! (validation reports, manifest pins, the blob store, the artifact cache).
//! A leaf module.

use sha2::{Digest, Sha256};

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}
