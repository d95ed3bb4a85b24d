//! Writes of the object pipeline (cargo feature `uploads`): upload,
//! replace, delete, and the garbage collection they trigger. Reads (list,
//! get) are in [`objects`](super::objects); a lean edge build has no
//! writes at all, so this module is left out of it.

use super::objects::Kind;
#[allow(unused_imports, reason = "the service's shared imports")]
use super::*;

impl Service {
    /// Upload (or replace) `tenant`'s object `name` of kind `K`: checked,
    /// prepared (for a component: compiled, linked and tried), then
    /// committed and switched in. One upload slot is held throughout.
    pub async fn put<K: Kind>(
        self: &Arc<Self>,
        tenant: &Tenant,
        name: &str,
        bytes: bytes::Bytes,
        config: K::Config,
    ) -> Result<K::Info, ServiceError> {
        let name = Name::<K::Tag>::parse(name).map_err(ServiceError::BadRequest)?;
        if K::is_public(self, &name) {
            return Err(ServiceError::Forbidden(format!(
                "`{name}` is a public {}; choose another name",
                K::Tag::NOUN
            )));
        }
        let _slot = self
            .uploads
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ServiceError::Internal("the upload pool is closed".into()))?;
        let this = self.clone();
        let tenant = tenant.clone();
        tokio::task::spawn_blocking(move || this.put_blocking::<K>(&tenant, &name, &bytes, config))
            .await
            .map_err(|e| ServiceError::Internal(format!("the upload task failed: {e}")))?
    }

    fn put_blocking<K: Kind>(
        &self,
        tenant: &Tenant,
        name: &Name<K::Tag>,
        bytes: &[u8],
        config: K::Config,
    ) -> Result<K::Info, ServiceError> {
        K::check(bytes, &config)?;
        self.precheck_quota(tenant, K::STORE, name, bytes.len() as u64)?;
        let (prepared, meta) = K::prepare(self, tenant, name, bytes, config)?;
        let store = self.store()?;
        let pin = store.write_blob(bytes)?;
        let rec = store.put_object(
            &tenant.name,
            K::STORE,
            name,
            &pin,
            bytes.len() as u64,
            &meta,
        )?;
        drop(pin);
        K::committed(self, tenant, name, &rec, prepared);
        self.collect_garbage();
        tracing::info!(
            target: "nboost::service",
            tenant = %tenant.name,
            kind = K::Tag::NOUN,
            name = name.as_str(),
            version = rec.version,
            digest = %rec.digest,
            "object uploaded"
        );
        Ok(K::own_info(&rec))
    }

    /// The one quota check of every upload: count (for a new name) and
    /// bytes (the old version's size is given back).
    fn precheck_quota(
        &self,
        tenant: &Tenant,
        kind: ObjectKind,
        name: &str,
        size: u64,
    ) -> Result<(), ServiceError> {
        let store = self.store()?;
        let used = store.usage(&tenant.name)?;
        let old = store.object(&tenant.name, kind, name)?;
        tenant
            .quotas
            .admit(&used, kind, old.map(|r| r.size), size)
            .map_err(ServiceError::QuotaExceeded)
    }

    /// Delete `tenant`'s own object `name`. Public ones cannot be deleted
    /// (403); anything else the tenant does not own is 404.
    pub fn delete<K: Kind>(&self, tenant: &Tenant, name: &str) -> Result<(), ServiceError> {
        if self.store()?.delete_object(&tenant.name, K::STORE, name)? {
            K::deleted(self, tenant, &Name::trusted(name.to_string()));
            self.collect_garbage();
            return Ok(());
        }
        if K::is_public(self, name) {
            return Err(ServiceError::Forbidden(format!(
                "`{name}` is a public {}; only the operator can remove it",
                K::Tag::NOUN
            )));
        }
        Err(ServiceError::NotFound {
            kind: K::Tag::NOUN,
            name: name.to_string(),
        })
    }

    fn collect_garbage(&self) {
        let Ok(store) = self.store() else { return };
        if let Err(e) = store.collect_garbage() {
            tracing::warn!(target: "nboost::service", "blob garbage collection failed: {e}");
        }
    }
}
