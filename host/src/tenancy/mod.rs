//! The multi-tenant service behind `nboost serve`: who may call what, how
//! many at once, and which warm instance runs it.
//!
//! [`TenantService`] is what the HTTP layer calls, and the only thing it
//! calls. It joins three sources of components: the operator's manifest
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

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use once_cell::sync::OnceCell;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::nn::LoadedGraph;
use crate::registry::{check_name, DynamicComponent, Registry};
use crate::sandbox::exec::{block_on, CancellationToken};
use crate::sandbox::{validate_component, LimitsOverride, Plugin, PluginPre, SandboxLimits};
use crate::service::{check_input, RankedPassage};
use crate::store::{ObjectKind, ObjectRecord, Store, StoreError, Tenant, TenantId};
use crate::RerankError;

/// Why a service call failed. The HTTP layer maps each case to a status
/// once (`server::error`).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No key, or a key no tenant holds.
    #[error("missing or invalid API key")]
    Unauthorized,
    /// The name is not visible to this tenant (nonexistent, or another
    /// tenant's: the message is the same).
    #[error("unknown {kind} `{name}`")]
    NotFound {
        /// `component` or `graph`.
        kind: &'static str,
        /// The name asked for.
        name: String,
    },
    /// The tenant may see it but not do this (change a public component).
    #[error("{0}")]
    Forbidden(String),
    /// The server's concurrency limit is reached.
    #[error("the server is at its limit of concurrent requests; retry later")]
    Overloaded,
    /// One of the tenant's quotas is reached.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    /// A rerank request with no documents.
    #[error("there are no documents to rerank")]
    EmptyDocuments,
    /// A malformed request (bad JSON, a bad name, a bad form).
    #[error("{0}")]
    BadRequest(String),
    /// A well-formed request that cannot be processed (invalid fields, an
    /// upload that fails validation, a component that cannot run).
    #[error("{0}")]
    Unprocessable(String),
    /// A body over its size cap.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The rerank itself failed.
    #[error(transparent)]
    Rerank(RerankError),
    /// The data directory failed.
    #[error(transparent)]
    Store(StoreError),
    /// A bug or a panic.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// A short, stable label (metrics, JSON `error_type` refinement).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::NotFound { .. } => "not_found",
            Self::Forbidden(_) => "forbidden",
            Self::Overloaded => "overloaded",
            Self::QuotaExceeded(_) => "quota_exceeded",
            Self::EmptyDocuments => "empty_documents",
            Self::BadRequest(_) => "bad_request",
            Self::Unprocessable(_) => "unprocessable",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::Rerank(e) => e.kind(),
            Self::Store(_) => "storage",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Quota(m) => Self::QuotaExceeded(m),
            StoreError::InvalidName(m) => Self::BadRequest(m),
            // The tenant was removed while its request was in flight.
            StoreError::UnknownTenant(_) => Self::Unauthorized,
            other => Self::Store(other),
        }
    }
}

impl From<RerankError> for ServiceError {
    fn from(e: RerankError) -> Self {
        Self::Rerank(e)
    }
}

/// An upload that fails validation, compilation, linking or its trial
/// `configure` is the uploader's problem: 422, with the reason.
fn upload_error(e: RerankError) -> ServiceError {
    match e {
        RerankError::InvalidComponent { reason, .. } => {
            ServiceError::Unprocessable(format!("invalid component: {reason}"))
        }
        RerankError::Config { reason, .. } => ServiceError::Unprocessable(format!(
            "the component rejected its configuration: {reason}"
        )),
        RerankError::Timeout(ms) => {
            ServiceError::Unprocessable(format!("`configure` ran past the {ms} ms deadline"))
        }
        RerankError::OutOfFuel(n) => ServiceError::Unprocessable(format!(
            "`configure` used up its budget of {n} instructions"
        )),
        RerankError::OutOfMemory(b) => {
            ServiceError::Unprocessable(format!("`configure` exceeded the {b} byte memory limit"))
        }
        RerankError::GuestFault(m) => {
            ServiceError::Unprocessable(format!("`configure` trapped: {m}"))
        }
        other => ServiceError::Rerank(other),
    }
}

