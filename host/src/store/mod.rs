//! The durable store behind `nboost serve`: tenants, their API keys and
//! quotas, and the components and graphs they upload.
//!
//! A data directory holds two things:
//!
//! * `blobs/`: content-addressed files named by their sha256 ([`blobs`]),
//!   written with temp file + fsync + rename;
//! * `meta.sqlite`: what exists, in SQLite (WAL, `synchronous=FULL`): the
//!   `tenants` table (key *hashes*, quotas) and the `objects` table (owner,
//!   kind, name, version, digest, size, metadata JSON).
//!
//! An upload writes its blob first and then commits its metadata row in one
//! transaction (which also checks the quota, so two concurrent uploads
//! cannot both squeeze under it). A crash — `kill -9` included — at any
//! point leaves the old row or the new one, never a row naming a missing or
//! partial blob: the blob was durable before the row that names it. What a
//! crash can leave is garbage (a temp file, a blob no row names), which
//! [`Store::recover`] removes on the next start. Blobs are only removed by
//! [`Store::collect_garbage`], under the same lock uploads take to pin the
//! blob they are about to commit, so a concurrent upload of the same bytes
//! never loses its file.
//!
//! Nothing here knows what a component is: metadata is an opaque JSON text
//! that the layer above writes and reads.

pub mod blobs;
mod cache;
pub mod keys;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

pub use blobs::Blobs;
pub use keys::{hash_key, ApiKey};

use crate::names::check_name;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `tenants add` of a name that exists.
    #[error("tenant `{0}` already exists")]
    TenantExists(String),
    /// No tenant of that name.
    #[error("no tenant `{0}`")]
    UnknownTenant(String),
    /// A name that is not a valid tenant, component or graph name.
    #[error("{0}")]
    InvalidName(String),
    /// The upload would take the tenant over one of its quotas.
    #[error("quota exceeded: {0}")]
    Quota(String),
    /// A blob is missing or does not hash to its name.
    #[error("stored blob {digest} is unusable: {reason}")]
    Corrupt {
        /// The digest the metadata names.
        digest: String,
        /// What is wrong.
        reason: String,
    },
    /// Another process serves this data directory.
    #[error("the data directory {0} is in use by another `nboost serve`")]
    Locked(PathBuf),
    /// File system or SQLite failure.
    #[error("storage: {0}")]
    Io(String),
}

impl StoreError {
    fn io(path: &Path, e: std::io::Error) -> Self {
        Self::Io(format!("{}: {e}", path.display()))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Io(format!("sqlite: {e}"))
    }
}

/// A validated tenant name (same rules as component names: lowercase
/// words separated by `-`, at most 64 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    /// Check and wrap a name.
    pub fn parse(name: &str) -> Result<Self, StoreError> {
        check_name(name).map_err(|e| StoreError::InvalidName(format!("tenant {e}")))?;
        Ok(Self(name.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What one tenant may use. Storage quotas are checked when an upload
/// commits; `max_concurrent` when a call is admitted; the limits narrow the
/// host's (never widen them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Quotas {
    /// Most components the tenant may own. Default 16.
    pub max_components: u32,
    /// Most graphs (model files) the tenant may own. Default 16.
    pub max_graphs: u32,
    /// Most bytes of components and graphs together. Default 1 GiB.
    pub max_bytes: u64,
    /// Most rerank calls in flight at once; more get 429. Default 16.
    pub max_concurrent: u32,
    /// Per-call deadline in ms, if narrower than the host's.
    pub deadline_ms: Option<u64>,
    /// Per-instance memory in MiB, if narrower than the host's.
    pub memory_mib: Option<u64>,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            max_components: 16,
            max_graphs: 16,
            max_bytes: 1 << 30,
            max_concurrent: 16,
            deadline_ms: None,
            memory_mib: None,
        }
    }
}

/// A tenant as stored (the key hash stays inside the store).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tenant {
    /// Its name.
    pub name: TenantId,
    /// Its quotas.
    pub quotas: Quotas,
}

/// The name the operator calls under (CLI, in-process use); not a valid
/// tenant name, so no tenant can hold it.
const OPERATOR: &str = "@operator";

impl Tenant {
    /// The operator: sees only the manifest's components, owns nothing, and
    /// has no quotas beyond the host's limits.
    pub fn operator() -> Self {
        Self {
            name: TenantId(OPERATOR.to_string()),
            quotas: Quotas {
                max_components: 0,
                max_graphs: 0,
                max_bytes: 0,
                max_concurrent: u32::MAX >> 4,
                deadline_ms: None,
                memory_mib: None,
            },
        }
    }

