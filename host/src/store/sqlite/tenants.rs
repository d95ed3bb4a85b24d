//! Tenants: add, update from operator configuration, rotate keys, set
//! quotas, list, authenticate.

#[allow(unused_imports, reason = "the store's shared imports")]
use super::*;

impl SqliteMeta {
    pub(super) fn insert_tenant_(
        &self,
        name: &TenantId,
        key_hash: &str,
        quotas: &Quotas,
    ) -> Result<bool, StoreError> {
        let conn = self.conn();
        Ok(insert_tenant(&conn, "OR IGNORE", "", name, key_hash, quotas)? > 0)
    }

    pub(super) fn upsert_tenant_(
        &self,
        name: &TenantId,
        hash: &str,
        quotas: &Quotas,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existed: bool = tx
            .query_row(
                "SELECT 1 FROM tenants WHERE name = ?1",
                [name.as_str()],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        insert_tenant(
            &tx,
            "",
            "ON CONFLICT (name) DO UPDATE SET key_sha256 = excluded.key_sha256, \
             max_components = excluded.max_components, max_graphs = excluded.max_graphs, \
             max_bytes = excluded.max_bytes, max_concurrent = excluded.max_concurrent, \
             deadline_ms = excluded.deadline_ms, memory_mib = excluded.memory_mib",
            name,
            hash,
            quotas,
        )?;
        tx.commit()?;
        Ok(!existed)
    }

    pub(super) fn set_key_(&self, name: &TenantId, key_hash: &str) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "UPDATE tenants SET key_sha256 = ?2 WHERE name = ?1",
            params![name.as_str(), key_hash],
        )?;
        if n == 0 {
            return Err(StoreError::UnknownTenant(name.to_string()));
        }
        Ok(())
    }

    pub(super) fn set_quotas_(&self, name: &TenantId, quotas: &Quotas) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "UPDATE tenants SET max_components = ?2, max_graphs = ?3, max_bytes = ?4, \
             max_concurrent = ?5, deadline_ms = ?6, memory_mib = ?7 WHERE name = ?1",
            params![
                name.as_str(),
                quotas.max_components,
                quotas.max_graphs,
                quotas.max_bytes as i64,
                quotas.max_concurrent,
                quotas.deadline_ms.map(|v| v as i64),
                quotas.memory_mib.map(|v| v as i64),
            ],
        )?;
        if n == 0 {
            return Err(StoreError::UnknownTenant(name.to_string()));
        }
        Ok(())
    }

    pub(super) fn tenants_(&self) -> Result<Vec<Tenant>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants ORDER BY name"
        ))?;
        let rows = stmt.query_map([], tenant_from_row)?;
        let mut out = Vec::new();
        for row in rows {
            let (name, _, quotas) = row?;
            out.push(Tenant {
                name: TenantId::trusted(name),
                quotas,
            });
        }
        Ok(out)
    }

    pub(super) fn tenant_(&self, name: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE name = ?1"
        ))?;
        Ok(stmt
            .query_row([name.as_str()], tenant_from_row)
            .optional()?
            .map(|(name, _, quotas)| Tenant {
                name: TenantId::trusted(name),
                quotas,
            }))
    }

    pub(super) fn authenticate_(
        &self,
        hash: &str,
        snapshot: Option<Snapshot>,
    ) -> Result<Option<Tenant>, StoreError> {
        let conn = self.conn();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.validate(match snapshot {
            Some(s) => s,
            None => stamp(&conn)?,
        });
        if let Some(hit) = cache.tenant(hash) {
            return Ok(hit.clone());
        }
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE key_sha256 = ?1"
        ))?;
        let rows = stmt.query_map([hash], tenant_from_row)?;
        let mut found = None;
        for row in rows {
            let (name, stored, quotas) = row?;
            if keys::hashes_equal(hash, &stored) {
                found = Some(Tenant {
                    name: TenantId::trusted(name),
                    quotas,
                });
            }
        }
        cache.put_tenant(hash.to_string(), found.clone());
        Ok(found)
    }
}

/// The one tenant INSERT: `or` after `INSERT` (`OR IGNORE`), `conflict`
/// after the values (an upsert clause). Returns the rows inserted.
pub(super) fn insert_tenant(
    conn: &Connection,
    or: &str,
    conflict: &str,
    name: &TenantId,
    key_hash: &str,
    quotas: &Quotas,
) -> rusqlite::Result<usize> {
    conn.execute(
        &format!(
            "INSERT {or} INTO tenants (name, key_sha256, max_components, max_graphs, max_bytes, \
             max_concurrent, deadline_ms, memory_mib, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) {conflict}"
        ),
        params![
            name.as_str(),
            key_hash,
            quotas.max_components,
            quotas.max_graphs,
            quotas.max_bytes as i64,
            quotas.max_concurrent,
            quotas.deadline_ms.map(|v| v as i64),
            quotas.memory_mib.map(|v| v as i64),
            now()
        ],
    )
}
