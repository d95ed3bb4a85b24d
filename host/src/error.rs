//! The error every layer below the CLI returns.
//!
//! One enum, so that a caller (CLI, HTTP API) maps it to an exit code or a
//! status exactly once. The split that matters is *whose fault*: the caller's
//! (`InvalidInput`, `UnknownComponent`), the operator's (`InvalidComponent`,
//! `Config`, `Manifest`), the plugin's (`Timeout`, `OutOfMemory`,
//! `GuestFault`, `Guest`) or the host's model back-end (`Backend`).

/// Why a rerank (or a component load) failed.
#[derive(Debug, thiserror::Error)]
pub enum RerankError {
    /// The request itself is unusable (empty query, too many passages...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// No component of that name is in the manifest.
    #[error("unknown component `{0}`")]
    UnknownComponent(String),
    /// The manifest itself is malformed.
    #[error("manifest: {0}")]
    Manifest(String),
    /// The component file is missing, corrupt, not a reranker component, or
    /// imports something the sandbox does not grant.
    #[error("component `{name}`: {reason}")]
    InvalidComponent {
        /// Component name (or file path when there is no name).
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The plugin's `configure` rejected its settings.
    #[error("component `{name}` rejected its configuration: {reason}")]
    Config {
        /// Component name.
        name: String,
        /// The plugin's message.
        reason: String,
    },
    /// The call ran past its deadline and was interrupted.
    #[error("deadline of {0} ms exceeded")]
    Timeout(u64),
    /// The caller went away (a client disconnected) and the call was
    /// stopped.
    #[error("the call was cancelled: the caller went away")]
    Cancelled,
    /// The call used up its instruction budget (fuel).
    #[error("the plugin used up its budget of {0} instructions (fuel)")]
    OutOfFuel(u64),
    /// The plugin tried to grow its memory past its cap.
    #[error("out of memory: the plugin exceeded its {0} byte memory limit")]
    OutOfMemory(u64),
    /// The plugin trapped (panic, stack overflow, unreachable...) or returned
    /// output that breaks the contract (wrong length, NaN, oversized).
    #[error("guest fault: {0}")]
    GuestFault(String),
    /// The plugin returned an error of its own.
    #[error("{0}")]
    Guest(GuestError),
    /// A wasi-nn back-end or named graph could not be set up on the host.
    #[error("model back-end: {0}")]
    Backend(String),
}

impl RerankError {
    /// A short, stable label for metrics and JSON bodies.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "invalid_input",
            Self::UnknownComponent(_) => "unknown_component",
            Self::Manifest(_) => "manifest",
            Self::InvalidComponent { .. } => "invalid_component",
            Self::Config { .. } => "config",
            Self::Timeout(_) => "timeout",
            Self::Cancelled => "cancelled",
            Self::OutOfFuel(_) => "out_of_fuel",
            Self::OutOfMemory(_) => "out_of_memory",
            Self::GuestFault(_) => "guest_fault",
            Self::Guest(GuestError::InvalidInput(_)) => "invalid_input",
            Self::Guest(_) => "guest_error",
            Self::Backend(_) => "backend",
        }
    }

    /// True when the caller, not the service, is at fault.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Self::InvalidInput(_)
                | Self::UnknownComponent(_)
                | Self::Guest(GuestError::InvalidInput(_))
        )
    }
}

/// The plugin's own error, as the WIT `error` variant defines it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(tag = "kind", content = "message", rename_all = "kebab-case")]
pub enum GuestError {
    /// The request cannot be scored as given.
    #[error("the plugin rejected the input: {0}")]
    InvalidInput(String),
    /// Bad settings, or `score` before a successful `configure`.
    #[error("the plugin is misconfigured: {0}")]
    InvalidConfig(String),
    /// The plugin's model back-end failed.
    #[error("the plugin's model back-end failed: {0}")]
    Backend(String),
    /// Any other plugin failure.
    #[error("the plugin failed: {0}")]
    Internal(String),
}