    /// Whether this is [`Tenant::operator`].
    pub fn is_operator(&self) -> bool {
        self.name.0 == OPERATOR
    }
}

/// Which namespace table an object lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// A `.wasm` reranker component.
    Component,
    /// A model file (ONNX graph or a text file such as a tokenizer).
    Graph,
}

impl ObjectKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Component => "component",
            Self::Graph => "graph",
        }
    }
}

/// One stored component or graph version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObjectRecord {
    /// Owner.
    pub tenant: TenantId,
    /// Component or graph.
    pub kind: ObjectKind,
    /// Its name in the owner's namespace.
    pub name: String,
    /// 1 for the first upload of the name, +1 for each replacement.
    pub version: u64,
    /// `sha256:<hex>`, naming the blob.
    pub digest: String,
    /// Bytes.
    pub size: u64,
    /// Opaque metadata (JSON text) of the layer above.
    pub meta: String,
    /// Unix seconds of the upload.
    pub created_at: i64,
}

/// What a tenant stores now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Components owned.
    pub components: u32,
    /// Graphs owned.
    pub graphs: u32,
    /// Bytes of both.
    pub bytes: u64,
}

/// The data directory: tenants, blobs, metadata.
pub struct Store {
    dir: PathBuf,
    blobs: Blobs,
    conn: Mutex<Connection>,
    /// Digests of blobs written by uploads that have not committed yet:
    /// garbage collection skips them.
    pinned: Mutex<HashMap<String, usize>>,
    /// Tenants by key hash and object records, exact (see [`cache`]).
    cache: Mutex<cache::ReadCache>,
    _lock: Option<std::fs::File>,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tenants (
    name TEXT PRIMARY KEY,
    key_sha256 TEXT NOT NULL,
    max_components INTEGER NOT NULL,
    max_graphs INTEGER NOT NULL,
    max_bytes INTEGER NOT NULL,
    max_concurrent INTEGER NOT NULL,
    deadline_ms INTEGER,
    memory_mib INTEGER,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS objects (
    tenant TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    meta TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, kind, name)
);
CREATE INDEX IF NOT EXISTS objects_digest ON objects(digest);
CREATE INDEX IF NOT EXISTS tenants_key ON tenants(key_sha256);
"#;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn tenant_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, Quotas)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        Quotas {
            max_components: row.get(2)?,
            max_graphs: row.get(3)?,
            max_bytes: row.get::<_, i64>(4)? as u64,
            max_concurrent: row.get(5)?,
            deadline_ms: row.get::<_, Option<i64>>(6)?.map(|v| v as u64),
            memory_mib: row.get::<_, Option<i64>>(7)?.map(|v| v as u64),
        },
    ))
}

const TENANT_COLUMNS: &str =
    "name, key_sha256, max_components, max_graphs, max_bytes, max_concurrent, deadline_ms, memory_mib";

fn object_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ObjectRecord> {
    let kind: String = row.get(1)?;
    Ok(ObjectRecord {
        tenant: TenantId(row.get(0)?),
        kind: if kind == "graph" {
            ObjectKind::Graph
        } else {
            ObjectKind::Component
        },
        name: row.get(2)?,
        version: row.get::<_, i64>(3)? as u64,
        digest: row.get(4)?,
        size: row.get::<_, i64>(5)? as u64,
        meta: row.get(6)?,
        created_at: row.get(7)?,
    })
}

const OBJECT_COLUMNS: &str = "tenant, kind, name, version, digest, size, meta, created_at";

