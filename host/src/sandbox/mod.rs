//! The sandbox: how untrusted plugin code runs.
//!
//! * [`engine`]: one wasmtime engine (epoch interruption, bounded stack,
//!   pooling allocator with copy-on-write images).
//! * [`exec`]: the wall-clock bound on every guest call (async calls raced
//!   against the deadline and the caller's cancellation).
//! * [`limits`]: per-call limits and why each exists.
//! * [`state`]: what an instance can reach: no files, env, network or
//!   inherited stdio; only the allowed wasi-nn graphs.
//! * [`validate`]: static checks on a component file (kind, export,
//!   import allow-list, size) before anything compiles.
//! * [`plugin`]: typed, bounded calls into `configure` and `score`, with
//!   traps classified as timeout / out of memory / guest fault.
//! * [`preinit`]: a component snapshotted right after `configure`, so an
//!   instance starts configured (its tokenizer already parsed).

pub mod engine;
pub mod exec;
pub mod limits;
pub mod plugin;
#[cfg(feature = "compiler")]
pub mod preinit;
pub mod state;
/// Static checks on a component file (the `nboost-validate` crate).
pub use nboost_validate as validate;

pub use engine::{EngineOptions, SandboxEngine};
pub use limits::{LimitsOverride, SandboxLimits};
pub use plugin::{GuestError, ModelInfo, Plugin, PluginGraphs, PluginPre, PluginSpec, Preinit};
pub use state::HostState;
pub use validate::{sha256_digest, validate_component, ComponentReport};

use wasmtime::component::Linker;

/// The linker every plugin is instantiated against: WASI p2 (with the
/// capability-free context of [`HostState`]), async so that a guest waiting
/// in a host call can be cut off at its deadline ([`exec`]), and wasi-nn
/// through nboost's own adapter ([`crate::nn::adapter`]).
pub fn linker(engine: &SandboxEngine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine.engine());
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    crate::nn::adapter::add_to_linker(&mut linker, |s: &mut HostState| s.nn_view())?;
    Ok(linker)
}
