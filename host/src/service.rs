//! The one entry point for front ends: rerank passages with a named plugin.
//!
//! [`Reranker`] owns the registry (what can be loaded) and a pool of warm,
//! configured instances per component, so a request does not pay for
//! instantiation or `configure` (parsing a tokenizer takes tens of ms inside
//! wasm). An instance that faulted is dropped, never returned to the pool.
//! Input is checked against the component's limits before any guest code
//! runs; ordering and top-n are done here, not in the plugin.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::nn::{NnHost, NnOptions};
use crate::registry::{Manifest, Registry};
use crate::sandbox::{EngineOptions, ModelInfo, Plugin, PluginPre, SandboxEngine};
use crate::RerankError;

/// One passage in the output: its index in the request and its score.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RankedPassage {
    /// Position in the request's passage list.
    pub index: usize,
    /// The plugin's score; higher is more relevant.
    pub score: f32,
}

/// Where the time of one rerank went.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Timing {
    /// Loading + compiling the component (first use only).
    pub load: Duration,
    /// Creating and configuring an instance (zero when a warm one was free).
    pub instantiate: Duration,
    /// The `score` call (guest code plus the wasi-nn work it asked for).
    pub score: Duration,
}

/// The result of [`Reranker::rerank`].
#[derive(Debug, Clone)]
pub struct Reranked {
    /// Passages sorted by descending score (ties keep request order),
    /// cut to top-n.
    pub ranking: Vec<RankedPassage>,
    /// Timing breakdown.
    pub timing: Timing,
}

/// Everything needed to build a [`Reranker`].
#[derive(Debug, Clone, Default)]
pub struct RerankerConfig {
    /// Engine and host-wide limits.
    pub engine: EngineOptions,
    /// wasi-nn back-end settings.
    pub nn: NnOptions,
    /// On-disk artifact cache directory, if any.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Warm instances kept per component.
    pub max_idle_per_component: usize,
    /// How files from outside the manifest are compiled (`None`: in
    /// process).
    pub compiler: Option<crate::registry::IsolatedCompiler>,
}

/// Reranks with plugins named in a manifest.
pub struct Reranker {
    registry: Registry,
    idle: Mutex<HashMap<String, Vec<Plugin>>>,
    max_idle: usize,
}

impl Reranker {
    /// Build the engine, the wasi-nn host and the registry. Nothing is
    /// loaded yet: components and graphs load on first use.
    pub fn new(manifest: Manifest, config: RerankerConfig) -> Result<Self, RerankError> {
        let engine = SandboxEngine::new(config.engine)
            .map_err(|e| RerankError::Backend(format!("cannot create the wasm engine: {e:#}")))?;
        let nn = Arc::new(NnHost::new(config.nn, manifest.graphs.clone()));
        let registry = Registry::new(Arc::new(engine), nn, manifest, config.cache_dir)?
            .with_isolated_compiler(config.compiler);
        Ok(Self {
            registry,
            idle: Mutex::new(HashMap::new()),
            max_idle: config.max_idle_per_component.max(1),
        })
    }

    /// The registry (manifest, stats, file checks).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn checkout(&self, pre: &PluginPre) -> Result<(Plugin, Duration), RerankError> {
        if let Some(p) = self
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(pre.name())
            .and_then(|v| v.pop())
        {
            return Ok((p, Duration::ZERO));
        }
        let t = Instant::now();
        let p = pre.instantiate(self.registry.engine())?;
        Ok((p, t.elapsed()))
    }

    fn checkin(&self, name: &str, plugin: Plugin) {
        if !plugin.is_alive() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let v = idle.entry(name.to_string()).or_default();
        if v.len() < self.max_idle {
            v.push(plugin);
        }
    }

    /// What the component says about itself (instantiates it if needed).
    pub fn model_info(&self, component: &str) -> Result<ModelInfo, RerankError> {
        let pre = self.registry.get(component)?;
        let (plugin, _) = self.checkout(&pre)?;
        let info = plugin.info().clone();
        self.checkin(component, plugin);
        Ok(info)
    }

    /// Score `passages` against `query` with `component`, sort, cut to
    /// `top_n`.
    pub fn rerank(
        &self,
        component: &str,
        query: &str,
        passages: &[String],
        top_n: Option<usize>,
    ) -> Result<Reranked, RerankError> {
        let t0 = Instant::now();
        let pre = self.registry.get(component)?;
        let load = t0.elapsed();
        check_input(pre.limits(), query, passages)?;
        let (mut plugin, instantiate) = self.checkout(&pre)?;
        let t1 = Instant::now();
        let result = plugin.score(query, passages);
        let score = t1.elapsed();
        self.checkin(component, plugin);
        let ranking = rank(result?, top_n);
        Ok(Reranked {
            ranking,
            timing: Timing {
                load,
                instantiate,
                score,
            },
        })
    }
}

/// Order scores best first (ties keep request order) and cut to `top_n`.
pub fn rank(scores: Vec<f32>, top_n: Option<usize>) -> Vec<RankedPassage> {
    let mut ranking: Vec<RankedPassage> = scores
        .into_iter()
        .enumerate()
        .map(|(index, score)| RankedPassage { index, score })
        .collect();
    ranking.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
    if let Some(n) = top_n {
        ranking.truncate(n);
    }
    ranking
}

/// Reject requests a plugin should never see: an empty query, no passages,
/// more passages or text than `limits` allow.
pub fn check_input(
    limits: &crate::sandbox::SandboxLimits,
    query: &str,
    passages: &[String],
) -> Result<(), RerankError> {
    if query.trim().is_empty() {
        return Err(RerankError::InvalidInput("the query is empty".into()));
    }
    if passages.is_empty() {
        return Err(RerankError::InvalidInput(
            "there are no passages to rerank".into(),
        ));
    }
    if passages.len() > limits.max_passages {
        return Err(RerankError::InvalidInput(format!(
            "{} passages is over the limit of {}",
            passages.len(),
            limits.max_passages
        )));
    }
    let bytes: usize = query.len() + passages.iter().map(String::len).sum::<usize>();
    if bytes > limits.max_input_bytes {
        return Err(RerankError::InvalidInput(format!(
            "{bytes} bytes of text is over the limit of {}",
            limits.max_input_bytes
        )));
    }
    Ok(())
}
