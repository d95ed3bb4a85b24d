//! The service's options and the domain types its callers exchange with
//! it (jobs, outcomes, upload configurations, listings).

#[allow(unused_imports, reason = "the service's shared imports")]
use super::*;

/// Server-wide knobs of the service.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Calls admitted at once, server-wide (queued ones included); more get
    /// 429. Default 256.
    pub max_concurrent_requests: usize,
    /// Calls that run wasm at once; admitted calls beyond wait. Default:
    /// one per core plus one ([`default_workers`]).
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
            workers: default_workers(),
            workers_per_tenant: default_tenant_share(default_workers()),
            max_idle_per_component: 4,
            max_idle_total: 32,
            max_documents: 1000,
            max_concurrent_uploads: 2,
        }
    }
}

/// The default number of workers: one per core, plus one that no single
/// tenant can take (see [`default_tenant_share`]): a lone tenant still uses
/// every core, and a neighbour always finds a worker.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) + 1
}

/// The default per-tenant share of `workers`: all but one, at least one.
pub fn default_tenant_share(workers: usize) -> usize {
    workers.saturating_sub(1).max(1)
}

/// Whose namespace an object is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    /// The operator's manifest: readable and callable by every tenant.
    Public,
    /// The calling tenant.
    Tenant,
}

/// What an uploader says about a component (the `config` part of the
/// upload). Everything is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
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
    #[schema(value_type = Object)]
    pub settings: BTreeMap<String, serde_json::Value>,
    /// Settings whose value is the text of one of the tenant's graphs of
    /// format `text` (a tokenizer, say), by graph name. Spelled
    /// `setting-files` as in the manifest; `setting_files` is also accepted.
    #[serde(default, rename = "setting-files", alias = "setting_files")]
    pub setting_files: BTreeMap<String, String>,
    /// Limits, narrowed to the tenant's and the host's.
    #[serde(default)]
    pub limits: UploadLimits,
    /// How its scores fuse with first-stage scores by default (requests
    /// may choose another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fusion: Option<Fusion>,
}

/// Limits an upload may ask for (never more than the tenant's or host's).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
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
pub(super) struct StoredComponent {
    pub(super) config: ComponentConfig,
    pub(super) world: String,
    pub(super) export: String,
    #[serde(default)]
    pub(super) model: Option<serde_json::Value>,
}

/// A component as listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    /// Other names it answers to in the caller's view (public and own
    /// aliases).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// What `configure` returned when it was uploaded (uploads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub model: Option<serde_json::Value>,
    /// The upload's configuration (uploads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<ComponentConfig>,
    /// Unix seconds of the upload (uploads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
}

/// A graph as listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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

/// A component as [`Service::describe`] tells it.
#[derive(Debug, Clone)]
pub struct Description {
    /// The component's name (the name asked for may be an alias).
    pub component: String,
    /// What its `configure` returned.
    pub info: crate::sandbox::ModelInfo,
    /// The limits its calls run under.
    pub limits: SandboxLimits,
    /// The aliases that name it.
    pub aliases: Vec<String>,
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
    /// Truncation and chunking of the documents (none by default).
    pub shaping: Shaping,
    /// The first stage's score of each document (BM25's, ...), to fuse
    /// with the component's.
    pub first_stage: Option<Vec<f32>>,
    /// How to fuse (else the component's default, else
    /// [`Fusion::DEFAULT`]); needs `first_stage` unless it is `none`.
    pub fusion: Option<Fusion>,
}

/// Where a call's time went.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Timing {
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
    /// How many passages each document was scored as (1 unless chunked).
    pub chunks: Vec<usize>,
    /// When scores were fused: the fusion and each document's model score
    /// (the ranking's scores are the fused ones).
    pub fused: Option<(Fusion, Vec<f32>)>,
    /// Timing.
    pub timing: Timing,
}
