//! Prepared graph forms: a back-end's own parsed form of an ONNX graph.
//!
//! Why: a cold start on tract spends most of its time and memory turning
//! ONNX protobuf into a typed, decluttered model (the 90 MB of MiniLM
//! weights are held three times over while it does: file bytes, protobuf,
//! tensors). tract can write that decluttered model as NNEF (a tar of the
//! graph text and raw tensor files) and read it back in one streaming pass,
//! each tensor read once into its final buffer: less than half the peak
//! memory, and no ONNX parse. So the first load of a graph writes its
//! prepared form beside the compiled artifacts, and later loads (or a
//! bundle that carries the form, `bundle build --tract-form`) use it.
//!
//! A form is named by its back-end and format version (e.g.
//! `tract-0.23-nnef-1`): a form made by another version is never offered
//! to this one. A cached form is keyed by the graph's pinned digest, else
//! by its path, size and modification time: a graph file replaced in place
//! gets a new key. A form that fails to load is reported and the ONNX
//! file is loaded instead.
//!
//! Forms are not forgotten by name: a graph file replaced in place, a new
//! back-end version or a renamed form (`ort-…-noskipln-…`) leaves the old
//! ones unreachable. So each load from the cache marks its form used (its
//! modification time), and each new form written prunes the forms of the
//! cache that no load has used for [`FORM_MAX_AGE`] ([`prune`]).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{GraphSpec, LoadedGraph, NnHost};
use crate::RerankError;

/// Where the cached form `form` of `spec` lives under `dir`, if the graph
/// file can be identified (it exists).
pub fn cached_path(dir: &Path, form: &str, spec: &GraphSpec) -> Option<PathBuf> {
    let key = match &spec.sha256 {
        Some(pin) => pin.trim_start_matches("sha256:").to_string(),
        None => {
            let meta = std::fs::metadata(&spec.path).ok()?;
            let path = std::fs::canonicalize(&spec.path).ok()?;
            let mtime = meta
                .modified()
                .ok()?
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_nanos();
            let mut h = Sha256::new();
            h.update(path.as_os_str().as_encoded_bytes());
            h.update(meta.len().to_le_bytes());
            h.update(mtime.to_le_bytes());
            hex::encode(h.finalize())
        }
    };
    Some(dir.join(form).join(format!("{key}.form")))
}

/// A cached form no load has used for this long is removed when another
/// form is written.
pub const FORM_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// Remove the `*.form` files in the form directories of the cache `dir`
/// last used (modified) before `now - max_age`, and form directories left
/// empty; `keep` is never removed. Best effort: what cannot be read or
/// removed stays. The number of forms removed.
pub fn prune(dir: &Path, keep: &Path, max_age: std::time::Duration) -> usize {
    let Some(cutoff) = std::time::SystemTime::now().checked_sub(max_age) else {
        return 0;
    };
    let mut removed = 0;
    for form_dir in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let form_dir = form_dir.path();
        if !form_dir.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&form_dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < cutoff);
            if stale
                && path != keep
                && path.extension().is_some_and(|e| e == "form")
                && std::fs::remove_file(&path).is_ok()
            {
                removed += 1;
                tracing::info!(target: "nboost::nn", path = %path.display(), "removed a prepared graph form unused for 30 days");
            }
        }
        // Only succeeds when empty.
        let _ = std::fs::remove_dir(&form_dir);
    }
    removed
}

/// Mark a cached form used now (best effort), so [`prune`] keeps it.
fn touch(path: &Path) {
    if let Ok(f) = std::fs::File::options().append(true).open(path) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// Write a form through `write` (given a file path) into `path`
/// atomically ([`crate::fsutil`]), so a reader never sees half a form.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), String> {
    crate::fsutil::write_atomic_with(path, |tmp| write(tmp).map_err(std::io::Error::other))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Run `load` (a graph load) with large allocations mapped and unmapped
/// on their own rather than carved from the heap.
///
/// Why: glibc raises its mmap threshold after each large free (up to
/// 32 MiB), so while a back-end optimises a graph, replacing each weight
/// by a packed copy, the freed originals stay in the heap as resident
/// garbage: MiniLM's cold start peaked 10–25 MiB higher, varying run to
/// run. A fixed 512 KiB threshold during the load returns each freed
/// weight at once; afterwards the threshold is set to glibc's maximum, as
/// the dynamic rule would have, so inference keeps reusing heap buffers.
/// `mallopt` only changes thresholds, so concurrent loads and allocations
/// elsewhere are unaffected in correctness.
pub fn with_lean_heap<T>(load: impl FnOnce() -> T) -> T {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // Setting the mmap threshold turns off glibc's dynamic rule, which
        // would also have raised the trim threshold (to twice the mmap
        // threshold). Left at 128 KiB, every inference handed its freed
        // activation buffers (MiniLM, 16 x 100 tokens: about 10 MB a layer)
        // back to the kernel and faulted them in again on the next call:
        // about 5 % of tract's time in page faults and page clearing
        // (perf). Heap tops under this size are kept for the next call.
        const TRIM_THRESHOLD: libc::c_int = 64 << 20;
        #[allow(unsafe_code, reason = "mallopt is a plain libc call")]
        // SAFETY: mallopt only sets an allocator parameter.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 512 << 10);
        }
        let out = load();
        #[allow(unsafe_code, reason = "mallopt is a plain libc call")]
        // SAFETY: as above.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
        out
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    load()
}

