//! The process-wide wasmtime [`Engine`] and its epoch ticker.
//!
//! One engine serves every component. It is configured for untrusted code:
//! epoch interruption (so a spinning guest can be stopped at a deadline),
//! a bounded wasm stack, and the pooling instance allocator with
//! copy-on-write memory images, so that a fresh, isolated instance per call
//! costs microseconds rather than an `mmap` storm.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::SandboxLimits;

/// How often the ticker advances the engine epoch. Deadlines are rounded up
/// to this granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Engine-wide settings (fixed for the life of the process). Serialisable:
/// the compile subprocess (`registry::isolate`) rebuilds the same engine.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct EngineOptions {
    /// Host maxima for every plugin; per-component limits may only narrow.
    pub limits: SandboxLimits,
    /// Most plugin instances alive at once (pool slots).
    pub max_instances: u32,
    /// Use the pooling allocator (default). Off only for debugging.
    pub pooling: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            limits: SandboxLimits::default(),
            max_instances: 64,
            pooling: true,
        }
    }
}

/// The wasmtime configuration for `options`: what every engine of this
/// process (and the compile subprocess, and `nboost compile`) shares.
fn config(options: &EngineOptions) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.max_wasm_stack(options.limits.max_stack_bytes);
    config.memory_init_cow(true);
    #[cfg(feature = "compiler")]
    config.parallel_compilation(true);
    config.consume_fuel(options.limits.fuel_per_call.is_some());
    if options.pooling {
        let mut pool = PoolingAllocationConfig::default();
        let n = options.max_instances.max(1);
        pool.total_component_instances(n);
        // One fiber stack per call in flight (calls are async): one per
        // instance, not the default thousand (2 GiB of reservations).
        pool.total_stacks(n);
        // A Rust wasip2 component holds a few core instances (main module
        // plus shims), one or two memories and tables; a Python one
        // (componentize-py: CPython and libc as separately linked
        // modules) about 35, so the per-component cap is 64 and the
        // total is an average of 8 per slot.
        pool.total_core_instances(n * 8);
        pool.max_core_instances_per_component(64);
        pool.total_memories(n * 2);
        pool.total_tables(n * 4);
        pool.max_memories_per_component(4);
        pool.max_tables_per_component(8);
        pool.table_elements(100_000);
        pool.max_memory_size(options.limits.max_memory_bytes as usize);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// `wasmtime-VERSION-HASH`: changes whenever an artifact made by `engine`
/// would be refused by another (version, configuration, target, CPU
/// features).
#[cfg(feature = "compiler")]
fn cache_key(engine: &Engine) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("wasmtime-{}-{:016x}", wasmtime_version(), h.finish())
}

/// A runtime-only engine (no compiler) has no compatibility hash: wasmtime
/// computes it from compiler settings. Such an engine writes no artifacts,
/// so its key only names where it would look; every artifact it loads is
/// still checked by wasmtime against this engine and CPU.
#[cfg(not(feature = "compiler"))]
fn cache_key(_engine: &Engine) -> String {
    format!("wasmtime-{}-runtime-only", wasmtime_version())
}

/// Whether this build can compile components (cargo feature `compiler`);
/// without it only precompiled artifacts load.
pub const HAS_COMPILER: bool = cfg!(feature = "compiler");

/// The triple this host runs on (`x86_64-unknown-linux-gnu`, ...): the
/// target an artifact must be made for to load here.
pub fn host_triple() -> String {
    target_lexicon::HOST.to_string()
}

/// Compile a component ahead of time for `target` (the host when `None`)
/// with the configuration `options` gives every engine: the artifact and
/// the key of the engine that made it ([`SandboxEngine::cache_key`]). For
/// the host, the artifact is what this host's registry would have cached;
/// for another triple, what a node of that triple with the same options
/// loads (wasmtime refuses it if its version, configuration or required
/// CPU features do not match that node).
#[cfg(feature = "compiler")]
pub fn precompile(
    options: &EngineOptions,
    target: Option<&str>,
    bytes: &[u8],
) -> wasmtime::Result<(Vec<u8>, String)> {
    let mut config = config(options);
    if let Some(t) = target.filter(|t| *t != host_triple()) {
        config.target(t)?;
    }
    let engine = Engine::new(&config)?;
    let artifact = engine.precompile_component(bytes)?;
    Ok((artifact, cache_key(&engine)))
}

/// The engine plus the thread that drives its epochs.
pub struct SandboxEngine {
    engine: Engine,
    options: EngineOptions,
    cache_key: String,
    _ticker: EpochTicker,
}

impl SandboxEngine {
    /// Build the engine and start the epoch ticker.
    pub fn new(options: EngineOptions) -> wasmtime::Result<Self> {
        let engine = Engine::new(&config(&options))?;
        let cache_key = cache_key(&engine);
        let ticker = EpochTicker::start(engine.clone());
        Ok(Self {
            engine,
            options,
            cache_key,
            _ticker: ticker,
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The options this engine was built with.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// A string that changes whenever a precompiled artifact made by this
    /// engine would be refused by another: wasmtime version plus engine
    /// configuration. Used to key the on-disk artifact cache.
    pub fn cache_key(&self) -> &str {
        &self.cache_key
    }

    /// Epoch ticks corresponding to a deadline in milliseconds (rounded up,
    /// plus one so that a tick landing just after the call started does not
    /// cut it short).
    pub fn deadline_ticks(deadline_ms: u64) -> u64 {
        deadline_ms.div_ceil(EPOCH_TICK.as_millis() as u64) + 1
    }
}

/// The wasmtime crate version compiled into this binary.
pub fn wasmtime_version() -> &'static str {
    "48.0.8"
}

/// Advances the engine's epoch every [`EPOCH_TICK`]; stopped on drop.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("nboost-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        Self {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
