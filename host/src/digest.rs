//! Content digests, used by every layer that names bytes by their hash
//! (validation reports, manifest pins, the blob store, the artifact cache).
//! A leaf module.

/// `sha256:<hex>` of some bytes (one definition, in the validator crate).
pub use nboost_validate::sha256_digest;
