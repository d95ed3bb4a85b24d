//! A read cache in front of SQLite for the two lookups every rerank makes:
//! the caller's tenant (by key hash) and the component record its name
//! resolves to.
//!
//! Before it, a warm rerank made three SQL queries, one of them a scan of
//! every tenant's key hash. The cache is exact, not time-based: before each
//! read it compares a stamp of the database — `PRAGMA data_version` (which
//! changes when *another* connection commits, e.g. `nboost tenants
//! rotate-key` against a live server) and this connection's
//! `total_changes()` (our own writes) — and drops everything when the stamp
//! moved. A warm rerank is then served from memory after two `data_version`
//! reads, which touch no table or index. Entries are bounded (unknown keys
//! are cached too, so a flood of wrong keys cannot grow it without bound).

use std::collections::HashMap;

use rusqlite::Connection;

use super::{ObjectKind, ObjectRecord, Tenant, TenantId};

/// Most entries of each map before it is cleared.
const MAX_ENTRIES: usize = 10_000;

/// A stamp of the database: changes whenever anyone commits. Taken once
/// per request ([`super::Store::snapshot`]) and passed to its reads, so a
/// warm rerank costs one `data_version` read in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot(i64, u64);

/// The database's stamp now.
pub(super) fn stamp(conn: &Connection) -> rusqlite::Result<Snapshot> {
    let version: i64 = conn
        .prepare_cached("PRAGMA data_version")?
        .query_row([], |r| r.get(0))?;
    Ok(Snapshot(version, conn.total_changes()))
}

/// Cached reads, valid for one database stamp.
#[derive(Default)]
pub(super) struct ReadCache {
    stamp: Option<Snapshot>,
    tenants: HashMap<String, Option<Tenant>>,
    objects: HashMap<(TenantId, ObjectKind, String), Option<ObjectRecord>>,
}

impl ReadCache {
    /// Drop everything if the database changed since the last read (as of
    /// `snapshot`, or now).
    pub(super) fn validate(
        &mut self,
        conn: &Connection,
        snapshot: Option<Snapshot>,
    ) -> rusqlite::Result<()> {
        let stamp = match snapshot {
            Some(s) => s,
            None => stamp(conn)?,
        };
        if self.stamp != Some(stamp) {
            self.tenants.clear();
            self.objects.clear();
            self.stamp = Some(stamp);
        }
        Ok(())
    }

    /// The tenant whose key hashes to `hash`, if known.
    pub(super) fn tenant(&self, hash: &str) -> Option<&Option<Tenant>> {
        self.tenants.get(hash)
    }

    pub(super) fn put_tenant(&mut self, hash: String, tenant: Option<Tenant>) {
        if self.tenants.len() >= MAX_ENTRIES {
            self.tenants.clear();
        }
        self.tenants.insert(hash, tenant);
    }

    /// The record of `tenant`'s `kind` `name`, if known.
    pub(super) fn object(
        &self,
        key: &(TenantId, ObjectKind, String),
    ) -> Option<&Option<ObjectRecord>> {
        self.objects.get(key)
    }

    pub(super) fn put_object(
        &mut self,
        key: (TenantId, ObjectKind, String),
        record: Option<ObjectRecord>,
    ) {
        if self.objects.len() >= MAX_ENTRIES {
            self.objects.clear();
        }
        self.objects.insert(key, record);
    }
}
