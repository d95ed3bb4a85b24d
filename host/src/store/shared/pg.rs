//! The PostgreSQL metadata backend: the same tables and rules as SQLite's
//! (`super::super::sqlite`), through a connection pool.
//!
//! Every write runs in one transaction that also bumps the generation row
//! and notifies the other replicas ([`super::watch`]); an upload's quota
//! check locks its tenant's row (`FOR UPDATE`), so two uploads of one
//! tenant on two replicas cannot both squeeze under the quota.

use std::future::Future;
use std::sync::{Arc, Mutex};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::super::cache::ReadCache;
use super::watch::Watch;
#[allow(unused_imports, reason = "the store's shared imports")]
use super::*;

/// Metadata in PostgreSQL.
pub struct PgMeta {
    bridge: Arc<Bridge>,
    pool: Pool,
    pub(super) watch: Arc<Watch>,
    pub(super) cache: Mutex<ReadCache>,
}

pub(super) fn unavailable(e: impl std::error::Error) -> StoreError {
    // The pool's and the driver's messages hide the cause in `source()`.
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    StoreError::Unavailable(format!("PostgreSQL: {text}"))
}

pub(super) fn db_error(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        // A broken statement or constraint is ours, not the network's.
        Some(d) => StoreError::Io(format!("PostgreSQL: {}: {}", d.code().code(), d.message())),
        None => unavailable(e),
    }
}

pub(super) const TENANT_COLUMNS: &str =
    "name, key_sha256, max_components, max_graphs, max_bytes, max_concurrent, deadline_ms, memory_mib";
pub(super) const OBJECT_COLUMNS: &str =
    "tenant, kind, name, version, digest, size, meta, created_at";

pub(super) fn tenant_row(r: &Row) -> (String, String, Quotas) {
    (
        r.get(0),
        r.get(1),
        Quotas {
            max_components: r.get::<_, i32>(2) as u32,
            max_graphs: r.get::<_, i32>(3) as u32,
            max_bytes: r.get::<_, i64>(4) as u64,
            max_concurrent: r.get::<_, i32>(5) as u32,
            deadline_ms: r.get::<_, Option<i64>>(6).map(|v| v as u64),
            memory_mib: r.get::<_, Option<i64>>(7).map(|v| v as u64),
        },
    )
}

pub(super) fn object_row(r: &Row) -> ObjectRecord {
    let kind: String = r.get(1);
    ObjectRecord {
        tenant: TenantId::trusted(r.get(0)),
        kind: match kind.as_str() {
            "graph" => ObjectKind::Graph,
            "alias" => ObjectKind::Alias,
            _ => ObjectKind::Component,
        },
        name: r.get(2),
        version: r.get::<_, i64>(3) as u64,
        digest: r.get(4),
        size: r.get::<_, i64>(5) as u64,
        meta: r.get(6),
        created_at: r.get(7),
    }
}

pub(super) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Bump the generation and notify, inside `tx`: `what` is `tenant` or
/// `tenant\tkind\tname`.
pub(super) async fn changed(
    tx: &deadpool_postgres::Transaction<'_>,
    what: &str,
) -> Result<(), StoreError> {
    let row = tx
        .query_one(
            "UPDATE nboost_generation SET value = value + 1 WHERE id = 1 RETURNING value",
            &[],
        )
        .await
        .map_err(db_error)?;
    let generation: i64 = row.get(0);
    tx.execute(
        "SELECT pg_notify('nboost_changes', $1)",
        &[&format!("{generation}\t{what}")],
    )
    .await
    .map_err(db_error)?;
    Ok(())
}

/// A tenant's quotas as the columns' SQL types.
pub(super) struct QuotaParams {
    pub(super) components: i32,
    pub(super) graphs: i32,
    pub(super) bytes: i64,
    pub(super) concurrent: i32,
    pub(super) deadline_ms: Option<i64>,
    pub(super) memory_mib: Option<i64>,
}

impl QuotaParams {
    pub(super) fn of(q: &Quotas) -> Self {
        let int = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        Self {
            components: int(q.max_components),
            graphs: int(q.max_graphs),
            bytes: i64::try_from(q.max_bytes).unwrap_or(i64::MAX),
            concurrent: int(q.max_concurrent),
            deadline_ms: q.deadline_ms.map(|v| v as i64),
            memory_mib: q.memory_mib.map(|v| v as i64),
        }
    }