/// Server-wide knobs of the service.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Calls admitted at once, server-wide (queued ones included); more get
    /// 429. Default 256.
    pub max_concurrent_requests: usize,
    /// Calls that run wasm at once; admitted calls beyond wait. Default:
    /// one per core.
    pub workers: usize,
    /// Of those, the most one tenant may hold at once; its further calls
    /// wait. Default: `workers - 1` (at least 1), so one tenant can never
    /// take every worker.
    pub workers_per_tenant: usize,
    /// Warm instances kept per tenant and component. Default 4.
    pub max_idle_per_component: usize,
    /// Warm instances kept in total; beyond, returned instances are
    /// dropped. Must leave room in the engine's instance pool for `workers`
    /// running ones. Default 32.
    pub max_idle_total: usize,
    /// Most documents in one rerank request. Default 1000.
    pub max_documents: usize,
    /// Uploads processed at once (each compiles and tries a component, or
    /// loads a graph); more wait. Default 2.
    pub max_concurrent_uploads: usize,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            max_concurrent_requests: 256,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            workers_per_tenant: default_tenant_share(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            max_idle_per_component: 4,
            max_idle_total: 32,
            max_documents: 1000,
            max_concurrent_uploads: 2,
        }
    }
}

/// The default per-tenant share of `workers`: all but one, at least one.
pub fn default_tenant_share(workers: usize) -> usize {
    workers.saturating_sub(1).max(1)
}

/// Whose namespace an object is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    /// The operator's manifest: readable and callable by every tenant.
    Public,
    /// The calling tenant.
    Tenant,
}

/// What an uploader says about a component (the `config` part of the
/// upload). Everything is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ComponentConfig {
    /// A description for listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Graphs its wasi-nn calls may load: the tenant's own, or public ones.
    #[serde(default)]
    pub graphs: Vec<String>,
    /// Settings passed to `configure`: strings, numbers or booleans.
    #[serde(default)]
    pub settings: BTreeMap<String, serde_json::Value>,
    /// Settings whose value is the text of one of the tenant's graphs of
    /// format `text` (a tokenizer, say), by graph name. Spelled
    /// `setting-files` as in the manifest; `setting_files` is also accepted.
    #[serde(default, rename = "setting-files", alias = "setting_files")]
    pub setting_files: BTreeMap<String, String>,
    /// Limits, narrowed to the tenant's and the host's.
    #[serde(default)]
    pub limits: UploadLimits,
}

/// Limits an upload may ask for (never more than the tenant's or host's).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UploadLimits {
    /// Per-call deadline in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Per-instance memory in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// Most passages per call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_passages: Option<usize>,
}

/// How a graph upload is used.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GraphFormat {
    /// An ONNX model: loaded (and so checked) by the host's back-end at
    /// upload, then loadable by the tenant's components through wasi-nn.
    #[default]
    Onnx,
    /// A UTF-8 text file (a tokenizer): usable as a setting file.
    Text,
}

/// What an uploader says about a graph.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GraphConfig {
    /// `onnx` (default) or `text`.
    #[serde(default)]
    pub format: GraphFormat,
    /// A description for listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The metadata JSON stored with an uploaded component.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredComponent {
    config: ComponentConfig,
    world: String,
    export: String,
    #[serde(default)]
    model: Option<serde_json::Value>,
}

/// A component as listed.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentInfo {
    /// Its name.
    pub name: String,
    /// `public` or `tenant`.
    pub owner: Owner,
    /// Version (public components: 1).
    pub version: u64,
    /// `sha256:<hex>` of the `.wasm` (null if the file cannot be read).
    pub digest: Option<String>,
    /// Bytes.
    pub size: Option<u64>,
    /// The WIT world it fits (`reranker-plugin` or `nn-reranker-plugin`).
    pub world: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Graphs it may load.
    pub graphs: Vec<String>,
    /// What `configure` returned when it was uploaded (uploads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<serde_json::Value>,
    /// The upload's configuration (uploads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<ComponentConfig>,
    /// Unix seconds of the upload (uploads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
}

