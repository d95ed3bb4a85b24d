//! The metadata operations of the PostgreSQL backend: each one query or
//! one transaction through [`PgMeta::with`], the read cache in front of
//! the two lookups every rerank makes (as in SQLite's backend).

use std::collections::HashSet;

use super::pg::*;
#[allow(unused_imports, reason = "the store's shared imports")]
use super::*;

impl MetaStore for PgMeta {
    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot(self.watch.generation() as i64, 0))
    }

    fn insert_tenant(&self, n: &TenantId, h: &str, q: &Quotas) -> Result<bool, StoreError> {
        self.write_tenant("adding a tenant", n, h, q, "DO NOTHING")
            .map(|row| row.is_some())
    }

    fn upsert_tenant(&self, n: &TenantId, h: &str, q: &Quotas) -> Result<bool, StoreError> {
        let row = self.write_tenant(
            "updating a tenant",
            n,
            h,
            q,
            "DO UPDATE SET key_sha256 = excluded.key_sha256, \
             max_components = excluded.max_components, max_graphs = excluded.max_graphs, \
             max_bytes = excluded.max_bytes, max_concurrent = excluded.max_concurrent, \
             deadline_ms = excluded.deadline_ms, memory_mib = excluded.memory_mib",
        )?;
        // `xmax = 0`: the row was inserted, not updated.
        Ok(row == Some(true))
    }

    fn set_key(&self, n: &TenantId, h: &str) -> Result<(), StoreError> {
        let (name, h) = (n.to_string(), h.to_string());
        let rows = self.with("rotating a key", move |mut c| {
            let (name, h) = (name.clone(), h.clone());
            async move {
                let tx = c.transaction().await.map_err(db_error)?;
                let rows = tx
                    .execute(
                        "UPDATE tenants SET key_sha256 = $2 WHERE name = $1",
                        &[&name, &h],
                    )
                    .await
                    .map_err(db_error)?;
                changed(&tx, &name).await?;
                tx.commit().await.map_err(db_error)?;
                Ok(rows)
            }
        })?;
        self.local_write();
        if rows == 0 {
            return Err(StoreError::UnknownTenant(n.to_string()));
        }
        Ok(())
    }

    fn set_quotas(&self, n: &TenantId, q: &Quotas) -> Result<(), StoreError> {
        let (name, q) = (n.to_string(), *q);
        let rows = self.with("setting quotas", move |mut c| {
            let name = name.clone();
            async move {
                let tx = c.transaction().await.map_err(db_error)?;
                let p = QuotaParams::of(&q);
                let rows = tx
                    .execute(
                        "UPDATE tenants SET max_components = $2, max_graphs = $3, \
                         max_bytes = $4, max_concurrent = $5, deadline_ms = $6, memory_mib = $7 \
                         WHERE name = $1",
                        &[
                            &[&name as &(dyn tokio_postgres::types::ToSql + Sync)][..],
                            &p.columns(),
                        ]
                        .concat(),
                    )
                    .await
                    .map_err(db_error)?;
                changed(&tx, &name).await?;
                tx.commit().await.map_err(db_error)?;
                Ok(rows)
            }
        })?;
        self.local_write();
        if rows == 0 {
            return Err(StoreError::UnknownTenant(n.to_string()));
        }
        Ok(())
    }

    fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.with("listing tenants", |c| async move {
            let rows = c
                .query(
                    &format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY name"),
                    &[],
                )
                .await
                .map_err(db_error)?;
            Ok(rows
                .iter()
                .map(|r| {
                    let (name, _, quotas) = tenant_row(r);
                    Tenant {
                        name: TenantId::trusted(name),
                        quotas,
                    }
                })
                .collect())
        })
    }

    fn tenant(&self, n: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let name = n.to_string();
        self.with("reading a tenant", move |c| {
            let name = name.clone();
            async move {
                let row = c
                    .query_opt(
                        &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE name = $1"),
                        &[&name],
                    )
                    .await
                    .map_err(db_error)?;
                Ok(row.map(|r| {
                    let (name, _, quotas) = tenant_row(&r);
                    Tenant {
                        name: TenantId::trusted(name),
                        quotas,
                    }
                }))
            }
        })
    }

    fn authenticate_hash(
        &self,
        hash: &str,
        snapshot: Option<Snapshot>,
    ) -> Result<Option<Tenant>, StoreError> {
        {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.validate(match snapshot {
                Some(s) => s,
                None => self.snapshot()?,
            });
            if let Some(hit) = cache.tenant(hash) {
                return Ok(hit.clone());
            }
        }
        let stamp = self.snapshot()?;
        let h = hash.to_string();
        let found = self.with("authenticating", move |c| {
            let h = h.clone();
            async move {
                let rows = c
                    .query(
                        &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE key_sha256 = $1"),
                        &[&h],
                    )
                    .await
                    .map_err(db_error)?;
                let mut found = None;
                for r in &rows {
                    let (name, stored, quotas) = tenant_row(r);
                    if keys::hashes_equal(&h, &stored) {
                        found = Some(Tenant {
                            name: TenantId::trusted(name),
                            quotas,
                        });
                    }
                }
                Ok(found)
            }
        })?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        // Only if nothing moved while the query ran.
        cache.validate(stamp);
        if self.snapshot()? == stamp {
            cache.put_tenant(hash.to_string(), found.clone());
        }
        Ok(found)
    }

    fn usage(&self, t: &TenantId) -> Result<Usage, StoreError> {
        let t = t.to_string();
        self.with("reading usage", move |c| {
            let t = t.clone();
            async move { usage(&c, &t).await }
        })
    }

    fn put_object(
        &self,
        t: &TenantId,
        kind: ObjectKind,
        n: &str,
        d: &str,
        size: u64,
        meta: &str,
    ) -> Result<ObjectRecord, StoreError> {
        let (tenant, name, digest, meta) =
            (t.clone(), n.to_string(), d.to_string(), meta.to_string());
        let rec = self.with("committing an upload", move |mut c| {
            let (tenant, name, digest, meta) =
                (tenant.clone(), name.clone(), digest.clone(), meta.clone());
            async move {
                let tx = c.transaction().await.map_err(db_error)?;
                // Lock the tenant's row: its uploads commit one at a time.
                let row = tx
                    .query_opt(
                        &format!(
                            "SELECT {TENANT_COLUMNS} FROM tenants WHERE name = $1 FOR UPDATE"
                        ),
                        &[&tenant.as_str()],
                    )
                    .await
                    .map_err(db_error)?;
                let quotas = row
                    .map(|r| tenant_row(&r).2)
                    .ok_or_else(|| StoreError::UnknownTenant(tenant.to_string()))?;
                let old = tx
                    .query_opt(
                        "SELECT version, size FROM objects WHERE tenant = $1 AND kind = $2 AND name = $3",
                        &[&tenant.as_str(), &kind.as_str(), &name],
                    )
                    .await
                    .map_err(db_error)?
                    .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)));
                let used = usage(&tx, tenant.as_str()).await?;
                quotas
                    .admit(&used, kind, old.map(|(_, s)| s as u64), size)
                    .map_err(StoreError::Quota)?;
                let version = old.map_or(1, |(v, _)| v + 1);
                let created_at = now();
                tx.execute(
                    "INSERT INTO objects (tenant, kind, name, version, digest, size, meta, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (tenant, kind, name) DO UPDATE SET version = excluded.version, \
                     digest = excluded.digest, size = excluded.size, meta = excluded.meta, \
                     created_at = excluded.created_at",
                    &[
                        &tenant.as_str(),
                        &kind.as_str(),
                        &name,
                        &version,
                        &digest,
                        &(size as i64),
                        &meta,
                        &created_at,
                    ],
                )
                .await
                .map_err(db_error)?;
                changed(&tx, &format!("{tenant}\t{}\t{name}", kind.as_str())).await?;
                tx.commit().await.map_err(db_error)?;
                Ok(ObjectRecord {
                    tenant,
                    kind,
                    name,
                    version: version as u64,
                    digest,
                    size,
                    meta,
                    created_at,
                })
            }
        })?;
        self.local_write();
        Ok(rec)
    }

    fn object_at(
        &self,
        t: &TenantId,
        kind: ObjectKind,
        n: &str,
        snapshot: Option<Snapshot>,
    ) -> Result<Option<ObjectRecord>, StoreError> {
        let key = (t.clone(), kind, n.to_string());
        {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.validate(match snapshot {
                Some(s) => s,
                None => self.snapshot()?,
            });
            if let Some(hit) = cache.object(&key) {
                return Ok(hit.clone());
            }
        }
        let stamp = self.snapshot()?;
        let (tenant, name) = (t.to_string(), n.to_string());
        let rec = self.with("reading an object", move |c| {
            let (tenant, name) = (tenant.clone(), name.clone());
            async move {
                let row = c
                    .query_opt(
                        &format!(
                            "SELECT {OBJECT_COLUMNS} FROM objects \
                             WHERE tenant = $1 AND kind = $2 AND name = $3"
                        ),
                        &[&tenant, &kind.as_str(), &name],
                    )
                    .await
                    .map_err(db_error)?;
                Ok(row.as_ref().map(object_row))
            }
        })?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.validate(stamp);
        if self.snapshot()? == stamp {
            cache.put_object(key, rec.clone());
        }
        Ok(rec)
    }

    fn objects(&self, t: &TenantId, kind: ObjectKind) -> Result<Vec<ObjectRecord>, StoreError> {
        let tenant = t.to_string();
        self.with("listing objects", move |c| {
            let tenant = tenant.clone();
            async move {
                let rows = c
                    .query(
                        &format!(
                            "SELECT {OBJECT_COLUMNS} FROM objects \
                             WHERE tenant = $1 AND kind = $2 ORDER BY name"
                        ),
                        &[&tenant, &kind.as_str()],
                    )
                    .await
                    .map_err(db_error)?;
                Ok(rows.iter().map(object_row).collect())
            }
        })
    }

    fn all_objects(&self) -> Result<Vec<ObjectRecord>, StoreError> {
        self.with("listing objects", |c| async move {
            let rows = c
                .query(
                    &format!("SELECT {OBJECT_COLUMNS} FROM objects ORDER BY tenant, kind, name"),
                    &[],
                )
                .await
                .map_err(db_error)?;
            Ok(rows.iter().map(object_row).collect())
        })
    }

    fn delete_object(&self, t: &TenantId, kind: ObjectKind, n: &str) -> Result<bool, StoreError> {
        let (tenant, name) = (t.to_string(), n.to_string());
        let rows = self.with("deleting an object", move |mut c| {
            let (tenant, name) = (tenant.clone(), name.clone());
            async move {
                let tx = c.transaction().await.map_err(db_error)?;
                let rows = tx
                    .execute(
                        "DELETE FROM objects WHERE tenant = $1 AND kind = $2 AND name = $3",
                        &[&tenant, &kind.as_str(), &name],
                    )
                    .await
                    .map_err(db_error)?;
                if rows > 0 {
                    changed(&tx, &format!("{tenant}\t{}\t{name}", kind.as_str())).await?;
                }
                tx.commit().await.map_err(db_error)?;
                Ok(rows)
            }
        })?;
        self.local_write();
        Ok(rows > 0)
    }

    fn referenced_digests(&self) -> Result<HashSet<String>, StoreError> {
        self.with("listing digests", |c| async move {
            let rows = c
                .query("SELECT DISTINCT digest FROM objects", &[])
                .await
                .map_err(db_error)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn concurrency_share(&self, max_concurrent: u32) -> u32 {
        max_concurrent.div_ceil(self.watch.live_replicas().max(1))
    }

    fn graph_epoch(&self, tenant: &TenantId) -> u64 {
        self.watch.graph_epoch(tenant)
    }

    fn ready(&self) -> Result<(), String> {
        self.watch.ready()
    }
}

async fn usage(
    c: &impl deadpool_postgres::GenericClient,
    tenant: &str,
) -> Result<Usage, StoreError> {
    let r = c
        .query_one(
            "SELECT COALESCE(SUM((kind = 'component')::INT), 0)::BIGINT, \
             COALESCE(SUM((kind = 'graph')::INT), 0)::BIGINT, \
             COALESCE(SUM((kind = 'alias')::INT), 0)::BIGINT, \
             COALESCE(SUM(size), 0)::BIGINT FROM objects WHERE tenant = $1",
            &[&tenant],
        )
        .await
        .map_err(db_error)?;
    Ok(Usage {
        components: r.get::<_, i64>(0) as u32,
        graphs: r.get::<_, i64>(1) as u32,
        aliases: r.get::<_, i64>(2) as u32,
        bytes: r.get::<_, i64>(3) as u64,
    })
}
