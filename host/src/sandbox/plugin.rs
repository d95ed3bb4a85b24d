//! Typed calls into a reranker plugin, under the sandbox's limits.
//!
//! [`PluginPre`] is a compiled component with its imports resolved
//! (`InstancePre`) and its export indices looked up once: making an
//! [`Plugin`] from it is an allocation from the instance pool plus one
//! `configure` call. A `Plugin` is a live, configured instance in its own
//! `Store`; it is reused for later calls until it faults. After a trap the
//! instance is dead and is dropped; the next call gets a fresh one.
//!
//! Everything read back from the guest is bounded: the score list's length
//! is checked against the request, and guest strings (error messages, model
//! info) are cut to [`MAX_GUEST_STRING`] bytes. Results are lifted into
//! owned values (`Vec`, `String`) *during* the call: wasmtime 48 runs the
//! guest's `post-return` (which frees the result buffers) before
//! `TypedFunc::call` returns, so a `WasmList`/`WasmStr` view read afterwards
//! would read freed memory, whose first bytes the guest allocator has
//! already overwritten. What a lift can copy is bounded by the instance's
//! linear memory, itself capped by `max_memory_bytes`.
//!
//! Every call is async (`instantiate_async`, `call_async`) and bounded by
//! [`super::exec::bounded`]: the deadline holds even while the guest waits
//! in a host call, and a caller that goes away ([`CancellationToken`])
//! frees the thread at once. The `*_async` methods take the token; the
//! plain ones block on them for synchronous callers (the CLI, tests).

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Instance, InstancePre};
use wasmtime::{Store, Trap};

use super::exec::{block_on, bounded, CancellationToken, Interrupted};
use super::{HostState, SandboxEngine, SandboxLimits};
pub use crate::error::GuestError;
use crate::nn::{DeadlineExceeded, LoadedGraph, NnHost, OverBudget};
use crate::RerankError;

/// Longest guest string (error message, model name...) the host keeps.
pub const MAX_GUEST_STRING: usize = 4096;

/// What `configure` returned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    /// Model name.
    pub name: String,
    /// Model or plugin version.
    pub version: String,
    /// One-line description.
    pub description: String,
    /// Preferred passages per `score` call (0 = none).
    pub preferred_batch_size: u32,
    /// Tokens the model reads per input (0 = not token based).
    pub max_tokens: u32,
}

/// Host bindings of the `nboost:reranker` contract, generated from `wit/`
/// (the `reranker-plugin` world: only its export matters to the host; a
/// plugin's wasi-nn imports are the linker's business). The export is
/// looked up semver-compatibly, so a plugin built against any `0.1.x`
/// resolves.
mod wit {
    wasmtime::component::bindgen!({
        world: "reranker-plugin",
        path: "../wit",
        exports: { default: async },
    });
}

use wit::exports::nboost::reranker::reranker as guest;

fn bounded_text(text: &str) -> String {
    if text.len() <= MAX_GUEST_STRING {
        text.to_owned()
    } else {
        let mut end = MAX_GUEST_STRING;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes cut)", &text[..end], text.len() - end)
    }
}

/// The plugin's error, bounded.
fn read_error(e: &guest::Error) -> GuestError {
    match e {
        guest::Error::InvalidInput(s) => GuestError::InvalidInput(bounded_text(s)),
        guest::Error::InvalidConfig(s) => GuestError::InvalidConfig(bounded_text(s)),
        guest::Error::Backend(s) => GuestError::Backend(bounded_text(s)),
        guest::Error::Internal(s) => GuestError::Internal(bounded_text(s)),
    }
}

/// Whether instances of a component start from a pre-initialised image
/// ([`super::preinit`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Preinit {
    /// Every instance runs `configure` (the default).
    #[default]
    Off,
    /// Snapshot one configured instance when the component loads (cached
    /// with its artifact) and start every instance from the snapshot.
    Snapshot,
    /// The component file already is such a snapshot (from a signed
    /// bundle), whose `configure` returned this.
    Done(ModelInfo),
}

/// The graphs a plugin's wasi-nn calls may load.
#[derive(Debug, Clone)]
pub enum PluginGraphs {
    /// Manifest graphs, by name, loaded on first use.
    Named(Vec<String>),
    /// Graphs already loaded (a tenant's uploads, or public ones resolved
    /// for it), under the names the guest passes to `load-by-name`.
    Loaded(Arc<[(String, LoadedGraph)]>),
}

