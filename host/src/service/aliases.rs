//! Aliases: the model names clients hard-code (`rerank-v3.5`,
//! `jina-reranker-v2-base-multilingual`, `BAAI/bge-reranker-base`) mapped
//! to components, so those clients work with only their base URL changed.
//!
//! The manifest's `[aliases]` are public; a tenant's own are the third
//! kind of upload (`PUT /v1/aliases/{name}` with `{"component": "minilm"}`),
//! going through the same object pipeline as components and graphs. A name
//! resolves as the tenant's component, the tenant's alias, a public
//! component, a public alias, in that order (see `Service::resolve_at`).

use super::objects::Kind;
#[allow(unused_imports, reason = "the service's shared imports")]
use super::*;
use crate::names::AliasKind;

/// Tenants' aliases.
pub struct Aliases;

/// An alias upload's body (and what is stored with its record).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AliasTarget {
    /// The component the alias names (the tenant's own, else a public one).
    #[schema(pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", max_length = 64)]
    pub component: String,
}

/// An alias takes no `config` part.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}

/// An alias as listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AliasInfo {
    /// The alias.
    pub name: String,
    /// `public` or `tenant`.
    pub owner: Owner,
    /// The component it names.
    pub component: String,
    /// Version (public aliases: 1).
    pub version: u64,
    /// Unix seconds of the upload (uploads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
}

/// The component a stored alias names.
pub(super) fn alias_target(rec: &ObjectRecord) -> Result<String, ServiceError> {
    serde_json::from_str::<AliasTarget>(&rec.meta)
        .map(|t| t.component)
        .map_err(|e| ServiceError::Internal(format!("alias `{}` metadata: {e}", rec.name)))
}

fn parse_target(bytes: &[u8]) -> Result<AliasTarget, ServiceError> {
    let target: AliasTarget = serde_json::from_slice(bytes).map_err(|e| {
        ServiceError::Unprocessable(format!(
            "an alias is a JSON object `{{\"component\": \"NAME\"}}`: {e}"
        ))
    })?;
    check_name(&target.component)
        .map_err(|e| ServiceError::Unprocessable(format!("component {e}")))?;
    Ok(target)
}

impl Kind for Aliases {
    type Config = NoConfig;
    type Info = AliasInfo;
    type Prepared = ();
    type Tag = AliasKind;
    const STORE: ObjectKind = ObjectKind::Alias;
    const PLURAL: &'static str = "aliases";

    fn is_public(service: &Service, name: &str) -> bool {
        service.registry.manifest().aliases.contains_key(name)
    }

    fn public_names(service: &Service) -> Vec<String> {
        service
            .registry
            .manifest()
            .aliases
            .keys()
            .cloned()
            .collect()
    }

    fn public_info(service: &Service, name: &str) -> Option<AliasInfo> {
        let component = service.registry.manifest().aliases.get(name)?;
        Some(AliasInfo {
            name: name.to_string(),
            owner: Owner::Public,
            component: component.clone(),
            version: 1,
            created_at: None,
        })
    }

    fn own_info(rec: &ObjectRecord) -> AliasInfo {
        AliasInfo {
            name: rec.name.clone(),
            owner: Owner::Tenant,
            component: alias_target(rec).unwrap_or_default(),
            version: rec.version,
            created_at: Some(rec.created_at),
        }
    }

    fn version(info: &AliasInfo) -> u64 {
        info.version
    }

    fn check(bytes: &[u8], _config: &NoConfig) -> Result<(), ServiceError> {
        parse_target(bytes).map(drop)
    }

    /// The target must be a component in the tenant's view, and the alias
    /// must not be one (a component's name always means that component).
    fn prepare(
        service: &Service,
        tenant: &Tenant,
        name: &Name<AliasKind>,
        bytes: &[u8],
        _config: NoConfig,
    ) -> Result<((), String), ServiceError> {
        let target = parse_target(bytes)?;
        let store = service.store()?;
        let is_component = |n: &str| -> Result<bool, ServiceError> {
            Ok(service.registry.manifest().components.contains_key(n)
                || store
                    .object(&tenant.name, ObjectKind::Component, n)?
                    .is_some())
        };
        if is_component(name)? {
            return Err(ServiceError::Conflict(format!(
                "`{name}` is a component; an alias may not shadow it"
            )));
        }
        if !is_component(&target.component)? {
            return Err(ServiceError::NotFound {
                kind: "component",
                name: target.component,
            });
        }
        let meta =
            serde_json::to_string(&target).map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok(((), meta))
    }

    /// Names resolve per request: nothing to switch.
    fn committed(_: &Service, _: &Tenant, _: &Name<AliasKind>, _: &ObjectRecord, _: ()) {}

    fn deleted(_: &Service, _: &Tenant, _: &Name<AliasKind>) {}
}

impl Service {
    /// Every alias in `tenant`'s view (its own shadow public ones of the
    /// same name), grouped by the component it names.
    pub(super) fn aliases_by_component(
        &self,
        tenant: &Tenant,
    ) -> Result<BTreeMap<String, Vec<String>>, ServiceError> {
        let mut by_alias: BTreeMap<String, String> = self.registry.manifest().aliases.clone();
        if let Some(store) = self.store.as_ref().filter(|_| !tenant.is_operator()) {
            for rec in store.objects(&tenant.name, ObjectKind::Alias)? {
                by_alias.insert(rec.name.clone(), alias_target(&rec)?);
            }
        }
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (alias, component) in by_alias {
            out.entry(component).or_default().push(alias);
        }
        Ok(out)
    }
}
