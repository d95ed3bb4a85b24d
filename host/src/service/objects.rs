//! Uploads: tenants' components and graphs, validated, tried, committed,
//! listed and deleted.

#[allow(unused_imports, reason = "the service's shared imports")]
use super::*;

impl Service {
    // ---- components -----------------------------------------------------

    /// Upload (or replace) `tenant`'s component `name`. Validated, compiled,
    /// linked, tried (one instance configured), then committed and swapped
    /// in; the tried instance becomes the first warm one.
    pub async fn put_component(
        self: &Arc<Self>,
        tenant: &Tenant,
        name: &str,
        bytes: bytes::Bytes,
        config: ComponentConfig,
    ) -> Result<ComponentInfo, ServiceError> {
        check_name(name).map_err(|e| ServiceError::BadRequest(format!("component {e}")))?;
        if self.registry.manifest().components.contains_key(name) {
            return Err(ServiceError::Forbidden(format!(
                "`{name}` is a public component; choose another name"
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
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            this.put_component_blocking(&tenant, &name, &bytes, config)
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("the upload task failed: {e}")))?
    }

    pub(super) fn precheck_quota(
        &self,
        tenant: &Tenant,
        kind: ObjectKind,
        name: &str,
        size: u64,
    ) -> Result<(), ServiceError> {
        let used = self.store()?.usage(&tenant.name)?;
        let old = self.store()?.object(&tenant.name, kind, name)?;
        let q = &tenant.quotas;
        if old.is_none() {
            let (n, max, what) = match kind {
                ObjectKind::Component => (used.components, q.max_components, "components"),
                ObjectKind::Graph => (used.graphs, q.max_graphs, "graphs"),
            };
            if n >= max {
                return Err(ServiceError::QuotaExceeded(format!(
                    "the tenant already has {n} {what}, its quota is {max}"
                )));
            }
        }
        let after = used.bytes - old.map_or(0, |r| r.size) + size;
        if after > q.max_bytes {
            return Err(ServiceError::QuotaExceeded(format!(
                "this upload would bring the tenant's storage to {after} bytes, its quota is {}",
                q.max_bytes
            )));
        }
        Ok(())
    }

    pub(super) fn put_component_blocking(
        &self,
        tenant: &Tenant,
        name: &str,
        bytes: &[u8],
        config: ComponentConfig,
    ) -> Result<ComponentInfo, ServiceError> {
        for g in config.graphs.iter().chain(config.setting_files.values()) {
            check_name(g).map_err(|e| ServiceError::Unprocessable(format!("graph {e}")))?;
        }
        self.precheck_quota(tenant, ObjectKind::Component, name, bytes.len() as u64)?;
        let (pre, report) = self
            .prepare(tenant, name, bytes, &config)
            .map_err(|e| match e {
                ServiceError::Rerank(r) => upload_error(r),
                other => other,
            })?;
        let trial = pre
            .instantiate(self.registry.engine())
            .map_err(upload_error)?;
        let stored = StoredComponent {
            config,
            world: report.world.to_string(),
            export: report.reranker_export.clone(),
            model: serde_json::to_value(trial.info()).ok(),
        };
        let meta =
            serde_json::to_string(&stored).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let pin = self.store()?.write_blob(bytes)?;
        let rec = self.store()?.put_object(
            &tenant.name,
            ObjectKind::Component,
            name,
            &pin,
            bytes.len() as u64,
            &meta,
        )?;
        drop(pin);
        // Swap: new calls get the new version; calls in flight keep theirs.
        let live = Arc::new(Live::new(pre, self));
        live.checkin(trial);
        let ident = Ident {
            version: rec.version,
            deadline_ms: tenant.quotas.deadline_ms,
            memory_mib: tenant.quotas.memory_mib,
        };
        {
            let mut catalog = self.catalog.lock().unwrap_or_else(|e| e.into_inner());
            let key = (tenant.name.clone(), Owner::Tenant, name.to_string());
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
        self.collect_garbage();
        tracing::info!(
            target: "nboost::service",
            tenant = %tenant.name,
            component = name,
            version = rec.version,
            digest = %rec.digest,
            "component uploaded"
        );
        Ok(own_component_info(&rec))
    }

    /// `tenant`'s own components, then the public ones it does not shadow.
    pub fn list_components(&self, tenant: &Tenant) -> Result<Vec<ComponentInfo>, ServiceError> {
        let mut out: Vec<ComponentInfo> = self
            .store()?
            .objects(&tenant.name, ObjectKind::Component)?
            .iter()
            .map(own_component_info)
            .collect();
        for name in self.registry.manifest().components.keys() {
            if !out.iter().any(|c| &c.name == name) {
                out.push(self.public_component_info(name));
            }
        }
        Ok(out)
    }

    /// One component in `tenant`'s view.
    pub fn component(&self, tenant: &Tenant, name: &str) -> Result<ComponentInfo, ServiceError> {
        match self.resolve(tenant, name)? {
            (_, Some(rec)) => Ok(own_component_info(&rec)),
            (_, None) => Ok(self.public_component_info(name)),
        }
    }

    pub(super) fn public_component_info(&self, name: &str) -> ComponentInfo {
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

    /// Delete `tenant`'s own component `name`. Public components cannot be
    /// deleted (403); anything else the tenant does not own is 404.
    pub fn delete_component(&self, tenant: &Tenant, name: &str) -> Result<(), ServiceError> {
        if self
            .store()?
            .delete_object(&tenant.name, ObjectKind::Component, name)?
        {
            self.catalog
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(tenant.name.clone(), Owner::Tenant, name.to_string()));
            self.collect_garbage();
            return Ok(());
        }
        if self.registry.manifest().components.contains_key(name) {
            return Err(ServiceError::Forbidden(format!(
                "`{name}` is a public component; only the operator can remove it"
            )));
        }
        Err(ServiceError::NotFound {
            kind: "component",
            name: name.to_string(),
        })
    }

    // ---- graphs ---------------------------------------------------------

    /// Upload (or replace) `tenant`'s graph `name`. An `onnx` graph is
    /// loaded by the back-end first (so a broken model is refused now, and
    /// the first call does not pay for loading it); a `text` one must be
    /// UTF-8. The tenant's components are rebuilt on their next call.
    pub async fn put_graph(
        self: &Arc<Self>,
        tenant: &Tenant,
        name: &str,
        bytes: bytes::Bytes,
        config: GraphConfig,
    ) -> Result<GraphInfo, ServiceError> {
        check_name(name).map_err(|e| ServiceError::BadRequest(format!("graph {e}")))?;
        if self
            .registry
            .manifest()
            .graphs
            .iter()
            .any(|g| g.name == name)
        {
            return Err(ServiceError::Forbidden(format!(
                "`{name}` is a public graph; choose another name"
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
        let name = name.to_string();
        tokio::task::spawn_blocking(move || this.put_graph_blocking(&tenant, &name, &bytes, config))
            .await
            .map_err(|e| ServiceError::Internal(format!("the upload task failed: {e}")))?
    }

    pub(super) fn put_graph_blocking(
        &self,
        tenant: &Tenant,
        name: &str,
        bytes: &[u8],
        config: GraphConfig,
    ) -> Result<GraphInfo, ServiceError> {
        if bytes.is_empty() {
            return Err(ServiceError::Unprocessable(
                "the graph file is empty".into(),
            ));
        }
        self.precheck_quota(tenant, ObjectKind::Graph, name, bytes.len() as u64)?;
        let loaded = match config.format {
            GraphFormat::Onnx => Some(self.registry.nn().load_graph_bytes(name, bytes).map_err(
                |e| ServiceError::Unprocessable(format!("the graph cannot be loaded: {e}")),
            )?),
            GraphFormat::Text => {
                std::str::from_utf8(bytes).map_err(|e| {
                    ServiceError::Unprocessable(format!("a `text` graph must be UTF-8: {e}"))
                })?;
                None
            }
        };
        let meta =
            serde_json::to_string(&config).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let pin = self.store()?.write_blob(bytes)?;
        let rec = self.store()?.put_object(
            &tenant.name,
            ObjectKind::Graph,
            name,
            &pin,
            bytes.len() as u64,
            &meta,
        )?;
        drop(pin);
        {
            let mut graphs = self.graphs.lock().unwrap_or_else(|e| e.into_inner());
            let key = (tenant.name.clone(), name.to_string());
            match loaded {
                Some(g) => {
                    graphs.insert(key, (rec.version, g));
                }
                None => {
                    graphs.remove(&key);
                }
            }
        }
        self.invalidate_own(&tenant.name);
        self.collect_garbage();
        tracing::info!(
            target: "nboost::service",
            tenant = %tenant.name,
            graph = name,
            version = rec.version,
            digest = %rec.digest,
            "graph uploaded"
        );
        Ok(own_graph_info(&rec))
    }

    /// `tenant`'s own graphs, then the public ones.
    pub fn list_graphs(&self, tenant: &Tenant) -> Result<Vec<GraphInfo>, ServiceError> {
        let mut out: Vec<GraphInfo> = self
            .store()?
            .objects(&tenant.name, ObjectKind::Graph)?
            .iter()
            .map(own_graph_info)
            .collect();
        for spec in &self.registry.manifest().graphs {
            if !out.iter().any(|g| g.name == spec.name) {
                out.extend(self.public_graph_info(&spec.name));
            }
        }
        Ok(out)
    }

    /// One graph in `tenant`'s view.
    pub fn graph(&self, tenant: &Tenant, name: &str) -> Result<GraphInfo, ServiceError> {
        if let Some(rec) = self
            .store()?
            .object(&tenant.name, ObjectKind::Graph, name)?
        {
            return Ok(own_graph_info(&rec));
        }
        self.public_graph_info(name)
            .ok_or_else(|| ServiceError::NotFound {
                kind: "graph",
                name: name.to_string(),
            })
    }

    pub(super) fn public_graph_info(&self, name: &str) -> Option<GraphInfo> {
        let spec = self
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

    /// Delete `tenant`'s own graph `name` (403 for public ones, 404 for
    /// anything else it does not own). Components that use it fail on
    /// their next call until it is uploaded again.
    pub fn delete_graph(&self, tenant: &Tenant, name: &str) -> Result<(), ServiceError> {
        if self
            .store()?
            .delete_object(&tenant.name, ObjectKind::Graph, name)?
        {
            self.graphs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(tenant.name.clone(), name.to_string()));
            self.invalidate_own(&tenant.name);
            self.collect_garbage();
            return Ok(());
        }
        if self
            .registry
            .manifest()
            .graphs
            .iter()
            .any(|g| g.name == name)
        {
            return Err(ServiceError::Forbidden(format!(
                "`{name}` is a public graph; only the operator can remove it"
            )));
        }
        Err(ServiceError::NotFound {
            kind: "graph",
            name: name.to_string(),
        })
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
