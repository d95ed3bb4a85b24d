//! Name resolution: what a name means in a caller's view. A request names
//! a component or an alias; the tenant's own objects shadow the public
//! ones, and an alias names a component, never another alias. Resolved
//! once per request (on the request's database snapshot), the answer keys
//! the catalog.

#[allow(unused_imports, reason = "the service's shared imports")]
use super::*;

/// What a name resolved to: the component's owner, its record (own
/// components) and its real name (the name asked for may be an alias).
#[derive(Debug, Clone)]
pub(super) struct Resolved {
    pub(super) owner: Owner,
    pub(super) rec: Option<ObjectRecord>,
    pub(super) component: ComponentName,
}

impl Resolved {
    fn own(rec: ObjectRecord) -> Self {
        Self {
            owner: Owner::Tenant,
            component: ComponentName::trusted(rec.name.clone()),
            rec: Some(rec),
        }
    }

    /// A manifest component (its names are checked when it is parsed).
    fn public(name: &str) -> Self {
        Self {
            owner: Owner::Public,
            rec: None,
            component: ComponentName::trusted(name.to_string()),
        }
    }
}

impl Service {
    /// What `name` is in `tenant`'s view: the component it resolves to,
    /// what its `configure` says, its limits and its aliases (a warm
    /// instance answers; else one is made). Blocking.
    pub fn describe(&self, tenant: &Tenant, name: &str) -> Result<Description, ServiceError> {
        let resolved = self.resolve(tenant, name)?;
        let component = resolved.component.to_string();
        let live = self.live_from(tenant, name, Some(resolved))?;
        let limits = *live.pre.limits();
        let info = {
            let mut instance = live.checkout(self, &CancellationToken::new())?;
            instance.get().info().clone()
        };
        let aliases = self
            .aliases_by_component(tenant)?
            .remove(&component)
            .unwrap_or_default();
        Ok(Description {
            component,
            info,
            limits,
            aliases,
        })
    }

    /// What `name` resolves to for `tenant`.
    pub(super) fn resolve(&self, tenant: &Tenant, name: &str) -> Result<Resolved, ServiceError> {
        self.resolve_at(tenant, name, None)
    }

    /// Resolve `name` in `tenant`'s view: its own component, its own alias,
    /// a public component, a public alias — in that order; an alias names a
    /// component (own, else public), never another alias.
    pub(super) fn resolve_at(
        &self,
        tenant: &Tenant,
        name: &str,
        snapshot: Option<crate::store::Snapshot>,
    ) -> Result<Resolved, ServiceError> {
        let store = self.store.as_ref().filter(|_| !tenant.is_operator());
        if let Some(store) = store {
            if let Some(rec) =
                store.object_at(&tenant.name, ObjectKind::Component, name, snapshot)?
            {
                return Ok(Resolved::own(rec));
            }
        }
        if self.registry.manifest().components.contains_key(name) {
            return Ok(Resolved::public(name));
        }
        if let Some(store) = store {
            if let Some(alias) = store.object_at(&tenant.name, ObjectKind::Alias, name, snapshot)? {
                let target = alias_target(&alias)?;
                if let Some(rec) =
                    store.object_at(&tenant.name, ObjectKind::Component, &target, snapshot)?
                {
                    return Ok(Resolved::own(rec));
                }
                if self.registry.manifest().components.contains_key(&target) {
                    return Ok(Resolved::public(&target));
                }
                return Err(ServiceError::Unprocessable(format!(
                    "alias `{name}` names component `{target}`, which no longer exists"
                )));
            }
        }
        if let Some(target) = self.registry.manifest().aliases.get(name) {
            return Ok(Resolved::public(target));
        }
        Err(ServiceError::NotFound {
            kind: "component",
            name: name.to_string(),
        })
    }
}
