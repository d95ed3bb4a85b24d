//! The one serving core: every front end — the CLI, the HTTP API, the
//! coming proxy — reranks through [`Service`].
//!
//! * admission and the worker share (this module),
//! * the catalog: a caller and a name resolve once per request to a
//!   versioned slot ([`Service::rerank`]),
//! * one warm pool per caller and component version ([`pool`]),
//! * ranking: the one input check, sort and top-n ([`rank`]),
//! * the object pipeline for uploads ([`objects`]; its writes in
//!   `uploads`, cargo feature `uploads`),
//! * domain errors with no HTTP in them ([`ServiceError`]).
//!
//! Callers are tenants of the [`Store`] or the operator
//! ([`Tenant::operator`]: the manifest's components only, no store needed);
//! [`Reranker`] is the operator's synchronous handle, used by the CLI.
//!
//! [`Service`] is what the HTTP layer calls, and the only thing it calls. It joins three sources of components: the operator's manifest
//! (public: every tenant may call and read them, none may change them), and
//! each tenant's own uploads (kept in the [`Store`]; invisible to every
//! other tenant — a name owned by someone else answers exactly like a name
//! owned by no one). A tenant's name resolves to its own component first,
//! then to a public one.
//!
//! # Serving path
//!
//! 1. **Admission** (`try_acquire`, never waits): a server-wide semaphore
//!    and the tenant's own (`max_concurrent`). Either full means 429 now
//!    rather than a queue that grows until clients time out.
//! 2. **Queue**: a `workers` semaphore bounds how many calls run wasm at
//!    once (by default one per core); admitted calls wait here. The wait is
//!    reported as queue time. Before that, a call takes a place in its
//!    tenant's *share* of the workers (`workers_per_tenant`, by default all
//!    but one): one tenant can never hold every worker, so a neighbour's
//!    call always finds one free within a deadline.
//! 3. **Run**, in `spawn_blocking`: take a warm, configured instance from
//!    the pool of *this tenant and this component version* (never another
//!    tenant's: guest state such as caches must not cross tenants), or make
//!    one; score; return it to the pool unless it faulted. Pools are bounded
//!    per component and in total. Every guest call is bounded by its
//!    deadline even when the guest waits in a host call, and a client that
//!    disconnects cancels its call, which frees the worker at once
//!    (`sandbox::exec`).
//!
//! # Versions
//!
//! An upload is validated, compiled, linked and tried (one instance is
//! created and configured) before its blob and metadata are committed.
//! Then the catalog entry of the name is swapped. A call holds an `Arc` of
//! the version it started with, so in-flight calls finish on the old
//! version while new ones get the new one; the old version's pool goes when
//! its last call ends. After a restart, entries are rebuilt from the store
//! on first use (compiled code comes from the artifact cache).

mod aliases;
mod calls;
mod error;
mod kinds;
pub mod objects;
mod operator;
pub mod passages;
pub mod pool;
pub mod rank;
mod resolve;
mod types;
#[cfg(feature = "uploads")]
mod uploads;

pub use crate::fusion::{Fusion, Normalize};
use aliases::alias_target;
pub use aliases::{AliasInfo, AliasTarget, Aliases};
pub use error::ServiceError;
use error::*;
pub use kinds::{Components, Graphs};
pub use objects::Kind;
use objects::*;
pub use operator::{Reranked, Reranker, RerankerConfig};
pub use passages::{Keep, Shaping};
pub use pool::Gauges;
use pool::*;
pub use rank::{check_limits, check_request, rank, RankedPassage};
use resolve::Resolved;
pub use types::*;

/// Who calls [`Service::rerank`].
#[derive(Debug, Clone)]
pub enum Caller {
    /// An API key, authenticated on the blocking thread.
    Key(String),
    /// A caller already known (the operator, or a tenant authenticated
    /// elsewhere).
    Tenant(Tenant),
}

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use once_cell::sync::OnceCell;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::names::{check_name, ComponentName, GraphName, Name, Named};
use crate::nn::LoadedGraph;
use crate::registry::{Locked, PluginGraphs, Registry};
use crate::sandbox::exec::{block_on, CancellationToken};
use crate::sandbox::{validate_component, LimitsOverride, Plugin, PluginPre, SandboxLimits};
use crate::store::{ObjectKind, ObjectRecord, Store, StoreError, Tenant, TenantId};
use crate::RerankError;

