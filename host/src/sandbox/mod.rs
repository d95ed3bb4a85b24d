//! The sandbox: how untrusted plugin code runs.
//!
//! * [`engine`]: one wasmtime engine (epoch interruption, bounded stack,
//!   pooling allocator with copy-on-write images).
//! * [`limits`]: per-call limits and why each exists.
//! * [`state`]: what an instance can reach: no files, env, network or
//!   inherited stdio; only the allowed wasi-nn graphs.
//! * [`validate`]: static checks on a component file (kind, export,
//!   import allow-list, size) before anything compiles.
//! * [`plugin`]: typed, bounded calls into `configure` and `score`, with
//!   traps classified as timeout / out of memory / guest fault.

pub mod engine;
pub mod limits;
pub mod plugin;
pub mod state;
pub mod validate;

pub use engine::{EngineOptions, SandboxEngine};
pub use limits::{LimitsOverride, SandboxLimits};
pub use plugin::{GuestError, ModelInfo, Plugin, PluginPre};
pub use state::HostState;
pub use validate::{sha256_digest, validate_component, ComponentReport};

use wasmtime::component::Linker;

/// The linker every plugin is instantiated against: WASI p2 (with the
/// capability-free context of [`HostState`]) and wasi-nn.
pub fn linker(engine: &SandboxEngine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine.engine());
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    wasmtime_wasi_nn::wit::add_to_linker(&mut linker, |s: &mut HostState| s.nn_view())?;
    Ok(linker)
}
