//! Objects: records committed (quota checked in the same transaction),
//! read through the cache, listed, deleted.

#[allow(unused_imports, reason = "the store's shared imports")]
use super::*;

impl SqliteMeta {
    /// Commit a new version of `tenant`'s `kind` `name` naming the pinned
    /// blob: one transaction, which also checks the tenant's count and byte
    /// quotas (a replacement counts its new size instead of the old one).
    pub(super) fn put_object_(
        &self,
        tenant: &TenantId,
        kind: ObjectKind,
        name: &str,
        digest: &str,
        size: u64,
        meta: &str,
    ) -> Result<ObjectRecord, StoreError> {
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
                digest,
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
            digest: digest.to_string(),
            size,
            meta: meta.to_string(),
            created_at,
        })
    }

    pub(super) fn object_at_(
        &self,
        tenant: &TenantId,
        kind: ObjectKind,
        name: &str,
        snapshot: Option<Snapshot>,
    ) -> Result<Option<ObjectRecord>, StoreError> {
        let conn = self.conn();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.validate(match snapshot {
            Some(s) => s,
            None => stamp(&conn)?,
        });
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

    pub(super) fn objects_(
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

    pub(super) fn all_objects_(&self) -> Result<Vec<ObjectRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects ORDER BY tenant, kind, name"
        ))?;
        let rows = stmt.query_map([], object_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(super) fn delete_object_(
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

    pub(super) fn referenced_(&self) -> Result<HashSet<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT DISTINCT digest FROM objects")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
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
