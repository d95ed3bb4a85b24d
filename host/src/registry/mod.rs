//! From a component name to a ready-to-instantiate [`PluginPre`].
//!
//! The [`Registry`] holds the parsed manifest and loads components on
//! demand: a request for X reads, checks, compiles and links X and nothing
//! else, once per process (concurrent requests for X wait for that one
//! load). Compilation is the expensive step (Cranelift over a few MB of
//! wasm), so artifacts are also cached on disk, keyed by the file's sha256
//! *and* the engine's compatibility key (wasmtime version + configuration):
//! an artifact made under another configuration is never offered to this
//! engine, and a changed file is never matched to a stale artifact.

pub mod isolate;
pub mod manifest;
mod preinit;
pub mod scan;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use once_cell::sync::OnceCell;
use wasmtime::component::{Component, Linker};

pub use crate::names::check_name;
pub use isolate::IsolatedCompiler;
pub use manifest::{ComponentEntry, Manifest};

use crate::fsutil::write_atomic;
use crate::nn::NnHost;
#[cfg(feature = "compiler")]
use crate::sandbox::ModelInfo;
pub use crate::sandbox::PluginGraphs;
use crate::sandbox::{
    self, validate::DEFAULT_MAX_COMPONENT_BYTES, validate_component, ComponentReport, HostState,
    PluginPre, Preinit, SandboxEngine, SandboxLimits,
};
use crate::RerankError;

/// Counters that make the "load only what is asked for" promise checkable.
#[derive(Debug, Default)]
pub struct RegistryStats {
    /// Components loaded (compiled or taken from the disk cache).
    pub loaded: AtomicUsize,
    /// Components compiled by Cranelift in this process.
    pub compiled: AtomicUsize,
    /// Components taken from the on-disk artifact cache.
    pub cache_hits: AtomicUsize,
}

/// Precompiled artifacts shared by replicas (an object store): what one
/// replica compiled, the others load instead of compiling. Keys are
/// `<engine cache key>/<component sha256 hex>.cwasm`, so an artifact is
/// only ever offered to an engine of the same version and configuration.
/// Artifacts are native code: the store behind this is trusted like the
/// operator's own disk.
pub trait SharedArtifacts: Send + Sync {
    /// The artifact of `key`, if shared (errors are logged, not raised: a
    /// miss only costs a compile).
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Share the artifact of `key`.
    fn put(&self, key: &str, bytes: &[u8]);
}

/// Settings passed to `configure`, in order.
type Settings = Vec<(String, String)>;

/// Loads and caches components named in a manifest.
pub struct Registry {
    engine: Arc<SandboxEngine>,
    linker: Linker<HostState>,
    nn: Arc<NnHost>,
    manifest: Manifest,
    cache_dir: Option<PathBuf>,
    loaded: Mutex<HashMap<String, Arc<OnceCell<Arc<PluginPre>>>>>,
    stats: RegistryStats,
    isolation: Option<IsolatedCompiler>,
    shared: Option<Arc<dyn SharedArtifacts>>,
}

/// A component ready to prepare, whatever its source (a manifest entry, an
/// upload, a file to check): its bytes and everything it runs with.
#[derive(Debug)]
pub struct Locked<'a> {
    /// Name used in messages and logs.
    pub name: &'a str,
    /// The `.wasm` file's bytes.
    pub bytes: &'a [u8],
    /// The digest the bytes must have, if pinned.
    pub pinned: Option<&'a str>,
    /// Limits every instance runs under (already narrowed by the caller).
    pub limits: SandboxLimits,
    /// Settings passed to `configure`.
    pub settings: Vec<(String, String)>,
    /// The graphs its wasi-nn calls may load.
    pub graphs: PluginGraphs,
    /// Untrusted (not the operator's): compile in the limited subprocess.
    pub untrusted: bool,
    /// An ahead-of-time artifact from a verified bundle, tried before
    /// compiling.
    pub precompiled: Option<&'a Path>,
    /// Whether instances start from a pre-initialised image.
    pub preinit: Preinit,
}

/// How a component reached memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Compiled now.
    Compiled,
    /// Deserialised from the artifact cache.
    Cached,
    /// Deserialised from a verified bundle's precompiled artifact.
    Precompiled,
}

impl Registry {
    /// A registry over `manifest`; `cache_dir` enables the on-disk cache.
    pub fn new(
        engine: Arc<SandboxEngine>,
        nn: Arc<NnHost>,
        manifest: Manifest,
        cache_dir: Option<PathBuf>,
    ) -> Result<Self, RerankError> {
        let linker = sandbox::linker(&engine)
            .map_err(|e| RerankError::Backend(format!("cannot build the linker: {e:#}")))?;
        Ok(Self {
            engine,
            linker,
            nn,
            manifest,
            cache_dir,
            loaded: Mutex::new(HashMap::new()),
            stats: RegistryStats::default(),
            isolation: None,
            shared: None,
        })
    }

