//! The store of the lean edge build (`--no-default-features`): tenants held
//! in memory, no objects, no SQLite.
//!
//! An edge node serves the signed bundles it started with and takes no
//! uploads, so nothing it stores must survive a restart: its tenants come
//! from the operator's tenants file (`nboost serve --tenants FILE`), read
//! again at every start. This type answers the reads of the serving core
//! exactly as the SQLite store would for a data directory in which no
//! tenant ever uploaded anything; the writes an upload needs are not built
//! in (the upload routes are not either).

#[allow(unused_imports, reason = "the store's shared imports")]
use super::*;

use std::collections::BTreeMap;
use std::sync::RwLock;

/// A point in the store's history: reads given one see the tenants as
/// they were then (here: a counter of tenant changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot(u64);

/// The tenants of a lean edge node (see the module docs).
pub struct Store {
    dir: PathBuf,
    blobs: Blobs,
    /// Tenant name → (key sha256, quotas).
    tenants: RwLock<BTreeMap<String, (String, Quotas)>>,
    _lock: Option<std::fs::File>,
}

impl Store {
    /// The store of `nboost serve` over `dir`: locked, so that one server
    /// runs per data directory (the directory also holds unpacked
    /// bundles).
    pub fn open_for_serving(dir: &Path) -> Result<Self, StoreError> {
        let lock = lock_dir(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            blobs: Blobs::open(dir.join("blobs"))?,
            tenants: RwLock::new(BTreeMap::new()),
            _lock: Some(lock),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The blob files (none is ever written by a lean node).
    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    /// The bytes of blob `digest` (a lean node stores none).
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        self.blobs.read(digest)
    }

    /// A single node's share of a concurrency quota: all of it.
    pub fn concurrency_share(&self, max_concurrent: u32) -> u32 {
        max_concurrent.max(1)
    }

    /// Graphs never change on a lean node.
    pub fn graph_epoch(&self, _tenant: &TenantId) -> u64 {
        0
    }

    /// Always reachable (memory).
    pub fn ready(&self) -> Result<(), String> {
        Ok(())
    }

    /// The store now.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot(0))
    }

    /// Create or update a tenant from operator configuration (its key as
    /// a sha256 hex digest). Returns true if the tenant was created.
    pub fn upsert_tenant_hashed(
        &self,
        name: &TenantId,
        key_sha256: &str,
        quotas: &Quotas,
    ) -> Result<bool, StoreError> {
        let hash = checked_hash(name, key_sha256)?;
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        Ok(tenants
            .insert(name.as_str().to_string(), (hash, *quotas))
            .is_none())
    }

    /// Every tenant, by name.
    pub fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        Ok(tenants
            .iter()
            .map(|(name, (_, quotas))| Tenant {
                name: TenantId::trusted(name.clone()),
                quotas: *quotas,
            })
            .collect())
    }

    /// The tenant whose key is `key`, if any (hashes compared in constant
    /// time).
    pub fn authenticate(&self, key: &str) -> Result<Option<Tenant>, StoreError> {
        self.authenticate_at(key, None)
    }

    /// [`Store::authenticate`] as of `snapshot`.
    pub fn authenticate_at(
        &self,
        key: &str,
        _snapshot: Option<Snapshot>,
    ) -> Result<Option<Tenant>, StoreError> {
        let hash = hash_key(key);
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        let mut found = None;
        for (name, (stored, quotas)) in tenants.iter() {
            if keys::hashes_equal(&hash, stored) {
                found = Some(Tenant {
                    name: TenantId::trusted(name.clone()),
                    quotas: *quotas,
                });
            }
        }
        Ok(found)
    }

    /// What `tenant` stores: nothing.
    pub fn usage(&self, _tenant: &TenantId) -> Result<Usage, StoreError> {
        Ok(Usage::default())
    }

    /// `tenant`'s `kind` `name`: none exists on a lean node.
    pub fn object(
        &self,
        tenant: &TenantId,
        kind: ObjectKind,
        name: &str,
    ) -> Result<Option<ObjectRecord>, StoreError> {
        self.object_at(tenant, kind, name, None)
    }

    /// [`Store::object`] as of `snapshot`.
    pub fn object_at(
        &self,
        _tenant: &TenantId,
        _kind: ObjectKind,
        _name: &str,
        _snapshot: Option<Snapshot>,
    ) -> Result<Option<ObjectRecord>, StoreError> {
        Ok(None)
    }

    /// `tenant`'s objects of `kind`: none.
    pub fn objects(
        &self,
        _tenant: &TenantId,
        _kind: ObjectKind,
    ) -> Result<Vec<ObjectRecord>, StoreError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_from_configuration_authenticate_and_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_for_serving(dir.path()).unwrap();
        assert!(matches!(
            Store::open_for_serving(dir.path()),
            Err(StoreError::Locked(_))
        ));
        let id = TenantId::parse("edge").unwrap();
        let key = ApiKey::generate().unwrap();
        assert!(s
            .upsert_tenant_hashed(&id, &key.hash(), &Quotas::default())
            .unwrap());
        assert_eq!(s.authenticate(key.reveal()).unwrap().unwrap().name, id);
        assert!(s.authenticate("nbk_wrong").unwrap().is_none());
        let other = ApiKey::generate().unwrap();
        assert!(!s
            .upsert_tenant_hashed(&id, &other.hash(), &Quotas::default())
            .unwrap());
        assert!(s.authenticate(key.reveal()).unwrap().is_none());
        assert_eq!(s.tenants().unwrap().len(), 1);
        assert!(s
            .upsert_tenant_hashed(&id, "abc", &Quotas::default())
            .is_err());
        assert!(s.object(&id, ObjectKind::Component, "x").unwrap().is_none());
    }
}
