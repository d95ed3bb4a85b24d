//! The store's types: errors, tenant names and quotas, object records.

#[allow(unused_imports, reason = "the store's shared imports")]
use super::*;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `tenants add` of a name that exists.
    #[error("tenant `{0}` already exists")]
    TenantExists(String),
    /// No tenant of that name.
    #[error("no tenant `{0}`")]
    UnknownTenant(String),
    /// A name that is not a valid tenant, component or graph name.
    #[error("{0}")]
    InvalidName(String),
    /// The upload would take the tenant over one of its quotas.
    #[error("quota exceeded: {0}")]
    Quota(String),
    /// A blob is missing or does not hash to its name.
    #[error("stored blob {digest} is unusable: {reason}")]
    Corrupt {
        /// The digest the metadata names.
        digest: String,
        /// What is wrong.
        reason: String,
    },
    /// Another process serves this data directory.
    #[error("the data directory {0} is in use by another `nboost serve`")]
    Locked(PathBuf),
    /// File system or SQLite failure.
    #[error("storage: {0}")]
    Io(String),
    /// Shared storage (the database or the object store) cannot be reached
    /// or refuses the operation now; retrying later may work.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    pub(super) fn io(path: &Path, e: std::io::Error) -> Self {
        Self::Io(format!("{}: {e}", path.display()))
    }
}

/// What one tenant may use. Storage quotas are checked when an upload
/// commits; `max_concurrent` when a call is admitted; the limits narrow the
/// host's (never widen them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Quotas {
    /// Most components the tenant may own. Default 16.
    pub max_components: u32,
    /// Most graphs (model files) the tenant may own. Default 16.
    pub max_graphs: u32,
    /// Most bytes of components and graphs together. Default 1 GiB.
    pub max_bytes: u64,
    /// Most rerank calls in flight at once; more get 429. Default 16.
    pub max_concurrent: u32,
    /// Per-call deadline in ms, if narrower than the host's.
    pub deadline_ms: Option<u64>,
    /// Per-instance memory in MiB, if narrower than the host's.
    pub memory_mib: Option<u64>,
}

impl Quotas {
    /// The one quota rule of an upload of `size` bytes of `kind` given what
    /// the tenant stores now: a new name must fit the kind's count (aliases
    /// share the components' count), and the bytes after it (a replaced
    /// version's size given back) must fit `max_bytes`.
    pub fn admit(
        &self,
        used: &Usage,
        kind: ObjectKind,
        replacing: Option<u64>,
        size: u64,
    ) -> Result<(), String> {
        if replacing.is_none() {
            let (count, max, what) = match kind {
                ObjectKind::Component => (used.components, self.max_components, "components"),
                ObjectKind::Graph => (used.graphs, self.max_graphs, "graphs"),
                ObjectKind::Alias => (used.aliases, self.max_components, "aliases"),
            };
            if count >= max {
                return Err(format!(
                    "the tenant already has {count} {what}, its quota is {max}"
                ));
            }
        }
        let after = used.bytes - replacing.unwrap_or(0) + size;
        if after > self.max_bytes {
            return Err(format!(
                "this upload would bring the tenant's storage to {after} bytes, its quota is {}",
                self.max_bytes
            ));
        }
        Ok(())
    }
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            max_components: 16,
            max_graphs: 16,
            max_bytes: 1 << 30,
            max_concurrent: 16,
            deadline_ms: None,
            memory_mib: None,
        }
    }
}

/// A tenant as stored (the key hash stays inside the store).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tenant {
    /// Its name.
    pub name: TenantId,
    /// Its quotas.
    pub quotas: Quotas,
}

/// The name the operator calls under (CLI, in-process use); not a valid
/// tenant name, so no tenant can hold it.
const OPERATOR: &str = "@operator";

impl Tenant {
    /// The operator: sees only the manifest's components, owns nothing, and
    /// has no quotas beyond the host's limits.
    pub fn operator() -> Self {
        Self {
            name: TenantId::reserved(OPERATOR),
            quotas: Quotas {
                max_components: 0,
                max_graphs: 0,
                max_bytes: 0,
                max_concurrent: u32::MAX >> 4,
                deadline_ms: None,
                memory_mib: None,
            },
        }
    }

    /// Whether this is [`Tenant::operator`].
    pub fn is_operator(&self) -> bool {
        self.name.as_str() == OPERATOR
    }
}

/// Which namespace table an object lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// A `.wasm` reranker component.
    Component,
    /// A model file (ONNX graph or a text file such as a tokenizer).
    Graph,
    /// Another name for a component (a JSON file naming it).
    Alias,
}

impl ObjectKind {
    /// Check a name of this kind (aliases follow their own, looser rule).
    pub fn check_name(self, name: &str) -> Result<(), String> {
        match self {
            Self::Alias => crate::names::check_alias(name),
            _ => check_name(name),
        }
    }

    #[cfg(feature = "uploads")]
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Component => "component",
            Self::Graph => "graph",
            Self::Alias => "alias",
        }
    }
}

/// One stored component or graph version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObjectRecord {
    /// Owner.
    pub tenant: TenantId,
    /// Component or graph.
    pub kind: ObjectKind,
    /// Its name in the owner's namespace.
    pub name: String,
    /// 1 for the first upload of the name, +1 for each replacement.
    pub version: u64,
    /// `sha256:<hex>`, naming the blob.
    pub digest: String,
    /// Bytes.
    pub size: u64,
    /// Opaque metadata (JSON text) of the layer above.
    pub meta: String,
    /// Unix seconds of the upload.
    pub created_at: i64,
}

/// What a tenant stores now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Components owned.
    pub components: u32,
    /// Graphs owned.
    pub graphs: u32,
    /// Aliases owned.
    pub aliases: u32,
    /// Bytes of all three.
    pub bytes: u64,
}