/// What every instance of a plugin runs with.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// Limits of every instance and call.
    pub limits: SandboxLimits,
    /// Passed to `configure`.
    pub settings: Vec<(String, String)>,
    /// What wasi-nn may load.
    pub graphs: PluginGraphs,
}

/// A compiled plugin, ready to instantiate.
#[derive(Clone)]
pub struct PluginPre {
    name: String,
    pre: InstancePre<HostState>,
    indices: wit::RerankerPluginIndices,
    limits: SandboxLimits,
    settings: Vec<(String, String)>,
    graphs: PluginGraphs,
    nn: Arc<NnHost>,
    preconfigured: Option<ModelInfo>,
}

impl PluginPre {
    /// Wrap an `InstancePre`, finding the reranker export (named
    /// `export_name`) and its functions.
    pub fn new(
        name: &str,
        pre: InstancePre<HostState>,
        spec: PluginSpec,
        nn: Arc<NnHost>,
    ) -> Result<Self, RerankError> {
        let indices =
            wit::RerankerPluginIndices::new(&pre).map_err(|e| RerankError::InvalidComponent {
                name: name.to_string(),
                reason: format!("not a nboost:reranker@0.1 plugin: {e:#}"),
            })?;
        Ok(Self {
            name: name.to_string(),
            pre,
            indices,
            limits: spec.limits,
            settings: spec.settings,
            graphs: spec.graphs,
            nn,
            preconfigured: None,
        })
    }

    /// The component is a pre-initialised image ([`super::preinit`]): its
    /// memory already holds the state `configure` built, and `configure`
    /// returned `info`. Instances start from that image and `configure` is
    /// not called again.
    pub fn with_preconfigured(mut self, info: ModelInfo) -> Self {
        self.preconfigured = Some(info);
        self
    }

    /// The same component under other limits (a tenant's narrower quota).
    /// Cheap: the compiled code is shared.
    pub fn with_limits(&self, limits: SandboxLimits) -> Self {
        let mut p = self.clone();
        p.limits = limits;
        p
    }

    /// The component's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The limits every instance of this component runs under.
    pub fn limits(&self) -> &SandboxLimits {
        &self.limits
    }

    /// Instantiate and type-check `configure` and `score` without calling
    /// `configure`: proves the file is a usable reranker.
    pub fn check_signatures(&self, engine: &SandboxEngine) -> Result<(), RerankError> {
        let cancel = CancellationToken::new();
        block_on(async { self.start(engine, &cancel).await.map(|_| ()) })
    }

