//! Why a service call failed: domain errors, no HTTP in them (the API maps
//! each case to a status once).

#[allow(unused_imports, reason = "the service's shared imports")]
use super::*;

/// Why a service call failed. The HTTP layer maps each case to a status
/// once (`api::error`).
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
    /// The request clashes with what exists (an alias named like a
    /// component).
    #[error("{0}")]
    Conflict(String),
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
            Self::Conflict(_) => "conflict",
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
pub(super) fn upload_error(e: RerankError) -> ServiceError {
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