    /// Compile files from outside the manifest (uploads, `components
    /// check`) in a limited subprocess ([`isolate`]) instead of in process.
    pub fn with_isolated_compiler(mut self, compiler: Option<IsolatedCompiler>) -> Self {
        self.isolation = compiler;
        self
    }

    /// Share artifacts with other replicas through `shared` (with the
    /// on-disk cache as the local copy).
    pub fn with_shared_artifacts(mut self, shared: Option<Arc<dyn SharedArtifacts>>) -> Self {
        self.shared = shared;
        self
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<SandboxEngine> {
        &self.engine
    }

    /// Load counters.
    pub fn stats(&self) -> &RegistryStats {
        &self.stats
    }

    /// The component called `name`, loading it on first use.
    pub fn get(&self, name: &str) -> Result<Arc<PluginPre>, RerankError> {
        let entry = self
            .manifest
            .components
            .get(name)
            .ok_or_else(|| RerankError::UnknownComponent(name.to_string()))?;
        let cell = {
            let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
            loaded.entry(name.to_string()).or_default().clone()
        };
        cell.get_or_try_init(|| self.load(entry).map(Arc::new))
            .cloned()
    }

    /// Load a component. Its allowed graphs load on another thread at the
    /// same time (on first use they cost as much as compiling the component),
    /// so a graph that cannot load fails here, with the back-end's own
    /// message, rather than as a "not found" inside the plugin.
    fn load(&self, entry: &ComponentEntry) -> Result<PluginPre, RerankError> {
        std::thread::scope(|s| {
            let graphs = s.spawn(|| {
                entry
                    .graphs
                    .iter()
                    .try_for_each(|g| self.nn.graph(g).map(|_| ()))
            });
            let component = self.load_component(entry);
            let graphs = graphs
                .join()
                .unwrap_or_else(|_| Err(RerankError::Backend("graph loader panicked".into())));
            let component = component?;
            graphs?;
            Ok(component)
        })
    }

    /// A manifest entry's file and settings (setting files read).
    fn read_entry(&self, entry: &ComponentEntry) -> Result<(Vec<u8>, Settings), RerankError> {
        let bytes = std::fs::read(&entry.path).map_err(|e| RerankError::InvalidComponent {
            name: entry.name.clone(),
            reason: format!("cannot read {}: {e}", entry.path.display()),
        })?;
        let mut settings = entry.settings.clone();
        // A pre-initialised image is never configured: its setting files
        // (a tokenizer) would be read for nothing.
        let files = match entry.preinit {
            Preinit::Done(_) => &[][..],
            _ => &entry.setting_files[..],
        };
        for (key, path) in files {
            let text = std::fs::read_to_string(path).map_err(|e| {
                RerankError::Manifest(format!(
                    "component `{}`: setting `{key}`: cannot read {}: {e}",
                    entry.name,
                    path.display()
                ))
            })?;
            settings.push((key.clone(), text));
        }
        Ok((bytes, settings))
    }

    /// The manifest entry as the one load path takes it.
    fn locked<'a>(
        &self,
        entry: &'a ComponentEntry,
        bytes: &'a [u8],
        settings: Settings,
    ) -> Locked<'a> {
        Locked {
            name: &entry.name,
            bytes,
            pinned: entry.sha256.as_deref(),
            limits: self.engine.options().limits.narrowed(&entry.limits),
            settings,
            graphs: PluginGraphs::Named(entry.graphs.clone()),
            untrusted: false,
            precompiled: entry.precompiled.as_deref(),
            preinit: entry.preinit.clone(),
        }
    }

    /// A manifest entry: read its file and setting files, then the one
    /// load path ([`Registry::prepare`]).
    fn load_component(&self, entry: &ComponentEntry) -> Result<PluginPre, RerankError> {
        let (bytes, settings) = self.read_entry(entry)?;
        let (pre, _) = self.prepare(self.locked(entry, &bytes, settings))?;
        self.stats.loaded.fetch_add(1, Ordering::Relaxed);
        Ok(pre)
    }

    /// The manifest component `name` snapshotted after `configure`
    /// (`bundle build --preinit`): the pre-initialised `.wasm` and what
    /// `configure` returned.
    #[cfg(feature = "compiler")]
    pub fn preinitialize_entry(&self, name: &str) -> Result<(Vec<u8>, ModelInfo), RerankError> {
        let entry = self
            .manifest
            .components
            .get(name)
            .ok_or_else(|| RerankError::UnknownComponent(name.to_string()))?;
        let (bytes, settings) = self.read_entry(entry)?;
        let locked = self.locked(entry, &bytes, settings);
        self.check(&locked)?;
        self.preinitialize(&locked)
    }

    /// The one load path: validate (and check the pin), compile through the
    /// artifact cache (untrusted files in the limited subprocess), link.
    /// Nothing is instantiated: the caller decides when to.
    pub fn prepare(&self, c: Locked<'_>) -> Result<(PluginPre, ComponentReport), RerankError> {
        let invalid = |reason: String| RerankError::InvalidComponent {
            name: c.name.to_string(),
            reason,
        };
        let report = self.check(&c)?;
        let isolate = self.isolation.as_ref().filter(|_| c.untrusted);
        let (compiled, origin, preconfigured) = match &c.preinit {
            Preinit::Snapshot => {
                let (compiled, origin, info) = self.preinitialized(&c, &report)?;
                (compiled, origin, Some(info))
            }
            preinit => {
                let (compiled, origin) = self
                    .compile(c.bytes, &report, isolate, c.precompiled)
                    .map_err(&invalid)?;
                let info = match preinit {
                    Preinit::Done(info) => Some(info.clone()),
                    _ => None,
                };
                (compiled, origin, info)
            }
        };
        let pre = self
            .linker
            .instantiate_pre(&compiled)
            .map_err(|e| invalid(format!("cannot link: {e:#}")))?;
        tracing::info!(
            target: "nboost::registry",
            component = %c.name,
            digest = %report.sha256,
            ?origin,
            preinitialized = preconfigured.is_some(),
            "component loaded"
        );
        let mut plugin = PluginPre::new(
            c.name,
            pre,
            sandbox::PluginSpec {
                limits: c.limits,
                settings: c.settings,
                graphs: c.graphs,
            },
            self.nn.clone(),
        )?;
        if let Some(info) = preconfigured {
            plugin = plugin.with_preconfigured(info);
        }
        Ok((plugin, report))
    }

    /// Static validation of `c`'s file, and its pin.
    fn check(&self, c: &Locked<'_>) -> Result<ComponentReport, RerankError> {
        let invalid = |reason: String| RerankError::InvalidComponent {
            name: c.name.to_string(),
            reason,
        };
        let report = validate_component(c.bytes, DEFAULT_MAX_COMPONENT_BYTES).map_err(invalid)?;
        match c.pinned {
            Some(want) if want != report.sha256 => Err(RerankError::InvalidComponent {
                name: c.name.to_string(),
                reason: format!(
                    "the file has digest {}, the manifest pins {want}",
                    report.sha256
                ),
            }),
            _ => Ok(report),
        }
    }

    fn artifact_path(&self, report: &ComponentReport) -> Option<PathBuf> {
        let hex = report.sha256.trim_start_matches("sha256:");
        self.cache_dir
            .as_ref()
            .map(|d| d.join(self.engine.cache_key()).join(format!("{hex}.cwasm")))
    }

    /// Compile `bytes` (in the `isolate`d subprocess when given), or take
    /// the artifact from the bundle or the disk cache.
    fn compile(
        &self,
        bytes: &[u8],
        report: &ComponentReport,
        isolate: Option<&IsolatedCompiler>,
        precompiled: Option<&Path>,
    ) -> Result<(Component, Origin), String> {
        let mut unfit = None;
        if let Some(path) = precompiled {
            match deserialize_bundled(&self.engine, path) {
                Ok(c) => return Ok((c, Origin::Precompiled)),
                Err(e) if sandbox::engine::HAS_COMPILER => tracing::warn!(
                    target: "nboost::registry",
                    path = %path.display(),
                    "the bundle's precompiled artifact does not fit this engine ({}): compiling \
                     the component instead: {e:#}",
                    self.engine.cache_key()
                ),
                Err(e) => unfit = Some(format!("{e:#}")),
            }
        }
        let artifact = self.artifact_path(report);
        let shared_key = format!(
            "{}/{}.cwasm",
            self.engine.cache_key(),
            report.sha256.trim_start_matches("sha256:")
        );
        if let (Some(shared), Some(path)) = (&self.shared, artifact.as_deref()) {
            if !path.is_file() {
                if let Some(bytes) = shared.get(&shared_key) {
                    if let Err(e) = write_atomic(path, &bytes) {
                        tracing::warn!(target: "nboost::registry", "cannot cache a shared artifact: {e}");
                    } else {
                        tracing::info!(target: "nboost::registry", key = %shared_key, "artifact from the shared store");
                    }
                }
            }
        }
        if let Some(path) = artifact.as_deref().filter(|p| p.is_file()) {
            match deserialize(&self.engine, path) {
                Ok(c) => {
                    self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok((c, Origin::Cached));
                }
                Err(e) => tracing::warn!(
                    target: "nboost::registry",
                    path = %path.display(),
                    "ignoring unusable cached artifact: {e:#}"
                ),
            }
        }
        let compiled = self.compile_now(bytes, isolate, artifact.clone(), unfit)?;
        if let (Some(shared), Some(path)) = (&self.shared, artifact.as_deref()) {
            if let Ok(data) = std::fs::read(path) {
                shared.put(&shared_key, &data);
            }
        }
        Ok(compiled)
    }

    /// A runtime-only build (no cargo feature `compiler`): what has no
    /// artifact for this engine cannot run, and the message says what
    /// would.
    #[cfg(not(feature = "compiler"))]
    fn compile_now(
        &self,
        _bytes: &[u8],
        _isolate: Option<&IsolatedCompiler>,
        _artifact: Option<PathBuf>,
        unfit: Option<String>,
    ) -> Result<(Component, Origin), String> {
        let triple = sandbox::engine::host_triple();
        Err(match unfit {
            Some(why) => format!(
                "its bundle's precompiled artifact does not fit this node's engine ({}): {why}; \
                 this nboost is a runtime-only build and cannot compile it: rebuild the bundle \
                 with `nboost bundle build --precompile {triple}` on a full build of the same \
                 version",
                self.engine.cache_key()
            ),
            None => format!(
                "it has no precompiled artifact for {triple}, and this nboost is a runtime-only \
                 build (no compiler): serve it from a bundle built with `nboost bundle build \
                 --precompile {triple}` by a full build of the same version"
            ),
        })
    }

    #[cfg(feature = "compiler")]
    fn compile_now(
        &self,
        bytes: &[u8],
        isolate: Option<&IsolatedCompiler>,
        artifact: Option<PathBuf>,
        _unfit: Option<String>,
    ) -> Result<(Component, Origin), String> {
        let component = match isolate {
            Some(compiler) => {
                let artifact = compiler.compile(&self.engine, bytes)?;
                deserialize_bytes(&self.engine, &artifact)
                    .map_err(|e| format!("the compiler's artifact is unusable: {e:#}"))?
            }
            None => Component::new(self.engine.engine(), bytes)
                .map_err(|e| format!("cannot compile: {e:#}"))?,
        };
        self.stats.compiled.fetch_add(1, Ordering::Relaxed);
        if let Some(path) = artifact {
            if let Err(e) = component
                .serialize()
                .map_err(|e| std::io::Error::other(e.to_string()))
                .and_then(|data| write_atomic(&path, &data))
            {
                tracing::warn!(target: "nboost::registry", path = %path.display(), "cannot cache artifact: {e}");
            }
        }
        Ok((component, Origin::Compiled))
    }

    /// The wasi-nn host (graphs) components of this registry use.
    pub fn nn(&self) -> &Arc<NnHost> {
        &self.nn
    }

    /// Fully check a component file outside any manifest: static
    /// validation, compilation, linking, and the types of `configure` and
    /// `score` (by instantiating it, without calling `configure`).
    pub fn check_file(&self, path: &Path) -> Result<ComponentReport, RerankError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| RerankError::InvalidComponent {
            name: name.clone(),
            reason: format!("cannot read: {e}"),
        })?;
        let (plugin, report) = self.prepare(Locked {
            name: &name,
            bytes: &bytes,
            pinned: None,
            limits: self.engine.options().limits,
            settings: Vec::new(),
            graphs: PluginGraphs::Named(Vec::new()),
            untrusted: true,
            precompiled: None,
            preinit: Preinit::Off,
        })?;
        plugin.check_signatures(&self.engine)?;
        Ok(report)
    }
}

