//! Pre-initialised components in the registry: made once, cached, reused.
//!
//! A component whose manifest entry says `preinit = true` is snapshotted
//! after `configure` ([`crate::sandbox::preinit`]) the first time it loads;
//! the compiled snapshot and what its `configure` returned are cached next
//! to the ordinary artifacts, under a key of the component's digest *and*
//! its settings (a snapshot holds what `configure` built from exactly those
//! settings: other settings make another snapshot). Later starts
//! deserialise the snapshot and never call `configure`. Bundles carry the
//! snapshot itself (`nboost bundle build --preinit`), made here too.

use std::path::PathBuf;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::{deserialize, Locked, Origin, Registry};
use crate::sandbox::{ComponentReport, ModelInfo};
use crate::RerankError;

/// Bumped when what a snapshot holds changes meaning.
const SNAPSHOT_FORMAT: &str = "nboost-preinit-1";

impl Registry {
    /// Where the compiled snapshot of `c` is cached (with `.json` beside
    /// it for its model info), if there is a cache.
    fn snapshot_path(&self, c: &Locked<'_>, report: &ComponentReport) -> Option<PathBuf> {
        let mut h = Sha256::new();
        h.update(SNAPSHOT_FORMAT);
        h.update(report.sha256.as_bytes());
        for (k, v) in &c.settings {
            h.update((k.len() as u64).to_le_bytes());
            h.update(k);
            h.update((v.len() as u64).to_le_bytes());
            h.update(v);
        }
        let key = hex::encode(h.finalize());
        self.cache_dir.as_ref().map(|d| {
            d.join(self.engine.cache_key())
                .join("preinit")
                .join(format!("{key}.cwasm"))
        })
    }

    /// The pre-initialised form of `c`: from the cache, or made now (and
    /// cached). `report` is `c`'s validation.
    pub(super) fn preinitialized(
        &self,
        c: &Locked<'_>,
        report: &ComponentReport,
    ) -> Result<(Component, Origin, ModelInfo), RerankError> {
        let path = self.snapshot_path(c, report);
        if let Some(path) = path.as_deref().filter(|p| p.is_file()) {
            let info = std::fs::read(path.with_extension("json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<ModelInfo>(&b).ok());
            match (deserialize(&self.engine, path), info) {
                (Ok(component), Some(info)) => {
                    self.stats
                        .cache_hits
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok((component, Origin::Cached, info));
                }
                (Err(e), _) => tracing::warn!(
                    target: "nboost::registry",
                    path = %path.display(),
                    "ignoring an unusable cached snapshot: {e:#}"
                ),
                (_, None) => tracing::warn!(
                    target: "nboost::registry",
                    path = %path.display(),
                    "ignoring a cached snapshot without its model info"
                ),
            }
        }
        self.snapshot_now(c, path)
    }

    #[cfg(not(feature = "compiler"))]
    fn snapshot_now(
        &self,
        c: &Locked<'_>,
        _path: Option<PathBuf>,
    ) -> Result<(Component, Origin, ModelInfo), RerankError> {
        Err(RerankError::InvalidComponent {
            name: c.name.to_string(),
            reason: "this nboost is a runtime-only build and cannot pre-initialise a component: \
                     serve it from a bundle built with `nboost bundle build --precompile \
                     --preinit` by a full build of the same version"
                .into(),
        })
    }

    #[cfg(feature = "compiler")]
    fn snapshot_now(
        &self,
        c: &Locked<'_>,
        path: Option<PathBuf>,
    ) -> Result<(Component, Origin, ModelInfo), RerankError> {
        let started = std::time::Instant::now();
        let (wasm, info) = self.preinitialize(c)?;
        let component = Component::new(self.engine.engine(), &wasm).map_err(|e| {
            RerankError::InvalidComponent {
                name: c.name.to_string(),
                reason: format!("cannot compile its snapshot: {e:#}"),
            }
        })?;
        self.stats
            .compiled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(path) = path {
            let written = component
                .serialize()
                .map_err(|e| std::io::Error::other(e.to_string()))
                .and_then(|data| {
                    let info = serde_json::to_vec(&info).map_err(std::io::Error::other)?;
                    // The info first: a snapshot is only taken with its info.
                    crate::fsutil::write_atomic(&path.with_extension("json"), &info)?;
                    crate::fsutil::write_atomic(&path, &data)
                });
            if let Err(e) = written {
                tracing::warn!(target: "nboost::registry", path = %path.display(), "cannot cache the snapshot: {e}");
            }
        }
        tracing::info!(
            target: "nboost::registry",
            component = %c.name,
            ms = started.elapsed().as_millis() as u64,
            bytes = wasm.len(),
            "component pre-initialised"
        );
        Ok((component, Origin::Compiled, info))
    }

    /// Snapshot `c` after `configure`: the pre-initialised component (a
    /// `.wasm`, portable) and what `configure` returned. The instrumented
    /// copy is compiled in this process, so only the operator's own
    /// components (not uploads) are pre-initialised.
    #[cfg(feature = "compiler")]
    pub fn preinitialize(&self, c: &Locked<'_>) -> Result<(Vec<u8>, ModelInfo), RerankError> {
        let invalid = |reason: String| RerankError::InvalidComponent {
            name: c.name.to_string(),
            reason,
        };
        if c.untrusted {
            return Err(invalid(
                "only the operator's components are pre-initialised, not uploads".into(),
            ));
        }
        crate::sandbox::preinit::snapshot(c.name, c.bytes, &self.engine, |instrumented| {
            let component = Component::new(self.engine.engine(), instrumented)
                .map_err(|e| invalid(format!("cannot compile its instrumented copy: {e:#}")))?;
            let pre = self
                .linker
                .instantiate_pre(&component)
                .map_err(|e| invalid(format!("cannot link: {e:#}")))?;
            crate::sandbox::PluginPre::new(
                c.name,
                pre,
                crate::sandbox::PluginSpec {
                    limits: c.limits,
                    settings: c.settings.clone(),
                    graphs: c.graphs.clone(),
                },
                self.nn.clone(),
            )
        })
    }
}