/// A graph as listed.
#[derive(Debug, Clone, Serialize)]
pub struct GraphInfo {
    /// Its name.
    pub name: String,
    /// `public` or `tenant`.
    pub owner: Owner,
    /// Version (public graphs: 1).
    pub version: u64,
    /// `sha256:<hex>` (public graphs: only when the manifest pins it).
    pub digest: Option<String>,
    /// Bytes.
    pub size: Option<u64>,
    /// `onnx` or `text`.
    pub format: GraphFormat,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Unix seconds of the upload (uploads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
}

/// One rerank call, as the service takes it.
#[derive(Debug, Clone)]
pub struct RerankJob {
    /// Component name.
    pub model: String,
    /// The query.
    pub query: String,
    /// Documents, in request order.
    pub documents: Vec<String>,
    /// Keep the best N.
    pub top_n: Option<usize>,
}

/// Where a call's time went.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CallTiming {
    /// Waiting for a worker.
    pub queue: Duration,
    /// Resolving the component (loading it after a restart) and creating an
    /// instance (zero when a warm one was free).
    pub instantiate: Duration,
    /// The guest's `score` call.
    pub guest: Duration,
}

/// A finished rerank call.
#[derive(Debug, Clone)]
pub struct RerankOutcome {
    /// Best first, cut to top-n.
    pub ranking: Vec<RankedPassage>,
    /// The documents, handed back (for `return_documents`).
    pub documents: Vec<String>,
    /// Timing.
    pub timing: CallTiming,
}

/// Live instance counts, for metrics.
#[derive(Debug, Default)]
struct Counters {
    in_use: AtomicUsize,
    idle: AtomicUsize,
    queued: AtomicUsize,
}

/// A snapshot of the instance counts.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Gauges {
    /// Instances running a call now.
    pub in_use: usize,
    /// Warm instances waiting in pools.
    pub idle: usize,
    /// Admitted calls waiting for a worker.
    pub queued: usize,
}

/// One component version as one tenant runs it: its compiled form (under
/// the tenant's limits) and that tenant's warm instances of it.
struct Live {
    pre: PluginPre,
    idle: Mutex<Vec<Plugin>>,
    counters: Arc<Counters>,
    max_idle: usize,
    max_idle_total: usize,
}

impl Live {
    fn new(pre: PluginPre, service: &TenantService) -> Self {
        Self {
            pre,
            idle: Mutex::new(Vec::new()),
            counters: service.counters.clone(),
            max_idle: service.options.max_idle_per_component.max(1),
            max_idle_total: service.options.max_idle_total,
        }
    }

    fn checkout(
        &self,
        service: &TenantService,
        cancel: &CancellationToken,
    ) -> Result<InUse<'_>, RerankError> {
        let warm = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let plugin = match warm {
            Some(p) => {
                self.counters.idle.fetch_sub(1, Ordering::Relaxed);
                p
            }
            None => block_on(
                self.pre
                    .instantiate_async(service.registry.engine(), cancel),
            )?,
        };
        self.counters.in_use.fetch_add(1, Ordering::Relaxed);
        Ok(InUse {
            live: self,
            plugin: Some(plugin),
        })
    }

    fn checkin(&self, plugin: Plugin) {
        if !plugin.is_alive() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= self.max_idle {
            return;
        }
        // Reserve a place in the server-wide total, or drop the instance.
        if self.counters.idle.fetch_add(1, Ordering::Relaxed) >= self.max_idle_total {
            self.counters.idle.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        idle.push(plugin);
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let n = self.idle.get_mut().map_or(0, |v| v.len());
        self.counters.idle.fetch_sub(n, Ordering::Relaxed);
    }
}

/// One call counted in the `queued` gauge while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(gauge: &'a AtomicUsize) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An instance out of its pool; goes back (or is dropped) on drop.
struct InUse<'a> {
    live: &'a Live,
    plugin: Option<Plugin>,
}