#[allow(unsafe_code, reason = "wasmtime requires it to load precompiled code")]
fn deserialize(engine: &SandboxEngine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the artifact cache is the operator's own directory, written
    // only by `Registry::compile` through an atomic rename, and keyed by
    // the engine's compatibility hash; wasmtime additionally checks the
    // header and refuses artifacts from another version or configuration.
    unsafe { Component::deserialize_file(engine.engine(), path) }
}

#[allow(unsafe_code, reason = "wasmtime requires it to load precompiled code")]
fn deserialize_bundled(engine: &SandboxEngine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the artifact is a part of a bundle whose ed25519 signature
    // (by a key the operator trusts) and part digests verified before it
    // was unpacked into a directory only this node writes
    // (`bundle::open`); it is native code the operator chose to ship.
    // wasmtime checks its header and refuses another version,
    // configuration or CPU feature set (the caller then compiles).
    unsafe { Component::deserialize_file(engine.engine(), path) }
}

#[cfg(feature = "compiler")]
#[allow(unsafe_code, reason = "wasmtime requires it to load precompiled code")]
fn deserialize_bytes(engine: &SandboxEngine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: the artifact was just made by this very binary
    // (`isolate::child_main`) from the engine options of this process;
    // wasmtime checks its header and refuses another version or
    // configuration. Native code compiled from an untrusted component is
    // exactly as trusted as if it had been compiled in process.
    unsafe { Component::deserialize(engine.engine(), artifact) }
}
