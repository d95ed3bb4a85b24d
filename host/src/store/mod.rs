//! The store behind `nboost serve`: tenants, their API keys and
//! quotas, and the components and graphs they upload.
//!
//! A data directory holds two things:
//!
//! * `blobs/`: content-addressed files named by their sha256 ([`blobs`]),
//!   written with temp file + fsync + rename;
//! * `meta.sqlite`: what exists, in SQLite (WAL, `synchronous=FULL`): the
//!   `tenants` table (key *hashes*, quotas) and the `objects` table (owner,
//!   kind, name, version, digest, size, metadata JSON).
//!
//! An upload writes its blob first and then commits its metadata row in one
//! transaction (which also checks the quota, so two concurrent uploads
//! cannot both squeeze under it). A crash — `kill -9` included — at any
//! point leaves the old row or the new one, never a row naming a missing or
//! partial blob: the blob was durable before the row that names it. What a
//! crash can leave is garbage (a temp file, a blob no row names), which
//! [`Store::recover`] removes on the next start. Blobs are only removed by
//! [`Store::collect_garbage`], under the same lock uploads take to pin the
//! blob they are about to commit, so a concurrent upload of the same bytes
//! never loses its file.
//!
//! Nothing here knows what a component is: metadata is an opaque JSON text
//! that the layer above writes and reads.

//! Which store is built is a cargo feature: `uploads` (the default) is the
//! SQLite store above ([`sqlite`]); without it — the lean edge build —
//! tenants live in memory, read from the operator's tenants file at each
//! start, and there are no objects at all (`memory`): an edge node serves
//! only the signed bundles it started with.

//! With feature `shared` (default on), `nboost serve --database-url
//! --object-store` puts the same tables in PostgreSQL and the blobs in
//! S3-compatible object storage ([`shared`]), for replicas behind a load
//! balancer; both pairs sit behind the traits of [`backend`] and pass the
//! same conformance [`suite`].

#[cfg(feature = "uploads")]
pub mod backend;
pub mod blobs;
#[cfg(feature = "uploads")]
mod cache;
#[cfg(feature = "uploads")]
mod facade;
pub mod keys;
#[cfg(not(feature = "uploads"))]
mod memory;
#[cfg(feature = "shared")]
pub mod shared;
#[cfg(feature = "uploads")]
pub mod sqlite;
#[cfg(feature = "uploads")]
pub mod suite;
mod types;

use std::path::{Path, PathBuf};

#[cfg(feature = "uploads")]
pub use backend::{BlobStore, MetaStore, Snapshot};
pub use blobs::Blobs;
#[cfg(feature = "uploads")]
pub use facade::{BlobPin, Store};
pub use keys::{hash_key, ApiKey};
#[cfg(not(feature = "uploads"))]
pub use memory::{Snapshot, Store};
pub use types::*;

use crate::names::check_name;
pub use crate::names::TenantId;

/// Lock `dir` (created if missing) for one `nboost serve`: the returned
/// file holds an exclusive lock until dropped.
fn lock_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let lock_path = dir.join("serve.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::io(&lock_path, e))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::io(&lock_path, e)),
    }
}

/// A tenant key's sha256 from operator configuration, checked (64 hex
/// digits) and lower-cased.
fn checked_hash(name: &TenantId, key_sha256: &str) -> Result<String, StoreError> {
    let hash = key_sha256.trim().to_ascii_lowercase();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StoreError::InvalidName(format!(
            "tenant `{name}`: key-sha256 must be 64 hex digits"
        )));
    }
    Ok(hash)
}