/// Catalog key: (calling tenant, owner, component name).
pub(super) type Key = (TenantId, Owner, ComponentName);

/// What a catalog slot was built from: the component version, the
/// tenant's limit quotas, and (replicas) the epoch of the tenant's graphs
/// as changed through other replicas. Any change means a rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ident {
    version: u64,
    deadline_ms: Option<u64>,
    memory_mib: Option<u64>,
    graphs: u64,
}

pub(super) struct Slot {
    ident: Ident,
    cell: Arc<OnceCell<Arc<Live>>>,
}

/// The multi-tenant reranking service. See the module docs.
pub struct Service {
    registry: Registry,
    store: Option<Arc<Store>>,
    options: ServiceOptions,
    admission: Arc<Semaphore>,
    workers: Arc<Semaphore>,
    #[cfg_attr(
        not(feature = "uploads"),
        expect(dead_code, reason = "only uploads take its permits")
    )]
    uploads: Arc<Semaphore>,
    tenant_slots: Mutex<HashMap<TenantId, (u32, Arc<Semaphore>)>>,
    tenant_workers: Mutex<HashMap<TenantId, Arc<Semaphore>>>,
    catalog: Mutex<HashMap<Key, Slot>>,
    graphs: Mutex<HashMap<(TenantId, GraphName), (u64, LoadedGraph)>>,
    public_info: Mutex<HashMap<String, ComponentInfo>>,
    counters: Arc<Counters>,
}

impl Service {
    /// A service over the public components of `registry` and the tenants
    /// and uploads of `store`.
    pub fn new(registry: Registry, store: Arc<Store>, options: ServiceOptions) -> Self {
        Self::build(registry, Some(store), options)
    }

    /// A service with no tenant store: only the operator's manifest
    /// components, called by the [`operator`](Tenant::operator) (the CLI).
    pub fn operator_only(registry: Registry, options: ServiceOptions) -> Self {
        Self::build(registry, None, options)
    }

    fn build(registry: Registry, store: Option<Arc<Store>>, options: ServiceOptions) -> Self {
        Self {
            admission: Arc::new(Semaphore::new(options.max_concurrent_requests.max(1))),
            workers: Arc::new(Semaphore::new(options.workers.max(1))),
            uploads: Arc::new(Semaphore::new(options.max_concurrent_uploads.max(1))),
            registry,
            store,
            options,
            tenant_slots: Mutex::new(HashMap::new()),
            tenant_workers: Mutex::new(HashMap::new()),
            catalog: Mutex::new(HashMap::new()),
            graphs: Mutex::new(HashMap::new()),
            public_info: Mutex::new(HashMap::new()),
            counters: Arc::new(Counters::default()),
        }
    }

    /// The options.
    pub fn options(&self) -> &ServiceOptions {
        &self.options
    }

    /// The tenant store (an operator-only service has none).
    pub fn store(&self) -> Result<&Arc<Store>, ServiceError> {
        self.store
            .as_ref()
            .ok_or_else(|| ServiceError::Forbidden("this service has no tenants".into()))
    }

    /// Whether the service can answer what needs its store now
    /// (readiness).
    pub fn ready(&self) -> Result<(), String> {
        self.store.as_ref().map_or(Ok(()), |s| s.ready())
    }

    /// The registry (manifest, engine, graphs).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Instance counts now.
    pub fn gauges(&self) -> Gauges {
        let merged = self.registry.nn().merge_stats();
        Gauges {
            in_use: self.counters.in_use.load(Ordering::Relaxed),
            idle: self.counters.idle.load(Ordering::Relaxed),
            queued: self.counters.queued.load(Ordering::Relaxed),
            merged_calls: merged.merged_calls.load(Ordering::Relaxed),
            merged_computes: merged.merged_computes.load(Ordering::Relaxed),
        }
    }

    /// The tenant holding `key`.
    pub fn authenticate(&self, key: &str) -> Result<Tenant, ServiceError> {
        self.authenticate_at(key, None)
    }

    fn authenticate_at(
        &self,
        key: &str,
        snapshot: Option<crate::store::Snapshot>,
    ) -> Result<Tenant, ServiceError> {
        self.store()?
            .authenticate_at(key, snapshot)?
            .ok_or(ServiceError::Unauthorized)
    }

    fn host_limits(&self) -> SandboxLimits {
        self.registry.engine().options().limits
    }

