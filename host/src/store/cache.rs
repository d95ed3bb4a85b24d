//! A read cache in front of the metadata for the two lookups every rerank
//! makes: the caller's tenant (by key hash) and the component record its
//! name resolves to.
//!
//! Before it, a warm rerank made three SQL queries, one of them a scan of
//! every tenant's key hash. The cache is exact, not time-based: before each
//! read it compares the backend's [`Snapshot`] — for SQLite `PRAGMA
//! data_version` (which changes when *another* connection commits, e.g.
//! `nboost tenants rotate-key` against a live server) and the connection's
//! `total_changes()` (our own writes); for PostgreSQL a generation moved by
//! every commit's notification — and drops everything when it moved. A
//! warm rerank is then served from memory. Entries are bounded (unknown
//! keys are cached too, so a flood of wrong keys cannot grow it without
//! bound).

use std::collections::HashMap;

use super::{ObjectKind, ObjectRecord, Snapshot, Tenant, TenantId};

/// Most entries of each map before it is cleared.
const MAX_ENTRIES: usize = 10_000;

/// Cached reads, valid for one database stamp.
#[derive(Default)]
pub(super) struct ReadCache {
    stamp: Option<Snapshot>,
    tenants: HashMap<String, Option<Tenant>>,
    objects: HashMap<(TenantId, ObjectKind, String), Option<ObjectRecord>>,
}

impl ReadCache {
    /// Drop everything if the metadata changed since the last read.
    pub(super) fn validate(&mut self, stamp: Snapshot) {
        if self.stamp != Some(stamp) {
            self.tenants.clear();
            self.objects.clear();
            self.stamp = Some(stamp);
        }
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
