//! The seam where state lives: one trait for metadata ([`MetaStore`]) and
//! one for blobs ([`BlobStore`]), each with two implementations.
//!
//! A single node keeps metadata in SQLite and blobs in files under its data
//! directory ([`super::sqlite`], [`super::Blobs`]). Replicas behind a load
//! balancer keep metadata in PostgreSQL and blobs in S3-compatible object
//! storage ([`super::shared`]), so any replica can be killed and another
//! serves what it served. The rules an upload follows (blob durable before
//! the row naming it; quota checked in the row's transaction; a pinned
//! blob never collected) are written once, in [`super::Store`], over these
//! traits; the backends only say how one step is done.

use std::collections::HashSet;
use std::time::Duration;

#[allow(unused_imports, reason = "the store's shared imports")]
use super::*;

/// A point in the metadata's history. Reads given the same snapshot may be
/// answered from a cache; a commit anywhere (this process, the `tenants`
/// CLI, another replica) moves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot(pub(crate) i64, pub(crate) u64);

/// Tenants, keys, quotas and object records: what exists.
pub trait MetaStore: Send + Sync {
    /// The snapshot now (cheap: no table is read).
    fn snapshot(&self) -> Result<Snapshot, StoreError>;
    /// Insert a tenant with key hash `key_hash`; false if the name exists.
    fn insert_tenant(
        &self,
        name: &TenantId,
        key_hash: &str,
        quotas: &Quotas,
    ) -> Result<bool, StoreError>;
    /// Create or update a tenant (key hash and quotas); true if created.
    fn upsert_tenant(
        &self,
        name: &TenantId,
        key_hash: &str,
        quotas: &Quotas,
    ) -> Result<bool, StoreError>;
    /// Replace a tenant's key hash.
    fn set_key(&self, name: &TenantId, key_hash: &str) -> Result<(), StoreError>;
    /// Replace a tenant's quotas.
    fn set_quotas(&self, name: &TenantId, quotas: &Quotas) -> Result<(), StoreError>;
    /// Every tenant, by name.
    fn tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    /// One tenant.
    fn tenant(&self, name: &TenantId) -> Result<Option<Tenant>, StoreError>;
    /// The tenant whose key hashes to `key_hash` (compared again in
    /// constant time), as of `snapshot`.
    fn authenticate_hash(
        &self,
        key_hash: &str,
        snapshot: Option<Snapshot>,
    ) -> Result<Option<Tenant>, StoreError>;
    /// What `tenant` stores now.
    fn usage(&self, tenant: &TenantId) -> Result<Usage, StoreError>;
    /// Commit a new version of `tenant`'s `kind` `name` naming blob
    /// `digest`, the quota checked in the same transaction.
    fn put_object(
        &self,
        tenant: &TenantId,
        kind: ObjectKind,
        name: &str,
        digest: &str,
        size: u64,
        meta: &str,
    ) -> Result<ObjectRecord, StoreError>;
    /// The current version of `tenant`'s `kind` `name`, as of `snapshot`.
    fn object_at(
        &self,
        tenant: &TenantId,
        kind: ObjectKind,
        name: &str,
        snapshot: Option<Snapshot>,
    ) -> Result<Option<ObjectRecord>, StoreError>;
    /// `tenant`'s objects of `kind`, by name.
    fn objects(&self, tenant: &TenantId, kind: ObjectKind)
        -> Result<Vec<ObjectRecord>, StoreError>;
    /// Every object of every tenant.
    fn all_objects(&self) -> Result<Vec<ObjectRecord>, StoreError>;
    /// Delete `tenant`'s `kind` `name`; false if there was none.
    fn delete_object(
        &self,
        tenant: &TenantId,
        kind: ObjectKind,
        name: &str,
    ) -> Result<bool, StoreError>;
    /// Every digest a row names.
    fn referenced_digests(&self) -> Result<HashSet<String>, StoreError>;
    /// This replica's share of a tenant's `max_concurrent` (all of it on a
    /// single node).
    fn concurrency_share(&self, max_concurrent: u32) -> u32 {
        max_concurrent
    }
    /// A counter that moves when one of `tenant`'s graphs changed
    /// elsewhere (another replica): components built on the old graph are
    /// rebuilt. A single node invalidates them directly and returns 0.
    fn graph_epoch(&self, _tenant: &TenantId) -> u64 {
        0
    }
    /// Whether the metadata can be reached now (readiness).
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Content-addressed, immutable blobs.
pub trait BlobStore: Send + Sync {
    /// Store `bytes` durably; their `sha256:<hex>` digest.
    fn write(&self, bytes: &[u8]) -> Result<String, StoreError>;
    /// The bytes of `digest`, checked against it.
    fn read(&self, digest: &str) -> Result<Vec<u8>, StoreError>;
    /// Every blob's digest and age (None when unknown).
    fn list(&self) -> Result<Vec<(String, Option<Duration>)>, StoreError>;
    /// Remove `digest` (missing is fine).
    fn remove(&self, digest: &str) -> Result<(), StoreError>;
    /// Blobs younger than this are never collected: an upload on another
    /// process may be about to commit the row naming it (zero where every
    /// writer shares this process's pins).
    fn min_garbage_age(&self) -> Duration {
        Duration::ZERO
    }
    /// Remove leftovers of interrupted writes (at start).
    fn recover(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Whether a start collects garbage. A single node's start is the only
    /// time its crash leftovers can go; a shared bucket is collected after
    /// deletions, and listing all of it at every replica start would make
    /// a start cost the size of the bucket.
    fn collect_at_start(&self) -> bool {
        true
    }
    /// Whether precompiled artifacts are shared through this store (every
    /// replica reuses what one compiled).
    fn shares_artifacts(&self) -> bool {
        false
    }
    /// The shared artifact `key` (`<engine cache key>/<component hex>`).
    fn get_artifact(&self, _key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
    /// Share artifact `key`.
    fn put_artifact(&self, _key: &str, _bytes: &[u8]) -> Result<(), StoreError> {
        Ok(())
    }
}