    fn tenant_semaphore(&self, tenant: &Tenant) -> Arc<Semaphore> {
        let mut slots = self.tenant_slots.lock().unwrap_or_else(|e| e.into_inner());
        // Replicas divide the quota among the live ones (see docs/scaling.md).
        let want = match &self.store {
            Some(store) if !tenant.is_operator() => {
                store.concurrency_share(tenant.quotas.max_concurrent.max(1))
            }
            _ => tenant.quotas.max_concurrent.max(1),
        };
        match slots.get(&tenant.name) {
            Some((n, s)) if *n == want => s.clone(),
            _ => {
                // New tenant or changed quota: a fresh semaphore. Calls in
                // flight keep their permits of the old one.
                let s = Arc::new(Semaphore::new(want as usize));
                slots.insert(tenant.name.clone(), (want, s.clone()));
                s
            }
        }
    }

    /// The tenant's share of the workers.
    fn tenant_workers(&self, tenant: &Tenant) -> Arc<Semaphore> {
        let mut shares = self
            .tenant_workers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let workers = self.options.workers.max(1);
        let n = if tenant.is_operator() {
            workers
        } else {
            self.options.workers_per_tenant.clamp(1, workers)
        };
        shares
            .entry(tenant.name.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(n)))
            .clone()
    }

    /// What `name` says about itself as `tenant` sees it (a warm instance's
    /// `configure` answer, or a new instance's). Blocking.
    pub fn model_info(
        &self,
        tenant: &Tenant,
        name: &str,
    ) -> Result<crate::sandbox::ModelInfo, ServiceError> {
        let live = self.live(tenant, name)?;
        let mut instance = live.checkout(self, &CancellationToken::new())?;
        Ok(instance.get().info().clone())
    }

    /// The live entry for `tenant`'s view of `name`, built on first use.
    fn live(&self, tenant: &Tenant, name: &str) -> Result<Arc<Live>, ServiceError> {
        self.live_from(tenant, name, None)
    }

    /// [`Service::live`], starting from a resolution already made for this
    /// request (so a warm call looks the name up once).
    fn live_from(
        &self,
        tenant: &Tenant,
        name: &str,
        mut resolved: Option<Resolved>,
    ) -> Result<Arc<Live>, ServiceError> {
        // A record read just before a replacement or deletion may name a
        // blob that is gone by the time it is read: look again, once.
        let mut retried = false;
        loop {
            let Resolved {
                owner,
                rec,
                component,
            } = match resolved.take() {
                Some(r) => r,
                None => self.resolve(tenant, name)?,
            };
            let ident = Ident {
                version: rec.as_ref().map_or(0, |r| r.version),
                deadline_ms: tenant.quotas.deadline_ms,
                memory_mib: tenant.quotas.memory_mib,
                graphs: match (&rec, &self.store) {
                    (Some(_), Some(store)) => store.graph_epoch(&tenant.name),
                    _ => 0,
                },
            };
            let key = (tenant.name.clone(), owner, component.clone());
            let cell = {
                let mut catalog = self.catalog.lock().unwrap_or_else(|e| e.into_inner());
                match catalog.get(&key) {
                    Some(slot) if slot.ident == ident => slot.cell.clone(),
                    _ => {
                        let cell = Arc::new(OnceCell::new());
                        catalog.insert(
                            key,
                            Slot {
                                ident,
                                cell: cell.clone(),
                            },
                        );
                        cell
                    }
                }
            };
            let built = cell.get_or_try_init(|| -> Result<Arc<Live>, ServiceError> {
                let (pre, fusion) = match &rec {
                    None => {
                        let public = self.registry.get(&component)?;
                        let limits = public.limits().narrowed(&tenant_override(tenant));
                        let fusion = self.registry.manifest().components[component.as_str()].fusion;
                        (public.with_limits(limits), fusion)
                    }
                    Some(rec) => self.build_own(tenant, rec)?,
                };
                Ok(Arc::new(Live::new(pre, fusion, self)))
            });
            match built {
                Ok(live) => return Ok(live.clone()),
                Err(ServiceError::Store(StoreError::Corrupt { .. })) if !retried => retried = true,
                Err(e) => return Err(e),
            }
        }
    }

    fn build_own(
        &self,
        tenant: &Tenant,
        rec: &ObjectRecord,
    ) -> Result<(PluginPre, Option<Fusion>), ServiceError> {
        let stored: StoredComponent = serde_json::from_str(&rec.meta)
            .map_err(|e| ServiceError::Internal(format!("component metadata: {e}")))?;
        let bytes = self.store()?.read_blob(&rec.digest)?;
        let (pre, _) = self
            .prepare(tenant, &rec.name, &bytes, &stored.config)
            .map_err(|e| match e {
                ServiceError::Rerank(RerankError::InvalidComponent { reason, .. }) => {
                    ServiceError::Unprocessable(format!(
                        "component `{}` cannot run: {reason}",
                        rec.name
                    ))
                }
                other => other,
            })?;
        Ok((pre, stored.config.fusion))
    }

    /// Validate, compile and link an upload's bytes with its configuration
    /// resolved in `tenant`'s view (its graphs, then public ones).
    fn prepare(
        &self,
        tenant: &Tenant,
        name: &str,
        bytes: &[u8],
        config: &ComponentConfig,
    ) -> Result<(PluginPre, crate::sandbox::ComponentReport), ServiceError> {
        let requested = LimitsOverride {
            deadline_ms: config.limits.deadline_ms,
            memory_mib: config.limits.memory_mib,
            max_passages: config.limits.max_passages,
        };
        let limits = self
            .host_limits()
            .narrowed(&requested)
            .narrowed(&tenant_override(tenant));
        let mut settings = Vec::with_capacity(config.settings.len() + config.setting_files.len());
        for (k, v) in &config.settings {
            settings.push((k.clone(), setting_text(k, v)?));
        }
        for (key, file) in &config.setting_files {
            let rec = self
                .store()?
                .object(&tenant.name, ObjectKind::Graph, file)?
                .ok_or_else(|| {
                    ServiceError::Unprocessable(format!(
                        "setting file `{key}`: unknown graph `{file}` (upload it with format `text`)"
                    ))
                })?;
            let text = String::from_utf8(self.store()?.read_blob(&rec.digest)?).map_err(|_| {
                ServiceError::Unprocessable(format!(
                    "setting file `{key}`: graph `{file}` is not UTF-8 text"
                ))
            })?;
            settings.push((key.clone(), text));
        }
        let mut graphs = Vec::with_capacity(config.graphs.len());
        for g in &config.graphs {
            graphs.push((g.clone(), self.graph_for(tenant, g)?));
        }
        Ok(self.registry.prepare(Locked {
            name,
            bytes,
            pinned: None,
            limits,
            settings,
            graphs: PluginGraphs::Loaded(graphs.into()),
            untrusted: true,
            precompiled: None,
            preinit: Default::default(),
        })?)
    }

    /// Graph `name` in `tenant`'s view, loaded: its own (cached per
    /// version), else a public one.
    fn graph_for(&self, tenant: &Tenant, name: &str) -> Result<LoadedGraph, ServiceError> {
        if let Some(rec) = self
            .store()?
            .object(&tenant.name, ObjectKind::Graph, name)?
        {
            let key = (tenant.name.clone(), GraphName::trusted(rec.name.clone()));
            if let Some((v, g)) = self
                .graphs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
            {
                if *v == rec.version {
                    return Ok(g.clone());
                }
            }
            let format = serde_json::from_str::<GraphConfig>(&rec.meta)
                .map(|c| c.format)
                .unwrap_or_default();
            if format != GraphFormat::Onnx {
                return Err(ServiceError::Unprocessable(format!(
                    "graph `{name}` has format `text`; only `onnx` graphs can be loaded through wasi-nn"
                )));
            }
            let bytes = self.store()?.read_blob(&rec.digest)?;
            let g = self.registry.nn().load_graph_bytes(name, &bytes)?;
            self.graphs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, (rec.version, g.clone()));
            return Ok(g);
        }
        if self
            .registry
            .manifest()
            .graphs
            .iter()
            .any(|s| s.name == name)
        {
            return Ok(self.registry.nn().graph(name)?);
        }
        Err(ServiceError::Unprocessable(format!(
            "unknown graph `{name}`"
        )))
    }

    /// Forget the live entries of `tenant`'s own components (after one of
    /// its graphs changed): each is rebuilt on its next call. Calls in
    /// flight keep the entry they hold.
    fn invalidate_own(&self, tenant: &TenantId) {
        self.catalog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(t, owner, _), _| !(t == tenant && *owner == Owner::Tenant));
    }
}
