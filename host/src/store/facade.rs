//! [`Store`]: the upload rules over a [`MetaStore`] and a [`BlobStore`],
//! whichever backends they are (see [`super::backend`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[allow(unused_imports, reason = "the store's shared imports")]
use super::*;

/// Tenants, their keys and quotas, and what they upload.
pub struct Store {
    dir: PathBuf,
    meta: Arc<dyn MetaStore>,
    blobs: Arc<dyn BlobStore>,
    /// Digests of blobs written by uploads that have not committed yet:
    /// garbage collection skips them.
    pinned: Mutex<HashMap<String, usize>>,
    kind: &'static str,
    _lock: Option<std::fs::File>,
}

impl Store {
    /// Open (creating if needed) the single-node store in `dir`: SQLite
    /// metadata beside blob files. Several processes may open it (the
    /// `tenants` CLI next to a running server); SQLite serialises their
    /// writes.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let blobs = Blobs::open(dir.join("blobs"))?;
        let meta = sqlite::SqliteMeta::open(&dir.join("meta.sqlite"))?;
        Ok(Self::with_backends(
            dir,
            Arc::new(meta),
            Arc::new(blobs),
            "sqlite",
        ))
    }

    /// A store over the given backends; `dir` holds local state (caches,
    /// the serving lock).
    pub fn with_backends(
        dir: &Path,
        meta: Arc<dyn MetaStore>,
        blobs: Arc<dyn BlobStore>,
        kind: &'static str,
    ) -> Self {
        Self {
            dir: dir.to_path_buf(),
            meta,
            blobs,
            pinned: Mutex::new(HashMap::new()),
            kind,
            _lock: None,
        }
    }

    /// Open `dir` for serving: take the directory's exclusive lock (one
    /// server per data directory; released by the OS if the process dies),
    /// then [`recover`](Self::recover).
    pub fn open_for_serving(dir: &Path) -> Result<Self, StoreError> {
        let lock = lock_dir(dir)?;
        let mut store = Self::open(dir)?;
        store._lock = Some(lock);
        store.recover()?;
        Ok(store)
    }

    /// Take `dir`'s serving lock for this store (shared-state replicas
    /// lock their local cache directory the same way).
    pub fn lock_for_serving(mut self) -> Result<Self, StoreError> {
        self._lock = Some(lock_dir(&self.dir)?);
        Ok(self)
    }

    /// The local data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `sqlite` or `postgres`: where the metadata lives.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The metadata backend.
    pub fn meta(&self) -> &dyn MetaStore {
        &*self.meta
    }

    /// The blob backend.
    pub fn blob_store(&self) -> &dyn BlobStore {
        &*self.blobs
    }

    /// The bytes of blob `digest`, checked against it.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        self.blobs.read(digest)
    }

    /// The snapshot now: reads given it use the cache when nothing changed.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.meta.snapshot()
    }

    /// After a crash: remove interrupted writes and blobs that no row
    /// names. Only safe when no upload of this process is in progress.
    pub fn recover(&self) -> Result<(), StoreError> {
        self.blobs.recover()?;
        if !self.blobs.collect_at_start() {
            return Ok(());
        }
        let removed = self.collect_garbage()?;
        if removed > 0 {
            tracing::info!(target: "nboost::store", removed, "removed unreferenced blobs");
        }
        Ok(())
    }

    // ---- tenants -------------------------------------------------------

    /// Add a tenant; returns its first key (shown once, stored hashed).
    pub fn add_tenant(&self, name: &TenantId, quotas: &Quotas) -> Result<ApiKey, StoreError> {
        let key = ApiKey::generate().map_err(StoreError::Io)?;
        if !self.meta.insert_tenant(name, &key.hash(), quotas)? {
            return Err(StoreError::TenantExists(name.to_string()));
        }
        Ok(key)
    }

    /// Create or update a tenant from operator configuration: its key is
    /// given as a sha256 hex digest (the operator keeps the key itself), and
    /// its quotas are set as given. Returns true if the tenant was created.
    pub fn upsert_tenant_hashed(
        &self,
        name: &TenantId,
        key_sha256: &str,
        quotas: &Quotas,
    ) -> Result<bool, StoreError> {
        let hash = checked_hash(name, key_sha256)?;
        self.meta.upsert_tenant(name, &hash, quotas)
    }

    /// Replace a tenant's key; the old one stops working at once.
    pub fn rotate_key(&self, name: &TenantId) -> Result<ApiKey, StoreError> {
        let key = ApiKey::generate().map_err(StoreError::Io)?;
        self.meta.set_key(name, &key.hash())?;
        Ok(key)
    }

    /// Change a tenant's quotas (existing objects stay, even if now over).
    pub fn set_quotas(&self, name: &TenantId, quotas: &Quotas) -> Result<(), StoreError> {
        self.meta.set_quotas(name, quotas)
    }

    /// Every tenant, by name.
    pub fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.meta.tenants()
    }

    /// One tenant.
    pub fn tenant(&self, name: &TenantId) -> Result<Option<Tenant>, StoreError> {
        self.meta.tenant(name)
    }

    /// The tenant whose key is `key`, if any: looked up by the key's
    /// SHA-256 through an index (a key is 256 random bits, so the hash
    /// reveals nothing a timing could exploit), the match compared again in
    /// constant time, and cached until the metadata changes.
    pub fn authenticate(&self, key: &str) -> Result<Option<Tenant>, StoreError> {
        self.authenticate_at(key, None)
    }

    /// [`Store::authenticate`] as of `snapshot` (see [`Store::snapshot`]).
    pub fn authenticate_at(
        &self,
        key: &str,
        snapshot: Option<Snapshot>,
    ) -> Result<Option<Tenant>, StoreError> {
        self.meta.authenticate_hash(&hash_key(key), snapshot)
    }

    /// What `tenant` stores now.
    pub fn usage(&self, tenant: &TenantId) -> Result<Usage, StoreError> {
        self.meta.usage(tenant)
    }

    /// This replica's share of a tenant's concurrency quota.
    pub fn concurrency_share(&self, max_concurrent: u32) -> u32 {
        self.meta.concurrency_share(max_concurrent).max(1)
    }

    /// See [`MetaStore::graph_epoch`].
    pub fn graph_epoch(&self, tenant: &TenantId) -> u64 {
        self.meta.graph_epoch(tenant)
    }

    /// Whether the metadata can be reached now.
    pub fn ready(&self) -> Result<(), String> {
        self.meta.ready()
    }

    // ---- objects -------------------------------------------------------

    /// Keep `digest`'s blob from garbage collection until the guard drops.
    pub fn pin(&self, digest: &str) -> BlobPin<'_> {
        *self
            .pinned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(digest.to_string())
            .or_default() += 1;
        BlobPin {
            store: self,
            digest: digest.to_string(),
        }
    }

    /// Write `bytes` as a blob and pin it. The pin must be held until the
    /// row naming the blob is committed (or the upload is abandoned).
    pub fn write_blob(&self, bytes: &[u8]) -> Result<BlobPin<'_>, StoreError> {
        let digest = nboost_validate::sha256_digest(bytes);
        let pin = self.pin(&digest);
        self.blobs.write(bytes)?;
        Ok(pin)
    }

    /// Commit a new version of `tenant`'s `kind` `name` naming the pinned
    /// blob: one transaction, which also checks the tenant's count and byte
    /// quotas (a replacement counts its new size instead of the old one).
    pub fn put_object(
        &self,
        tenant: &TenantId,
        kind: ObjectKind,
        name: &str,
        blob: &BlobPin<'_>,
        size: u64,
        meta: &str,
    ) -> Result<ObjectRecord, StoreError> {
        kind.check_name(name)
            .map_err(|e| StoreError::InvalidName(format!("{} {e}", kind.as_str())))?;
        self.meta
            .put_object(tenant, kind, name, blob.digest(), size, meta)
    }

    /// The current version of `tenant`'s `kind` `name`.
    pub fn object(
        &self,
        tenant: &TenantId,
        kind: ObjectKind,
        name: &str,
    ) -> Result<Option<ObjectRecord>, StoreError> {
        self.meta.object_at(tenant, kind, name, None)
    }

    /// [`Store::object`] as of `snapshot` (see [`Store::snapshot`]).
    pub fn object_at(
        &self,
        tenant: &TenantId,
        kind: ObjectKind,
        name: &str,
        snapshot: Option<Snapshot>,
    ) -> Result<Option<ObjectRecord>, StoreError> {
        self.meta.object_at(tenant, kind, name, snapshot)
    }

    /// `tenant`'s objects of `kind`, by name.
    pub fn objects(
        &self,
        tenant: &TenantId,
        kind: ObjectKind,
    ) -> Result<Vec<ObjectRecord>, StoreError> {
        self.meta.objects(tenant, kind)
    }

    /// Every object of every tenant (consistency checks, tooling).
    pub fn all_objects(&self) -> Result<Vec<ObjectRecord>, StoreError> {
        self.meta.all_objects()
    }

    /// Delete `tenant`'s `kind` `name`; false if there was none. Its blob
    /// goes at the next [`collect_garbage`](Self::collect_garbage).
    pub fn delete_object(
        &self,
        tenant: &TenantId,
        kind: ObjectKind,
        name: &str,
    ) -> Result<bool, StoreError> {
        self.meta.delete_object(tenant, kind, name)
    }

    /// Remove blobs that no row names, no upload of this process has
    /// pinned, and (shared storage) are older than the backend's minimum
    /// age; returns how many were removed.
    pub fn collect_garbage(&self) -> Result<usize, StoreError> {
        // Holding `pinned` across the listing and the removals: an upload
        // pins before it writes, so it either pinned before this started
        // (and is skipped) or writes after this finished.
        let pinned = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
        let blobs = self.blobs.list()?;
        // Rows after the listing: a row committed meanwhile is seen.
        let referenced = self.meta.referenced_digests()?;
        let min_age = self.blobs.min_garbage_age();
        let mut removed = 0;
        for (digest, age) in blobs {
            let old_enough = min_age == Duration::ZERO || age.is_some_and(|a| a >= min_age);
            if old_enough && !referenced.contains(&digest) && !pinned.contains_key(&digest) {
                self.blobs.remove(&digest)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// A blob kept from garbage collection while an upload commits.
pub struct BlobPin<'a> {
    store: &'a Store,
    digest: String,
}

impl BlobPin<'_> {
    /// The pinned blob's digest.
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

impl Drop for BlobPin<'_> {
    fn drop(&mut self) {
        let mut pinned = self.store.pinned.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = pinned.get_mut(&self.digest) {
            *n -= 1;
            if *n == 0 {
                pinned.remove(&self.digest);
            }
        }
    }
}
