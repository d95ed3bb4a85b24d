//! The two kinds of upload: components and graphs (see [`super::objects`]).

use super::objects::Kind;
#[allow(unused_imports, reason = "the service's shared imports")]
use super::*;
use crate::names::{ComponentKind, GraphKind};

/// Tenants' `.wasm` reranker components.
pub struct Components;

/// Tenants' model files: ONNX graphs for wasi-nn, or text (tokenizers)
/// that components read as settings.
pub struct Graphs;

impl Kind for Components {
    type Config = ComponentConfig;
    type Info = ComponentInfo;
    type Prepared = (PluginPre, Plugin, Option<Fusion>);
    type Tag = ComponentKind;
    const STORE: ObjectKind = ObjectKind::Component;
    const PLURAL: &'static str = "components";

    fn is_public(service: &Service, name: &str) -> bool {
        service.registry.manifest().components.contains_key(name)
    }

    fn public_names(service: &Service) -> Vec<String> {
        service
            .registry
            .manifest()
            .components
            .keys()
            .cloned()
            .collect()
    }

    fn public_info(service: &Service, name: &str) -> Option<ComponentInfo> {
        Self::is_public(service, name).then(|| service.public_component_info(name))
    }

    fn own_info(rec: &ObjectRecord) -> ComponentInfo {
        own_component_info(rec)
    }

    fn version(info: &ComponentInfo) -> u64 {
        info.version
    }

    fn check(_bytes: &[u8], config: &ComponentConfig) -> Result<(), ServiceError> {
        for g in config.graphs.iter().chain(config.setting_files.values()) {
            check_name(g).map_err(|e| ServiceError::Unprocessable(format!("graph {e}")))?;
        }
        if let Some(f) = &config.fusion {
            f.check().map_err(ServiceError::Unprocessable)?;
        }
        Ok(())
    }

    /// Validated, compiled, linked, and tried: one instance is configured,
    /// and becomes the first warm one.
    fn prepare(
        service: &Service,
        tenant: &Tenant,
        name: &Name<Self::Tag>,
        bytes: &[u8],
        config: ComponentConfig,
    ) -> Result<(Self::Prepared, String), ServiceError> {
        let (pre, report) = service
            .prepare(tenant, name, bytes, &config)
            .map_err(|e| match e {
                ServiceError::Rerank(r) => upload_error(r),
                other => other,
            })?;
        let trial = pre
            .instantiate(service.registry.engine())
            .map_err(upload_error)?;
        let fusion = config.fusion;
        let stored = StoredComponent {
            config,
            world: report.world.to_string(),
            export: report.reranker_export.clone(),
            model: serde_json::to_value(trial.info()).ok(),
        };
        let meta =
            serde_json::to_string(&stored).map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok(((pre, trial, fusion), meta))
    }

    /// Swap: new calls get the new version; calls in flight keep theirs.
    fn committed(
        service: &Service,
        tenant: &Tenant,
        name: &Name<Self::Tag>,
        rec: &ObjectRecord,
        (pre, trial, fusion): Self::Prepared,
    ) {
        let live = Arc::new(Live::new(pre, fusion, service));
        live.checkin(trial);
        let ident = Ident {
            version: rec.version,
            deadline_ms: tenant.quotas.deadline_ms,
            memory_mib: tenant.quotas.memory_mib,
            graphs: service
                .store
                .as_ref()
                .map_or(0, |s| s.graph_epoch(&tenant.name)),
        };
        let mut catalog = service.catalog.lock().unwrap_or_else(|e| e.into_inner());
        let key = (tenant.name.clone(), Owner::Tenant, name.clone());
        let newer = catalog
            .get(&key)
            .is_none_or(|s| s.ident.version <= rec.version);
        if newer {
            catalog.insert(
                key,
                Slot {
                    ident,
                    cell: Arc::new(OnceCell::with_value(live)),
                },
            );
        }
    }

    /// Each component lists the aliases that name it.
    fn decorate(
        service: &Service,
        tenant: &Tenant,
        infos: &mut [ComponentInfo],
    ) -> Result<(), ServiceError> {
        let mut aliases = service.aliases_by_component(tenant)?;
        for info in infos {
            info.aliases = aliases.remove(&info.name).unwrap_or_default();
        }
        Ok(())
    }

    fn deleted(service: &Service, tenant: &Tenant, name: &Name<Self::Tag>) {
        service
            .catalog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(tenant.name.clone(), Owner::Tenant, name.clone()));
    }
}

