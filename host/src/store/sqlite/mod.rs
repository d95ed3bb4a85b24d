//! The single-node metadata backend (feature `uploads`): SQLite beside the
//! blob files of the data directory (see the parent module).

mod objects;
mod tenants;

use std::collections::HashSet;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::cache::ReadCache;
#[allow(unused_imports, reason = "the store's shared imports")]
use super::*;
use objects::*;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Io(format!("sqlite: {e}"))
    }
}

/// SQLite metadata: the `tenants` and `objects` tables.
pub struct SqliteMeta {
    conn: Mutex<Connection>,
    /// Tenants by key hash and object records, exact (see [`super::cache`]).
    cache: Mutex<ReadCache>,
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
        tenant: TenantId::trusted(row.get(0)?),
        kind: match kind.as_str() {
            "graph" => ObjectKind::Graph,
            "alias" => ObjectKind::Alias,
            _ => ObjectKind::Component,
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

impl SqliteMeta {
    /// Open (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Mutex::new(conn),
            cache: Mutex::new(ReadCache::default()),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The database's stamp: `PRAGMA data_version` (moved by other
/// connections' commits) and this connection's `total_changes()`.
fn stamp(conn: &Connection) -> rusqlite::Result<Snapshot> {
    let version: i64 = conn
        .prepare_cached("PRAGMA data_version")?
        .query_row([], |r| r.get(0))?;
    Ok(Snapshot(version, conn.total_changes()))
}

impl MetaStore for SqliteMeta {
    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(stamp(&self.conn())?)
    }
    fn insert_tenant(&self, n: &TenantId, h: &str, q: &Quotas) -> Result<bool, StoreError> {
        self.insert_tenant_(n, h, q)
    }
    fn upsert_tenant(&self, n: &TenantId, h: &str, q: &Quotas) -> Result<bool, StoreError> {
        self.upsert_tenant_(n, h, q)
    }
    fn set_key(&self, n: &TenantId, h: &str) -> Result<(), StoreError> {
        self.set_key_(n, h)
    }
    fn set_quotas(&self, n: &TenantId, q: &Quotas) -> Result<(), StoreError> {
        self.set_quotas_(n, q)
    }
    fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.tenants_()
    }
    fn tenant(&self, n: &TenantId) -> Result<Option<Tenant>, StoreError> {
        self.tenant_(n)
    }
    fn authenticate_hash(
        &self,
        h: &str,
        s: Option<Snapshot>,
    ) -> Result<Option<Tenant>, StoreError> {
        self.authenticate_(h, s)
    }
    fn usage(&self, t: &TenantId) -> Result<Usage, StoreError> {
        usage(&self.conn(), t.as_str())
    }
    fn put_object(
        &self,
        t: &TenantId,
        k: ObjectKind,
        n: &str,
        d: &str,
        size: u64,
        meta: &str,
    ) -> Result<ObjectRecord, StoreError> {
        self.put_object_(t, k, n, d, size, meta)
    }
    fn object_at(
        &self,
        t: &TenantId,
        k: ObjectKind,
        n: &str,
        s: Option<Snapshot>,
    ) -> Result<Option<ObjectRecord>, StoreError> {
        self.object_at_(t, k, n, s)
    }
    fn objects(&self, t: &TenantId, k: ObjectKind) -> Result<Vec<ObjectRecord>, StoreError> {
        self.objects_(t, k)
    }
    fn all_objects(&self) -> Result<Vec<ObjectRecord>, StoreError> {
        self.all_objects_()
    }
    fn delete_object(&self, t: &TenantId, k: ObjectKind, n: &str) -> Result<bool, StoreError> {
        self.delete_object_(t, k, n)
    }
    fn referenced_digests(&self) -> Result<HashSet<String>, StoreError> {
        self.referenced_()
    }
}

#[cfg(test)]
mod tests {
    use super::super::suite;
    use super::*;

    fn tenant(s: &Store, name: &str, quotas: Quotas) -> (TenantId, ApiKey) {
        let id = TenantId::parse(name).unwrap();
        let key = s.add_tenant(&id, &quotas).unwrap();
        (id, key)
    }

    #[test]
    fn conformance_suite() {
        let dirs: std::cell::RefCell<Vec<tempfile::TempDir>> = Default::default();
        suite::run_all(&mut || {
            let dir = tempfile::tempdir().unwrap();
            let s = Store::open(dir.path()).unwrap();
            dirs.borrow_mut().push(dir);
            s
        });
    }

    #[test]
    fn keys_are_never_stored_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (a, _) = tenant(&s, "acme", Quotas::default());
        let new = s.rotate_key(&a).unwrap();
        drop(s);
        let db = std::fs::read(dir.path().join("meta.sqlite")).unwrap();
        let text = String::from_utf8_lossy(&db);
        assert!(!text.contains(new.reveal()));
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
        std::fs::write(
            Blobs::open(dir.path().join("blobs"))
                .unwrap()
                .path(&rec.digest)
                .unwrap(),
            b"tampered",
        )
        .unwrap();
        assert!(matches!(
            s.read_blob(&rec.digest),
            Err(StoreError::Corrupt { .. })
        ));
        let temp = dir
            .path()
            .join("blobs")
            .join(format!("{}1-2", blobs::TEMP_PREFIX));
        std::fs::write(&temp, b"half").unwrap();
        drop(s);
        let s = Store::open_for_serving(dir.path()).unwrap();
        assert!(!temp.exists());
        assert_eq!(s.all_objects().unwrap().len(), 1);
    }
}
