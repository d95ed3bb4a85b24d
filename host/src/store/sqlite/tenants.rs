//! Tenants: add, update from operator configuration, rotate keys, set
//! quotas, list, authenticate.

#[allow(unused_imports, reason = "the store's shared imports")]
use super::*;

impl Store {
    // ---- tenants -------------------------------------------------------

    /// Add a tenant; returns its first key (shown once, stored hashed).
    pub fn add_tenant(&self, name: &TenantId, quotas: &Quotas) -> Result<ApiKey, StoreError> {
        let key = ApiKey::generate().map_err(StoreError::Io)?;
        let conn = self.conn();
        let inserted = insert_tenant(&conn, "OR IGNORE", "", name, &key.hash(), quotas)?;
        if inserted == 0 {
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
            &hash,
            quotas,
        )?;
        tx.commit()?;
        Ok(!existed)
    }

    /// Replace a tenant's key; the old one stops working at once.
    pub fn rotate_key(&self, name: &TenantId) -> Result<ApiKey, StoreError> {
        let key = ApiKey::generate().map_err(StoreError::Io)?;
        let n = self.conn().execute(
            "UPDATE tenants SET key_sha256 = ?2 WHERE name = ?1",
            params![name.as_str(), key.hash()],
        )?;
        if n == 0 {
            return Err(StoreError::UnknownTenant(name.to_string()));
        }
        Ok(key)
    }

    /// Change a tenant's quotas (existing objects stay, even if now over).
    pub fn set_quotas(&self, name: &TenantId, quotas: &Quotas) -> Result<(), StoreError> {
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

    /// Every tenant, by name.
    pub fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
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

    /// One tenant.
    pub fn tenant(&self, name: &TenantId) -> Result<Option<Tenant>, StoreError> {
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

    /// The tenant whose key is `key`, if any: looked up by the key's
    /// SHA-256 through an index (a key is 256 random bits, so the hash
    /// reveals nothing a timing could exploit), the match compared again in
    /// constant time, and cached until the database changes.
    pub fn authenticate(&self, key: &str) -> Result<Option<Tenant>, StoreError> {
        self.authenticate_at(key, None)
    }

    /// [`Store::authenticate`] as of `snapshot` (see [`Store::snapshot`]).
    pub fn authenticate_at(
        &self,
        key: &str,
        snapshot: Option<Snapshot>,
    ) -> Result<Option<Tenant>, StoreError> {
        let hash = hash_key(key);
        let conn = self.conn();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.validate(&conn, snapshot)?;
        if let Some(hit) = cache.tenant(&hash) {
            return Ok(hit.clone());
        }
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE key_sha256 = ?1"
        ))?;
        let rows = stmt.query_map([&hash], tenant_from_row)?;
        let mut found = None;
        for row in rows {
            let (name, stored, quotas) = row?;
            if keys::hashes_equal(&hash, &stored) {
                found = Some(Tenant {
                    name: TenantId::trusted(name),
                    quotas,
                });
            }
        }
        cache.put_tenant(hash, found.clone());
        Ok(found)
    }

    /// What `tenant` stores now.
    pub fn usage(&self, tenant: &TenantId) -> Result<Usage, StoreError> {
        usage(&self.conn(), tenant.as_str())
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