impl Kind for Graphs {
    type Config = GraphConfig;
    type Info = GraphInfo;
    type Prepared = Option<LoadedGraph>;
    type Tag = GraphKind;
    const STORE: ObjectKind = ObjectKind::Graph;
    const PLURAL: &'static str = "graphs";

    fn is_public(service: &Service, name: &str) -> bool {
        service
            .registry
            .manifest()
            .graphs
            .iter()
            .any(|g| g.name == name)
    }

    fn public_names(service: &Service) -> Vec<String> {
        service
            .registry
            .manifest()
            .graphs
            .iter()
            .map(|g| g.name.clone())
            .collect()
    }

    fn public_info(service: &Service, name: &str) -> Option<GraphInfo> {
        let spec = service
            .registry
            .manifest()
            .graphs
            .iter()
            .find(|g| g.name == name)?;
        Some(GraphInfo {
            name: name.to_string(),
            owner: Owner::Public,
            version: 1,
            digest: spec.sha256.clone(),
            size: std::fs::metadata(&spec.path).ok().map(|m| m.len()),
            format: GraphFormat::Onnx,
            description: None,
            created_at: None,
        })
    }

    fn own_info(rec: &ObjectRecord) -> GraphInfo {
        own_graph_info(rec)
    }

    fn version(info: &GraphInfo) -> u64 {
        info.version
    }

    fn check(bytes: &[u8], _config: &GraphConfig) -> Result<(), ServiceError> {
        if bytes.is_empty() {
            return Err(ServiceError::Unprocessable(
                "the graph file is empty".into(),
            ));
        }
        Ok(())
    }

    /// An `onnx` graph is loaded by the back-end now (a broken model is
    /// refused, and the first call does not pay for loading it); a `text`
    /// one must be UTF-8.
    fn prepare(
        service: &Service,
        _tenant: &Tenant,
        name: &Name<Self::Tag>,
        bytes: &[u8],
        config: GraphConfig,
    ) -> Result<(Self::Prepared, String), ServiceError> {
        let loaded = match config.format {
            GraphFormat::Onnx => Some(
                service
                    .registry
                    .nn()
                    .load_graph_bytes(name, bytes)
                    .map_err(|e| {
                        ServiceError::Unprocessable(format!("the graph cannot be loaded: {e}"))
                    })?,
            ),
            GraphFormat::Text => {
                std::str::from_utf8(bytes).map_err(|e| {
                    ServiceError::Unprocessable(format!("a `text` graph must be UTF-8: {e}"))
                })?;
                None
            }
        };
        let meta =
            serde_json::to_string(&config).map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok((loaded, meta))
    }

    /// The new version is what components load from now on; the tenant's
    /// components are rebuilt on their next call.
    fn committed(
        service: &Service,
        tenant: &Tenant,
        name: &Name<Self::Tag>,
        rec: &ObjectRecord,
        loaded: Option<LoadedGraph>,
    ) {
        {
            let mut graphs = service.graphs.lock().unwrap_or_else(|e| e.into_inner());
            let key = (tenant.name.clone(), name.clone());
            match loaded {
                Some(g) => {
                    graphs.insert(key, (rec.version, g));
                }
                None => {
                    graphs.remove(&key);
                }
            }
        }
        service.invalidate_own(&tenant.name);
    }

    /// Components that use it fail on their next call until it is uploaded
    /// again.
    fn deleted(service: &Service, tenant: &Tenant, name: &Name<Self::Tag>) {
        service
            .graphs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(tenant.name.clone(), name.clone()));
        service.invalidate_own(&tenant.name);
    }
}

impl Service {
    /// A public component's listing entry (cached once its file is read).
    fn public_component_info(&self, name: &str) -> ComponentInfo {
        if let Some(info) = self
            .public_info
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return info.clone();
        }
        let entry = &self.registry.manifest().components[name];
        let report = std::fs::read(&entry.path)
            .ok()
            .and_then(|b| validate_component(&b, usize::MAX).ok());
        let info = ComponentInfo {
            name: name.to_string(),
            owner: Owner::Public,
            version: 1,
            digest: report.as_ref().map(|r| r.sha256.clone()),
            size: report.as_ref().map(|r| r.size as u64),
            world: report.as_ref().map(|r| r.world.to_string()),
            description: entry.description.clone(),
            graphs: entry.graphs.clone(),
            aliases: Vec::new(),
            model: None,
            config: None,
            created_at: None,
        };
        if report.is_some() {
            self.public_info
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.to_string(), info.clone());
        }
        info
    }
}
