//! The store conformance suite: what every backend pair must do, written
//! once. The SQLite store runs it in its unit tests; the PostgreSQL + S3
//! store runs it from `tests/replicas.rs` against real servers. Each
//! function expects an empty store (a fresh database and bucket prefix)
//! whose blob store collects garbage at once (no minimum age).

use super::*;

fn tenant(s: &Store, name: &str, quotas: Quotas) -> (TenantId, ApiKey) {
    let id = TenantId::parse(name).unwrap();
    let key = s.add_tenant(&id, &quotas).unwrap();
    (id, key)
}

/// Run every check on stores made by `fresh` (one per check).
pub fn run_all(fresh: &mut dyn FnMut() -> Store) {
    tenants_keys_and_rotation(&fresh());
    tenants_from_configuration_are_upserted(&fresh());
    versions_quotas_and_garbage(&fresh());
    concurrent_uploads_hold_the_quota(&fresh());
}

/// Keys authenticate, rotate, and a name exists once.
pub fn tenants_keys_and_rotation(s: &Store) {
    let (a, key) = tenant(s, "acme", Quotas::default());
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
}

/// Operator configuration creates then updates a tenant.
pub fn tenants_from_configuration_are_upserted(s: &Store) {
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

/// Versions count up, quotas hold, namespaces are separate, garbage goes.
pub fn versions_quotas_and_garbage(s: &Store) {
    let quotas = Quotas {
        max_components: 1,
        max_bytes: 10,
        ..Quotas::default()
    };
    let (a, _) = tenant(s, "a", quotas);
    let (b, _) = tenant(s, "b", Quotas::default());
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
    assert_eq!(s.read_blob(&v2.digest).unwrap(), b"123456");
    assert!(s.delete_object(&a, ObjectKind::Component, "x").unwrap());
    // A pinned blob survives collection.
    let pin = s.write_blob(b"pinned").unwrap();
    assert_eq!(s.collect_garbage().unwrap(), 1);
    assert!(s.read_blob(pin.digest()).is_ok());
    drop(pin);
    assert_eq!(s.collect_garbage().unwrap(), 1);
}

/// Two uploads racing for a tenant's last component slot: one wins.
pub fn concurrent_uploads_hold_the_quota(s: &Store) {
    let quotas = Quotas {
        max_components: 1,
        ..Quotas::default()
    };
    let (a, _) = tenant(s, "race", quotas);
    let pin = s.write_blob(b"race").unwrap();
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (a, pin) = (&a, &pin);
                scope.spawn(move || {
                    s.put_object(a, ObjectKind::Component, &format!("c{i}"), pin, 4, "{}")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, StoreError::Quota(_))));
    assert_eq!(s.usage(&a).unwrap().components, 1);
}