impl Store {
    /// Open (creating if needed) the data directory `dir`. Several
    /// processes may open it (the `tenants` CLI next to a running server);
    /// SQLite serialises their writes.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let blobs = Blobs::open(dir.join("blobs"))?;
        let conn = Connection::open(dir.join("meta.sqlite"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            blobs,
            conn: Mutex::new(conn),
            pinned: Mutex::new(HashMap::new()),
            cache: Mutex::new(cache::ReadCache::default()),
            _lock: None,
        })
    }

    /// Open `dir` for serving: take the directory's exclusive lock (one
    /// server per data directory; released by the OS if the process dies),
    /// then [`recover`](Self::recover).
    pub fn open_for_serving(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let lock_path = dir.join("serve.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked(dir.to_path_buf()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(StoreError::io(&lock_path, e)),
        }
        let mut store = Self::open(dir)?;
        store._lock = Some(lock);
        store.recover()?;
        Ok(store)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The blob files.
    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a crash: remove temp files and blobs that no row names. Only
    /// safe when no upload is in progress (at start, under the lock).
    pub fn recover(&self) -> Result<(), StoreError> {
        let (_, temps) = self.blobs.list()?;
        for t in temps {
            tracing::info!(target: "nboost::store", path = %t.display(), "removing an interrupted upload");
            let _ = std::fs::remove_file(&t);
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
        let conn = self.conn();
        let inserted = conn.execute(
            "INSERT OR IGNORE INTO tenants (name, key_sha256, max_components, max_graphs, max_bytes, \
             max_concurrent, deadline_ms, memory_mib, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                name.as_str(),
                key.hash(),
                quotas.max_components,
                quotas.max_graphs,
                quotas.max_bytes as i64,
                quotas.max_concurrent,
                quotas.deadline_ms.map(|v| v as i64),
                quotas.memory_mib.map(|v| v as i64),
                now()
            ],
        )?;
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
        let hash = key_sha256.trim().to_ascii_lowercase();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::InvalidName(format!(
                "tenant `{name}`: key-sha256 must be 64 hex digits"
            )));
        }
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
        tx.execute(
            "INSERT INTO tenants (name, key_sha256, max_components, max_graphs, max_bytes, \
             max_concurrent, deadline_ms, memory_mib, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
             ON CONFLICT (name) DO UPDATE SET key_sha256 = excluded.key_sha256, \
             max_components = excluded.max_components, max_graphs = excluded.max_graphs, \
             max_bytes = excluded.max_bytes, max_concurrent = excluded.max_concurrent, \
             deadline_ms = excluded.deadline_ms, memory_mib = excluded.memory_mib",
            params![
                name.as_str(),
                hash,
                quotas.max_components,
                quotas.max_graphs,
                quotas.max_bytes as i64,
                quotas.max_concurrent,
                quotas.deadline_ms.map(|v| v as i64),
                quotas.memory_mib.map(|v| v as i64),
                now()
            ],
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
                name: TenantId(name),
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
                name: TenantId(name),
                quotas,
            }))
    }

    /// The tenant whose key is `key`, if any: looked up by the key's
    /// SHA-256 through an index (a key is 256 random bits, so the hash
    /// reveals nothing a timing could exploit), the match compared again in
    /// constant time, and cached until the database changes.
    pub fn authenticate(&self, key: &str) -> Result<Option<Tenant>, StoreError> {
        let hash = hash_key(key);
        let conn = self.conn();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.validate(&conn)?;
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
                    name: TenantId(name),
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
        let digest = crate::digest::sha256_digest(bytes);
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
        check_name(name).map_err(|e| StoreError::InvalidName(format!("{} {e}", kind.as_str())))?;
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
        if old.is_none() {
            let (count, max, what) = match kind {
                ObjectKind::Component => (used.components, quotas.max_components, "components"),
                ObjectKind::Graph => (used.graphs, quotas.max_graphs, "graphs"),
            };
            if count >= max {
                return Err(StoreError::Quota(format!(
                    "the tenant already has {count} {what}, its quota is {max}"
                )));
            }
        }
        let bytes_after = used.bytes - old.map_or(0, |(_, s)| s as u64) + size;
        if bytes_after > quotas.max_bytes {
            return Err(StoreError::Quota(format!(
                "this upload would bring the tenant's storage to {bytes_after} bytes, its quota is {}",
                quotas.max_bytes
            )));
        }
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
        let conn = self.conn();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.validate(&conn)?;
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

fn usage(conn: &Connection, tenant: &str) -> Result<Usage, StoreError> {
    Ok(conn.query_row(
        "SELECT COALESCE(SUM(kind = 'component'), 0), COALESCE(SUM(kind = 'graph'), 0), \
         COALESCE(SUM(size), 0) FROM objects WHERE tenant = ?1",
        [tenant],
        |r| {
            Ok(Usage {
                components: r.get::<_, i64>(0)? as u32,
                graphs: r.get::<_, i64>(1)? as u32,
                bytes: r.get::<_, i64>(2)? as u64,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(s: &Store, name: &str, quotas: Quotas) -> (TenantId, ApiKey) {
        let id = TenantId::parse(name).unwrap();
        let key = s.add_tenant(&id, &quotas).unwrap();
        (id, key)
    }

    #[test]
    fn tenants_keys_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (a, key) = tenant(&s, "acme", Quotas::default());
        assert!(matches!(
            s.add_tenant(&a, &Quotas::default()),
            Err(StoreError::TenantExists(_))
        ));
        assert_eq!(s.authenticate(key.reveal()).unwrap().unwrap().name, a);
        assert!(s.authenticate("nbk_wrong").unwrap().is_none());
        let new = s.rotate_key(&a).unwrap();
        assert!(s.authenticate(key.reveal()).unwrap().is_none());
        assert_eq!(s.authenticate(new.reveal()).unwrap().unwrap().name, a);
        assert!(TenantId::parse("Bad_Name").is_err());
        // Keys are never stored in clear.
        drop(s);
        let db = std::fs::read(dir.path().join("meta.sqlite")).unwrap();
        let text = String::from_utf8_lossy(&db);
        assert!(!text.contains(new.reveal()));
    }

    #[test]
    fn tenants_from_configuration_are_upserted() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let id = TenantId::parse("conf").unwrap();
        let key = ApiKey::generate().unwrap();
        assert!(s
            .upsert_tenant_hashed(&id, &key.hash(), &Quotas::default())
            .unwrap());
        assert_eq!(s.authenticate(key.reveal()).unwrap().unwrap().name, id);
        let q = Quotas {
            max_concurrent: 3,
            ..Quotas::default()
        };
        let other = ApiKey::generate().unwrap();
        assert!(!s
            .upsert_tenant_hashed(&id, &other.hash().to_uppercase(), &q)
            .unwrap());
        assert!(s.authenticate(key.reveal()).unwrap().is_none());
        assert_eq!(s.authenticate(other.reveal()).unwrap().unwrap().quotas, q);
        assert!(s.upsert_tenant_hashed(&id, "abc", &q).is_err());
    }

    #[test]
    fn versions_quotas_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let quotas = Quotas {
            max_components: 1,
            max_bytes: 10,
            ..Quotas::default()
        };
        let (a, _) = tenant(&s, "a", quotas);
        let (b, _) = tenant(&s, "b", Quotas::default());
        let pin = s.write_blob(b"12345").unwrap();
        let v1 = s
            .put_object(&a, ObjectKind::Component, "x", &pin, 5, "{}")
            .unwrap();
        assert_eq!(v1.version, 1);
        drop(pin);
        let pin = s.write_blob(b"123456").unwrap();
        let v2 = s
            .put_object(&a, ObjectKind::Component, "x", &pin, 6, "{}")
            .unwrap();
        assert_eq!(v2.version, 2);
        // Count quota, then byte quota.
        let e = s
            .put_object(&a, ObjectKind::Component, "y", &pin, 1, "{}")
            .unwrap_err();
        assert!(matches!(e, StoreError::Quota(_)), "{e}");
        let e = s
            .put_object(&a, ObjectKind::Graph, "g", &pin, 6, "{}")
            .unwrap_err();
        assert!(matches!(e, StoreError::Quota(_)), "{e}");
        drop(pin);
        // Namespaces are separate.
        assert!(s.object(&b, ObjectKind::Component, "x").unwrap().is_none());
        assert!(!s.delete_object(&b, ObjectKind::Component, "x").unwrap());
        // v1's blob is garbage now, v2's is not.
        assert_eq!(s.collect_garbage().unwrap(), 1);
        assert_eq!(s.blobs().read(&v2.digest).unwrap(), b"123456");
        assert!(s.delete_object(&a, ObjectKind::Component, "x").unwrap());
        // A pinned blob survives collection.
        let pin = s.write_blob(b"pinned").unwrap();
        assert_eq!(s.collect_garbage().unwrap(), 1);
        assert!(s.blobs().read(pin.digest()).is_ok());
        drop(pin);
        assert_eq!(s.collect_garbage().unwrap(), 1);
    }

    #[test]
    fn corrupt_blobs_are_detected_and_temp_files_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_for_serving(dir.path()).unwrap();
        assert!(matches!(
            Store::open_for_serving(dir.path()),
            Err(StoreError::Locked(_))
        ));
        let (a, _) = tenant(&s, "a", Quotas::default());
        let pin = s.write_blob(b"content").unwrap();
        let rec = s
            .put_object(&a, ObjectKind::Graph, "g", &pin, 7, "{}")
            .unwrap();
        drop(pin);
        std::fs::write(s.blobs().path(&rec.digest).unwrap(), b"tampered").unwrap();
        assert!(matches!(
            s.blobs().read(&rec.digest),
            Err(StoreError::Corrupt { .. })
        ));
        let temp = s.blobs().dir().join(format!("{}1-2", blobs::TEMP_PREFIX));
        std::fs::write(&temp, b"half").unwrap();
        drop(s);
        let s = Store::open_for_serving(dir.path()).unwrap();
        assert!(!temp.exists());
        assert_eq!(s.all_objects().unwrap().len(), 1);
    }
}