    /// A fresh, unconfigured instance (its exports type-checked).
    async fn start(
        &self,
        engine: &SandboxEngine,
        cancel: &CancellationToken,
    ) -> Result<Plugin, RerankError> {
        let nn = match &self.graphs {
            PluginGraphs::Loaded(graphs) => self.nn.context_preloaded(graphs, self.limits.nn()),
            PluginGraphs::Named(names) => self.nn.context(names, self.limits.nn()),
        };
        let state = HostState::new(nn, self.limits.max_memory_bytes, self.limits.max_log_bytes);
        let mut store = Store::new(engine.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.set_hostcall_fuel(self.limits.max_tensor_bytes + (1 << 20));
        store.epoch_deadline_trap();

        let mut plugin = Plugin {
            name: self.name.clone(),
            limits: self.limits,
            store,
            instance: None,
            bindings: None,
            info: None,
            alive: true,
        };
        plugin.arm();
        let deadline = plugin.deadline();
        let instantiated = bounded(
            deadline,
            cancel,
            self.pre.instantiate_async(&mut plugin.store),
        )
        .await;
        let instance = match instantiated {
            Ok(Err(e)) if !plugin.is_fault(&e) => return Err(self.bad_signature(format!("{e:#}"))),
            other => plugin.settle(other)?,
        };
        let bindings = self
            .indices
            .load(&mut plugin.store, &instance)
            // Not a trap, a deadline or a limit: the exports did not
            // type-check against the contract.
            .map_err(|e| self.bad_signature(format!("{e:#}")))?;
        plugin.instance = Some(instance);
        plugin.bindings = Some(bindings);
        Ok(plugin)
    }

    /// Create a fresh instance and `configure` it (blocking).
    pub fn instantiate(&self, engine: &SandboxEngine) -> Result<Plugin, RerankError> {
        block_on(self.instantiate_async(engine, &CancellationToken::new()))
    }

    /// Create a fresh instance and `configure` it; instantiation and
    /// `configure` each run under the deadline, and stop when `cancel`
    /// fires.
    pub async fn instantiate_async(
        &self,
        engine: &SandboxEngine,
        cancel: &CancellationToken,
    ) -> Result<Plugin, RerankError> {
        let started = Instant::now();
        let mut plugin = self.start(engine, cancel).await?;
        if let Some(info) = &self.preconfigured {
            plugin.info = Some(info.clone());
            tracing::debug!(
                target: "nboost::sandbox",
                component = %self.name,
                us = started.elapsed().as_micros() as u64,
                "instance started from its pre-initialised image"
            );
            return Ok(plugin);
        }
        plugin.arm();
        let deadline = plugin.deadline();
        let bindings = plugin.bindings.as_ref().expect("set by start");
        let result = bounded(
            deadline,
            cancel,
            bindings
                .nboost_reranker_reranker()
                .call_configure(&mut plugin.store, &self.settings),
        )
        .await;
        plugin.drain_log();
        let result = plugin.settle(result)?;
        let info = match result {
            Ok(raw) => ModelInfo {
                name: bounded_text(&raw.name),
                version: bounded_text(&raw.version),
                description: bounded_text(&raw.description),
                preferred_batch_size: raw.preferred_batch_size,
                max_tokens: raw.max_tokens,
            },
            Err(e) => {
                let e = read_error(&e);
                return Err(RerankError::Config {
                    name: self.name.clone(),
                    reason: e.to_string(),
                });
            }
        };
        tracing::debug!(
            target: "nboost::sandbox",
            component = %self.name,
            us = started.elapsed().as_micros() as u64,
            "instance configured"
        );
        plugin.info = Some(info);
        Ok(plugin)
    }

    fn bad_signature(&self, e: String) -> RerankError {
        RerankError::InvalidComponent {
            name: self.name.clone(),
            reason: format!(
                "the reranker export does not have the nboost:reranker@0.1 signature: {e}"
            ),
        }
    }
}

/// A live, configured plugin instance.
pub struct Plugin {
    name: String,
    limits: SandboxLimits,
    store: Store<HostState>,
    instance: Option<Instance>,
    bindings: Option<wit::RerankerPlugin>,
    info: Option<ModelInfo>,
    alive: bool,
}

impl Plugin {
    /// The store and the instance, for [`super::preinit`]'s snapshot (with
    /// the call budgets armed again).
    #[cfg(feature = "compiler")]
    pub(super) fn snapshot_parts(&mut self) -> (&mut Store<HostState>, Instance) {
        self.arm();
        let instance = self.instance.expect("set by start");
        (&mut self.store, instance)
    }

    /// What the plugin said about itself in `configure`.
    pub fn info(&self) -> &ModelInfo {
        self.info
            .as_ref()
            .expect("a Plugin is only handed out once configured")
    }

    /// False once the instance has trapped: it must be dropped.
    pub fn is_alive(&self) -> bool {
        self.alive
    }

    /// Score passages, one finite score per passage, under the deadline
    /// (blocking).
    pub fn score(&mut self, query: &str, passages: &[String]) -> Result<Vec<f32>, RerankError> {
        block_on(self.score_async(query, passages, &CancellationToken::new()))
    }

    /// Score passages under the deadline; stops (and the instance dies)
    /// when `cancel` fires.
    pub async fn score_async(
        &mut self,
        query: &str,
        passages: &[String],
        cancel: &CancellationToken,
    ) -> Result<Vec<f32>, RerankError> {
        if !self.alive {
            return Err(RerankError::GuestFault(
                "the instance is dead after an earlier fault".into(),
            ));
        }
        self.arm();
        let deadline = self.deadline();
        let bindings = self.bindings.as_ref().expect("set in instantiate");
        let result = bounded(
            deadline,
            cancel,
            bindings
                .nboost_reranker_reranker()
                .call_score(&mut self.store, query, passages),
        )
        .await;
        self.drain_log();
        let result = self.settle(result)?;
        match result {
            Ok(scores) => {
                if scores.len() != passages.len() {
                    self.alive = false;
                    return Err(RerankError::GuestFault(format!(
                        "the plugin returned {} scores for {} passages",
                        scores.len(),
                        passages.len()
                    )));
                }
                if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
                    return Err(RerankError::GuestFault(format!(
                        "the plugin returned a non-finite score ({}) for passage {i}",
                        scores[i]
                    )));
                }
                Ok(scores)
            }
            Err(e) => Err(RerankError::Guest(read_error(&e))),
        }
    }