impl InUse<'_> {
    fn get(&mut self) -> &mut Plugin {
        self.plugin.as_mut().expect("present until drop")
    }
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        self.live.counters.in_use.fetch_sub(1, Ordering::Relaxed);
        if let Some(p) = self.plugin.take() {
            self.live.checkin(p);
        }
    }
}

/// Catalog key: (calling tenant, owner, component name).
type Key = (TenantId, Owner, String);

/// What a catalog slot was built from: the component version and the
/// tenant's limit quotas. Any change means a rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ident {
    version: u64,
    deadline_ms: Option<u64>,
    memory_mib: Option<u64>,
}

struct Slot {
    ident: Ident,
    cell: Arc<OnceCell<Arc<Live>>>,
}

/// The multi-tenant reranking service. See the module docs.
pub struct TenantService {
    registry: Registry,
    store: Arc<Store>,
    options: ServiceOptions,
    admission: Arc<Semaphore>,
    workers: Arc<Semaphore>,
    uploads: Arc<Semaphore>,
    tenant_slots: Mutex<HashMap<TenantId, (u32, Arc<Semaphore>)>>,
    tenant_workers: Mutex<HashMap<TenantId, Arc<Semaphore>>>,
    catalog: Mutex<HashMap<Key, Slot>>,
    graphs: Mutex<HashMap<(TenantId, String), (u64, LoadedGraph)>>,
    public_info: Mutex<HashMap<String, ComponentInfo>>,
    counters: Arc<Counters>,
}

impl TenantService {
    /// A service over the public components of `registry` and the tenants
    /// and uploads of `store`.
    pub fn new(registry: Registry, store: Arc<Store>, options: ServiceOptions) -> Self {
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

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Instance counts now.
    pub fn gauges(&self) -> Gauges {
        Gauges {
            in_use: self.counters.in_use.load(Ordering::Relaxed),
            idle: self.counters.idle.load(Ordering::Relaxed),
            queued: self.counters.queued.load(Ordering::Relaxed),
        }
    }

    /// The tenant holding `key`.
    pub fn authenticate(&self, key: &str) -> Result<Tenant, ServiceError> {
        self.store
            .authenticate(key)?
            .ok_or(ServiceError::Unauthorized)
    }

    fn host_limits(&self) -> SandboxLimits {
        self.registry.engine().options().limits
    }

    fn tenant_semaphore(&self, tenant: &Tenant) -> Arc<Semaphore> {
        let mut slots = self.tenant_slots.lock().unwrap_or_else(|e| e.into_inner());
        let want = tenant.quotas.max_concurrent.max(1);
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
        let n = self
            .options
            .workers_per_tenant
            .clamp(1, self.options.workers.max(1));
        shares
            .entry(tenant.name.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(n)))
            .clone()
    }

    // ---- rerank ---------------------------------------------------------