    /// The six quota columns' parameters, in the order `max_components,
    /// max_graphs, max_bytes, max_concurrent, deadline_ms, memory_mib`.
    pub(super) fn columns(&self) -> [&(dyn ToSql + Sync); 6] {
        [
            &self.components,
            &self.graphs,
            &self.bytes,
            &self.concurrent,
            &self.deadline_ms,
            &self.memory_mib,
        ]
    }
}

impl PgMeta {
    /// Connect (failing clearly if the database cannot be reached), run
    /// pending migrations, start watching for changes.
    pub fn connect(bridge: Arc<Bridge>, config: &SharedConfig) -> Result<Self, StoreError> {
        let pg: tokio_postgres::Config = config.database_url.parse().map_err(|e| {
            StoreError::InvalidName(format!("--database-url is not a PostgreSQL URL: {e}"))
        })?;
        let mut pg = pg;
        pg.connect_timeout(OP_TIMEOUT).application_name("nboost");
        let manager = Manager::from_config(
            pg.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(OP_TIMEOUT))
            .create_timeout(Some(OP_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Io(format!("PostgreSQL pool: {e}")))?;
        {
            let pool = pool.clone();
            let hosts: Vec<String> = pg
                .get_hosts()
                .iter()
                .zip(pg.get_ports().iter().chain(std::iter::repeat(&5432)))
                .map(|(h, p)| match h {
                    tokio_postgres::config::Host::Tcp(h) => format!("{h}:{p}"),
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .collect();
            let db = pg.get_dbname().unwrap_or("").to_string();
            bridge
                .block("connecting to PostgreSQL", async move {
                    let mut client = pool.get().await.map_err(unavailable)?;
                    migrate::run(&mut client).await
                })
                .map_err(|e| match e {
                    StoreError::Unavailable(m) => StoreError::Unavailable(format!(
                        "cannot reach the database `{db}` at {}: {m}",
                        hosts.join(", ")
                    )),
                    other => other,
                })?;
        }
        let watch = Watch::start(&bridge, pg, pool.clone(), config.heartbeat)?;
        Ok(Self {
            bridge,
            pool,
            watch,
            cache: Mutex::new(ReadCache::default()),
        })
    }

    /// Run `f` with a pooled client (moved in, back to the pool when the
    /// future ends). A failure that is not the database's answer (the
    /// server restarted, the connection broke) is tried once more on a new
    /// connection: the pool discards closed ones.
    pub(super) fn with<T, F, Fut>(&self, what: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(deadpool_postgres::Object) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let pool = self.pool.clone();
        let r = self.bridge.block(what, async move {
            let mut tries = 0;
            loop {
                tries += 1;
                let client = pool.get().await.map_err(unavailable)?;
                match f(client).await {
                    Err(StoreError::Unavailable(_)) if tries < 2 => continue,
                    r => return r,
                }
            }
        });
        if r.is_ok() {
            self.watch.saw_database();
        }
        r
    }

    /// The one tenant INSERT (`conflict`: what `ON CONFLICT (name)` does):
    /// `Some(inserted)` when a row was written, `None` when `DO NOTHING`
    /// kept an existing one.
    pub(super) fn write_tenant(
        &self,
        what: &'static str,
        n: &TenantId,
        h: &str,
        q: &Quotas,
        conflict: &'static str,
    ) -> Result<Option<bool>, StoreError> {
        let (n, h, q) = (n.to_string(), h.to_string(), *q);
        let row = self.with(what, move |mut c| {
            let (n, h) = (n.clone(), h.clone());
            async move {
                let tx = c.transaction().await.map_err(db_error)?;
                let p = QuotaParams::of(&q);
                let created = now();
                let row = tx
                    .query_opt(
                        &format!(
                            "INSERT INTO tenants (name, key_sha256, max_components, max_graphs, \
                             max_bytes, max_concurrent, deadline_ms, memory_mib, created_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                             ON CONFLICT (name) {conflict} RETURNING (xmax = 0)"
                        ),
                        &[
                            &[&n as &(dyn ToSql + Sync), &h][..],
                            &p.columns(),
                            &[&created],
                        ]
                        .concat(),
                    )
                    .await
                    .map_err(db_error)?;
                if row.is_some() {
                    changed(&tx, &n).await?;
                }
                tx.commit().await.map_err(db_error)?;
                Ok(row.map(|r| r.get::<_, bool>(0)))
            }
        })?;
        self.local_write();
        Ok(row)
    }

    pub(super) fn local_write(&self) {
        self.watch.local_write();
    }
}
