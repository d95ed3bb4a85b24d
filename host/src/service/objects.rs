//! One object pipeline for every kind of upload.
//!
//! Tenants upload *components* (`.wasm` files) and *graphs* (model and
//! text files). What is specific to a kind — how an upload is checked and
//! prepared, what is stored with it, what changes once it is committed or
//! deleted, how it is listed, which names the manifest makes public — is
//! its [`Kind`]; everything else is written once here: name checks, the
//! public read-only namespace, the upload slots, the quota check, the blob
//! and record commit, listing, reading and deleting. The HTTP layer mounts
//! one set of handlers per kind.

use serde::de::DeserializeOwned;

#[allow(unused_imports, reason = "the service's shared imports")]
use super::*;

/// What is specific to one kind of upload (see the module docs).
pub trait Kind: Send + Sync + 'static {
    /// The upload's configuration (the `config` part).
    type Config: DeserializeOwned + Default + Send + 'static;
    /// A listing entry.
    type Info: Serialize + Send + 'static;
    /// What [`Kind::prepare`] hands to [`Kind::committed`].
    type Prepared: Send;
    /// What its names name.
    type Tag: Named;
    /// The store's table.
    const STORE: ObjectKind;
    /// Its plural, the key of listings (`components`).
    const PLURAL: &'static str;

    /// Whether the manifest declares `name` (public, read-only).
    fn is_public(service: &Service, name: &str) -> bool;
    /// The manifest's names of this kind.
    fn public_names(service: &Service) -> Vec<String>;
    /// A public object's listing entry.
    fn public_info(service: &Service, name: &str) -> Option<Self::Info>;
    /// A tenant's object's listing entry.
    fn own_info(rec: &ObjectRecord) -> Self::Info;
    /// The version a listing entry shows (1 for a first upload).
    fn version(info: &Self::Info) -> u64;
    /// Cheap checks before the quota is looked at.
    fn check(bytes: &[u8], config: &Self::Config) -> Result<(), ServiceError>;
    /// Validate and make ready; returns what commit needs and the metadata
    /// JSON stored with the record.
    fn prepare(
        service: &Service,
        tenant: &Tenant,
        name: &Name<Self::Tag>,
        bytes: &[u8],
        config: Self::Config,
    ) -> Result<(Self::Prepared, String), ServiceError>;
    /// The record is committed: switch what serves it.
    fn committed(
        service: &Service,
        tenant: &Tenant,
        name: &Name<Self::Tag>,
        rec: &ObjectRecord,
        prepared: Self::Prepared,
    );
    /// The record is deleted: forget what served it.
    fn deleted(service: &Service, tenant: &Tenant, name: &Name<Self::Tag>);
    /// Fill in what a listing entry shows of the tenant's view beyond the
    /// object itself (a component's aliases).
    fn decorate(
        _service: &Service,
        _tenant: &Tenant,
        _infos: &mut [Self::Info],
    ) -> Result<(), ServiceError> {
        Ok(())
    }
}

impl Service {
    /// `tenant`'s own objects of kind `K`, then the public ones it does not
    /// shadow.
    pub fn list<K: Kind>(&self, tenant: &Tenant) -> Result<Vec<K::Info>, ServiceError> {
        let own = self.store()?.objects(&tenant.name, K::STORE)?;
        let mut out: Vec<K::Info> = own.iter().map(K::own_info).collect();
        for name in K::public_names(self) {
            if !own.iter().any(|r| r.name == name) {
                out.extend(K::public_info(self, &name));
            }
        }
        K::decorate(self, tenant, &mut out)?;
        Ok(out)
    }

    /// One object in `tenant`'s view: its own, else a public one.
    pub fn get<K: Kind>(&self, tenant: &Tenant, name: &str) -> Result<K::Info, ServiceError> {
        let mut info = match self.store()?.object(&tenant.name, K::STORE, name)? {
            Some(rec) => K::own_info(&rec),
            None => K::public_info(self, name).ok_or_else(|| ServiceError::NotFound {
                kind: K::Tag::NOUN,
                name: name.to_string(),
            })?,
        };
        K::decorate(self, tenant, std::slice::from_mut(&mut info))?;
        Ok(info)
    }
}

pub(super) fn tenant_override(tenant: &Tenant) -> LimitsOverride {
    LimitsOverride {
        deadline_ms: tenant.quotas.deadline_ms,
        memory_mib: tenant.quotas.memory_mib,
        max_passages: None,
    }
}

pub(super) fn setting_text(key: &str, v: &serde_json::Value) -> Result<String, ServiceError> {
    match v {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        _ => Err(ServiceError::Unprocessable(format!(
            "setting `{key}` must be a string, number or boolean"
        ))),
    }
}

pub(super) fn own_component_info(rec: &ObjectRecord) -> ComponentInfo {
    let stored: Option<StoredComponent> = serde_json::from_str(&rec.meta).ok();
    ComponentInfo {
        name: rec.name.clone(),
        owner: Owner::Tenant,
        version: rec.version,
        digest: Some(rec.digest.clone()),
        size: Some(rec.size),
        world: stored.as_ref().map(|s| s.world.clone()),
        description: stored.as_ref().and_then(|s| s.config.description.clone()),
        graphs: stored
            .as_ref()
            .map(|s| s.config.graphs.clone())
            .unwrap_or_default(),
        aliases: Vec::new(),
        model: stored.as_ref().and_then(|s| s.model.clone()),
        config: stored.map(|s| s.config),
        created_at: Some(rec.created_at),
    }
}

pub(super) fn own_graph_info(rec: &ObjectRecord) -> GraphInfo {
    let config: GraphConfig = serde_json::from_str(&rec.meta).unwrap_or_default();
    GraphInfo {
        name: rec.name.clone(),
        owner: Owner::Tenant,
        version: rec.version,
        digest: Some(rec.digest.clone()),
        size: Some(rec.size),
        format: config.format,
        description: config.description,
        created_at: Some(rec.created_at),
    }
}