    /// The wall-clock budget of one call.
    fn deadline(&self) -> Duration {
        Duration::from_millis(self.limits.deadline_ms)
    }

    /// The outcome of a bounded call: a value, or the call's fault (and
    /// the instance is dead).
    fn settle<R>(
        &mut self,
        outcome: Result<wasmtime::Result<R>, Interrupted>,
    ) -> Result<R, RerankError> {
        match outcome {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(self.fault(e)),
            Err(Interrupted::Deadline) => {
                self.alive = false;
                let e = RerankError::Timeout(self.limits.deadline_ms);
                tracing::warn!(target: "nboost::sandbox", component = %self.name, error = %e, "call stopped while waiting in a host call");
                Err(e)
            }
            Err(Interrupted::Cancelled) => {
                self.alive = false;
                tracing::info!(target: "nboost::sandbox", component = %self.name, "call cancelled: the caller went away");
                Err(RerankError::Cancelled)
            }
        }
    }

    /// Reset the per-call budgets: deadline (epoch, and the one wasi-nn
    /// checks) and, if enabled, fuel.
    fn arm(&mut self) {
        let deadline = Instant::now() + self.deadline();
        self.store.data_mut().nn.deadline = Some(deadline);
        self.store
            .set_epoch_deadline(SandboxEngine::deadline_ticks(self.limits.deadline_ms));
        if let Some(fuel) = self.limits.fuel_per_call {
            // Cannot fail: fuel is enabled on the engine whenever it is set.
            let _ = self.store.set_fuel(fuel);
        }
    }

    /// Whether `err` is the instance's own fault (a trap, a deadline, a
    /// limit) rather than a component that does not fit the contract.
    fn is_fault(&self, err: &wasmtime::Error) -> bool {
        err.downcast_ref::<Trap>().is_some()
            || err.downcast_ref::<DeadlineExceeded>().is_some()
            || err.downcast_ref::<OverBudget>().is_some()
            || self.store.data().limiter.refused()
    }

    /// Classify a trap or host error, and mark the instance dead.
    fn fault(&mut self, err: wasmtime::Error) -> RerankError {
        self.alive = false;
        let trap = err.downcast_ref::<Trap>().copied();
        let e = if trap == Some(Trap::Interrupt) || err.downcast_ref::<DeadlineExceeded>().is_some()
        {
            RerankError::Timeout(self.limits.deadline_ms)
        } else if trap == Some(Trap::OutOfFuel) {
            RerankError::OutOfFuel(self.limits.fuel_per_call.unwrap_or_default())
        } else if err.downcast_ref::<OverBudget>().is_some() || self.store.data().limiter.refused()
        {
            RerankError::OutOfMemory(self.store.data().limiter.max_memory_bytes())
        } else {
            match trap {
                Some(Trap::StackOverflow) => RerankError::GuestFault("stack overflow".into()),
                Some(Trap::UnreachableCodeReached) => RerankError::GuestFault(
                    "the plugin trapped (unreachable: a panic or abort inside the plugin)".into(),
                ),
                Some(t) => RerankError::GuestFault(format!("the plugin trapped: {t}")),
                None => RerankError::GuestFault(format!("{err:#}")),
            }
        };
        tracing::warn!(target: "nboost::sandbox", component = %self.name, error = %e, "instance fault");
        e
    }

    /// Send what the guest printed to the log, tagged with the component,
    /// and the count of wasi-nn failures it was not allowed to log.
    fn drain_log(&mut self) {
        let suppressed = self.store.data_mut().nn.log.reset();
        if suppressed > 0 {
            tracing::warn!(target: "nboost::nn", component = %self.name, suppressed, "more wasi-nn failures of this call were not logged");
        }
        let (text, dropped) = self.store.data().log.take();
        for line in text.lines().filter(|l| !l.is_empty()) {
            tracing::info!(target: "nboost::guest", component = %self.name, "{line}");
        }
        if dropped > 0 {
            tracing::warn!(target: "nboost::guest", component = %self.name, dropped, "guest output over the cap was dropped");
        }
    }
}
