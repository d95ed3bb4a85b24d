//! The operator's synchronous handle on the service: what the CLI (and
//! in-process callers such as the tests and benches) use.
//!
//! [`Reranker`] is not a second core: it builds the engine, the wasi-nn host
//! and the registry, wraps them in a [`Service`] with no tenant store, and
//! calls it as [`Tenant::operator`] — the same admission, catalog, warm
//! pool, input checks and ranking as the HTTP API — blocking on the async
//! calls from the caller's thread.

use std::sync::Arc;

use super::{RerankJob, RerankOutcome, Service, ServiceError, ServiceOptions};
use crate::nn::{NnHost, NnOptions};
use crate::registry::{IsolatedCompiler, Manifest, Registry};
use crate::sandbox::exec::block_on;
use crate::sandbox::{EngineOptions, ModelInfo, SandboxEngine};
use crate::store::Tenant;
use crate::RerankError;

/// Everything needed to build a [`Reranker`].
#[derive(Debug, Clone, Default)]
pub struct RerankerConfig {
    /// Engine and host-wide limits.
    pub engine: EngineOptions,
    /// wasi-nn back-end settings.
    pub nn: NnOptions,
    /// On-disk artifact cache directory, if any.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Warm instances kept per component.
    pub max_idle_per_component: usize,
    /// How files from outside the manifest are compiled (`None`: in
    /// process).
    pub compiler: Option<IsolatedCompiler>,
}

/// The result of [`Reranker::rerank`]: the service's own.
pub type Reranked = RerankOutcome;

/// Reranks with the components of a manifest, as the operator.
pub struct Reranker {
    service: Arc<Service>,
    operator: Tenant,
}

impl Reranker {
    /// Build the engine, the wasi-nn host, the registry and the service.
    /// Nothing is loaded yet: components and graphs load on first use.
    pub fn new(manifest: Manifest, config: RerankerConfig) -> Result<Self, RerankError> {
        // Warm instances may use the engine's instance slots that running
        // calls leave free.
        let slots = config.engine.max_instances as usize;
        let engine = SandboxEngine::new(config.engine)
            .map_err(|e| RerankError::Backend(format!("cannot create the wasm engine: {e:#}")))?;
        let nn = Arc::new(NnHost::new(config.nn, manifest.graphs.clone()));
        let registry = Registry::new(Arc::new(engine), nn, manifest, config.cache_dir)?
            .with_isolated_compiler(config.compiler);
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let options = ServiceOptions {
            workers,
            workers_per_tenant: workers,
            max_idle_per_component: config.max_idle_per_component.max(1),
            max_idle_total: slots.saturating_sub(workers).max(1),
            // The component's own `max-passages` limit still applies.
            max_documents: usize::MAX,
            ..ServiceOptions::default()
        };
        Ok(Self {
            service: Arc::new(Service::operator_only(registry, options)),
            operator: Tenant::operator(),
        })
    }

    /// The registry (manifest, stats, file checks).
    pub fn registry(&self) -> &Registry {
        self.service.registry()
    }

    /// The service underneath.
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// What the component says about itself (instantiates it if needed).
    pub fn model_info(&self, component: &str) -> Result<ModelInfo, RerankError> {
        self.service
            .model_info(&self.operator, component)
            .map_err(into_rerank_error)
    }

    /// Score `passages` against `query` with `component`, sort, cut to
    /// `top_n`.
    pub fn rerank(
        &self,
        component: &str,
        query: &str,
        passages: &[String],
        top_n: Option<usize>,
    ) -> Result<Reranked, RerankError> {
        // The operator names manifest components (or their aliases): load
        // (and report a broken file) before looking at the request, as
        // `nboost rerank` always has.
        let manifest = self.service.registry().manifest();
        let real = manifest
            .aliases
            .get(component)
            .filter(|_| !manifest.components.contains_key(component))
            .map_or(component, String::as_str);
        self.service.registry().get(real)?;
        let job = RerankJob {
            model: component.to_string(),
            query: query.to_string(),
            documents: passages.to_vec(),
            top_n,
            shaping: super::Shaping::default(),
            first_stage: None,
            fusion: None,
        };
        block_on(
            self.service
                .rerank(super::Caller::Tenant(self.operator.clone()), job),
        )
        .map_err(into_rerank_error)
    }
}

/// The operator's view of a service error: every case it can meet is a
/// [`RerankError`].
fn into_rerank_error(e: ServiceError) -> RerankError {
    match e {
        ServiceError::Rerank(r) => r,
        ServiceError::NotFound { name, .. } => RerankError::UnknownComponent(name),
        ServiceError::EmptyDocuments => {
            RerankError::InvalidInput("there are no documents to rerank".into())
        }
        ServiceError::BadRequest(m) | ServiceError::Unprocessable(m) => {
            RerankError::InvalidInput(m)
        }
        other => RerankError::Backend(other.to_string()),
    }
}