impl NnHost {
    /// Load a declared graph: from a prepared form when one fits the
    /// back-end (shipped with the graph, or cached), else from the ONNX
    /// file, writing the form to the cache for the next start.
    pub(super) fn load_spec(&self, spec: &GraphSpec) -> Result<LoadedGraph, RerankError> {
        let name = spec.name.as_str();
        let loader = self.loader()?;
        let form = loader.prepared_form();
        let cached = form.as_deref().and_then(|f| {
            let dir = self.options.graph_cache.as_deref()?;
            cached_path(dir, f, spec)
        });
        let shipped = spec
            .prepared
            .as_ref()
            .filter(|(f, _)| Some(f) == form.as_ref())
            .map(|(_, p)| p.clone());
        for path in shipped.iter().chain(&cached).filter(|p| p.is_file()) {
            let started = std::time::Instant::now();
            match loader.load_prepared(name, path) {
                Ok((graph, signature)) => {
                    if Some(path) == cached.as_ref() {
                        touch(path);
                    }
                    tracing::info!(
                        target: "nboost::nn",
                        graph = name,
                        backend = ?self.options.backend,
                        form = form.as_deref().unwrap_or_default(),
                        ms = started.elapsed().as_millis() as u64,
                        "graph loaded from its prepared form"
                    );
                    return Ok(LoadedGraph {
                        graph,
                        meta: std::sync::Arc::new(self.graph_meta(signature)),
                    });
                }
                Err(e) => tracing::warn!(
                    target: "nboost::nn",
                    graph = name,
                    path = %path.display(),
                    "ignoring an unusable prepared graph form: {e}"
                ),
            }
        }
        let bytes = std::fs::read(&spec.path).map_err(|e| {
            RerankError::Backend(format!(
                "graph `{name}`: cannot read {}: {e}",
                spec.path.display()
            ))
        })?;
        if let Some(want) = &spec.sha256 {
            let got = nboost_validate::sha256_digest(&bytes);
            if &got != want {
                return Err(RerankError::Backend(format!(
                    "graph `{name}`: {} has digest {got}, the manifest pins {want}",
                    spec.path.display()
                )));
            }
        }
        let loaded = self.load_graph_bytes(name, &bytes)?;
        if let Some(path) = cached {
            let started = std::time::Instant::now();
            match write_atomic(&path, |f| loader.write_prepared(&bytes, f)) {
                Ok(()) => {
                    tracing::info!(
                        target: "nboost::nn",
                        graph = name,
                        path = %path.display(),
                        ms = started.elapsed().as_millis() as u64,
                        "prepared graph form cached"
                    );
                    if let Some(dir) = self.options.graph_cache.as_deref() {
                        prune(dir, &path, FORM_MAX_AGE);
                    }
                }
                Err(e) => tracing::warn!(
                    target: "nboost::nn",
                    graph = name,
                    "cannot cache the prepared graph form: {e}"
                ),
            }
        }
        Ok(loaded)
    }

    /// The prepared form of `spec`'s graph for this back-end, written to
    /// `out` (`bundle build --tract-form`): the form's name.
    pub fn write_prepared(&self, spec: &GraphSpec, out: &Path) -> Result<String, RerankError> {
        let loader = self.loader()?;
        let form = loader.prepared_form().ok_or_else(|| {
            RerankError::Backend(format!(
                "the {:?} back-end has no prepared graph form",
                self.options.backend
            ))
        })?;
        let bytes = std::fs::read(&spec.path).map_err(|e| {
            RerankError::Backend(format!(
                "graph `{}`: cannot read {}: {e}",
                spec.name,
                spec.path.display()
            ))
        })?;
        write_atomic(out, |f| loader.write_prepared(&bytes, f))
            .map_err(|e| RerankError::Backend(format!("graph `{}`: {e}", spec.name)))?;
        Ok(form)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn form(dir: &Path, form: &str, key: &str, age_days: u64) -> PathBuf {
        let path = dir.join(form).join(format!("{key}.form"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"form").unwrap();
        let f = std::fs::File::options().append(true).open(&path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(age_days * 24 * 3600))
            .unwrap();
        path
    }

    #[test]
    fn forms_unused_for_the_max_age_are_pruned_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let old_name = form(dir.path(), "ort-1.32-cpu-level3-mapped", "a", 40);
        let fresh = form(dir.path(), "ort-1.32-cpu-level3-noskipln-mapped", "a", 0);
        let old_key = form(dir.path(), "ort-1.32-cpu-level3-noskipln-mapped", "b", 31);
        let recent = form(dir.path(), "tract-0.23-nnef-1", "a", 29);
        let kept_anyway = form(dir.path(), "tract-0.23-nnef-1", "c", 90);
        std::fs::write(dir.path().join("tract-0.23-nnef-1").join("notes.txt"), "x").unwrap();
        assert_eq!(prune(dir.path(), &kept_anyway, FORM_MAX_AGE), 2);
        assert!(!old_name.exists() && !old_key.exists());
        assert!(
            !old_name.parent().unwrap().exists(),
            "an emptied form directory goes"
        );
        assert!(fresh.exists() && recent.exists() && kept_anyway.exists());
        assert!(
            dir.path().join("tract-0.23-nnef-1/notes.txt").exists(),
            "only forms are removed"
        );
    }

    #[test]
    fn a_load_marks_its_form_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = form(dir.path(), "tract-0.23-nnef-1", "a", 60);
        touch(&path);
        assert_eq!(
            prune(dir.path(), Path::new("/nonexistent"), FORM_MAX_AGE),
            0
        );
        assert!(path.exists());
    }
}
