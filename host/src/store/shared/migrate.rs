//! Versioned schema migrations of the shared database.
//!
//! Each migration is a numbered SQL text, applied once, in order, in one
//! transaction that first takes a transaction-scoped advisory lock: two
//! replicas starting at once queue on the lock, and the second finds the
//! work done. A database migrated by a newer nboost (a version this binary
//! does not know) is refused rather than served with the wrong schema.
//! `nboost migrate` runs the same code without serving.

#[allow(unused_imports, reason = "the store's shared imports")]
use super::*;

/// The advisory lock key of migrations (`'nboost'` as bytes).
const LOCK: i64 = 0x6e62_6f6f_7374;

/// Every migration, in order: (version, what it does, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "tenants, objects, generation, replicas",
    r#"
CREATE TABLE tenants (
    name TEXT PRIMARY KEY,
    key_sha256 TEXT NOT NULL,
    max_components INTEGER NOT NULL,
    max_graphs INTEGER NOT NULL,
    max_bytes BIGINT NOT NULL,
    max_concurrent INTEGER NOT NULL,
    deadline_ms BIGINT,
    memory_mib BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX tenants_key ON tenants(key_sha256);
CREATE TABLE objects (
    tenant TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('component', 'graph', 'alias')),
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    digest TEXT NOT NULL,
    size BIGINT NOT NULL,
    meta TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, kind, name)
);
CREATE INDEX objects_digest ON objects(digest);
CREATE TABLE nboost_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO nboost_generation VALUES (1, 0);
CREATE TABLE nboost_replicas (
    id TEXT PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL
);
"#,
)];

/// Apply what is pending; returns the versions applied now.
pub async fn run(client: &mut deadpool_postgres::Object) -> Result<Vec<i32>, StoreError> {
    let e = |e: tokio_postgres::Error| match e.as_db_error() {
        Some(d) => StoreError::Io(format!("migration: {}", d.message())),
        None => StoreError::Unavailable(format!("PostgreSQL: {e}")),
    };
    let tx = client.transaction().await.map_err(e)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await
        .map_err(e)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS nboost_migrations (
             version INTEGER PRIMARY KEY,
             description TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(e)?;
    let current: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM nboost_migrations",
            &[],
        )
        .await
        .map_err(e)?
        .get(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > known {
        return Err(StoreError::Io(format!(
            "the database schema is at version {current}, this nboost knows versions up to \
             {known}: run a newer nboost"
        )));
    }
    let mut applied = Vec::new();
    for (version, description, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.batch_execute(sql).await.map_err(e)?;
        tx.execute(
            "INSERT INTO nboost_migrations (version, description) VALUES ($1, $2)",
            &[version, description],
        )
        .await
        .map_err(e)?;
        applied.push(*version);
    }
    tx.commit().await.map_err(e)?;
    if !applied.is_empty() {
        tracing::info!(target: "nboost::store", ?applied, "database migrated");
    }
    Ok(applied)
}

/// The schema version of the database at `url` after migrating it
/// (`nboost migrate`): (versions applied now, version now).
pub fn migrate_url(url: &str) -> Result<(Vec<i32>, i32), StoreError> {
    let pg: tokio_postgres::Config = url.parse().map_err(|e| {
        StoreError::InvalidName(format!("--database-url is not a PostgreSQL URL: {e}"))
    })?;
    let bridge = Bridge::new()?;
    bridge.block("migrating", async move {
        let mut pg = pg;
        pg.connect_timeout(OP_TIMEOUT);
        let manager = deadpool_postgres::Manager::new(pg, tokio_postgres::NoTls);
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(1)
            .build()
            .map_err(|e| StoreError::Io(e.to_string()))?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(format!("PostgreSQL: {e}")))?;
        let applied = run(&mut client).await?;
        Ok((applied, MIGRATIONS.last().map_or(0, |m| m.0)))
    })
}