    /// Rerank `job.documents` for `tenant`: admission (429 when full),
    /// queue, then the guest call on a blocking thread.
    pub async fn rerank(
        self: &Arc<Self>,
        tenant: &Tenant,
        job: RerankJob,
    ) -> Result<RerankOutcome, ServiceError> {
        if job.documents.is_empty() {
            return Err(ServiceError::EmptyDocuments);
        }
        if job.query.trim().is_empty() {
            return Err(RerankError::InvalidInput("the query is empty".into()).into());
        }
        if job.documents.len() > self.options.max_documents {
            return Err(RerankError::InvalidInput(format!(
                "{} documents is over this server's limit of {}",
                job.documents.len(),
                self.options.max_documents
            ))
            .into());
        }
        if job.top_n == Some(0) {
            return Err(RerankError::InvalidInput("top_n must be at least 1".into()).into());
        }
        // Unknown names fail before they take a permit or a queue place.
        // (The store is SQLite: off the async threads.)
        {
            let this = self.clone();
            let (tenant, model) = (tenant.clone(), job.model.clone());
            tokio::task::spawn_blocking(move || this.resolve(&tenant, &model).map(|_| ()))
                .await
                .map_err(|e| ServiceError::Internal(format!("the lookup failed: {e}")))??;
        }
        let admission = self
            .admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| ServiceError::Overloaded)?;
        let own = self
            .tenant_semaphore(tenant)
            .try_acquire_owned()
            .map_err(|_| {
                ServiceError::QuotaExceeded(format!(
                    "the tenant's {} concurrent calls are all in use",
                    tenant.quotas.max_concurrent
                ))
            })?;
        let queued = Instant::now();
        let waiting = Waiting::new(&self.counters.queued);
        // A client that goes away while queued drops this future: the guard
        // still takes it off the gauge, and its permits go back.
        let closed = |_| ServiceError::Internal("the worker pool is closed".into());
        let queue_span = tracing::debug_span!("queue", tenant = %tenant.name.as_str());
        let (share, worker) = async {
            let share = self
                .tenant_workers(tenant)
                .acquire_owned()
                .await
                .map_err(closed)?;
            Ok::<_, ServiceError>((share, self.workers.clone().acquire_owned().await))
        }
        .instrument(queue_span)
        .await?;
        drop(waiting);
        let worker = worker.map_err(closed)?;
        let queue = queued.elapsed();
        let this = self.clone();
        let tenant = tenant.clone();
        // A client that goes away while its call runs drops this future, and
        // with it the guard: the guest call is stopped and the worker freed.
        let cancel = CancellationToken::new();
        let _stop_on_drop = cancel.clone().drop_guard();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _permits = (admission, own, share, worker);
            span.in_scope(|| this.rerank_blocking(&tenant, job, queue, &cancel))
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("the rerank task failed: {e}")))?
    }

    fn rerank_blocking(
        &self,
        tenant: &Tenant,
        job: RerankJob,
        queue: Duration,
        cancel: &CancellationToken,
    ) -> Result<RerankOutcome, ServiceError> {
        let t0 = Instant::now();
        let live = self.live(tenant, &job.model)?;
        check_input(live.pre.limits(), &job.query, &job.documents)?;
        let mut instance = tracing::debug_span!("instantiate", component = %job.model)
            .in_scope(|| live.checkout(self, cancel))?;
        let instantiate = t0.elapsed();
        let t1 = Instant::now();
        let result =
            tracing::debug_span!("guest", component = %job.model, documents = job.documents.len())
                .in_scope(|| {
                    block_on(
                        instance
                            .get()
                            .score_async(&job.query, &job.documents, cancel),
                    )
                });
        let guest = t1.elapsed();
        drop(instance);
        let ranking = crate::service::rank(result?, job.top_n);
        Ok(RerankOutcome {
            ranking,
            documents: job.documents,
            timing: CallTiming {
                queue,
                instantiate,
                guest,
            },
        })
    }

    /// Which namespace `name` resolves to for `tenant`, with the tenant's
    /// record when it is its own.
    fn resolve(
        &self,
        tenant: &Tenant,
        name: &str,
    ) -> Result<(Owner, Option<ObjectRecord>), ServiceError> {
        if let Some(rec) = self
            .store
            .object(&tenant.name, ObjectKind::Component, name)?
        {
            return Ok((Owner::Tenant, Some(rec)));
        }
        if self.registry.manifest().components.contains_key(name) {
            return Ok((Owner::Public, None));
        }
        Err(ServiceError::NotFound {
            kind: "component",
            name: name.to_string(),
        })
    }

    /// The live entry for `tenant`'s view of `name`, built on first use.
    fn live(&self, tenant: &Tenant, name: &str) -> Result<Arc<Live>, ServiceError> {
        // A record read just before a replacement or deletion may name a
        // blob that is gone by the time it is read: look again, once.
        let mut retried = false;
        loop {
            let (owner, rec) = self.resolve(tenant, name)?;
            let ident = Ident {
                version: rec.as_ref().map_or(0, |r| r.version),
                deadline_ms: tenant.quotas.deadline_ms,
                memory_mib: tenant.quotas.memory_mib,
            };
            let key = (tenant.name.clone(), owner, name.to_string());
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
                let pre = match &rec {
                    None => {
                        let public = self.registry.get(name)?;
                        let limits = public.limits().narrowed(&tenant_override(tenant));
                        public.with_limits(limits)
                    }
                    Some(rec) => self.build_own(tenant, rec)?,
                };
                Ok(Arc::new(Live::new(pre, self)))
            });
            match built {
                Ok(live) => return Ok(live.clone()),
                Err(ServiceError::Store(StoreError::Corrupt { .. })) if !retried => retried = true,
                Err(e) => return Err(e),
            }
        }
    }

    fn build_own(&self, tenant: &Tenant, rec: &ObjectRecord) -> Result<PluginPre, ServiceError> {
        let stored: StoredComponent = serde_json::from_str(&rec.meta)
            .map_err(|e| ServiceError::Internal(format!("component metadata: {e}")))?;
        let bytes = self.store.blobs().read(&rec.digest)?;
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
        Ok(pre)
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
                .store
                .object(&tenant.name, ObjectKind::Graph, file)?
                .ok_or_else(|| {
                    ServiceError::Unprocessable(format!(
                        "setting file `{key}`: unknown graph `{file}` (upload it with format `text`)"
                    ))
                })?;
            let text = String::from_utf8(self.store.blobs().read(&rec.digest)?).map_err(|_| {
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
        let component = DynamicComponent {
            name,
            bytes,
            limits,
            settings,
            graphs,
        };
        Ok(self.registry.prepare_bytes(component)?)
    }

    /// Graph `name` in `tenant`'s view, loaded: its own (cached per
    /// version), else a public one.
    fn graph_for(&self, tenant: &Tenant, name: &str) -> Result<LoadedGraph, ServiceError> {
        if let Some(rec) = self.store.object(&tenant.name, ObjectKind::Graph, name)? {
            let key = (tenant.name.clone(), name.to_string());
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
            let bytes = self.store.blobs().read(&rec.digest)?;
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
            return Ok(self.registry.nn().loaded_graph(name)?);
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

    fn collect_garbage(&self) {
        if let Err(e) = self.store.collect_garbage() {
            tracing::warn!(target: "nboost::tenancy", "blob garbage collection failed: {e}");
        }
    }

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

    fn precheck_quota(
        &self,
        tenant: &Tenant,
        kind: ObjectKind,
        name: &str,
        size: u64,
    ) -> Result<(), ServiceError> {
        let used = self.store.usage(&tenant.name)?;
        let old = self.store.object(&tenant.name, kind, name)?;
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

    fn put_component_blocking(
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
        let pin = self.store.write_blob(bytes)?;
        let rec = self.store.put_object(
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
            target: "nboost::tenancy",
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
            .store
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
            .store
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

    fn put_graph_blocking(
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
        let pin = self.store.write_blob(bytes)?;
        let rec = self.store.put_object(
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
            target: "nboost::tenancy",
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
            .store
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
        if let Some(rec) = self.store.object(&tenant.name, ObjectKind::Graph, name)? {
            return Ok(own_graph_info(&rec));
        }
        self.public_graph_info(name)
            .ok_or_else(|| ServiceError::NotFound {
                kind: "graph",
                name: name.to_string(),
            })
    }

    fn public_graph_info(&self, name: &str) -> Option<GraphInfo> {
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
            .store
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

fn tenant_override(tenant: &Tenant) -> LimitsOverride {
    LimitsOverride {
        deadline_ms: tenant.quotas.deadline_ms,
        memory_mib: tenant.quotas.memory_mib,
        max_passages: None,
    }
}

fn setting_text(key: &str, v: &serde_json::Value) -> Result<String, ServiceError> {
    match v {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        _ => Err(ServiceError::Unprocessable(format!(
            "setting `{key}` must be a string, number or boolean"
        ))),
    }
}

fn own_component_info(rec: &ObjectRecord) -> ComponentInfo {
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

fn own_graph_info(rec: &ObjectRecord) -> GraphInfo {
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
