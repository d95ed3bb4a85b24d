//! Objects: blobs pinned during uploads, records committed, listed, deleted,
//! and unreferenced blobs collected.

#[allow(unused_imports, reason = "the store's shared imports")]
use super::*;

impl Store {
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
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let quotas = {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {TENANT_COLUMNS} FROM tenants WHERE name = ?1"
            ))?;
            stmt.query_row([tenant.as_str()], tenant_from_row)
                .optional()?
                .map(|(_, _, q)| q)
                .ok_or_else(|| StoreError::UnknownTenant(tenant.to_string()))?
        };
        let old: Option<(i64, i64)> = tx
            .query_row(
                "SELECT version, size FROM objects WHERE tenant = ?1 AND kind = ?2 AND name = ?3",
                params![tenant.as_str(), kind.as_str(), name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let used = usage(&tx, tenant.as_str())?;
        quotas
            .admit(&used, kind, old.map(|(_, s)| s as u64), size)
            .map_err(StoreError::Quota)?;
        let version = old.map_or(1, |(v, _)| v + 1);
        let created_at = now();
        tx.execute(
            "INSERT INTO objects (tenant, kind, name, version, digest, size, meta, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (tenant, kind, name) DO UPDATE SET version = excluded.version, \
             digest = excluded.digest, size = excluded.size, meta = excluded.meta, \
             created_at = excluded.created_at",
            params![
                tenant.as_str(),
                kind.as_str(),
                name,
                version,
                blob.digest(),
                size as i64,
                meta,
                created_at
            ],
        )?;
        tx.commit()?;
        Ok(ObjectRecord {
            tenant: tenant.clone(),
            kind,
            name: name.to_string(),
            version: version as u64,
            digest: blob.digest().to_string(),
            size,
            meta: meta.to_string(),
            created_at,
        })
    }

    /// The current version of `tenant`'s `kind` `name`.
    pub fn object(
        &self,
        tenant: &TenantId,
        kind: ObjectKind,
        name: &str,
    ) -> Result<Option<ObjectRecord>, StoreError> {
        self.object_at(tenant, kind, name, None)
    }

    /// [`Store::object`] as of `snapshot` (see [`Store::snapshot`]).
    pub fn object_at(
        &self,
        tenant: &TenantId,
        kind: ObjectKind,
        name: &str,
        snapshot: Option<Snapshot>,
    ) -> Result<Option<ObjectRecord>, StoreError> {
        let conn = self.conn();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.validate(&conn, snapshot)?;
        let key = (tenant.clone(), kind, name.to_string());
        if let Some(hit) = cache.object(&key) {
            return Ok(hit.clone());
        }
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE tenant = ?1 AND kind = ?2 AND name = ?3"
        ))?;
        let record = stmt
            .query_row(
                params![tenant.as_str(), kind.as_str(), name],
                object_from_row,
            )
            .optional()?;
        cache.put_object(key, record.clone());
        Ok(record)
    }

    /// `tenant`'s objects of `kind`, by name.
    pub fn objects(
        &self,
        tenant: &TenantId,
        kind: ObjectKind,
    ) -> Result<Vec<ObjectRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE tenant = ?1 AND kind = ?2 ORDER BY name"
        ))?;
        let rows = stmt.query_map(params![tenant.as_str(), kind.as_str()], object_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every object of every tenant (consistency checks, tooling).
    pub fn all_objects(&self) -> Result<Vec<ObjectRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects ORDER BY tenant, kind, name"
        ))?;
        let rows = stmt.query_map([], object_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Delete `tenant`'s `kind` `name`; false if there was none. Its blob
    /// goes at the next [`collect_garbage`](Self::collect_garbage).
    pub fn delete_object(
        &self,
        tenant: &TenantId,
        kind: ObjectKind,
        name: &str,
    ) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "DELETE FROM objects WHERE tenant = ?1 AND kind = ?2 AND name = ?3",
            params![tenant.as_str(), kind.as_str(), name],
        )?;
        Ok(n > 0)
    }

    /// Remove blobs that no row names and no upload has pinned; returns how
    /// many were removed.
    pub fn collect_garbage(&self) -> Result<usize, StoreError> {
        // Holding `pinned` across the listing and the removals: an upload
        // pins before it writes, so it either pinned before this started
        // (and is skipped) or writes after this finished.
        let pinned = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
        let referenced: HashSet<String> = {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached("SELECT DISTINCT digest FROM objects")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let (blobs, _) = self.blobs.list()?;
        let mut removed = 0;
        for digest in blobs {
            if !referenced.contains(&digest) && !pinned.contains_key(&digest) {
                self.blobs.remove(&digest)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

pub(super) fn usage(conn: &Connection, tenant: &str) -> Result<Usage, StoreError> {
    Ok(conn.query_row(
        "SELECT COALESCE(SUM(kind = 'component'), 0), COALESCE(SUM(kind = 'graph'), 0), \
         COALESCE(SUM(kind = 'alias'), 0), COALESCE(SUM(size), 0) FROM objects WHERE tenant = ?1",
        [tenant],
        |r| {
            Ok(Usage {
                components: r.get::<_, i64>(0)? as u32,
                graphs: r.get::<_, i64>(1)? as u32,
                aliases: r.get::<_, i64>(2)? as u32,
                bytes: r.get::<_, i64>(3)? as u64,
            })
        },
    )?)
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
