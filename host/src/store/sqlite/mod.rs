//! The durable store (feature `uploads`): SQLite metadata beside the blob
//! files, for a server that takes uploads (see the parent module).

mod cache;
mod objects;
mod tenants;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

#[allow(unused_imports, reason = "the store's shared imports")]
use super::*;
pub use cache::Snapshot;
pub use objects::BlobPin;
use objects::*;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Io(format!("sqlite: {e}"))
    }
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
        let lock = lock_dir(dir)?;
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

    /// The database's stamp now: reads given it use the cache when nothing
    /// changed since (one `PRAGMA data_version`, no table touched).
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(cache::stamp(&self.conn())?)
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
